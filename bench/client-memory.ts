/**
 * `node bench/client-memory.ts`: the client's peak memory and CPU time over an initial push and
 * a fresh device's pull (the benchmark's bulk scenarios, driven through the CLI as
 * bench/cws-runner.ts drives them), for this checkout and, with `--against DIR`, alternating
 * with another checkout on the same data (the other one first in every second run), so that
 * the machine's load hits both alike.
 *
 *   node bench/client-memory.ts [--files N] [--mib N] [--runs N] [--against DIR] [--timeline DIR]
 *
 * Each run gets a fresh server and devices (kept sessions off, as in the benchmark's push and
 * pull, whose peak is the command's own). It prints, per scenario and checkout, the wall time,
 * the client's CPU (user + system, from GNU time) and its peak RSS (GNU time's, the figure the
 * benchmark reports: the cws process, main thread and worker threads together). `--timeline
 * DIR` also samples each command's resident memory every 20 ms from /proc (a .tsv per
 * scenario: command, ms, VmRSS KiB, RssAnon KiB, threads) and copies /proc/PID/smaps at each
 * new high (smaps-*.txt), to see what the peak is made of.
 *
 * This is not a test: `npm test` does not run it.
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { REPO_NODE, REPO_ROOT, shellQuote, startSshd, type SshdHandle } from "../test/helpers/sshd.ts";
import { generateDataset, planDataset, scalePlan } from "./dataset.ts";
import { findProcesses, TIME_PATH } from "./measure.ts";
import { discard, emptyTrash, useTrash } from "./trash.ts";

/** One command's figures: GNU time's, and the sampled timeline. */
interface Sampled {
  wallS: number;
  userS: number;
  systemS: number;
  peakKiB: number;
  /** [ms since start, VmRSS KiB, RssAnon KiB, threads] every 20 ms. */
  timeline: Array<[number, number, number, number]>;
}

