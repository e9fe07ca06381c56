/**
 * `npm run soak:workers`: stops push workers at random moments of their bundles, hundreds of
 * times, each run in a child process, and counts the children that did not exit cleanly. It is
 * the reproduction behind src/client/worker-stop.ts: with `--terminate` the workers are ended
 * with `worker.terminate()` as the push pool used to do (Node 24 aborted 3 of 20 processes of
 * 20 stops each with V8's "Check failed: (location_) != nullptr"); without it they are
 * stopped through the pool's `close()`, which asks them to end by themselves (none of 20).
 *
 *   npm run soak:workers -- [--processes 15] [--stops 20] [--terminate]
 *
 * Not a test: a crash is rare, so `npm test` could not show it reliably in its time.
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { BuildPool, startBuildWorker, type BuildJob } from "../../src/client/push-pool.ts";
import { scanTree } from "../../src/client/scanner.ts";
import { chunkId } from "../../src/core/manifest.ts";

const { values } = parseArgs({
  options: {
    processes: { type: "string", default: "15" },
    stops: { type: "string", default: "20" },
    terminate: { type: "boolean", default: false },
    child: { type: "string" },
  },
});

/** Two workers get four bundles' worth of big and small files; they are stopped 50–300 ms in. */
async function childRounds(root: string, stops: number, terminate: boolean): Promise<void> {
  const { manifest } = await scanTree({ root });
  const files = manifest.entries.filter((entry) => entry.kind === "file");
  const out = join(root, "..", `out-${process.pid}`);
  mkdirSync(out, { recursive: true });
  const jobs: BuildJob[] = [0, 1, 2, 3].map((j) => {
    const parts = files.filter((_, k) => k % 4 === j).map((entry) => ({ absPath: join(root, entry.path.slice("files/".length)), entry }));
    return { id: j, path: join(out, `b${j}.bundle`), parts, wanted: [...new Set(parts.flatMap((part) => part.entry.chunks.map(chunkId)))], stream: j % 2 === 0 };
  });
  const pause = () => new Promise((resolve) => setTimeout(resolve, 50 + Math.random() * 250));
  for (let i = 0; i < stops; i++) {
    if (terminate) {
      // The pool's old way, with its worker script and messages.
      const workers = [0, 1].map(() => startBuildWorker());
      jobs.forEach((job, j) => workers[j % 2]!.postMessage(job));
      await pause();
      await Promise.all(workers.map((worker) => worker.terminate()));
    } else {
      const pool = new BuildPool(2);
      const built = jobs.map((job) => pool.build(job).catch(() => undefined));
      await pause();
      await pool.close();
      await Promise.all(built);
    }
  }
}

if (values.child !== undefined) {
  await childRounds(values.child, Number(values.stops), values.terminate);
} else {
  const processes = Number(values.processes);
  const stops = Number(values.stops);
  if (!Number.isInteger(processes) || processes < 1 || !Number.isInteger(stops) || stops < 1) {
    process.stderr.write("usage: npm run soak:workers -- [--processes <n>] [--stops <n>] [--terminate]\n");
    process.exit(1);
  }
  const dir = mkdtempSync(join(tmpdir(), "cws-worker-soak-"));
  try {
    const root = join(dir, "root");
    mkdirSync(root);
    for (let i = 0; i < 6; i++) writeFileSync(join(root, `big-${i}.bin`), randomBytes(3_000_000));
    for (let i = 0; i < 40; i++) writeFileSync(join(root, `note-${i}.md`), "words to compress ".repeat(1000 + i * 10));
    let failed = 0;
    for (let p = 0; p < processes; p++) {
      const args = [fileURLToPath(import.meta.url), "--child", root, "--stops", String(stops), ...(values.terminate ? ["--terminate"] : [])];
      const child = spawnSync(process.execPath, args, { encoding: "utf8" });
      const clean = child.status === 0 && child.signal === null;
      if (!clean) failed++;
      const trace = clean ? "" : `: ${(child.stderr.split("\n").find((line) => /Check failed|FATAL|Error/.test(line)) ?? child.stderr.trim().split("\n")[0] ?? "").trim()}`;
      process.stdout.write(`process ${p + 1}/${processes}: ${stops} stops, ${clean ? "exited cleanly" : `exit ${child.status ?? "none"}, signal ${child.signal ?? "none"}`}${trace}\n`);
    }
    process.stdout.write(`\nsoak:workers: ${processes * stops} stops (${values.terminate ? "terminate()" : "the pool's close()"}), ${failed} of ${processes} processes did not exit cleanly\n`);
    process.exitCode = failed === 0 ? 0 : 1;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
