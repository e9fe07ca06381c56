/**
 * Times the scanner's walk of a no-op on the benchmark's data set, in one process: a walk that
 * lists every folder, and a walk through the kept session's watcher (tree-watch.ts) with nothing
 * changed. `node bench/walk-time.ts --dir DIR [--files N] [--runs N] [--repo DIR]`; the data set
 * is generated into DIR once and reused.
 */
import { existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { pathToFileURL } from "node:url";
import { generateDataset, planDataset, scalePlan } from "./dataset.ts";

const { values } = parseArgs({ options: { dir: { type: "string" }, files: { type: "string", default: "50000" }, runs: { type: "string", default: "5" }, repo: { type: "string" } } });
const dir = resolve(values.dir ?? "/tmp/cws-walk-time");
const repo = resolve(values.repo ?? join(import.meta.dirname, ".."));
const files = Number(values.files);
const root = join(dir, "root");
if (!existsSync(root)) {
  const base = planDataset({ totalBytes: 300 * 2 ** 20 });
  generateDataset(root, files > 5000 ? scalePlan(base, files / 5000) : base);
}
mkdirSync(join(dir, "state"), { recursive: true });
const { scanTree } = await import(pathToFileURL(join(repo, "src/client/scanner.ts")).href);
// As in the kept session: the stat cache is parsed again only when its file changed.
(await import(pathToFileURL(join(repo, "src/client/file-memo.ts")).href)).keepParsedFiles();
const watchModule = join(repo, "src/client/tree-watch.ts");
const watch = existsSync(watchModule) ? await import(pathToFileURL(watchModule).href) : null;
const statCachePath = join(dir, "state", "stat-cache");
// Wall time and CPU time (user + system) of each run: on a shared machine the CPU time is the steadier.
const time = async (label: string, run: () => Promise<unknown>) => {
  const times: number[] = [];
  const cpus: number[] = [];
  for (let i = 0; i < Number(values.runs); i++) {
    const started = performance.now();
    const cpu = process.cpuUsage();
    await run();
    const used = process.cpuUsage(cpu);
    times.push(performance.now() - started);
    cpus.push((used.user + used.system) / 1000);
  }
  const median = (list: number[]) => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)]!.toFixed(0);
  console.log(`${label}: median ${median(times)} ms wall, ${median(cpus)} ms CPU (wall ${times.map((t) => t.toFixed(0)).join(", ")})`);
};
await scanTree({ root, statCachePath });
await time("walk listing every folder", () => scanTree({ root, statCachePath }));
if (watch !== null) {
  const watcher = new watch.TreeWatcher({ root, markerDir: join(dir, "state", "kept-watch"), maxFolders: 20_000, log: console.log });
  await scanTree({ root, statCachePath, memo: watcher });
  watcher.watchWalked();
  await watcher.prime(() => false);
  watcher.takeCounts();
  console.log(`watching ${JSON.stringify(watcher.size)}; rss ${Math.round(process.memoryUsage().rss / 2 ** 20)} MiB`);
  const profileTo = process.env.WALK_TIME_PROFILE;
  const { Session } = await import("node:inspector/promises");
  const session = new Session();
  if (profileTo !== undefined) {
    session.connect();
    await session.post("Profiler.enable");
    await session.post("Profiler.start");
  }
  await time("walk through the watcher", async () => {
    await watcher.barrier();
    await scanTree({ root, statCachePath, memo: watcher });
  });
  if (profileTo !== undefined) {
    const { profile } = await session.post("Profiler.stop");
    (await import("node:fs")).writeFileSync(profileTo, JSON.stringify(profile));
  }
  console.log(JSON.stringify(watcher.takeCounts()));
  watcher.close();
}