/** VmRSS, RssAnon (KiB) and the thread count of a live process. */
function status(pid: number): { rss: number; anon: number; threads: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/status`, "utf8");
    const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(text)?.[1] ?? 0);
    return { rss: field("VmRSS"), anon: field("RssAnon"), threads: field("Threads") };
  } catch {
    return undefined;
  }
}

/** Runs `node args` under GNU time, sampling the Node process; `smapsFile` gets its smaps at each new high. */
async function sampled(args: string[], env: NodeJS.ProcessEnv, work: string, smapsFile: string | undefined): Promise<Sampled> {
  const timeFile = path.join(work, "time.txt");
  const started = performance.now();
  const child = spawn(TIME_PATH, ["-f", "%e %U %S %M", "-o", timeFile, REPO_NODE, ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stdout.resume();
  child.stderr.on("data", (piece: Buffer) => (stderr += piece.toString()));
  const timeline: Sampled["timeline"] = [];
  let node: number | undefined;
  let high = 0;
  const timer = setInterval(() => {
    // GNU time's only child is the Node process.
    if (node === undefined) {
      try {
        node = Number(readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, "utf8").trim().split(" ")[0]) || undefined;
      } catch {
        return;
      }
      if (node === undefined) return;
    }
    const now = status(node);
    if (now === undefined) return;
    timeline.push([Math.round(performance.now() - started), now.rss, now.anon, now.threads]);
    if (smapsFile !== undefined && now.rss > high + 2048) {
      high = now.rss;
      try {
        writeFileSync(smapsFile, readFileSync(`/proc/${node}/smaps`, "utf8"));
      } catch {
        // It ended meanwhile.
      }
    }
  }, 20);
  const code: number | null = await new Promise((resolve) => child.on("exit", resolve));
  clearInterval(timer);
  if (code !== 0) throw new Error(`${args.slice(1).join(" ")} exited with ${code}: ${stderr.slice(-2000)}`);
  const [, userS, systemS, peakKiB] = readFileSync(timeFile, "utf8").trim().split("\n").pop()!.split(" ").map(Number);
  return { wallS: (performance.now() - started) / 1000, userS: userS!, systemS: systemS!, peakKiB: peakKiB!, timeline };
}

function run(args: string[], env: NodeJS.ProcessEnv): void {
  const result = spawnSync(REPO_NODE, args, { env, encoding: "utf8" });
  if (result.status !== 0) throw new Error(`${args.slice(1).join(" ")} exited with ${result.status}: ${result.stderr}`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      files: { type: "string", default: "5000" }, mib: { type: "string", default: "300" }, runs: { type: "string", default: "2" },
      against: { type: "string" }, timeline: { type: "string" },
    },
  });
  const files = Number(values.files);
  const checkouts = [REPO_ROOT, ...(values.against === undefined ? [] : [path.resolve(values.against)])];
  const timelines = values.timeline === undefined ? undefined : path.resolve(values.timeline);
  if (timelines !== undefined) mkdirSync(timelines, { recursive: true });
  const work = await mkdtemp(path.join(os.tmpdir(), "cws-client-memory-"));
  // Trees are set aside, not deleted, until the end: mass deletions slow the next pull's file creation.
  useTrash(path.join(work, "trash"));
  let sshd: SshdHandle | undefined;
  const servers: string[] = [];
  try {
    sshd = await startSshd();
    const base = planDataset({ seed: 1, totalBytes: Number(values.mib) * 2 ** 20, files: Math.min(files, 5000) });
    const data = path.join(work, "data");
    const summary = generateDataset(data, files > 5000 ? scalePlan(base, Math.round(files / 5000)) : base);
    console.log(`${summary.files} files, ${(summary.bytes / 2 ** 20).toFixed(0)} MiB`);
    const pass = path.join(work, "pass.txt");
    writeFileSync(pass, "client-memory\n", { mode: 0o600 });
    const lines: string[] = [];
    for (let i = 0; i < Number(values.runs); i++) {
      const order = [...checkouts.entries()];
      if (i % 2 === 1) order.reverse();
      for (const [c, checkout] of order) {
        const cli = path.join(checkout, "src", "cli", "cws.mjs");
        const server = path.join(work, `server-${c}-${i}`);
        servers.push(server);
        const env = { ...process.env, CWS_KEEP_SESSION: "0" };
        run([path.join(checkout, "server-agent", "server-main.ts"), "init", "--data", server, "--passphrase-file", pass], env);
        const agentCommand = [REPO_NODE, path.join(checkout, "server-agent", "agent", "main.mjs"), "--stdio", "--data", server].map(shellQuote).join(" ");
        const enroll = (home: string, name: string) => run([cli, "enroll-device", "--host", sshd!.host, "--port", String(sshd!.port), "--user", sshd!.user,
          "--identity", sshd!.clientKeyPath, "--known-hosts", sshd!.knownHostsPath, "--device-name", name, "--passphrase-file", pass, "--agent-command", agentCommand, "--yes"], { ...env, CWS_HOME: home });
        const record = async (scenario: string, commands: string[][], home: string): Promise<void> => {
          const parts: Sampled[] = [];
          spawnSync("sync");
          for (const [k, args] of commands.entries()) {
            const smaps = timelines === undefined ? undefined : path.join(timelines, `smaps-${scenario}-${c}-${i}-${k}-${args[0]}.txt`);
            parts.push(await sampled([cli, ...args], { ...env, CWS_HOME: home }, work, smaps));
          }
          const sum = (pick: (part: Sampled) => number) => parts.reduce((total, part) => total + pick(part), 0);
          const line = `${scenario.padEnd(5)} ${checkout.padEnd(32)} run ${i + 1}: ${sum((p) => p.wallS).toFixed(2)} s, client CPU ${sum((p) => p.userS).toFixed(2)} s user + ` +
            `${sum((p) => p.systemS).toFixed(2)} s system, peak RSS ${Math.round(Math.max(...parts.map((p) => p.peakKiB)) / 1024)} MiB (load ${readFileSync("/proc/loadavg", "utf8").split(" ")[0]})`;
          console.log(line);
          lines.push(line);
          if (timelines !== undefined) {
            const rows = parts.flatMap((part, k) => part.timeline.map((sample) => [k, ...sample].join("\t")));
            writeFileSync(path.join(timelines, `${scenario}-${c}-${i}.tsv`), rows.join("\n") + "\n");
          }
        };
        const homeA = path.join(work, `home-a-${c}-${i}`);
        enroll(homeA, "a");
        await record("push", [["create-superproject", "p", "--root", data], ["sync", "p", "--json"]], homeA);
        const homeB = path.join(work, `home-b-${c}-${i}`);
        const rootB = path.join(work, `device-b-${c}-${i}`);
        mkdirSync(rootB, { recursive: true });
        enroll(homeB, "b");
        await record("pull", [["attach-superproject", "p", "--root", rootB], ["sync", "p", "--json"]], homeB);
        for (const { pid } of findProcesses(server)) process.kill(pid, "SIGTERM");
        for (const dir of [rootB, homeA, homeB]) await discard(dir);
      }
    }
    console.log("");
    for (const line of lines.sort()) console.log(line);
  } finally {
    for (const server of servers) for (const { pid } of findProcesses(server)) {
      try {
        process.kill(pid, "SIGTERM");
      } catch {
        // Gone already.
      }
    }
    await sshd?.stop();
    await emptyTrash();
    if (existsSync(work)) await rm(work, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
