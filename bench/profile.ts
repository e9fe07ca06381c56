/**
 * `npm run bench:profile`: where the time of a no-op sync and of a 1% change goes, for one cws
 * checkout, over the benchmark's own sshd and data set (bench/dataset.ts). It sets up a server
 * and one device, pushes the data set once, then runs the no-op and 1%-change syncs with
 * `node --cpu-prof` on the client and on the hub, and prints for each: wall time, the client's
 * and the hub's CPU time split by where it was spent (Node start-up and module loading, our
 * source files, dependencies, garbage collection, idle), and the hottest functions.
 *
 *   node bench/profile.ts [--files N] [--mib N] [--runs N] [--repo DIR] [--keep DIR] [--push | --kept | --pull [--against DIR] [--wrap CMD]]
 *
 * `--push` profiles the initial push instead (create-superproject and a sync onto an empty
 * server, as the benchmark's push): the hub runs under the profiler from the start, the client
 * sync under `--cpu-prof` (its push worker threads write profiles of their own), and the
 * client's peak RSS is read through GNU time. It prints the wall time, then where the client's
 * main thread, each worker thread and the hub spent their CPU time.
 *
 * `--kept` runs the syncs through a kept session (src/client/kept-session.ts) started under the
 * profiler after the push: the client profile is then the command's hand-off path, and the kept
 * session's own profile (all syncs together) is printed at the end. Without it, every sync
 * opens its own session (CWS_KEEP_SESSION=0).
 *
 * `--pull` profiles the benchmark's pull instead: after the push, a second device is enrolled
 * and attached to an empty folder, and its first sync (every file downloaded) runs under the
 * profiler, `--runs` times (a fresh device each time), with the client's peak RSS and a
 * breakdown of where its time went. `--against DIR` alternates each pull with one by another
 * checkout (e.g. `git worktree add /tmp/base main`) on the same server and data, the other one
 * first in every second run. `--wrap CMD`
 * runs each profiled pull under CMD (e.g. `--wrap "perf record -g -o /tmp/perf-{run}.data --"`
 * or `"strace -c -f -o /tmp/strace-{run}.txt"`, `{run}` naming the run), to see the system
 * calls and the kernel's share.
 *
 * `--repo` profiles another checkout (e.g. an older commit unpacked with `git archive`), so a
 * before/after comparison runs on the same data, machine and moment. Profiles (.cpuprofile,
 * readable in Chrome DevTools) are kept in `--keep DIR` when given.
 *
 * `CWS_PROFILE_OFF=1` runs `--push` and `--pull` without the profiler (client, agent and hub):
 * wall time, peak RSS and the hub's CPU only, for before/after comparisons (the profiler's
 * overhead is uneven across threads, and larger at start-up).
 *
 * This is not a test: `npm test` does not run it.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { REPO_ROOT, REPO_NODE, shellQuote, startSshd, type SshdHandle } from "../test/helpers/sshd.ts";
import { generateDataset, mutateOnePercent, planDataset, scalePlan } from "./dataset.ts";
import { parseCwsSummary } from "./cws-runner.ts";
import { findProcesses, runTimed, TIME_PATH } from "./measure.ts";
import { discard, emptyTrash, useTrash } from "./trash.ts";
import { LOW_MEMORY_MALLOC_ENV } from "../src/malloc-env.ts";
import { keptLogPath, keptSessionStatus } from "../src/client/kept-session-wire.ts";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Milliseconds of samples per bucket and per function, from one .cpuprofile. */
export function summarizeProfile(profile: CpuProfile, repoRoot: string): { totalMs: number; buckets: Map<string, number>; functions: Map<string, number> } {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfMs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const delta = (profile.timeDeltas[i + 1] ?? 0) / 1000;
    selfMs.set(profile.samples[i], (selfMs.get(profile.samples[i]) ?? 0) + delta);
  }
  const buckets = new Map<string, number>();
  const functions = new Map<string, number>();
  const repoUrl = `file://${repoRoot}/`;
  for (const [id, ms] of selfMs) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    let bucket: string;
    if (functionName === "(idle)") bucket = "idle (waiting: I/O, the peer)";
    else if (functionName === "(garbage collector)") bucket = "garbage collection";
    else if (functionName === "(program)") bucket = "V8/Node native (start-up, compiling)";
    else if (url.includes("/node_modules/")) bucket = `dependency ${url.split("/node_modules/")[1]!.split("/")[0]}`;
    else if (url.startsWith(repoUrl)) bucket = url.slice(repoUrl.length).replace(/\/[^/]*$/, "/…");
    else if (url.startsWith("node:")) bucket = "Node internals (module loading, streams, fs)";
    else bucket = url === "" ? "native functions" : "other";
    buckets.set(bucket, (buckets.get(bucket) ?? 0) + ms);
    const where = url.includes("/node_modules/") ? url.split("/node_modules/")[1]! : url.startsWith(repoUrl) ? `${url.slice(repoUrl.length)}:${lineNumber + 1}` : url || "native";
    const key = `${functionName || "(anonymous)"} ${where}`;
    functions.set(key, (functions.get(key) ?? 0) + ms);
  }
  return { totalMs: (profile.endTime - profile.startTime) / 1000, buckets, functions };
}

/** Prints where one profile's time went; returns its busy (not idle) milliseconds. */
function printSummary(title: string, file: string, repoRoot: string): number {
  const { totalMs, buckets, functions } = summarizeProfile(JSON.parse(readFileSync(file, "utf8")) as CpuProfile, repoRoot);
  const busyMs = totalMs - (buckets.get("idle (waiting: I/O, the peer)") ?? 0);
  console.log(`  ${title}: ${totalMs.toFixed(0)} ms profiled, ${busyMs.toFixed(0)} ms busy`);
  for (const [bucket, ms] of [...buckets].sort((a, b) => b[1] - a[1]).slice(0, 12)) {
    if (ms >= 2) console.log(`    ${ms.toFixed(0).padStart(6)} ms  ${bucket}`);
  }
  console.log("    hottest functions (self time):");
  for (const [fn, ms] of [...functions].sort((a, b) => b[1] - a[1]).filter(([name]) => !name.startsWith("(")).slice(0, 8)) {
    console.log(`    ${ms.toFixed(0).padStart(6)} ms  ${fn}`);
  }
  return busyMs;
}

/** Waits until the kept session of `home` says it is idle (it names the moment it will exit). */
async function awaitIdle(home: string): Promise<void> {
  for (let waited = 0; waited < 120_000; waited += 50) {
    const status = await keptSessionStatus(home);
    if (status !== null && status.idleExitAt !== null) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`the kept session of ${home} did not become idle within 120 s (see ${keptLogPath(home)})`);
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv): { ms: number; stdout: string } {
  const started = performance.now();
  const result = spawnSync(command, args, { env, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  const ms = performance.now() - started;
  if (result.status !== 0) throw new Error(`${args.join(" ")} exited with ${result.status}: ${result.stderr}`);
  return { ms, stdout: result.stdout };
}

/**
 * The main thread's profile of the newest process in `dir` (named CPU.<date>.<time>.<pid>.<thread>.<n>;
 * worker threads of the same process write their own, with another thread number).
 */
function newest(dir: string): string | undefined {
  const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith(".cpuprofile")) : [];
  const mains = files.filter((f) => f.split(".")[4] === "0").sort();
  return mains.length > 0 ? path.join(dir, mains[mains.length - 1]!) : undefined;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      files: { type: "string", default: "5000" }, mib: { type: "string", default: "300" }, runs: { type: "string", default: "3" },
      repo: { type: "string" }, keep: { type: "string" }, push: { type: "boolean", default: false }, kept: { type: "boolean", default: false },
      pull: { type: "boolean", default: false }, against: { type: "string" }, wrap: { type: "string" },
    },
  });
  const repo = path.resolve(values.repo ?? REPO_ROOT);
  const files = Number(values.files);
  const runs = Number(values.runs);
  const work = await mkdtemp(path.join(os.tmpdir(), "cws-profile-"));
  useTrash(path.join(work, "trash"));
  const profiles = values.keep ? path.resolve(values.keep) : path.join(work, "profiles");
  mkdirSync(profiles, { recursive: true });
  const cliEntry = cliOf(repo);
  const agentEntry = ["main.mjs", "main.ts"].map((f) => path.join(repo, "server-agent", "agent", f)).find(existsSync)!;
  // The .mjs entry, as the agent starts the hub (it turns the compile cache on first).
  const serverMain = path.join(repo, "server-agent", "server-main.mjs");
  const dataDir = path.join(work, "server");
  const home = path.join(work, "home");
  const root = path.join(work, "device-a");
  let sshd: SshdHandle | undefined;
  const env = { ...process.env, CWS_HOME: home, CWS_KEEP_SESSION: "0" };
  let kept: number | undefined;
  try {
    sshd = await startSshd();
    const base = planDataset({ seed: 1, totalBytes: Number(values.mib) * 2 ** 20, files: Math.min(files, 5000) });
    const plan = files > 5000 ? scalePlan(base, Math.round(files / 5000)) : base;
    const summary = generateDataset(root, plan);
    console.log(`${repo}: ${summary.files} files, ${(summary.bytes / 2 ** 20).toFixed(0)} MiB`);
    await writeFile(path.join(work, "pass.txt"), "profile-passphrase\n", { mode: 0o600 });
    run(REPO_NODE, [serverMain, "init", "--data", dataDir, "--passphrase-file", path.join(work, "pass.txt")], env);
    const agentProfiles = path.join(profiles, "agent");
    const agentCommand = [REPO_NODE, ...(PROFILING ? [`--cpu-prof-dir=${agentProfiles}`, "--cpu-prof"] : []), agentEntry, "--stdio", "--data", dataDir].map(shellQuote).join(" ");
    run(REPO_NODE, [cliEntry, "enroll-device", "--host", sshd.host, "--port", String(sshd.port), "--user", sshd.user, "--identity", sshd.clientKeyPath,
      "--known-hosts", sshd.knownHostsPath, "--device-name", "profile", "--passphrase-file", path.join(work, "pass.txt"), "--agent-command", agentCommand, "--yes"], env);
    if (values.push) {
      await profilePush({ repo, cliEntry, serverMain, dataDir, root, profiles, env });
      return;
    }
    run(REPO_NODE, [cliEntry, "create-superproject", "p", "--root", root], env);
    console.log(`initial push: ${(run(REPO_NODE, [cliEntry, "sync", "p", "--json"], env).ms / 1000).toFixed(2)} s`);
    // The hub from here on runs under the profiler: stop the one the push started, start ours.
    for (const { pid } of findProcesses(dataDir)) process.kill(pid, "SIGTERM");
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const hubProfiles = path.join(profiles, "hub");
    // With the real hub's V8 flags and allocator settings, so that its memory and collections are the real hub's.
    const { HUB_NODE_FLAGS } = await import(path.join(repo, "server-agent", "hub", "hub-client.ts")) as { HUB_NODE_FLAGS: string[] };
    const extra = (process.env.CWS_PROFILE_HUB_FLAGS ?? "").split(" ").filter((flag) => flag !== "");
    const hub = spawnSyncDetached(REPO_NODE, [...HUB_NODE_FLAGS, ...extra, ...(PROFILING ? ["--cpu-prof", `--cpu-prof-dir=${hubProfiles}`] : []), serverMain, "serve", "--data", dataDir, "--idle-exit-ms", "0"],
      { ...process.env, ...LOW_MEMORY_MALLOC_ENV }, path.join(profiles, "hub-stdout.txt"));
    await new Promise((resolve) => setTimeout(resolve, 1500));
    run(REPO_NODE, [cliEntry, "sync", "p", "--json"], env); // warm the compile cache and the page cache
    if (values.kept) {
      env.CWS_KEEP_SESSION = "3600";
      // CWS_PROFILE_KEPT_FLAGS adds V8 flags, e.g. --heapsnapshot-signal=SIGUSR2.
      const keptFlags = (process.env.CWS_PROFILE_KEPT_FLAGS ?? "").split(" ").filter((flag) => flag !== "");
      kept = spawnSyncDetached(REPO_NODE, [...keptFlags, "--cpu-prof", `--cpu-prof-dir=${path.join(profiles, "kept")}`, cliEntry, "session", "run"], { ...env, ...LOW_MEMORY_MALLOC_ENV }, path.join(profiles, "kept-session.log"));
      for (let waited = 0; !existsSync(path.join(home, "kept-session.sock")) && waited < 30_000; waited += 100) await new Promise((resolve) => setTimeout(resolve, 100));
      run(REPO_NODE, [cliEntry, "sync", "p", "--json"], env); // its first sync, like the warm-up above
    }
    const scenarios = values.pull ? [] : (["no-op", "1% change"] as const);
    if (values.pull) {
      await profilePull({ work, cliEntry, agentCommand, sshd, runs, profiles, repo, agentProfiles, env, hub, wrap: (values.wrap ?? "").split(" ").filter((w) => w !== ""), ...(values.against === undefined ? {} : { against: values.against }) });
    }
    for (const scenario of scenarios) {
      const times: number[] = [];
      const clientDir = path.join(profiles, scenario === "no-op" ? "noop" : "change");
      for (let i = 0; i < runs; i++) {
        // As in the benchmark, a sync starts once the kept session is idle (its watcher set
        // up after the last sync): a user's next sync comes much later than a script's.
        if (kept !== undefined) await awaitIdle(home);
        if (scenario === "1% change") mutateOnePercent(root, 100 + i);
        spawnSync("sync");
        times.push(run(REPO_NODE, ["--cpu-prof", `--cpu-prof-dir=${clientDir}`, cliEntry, "sync", "p", "--json"], env).ms);
      }
      times.sort((a, b) => a - b);
      console.log(`\n${scenario}: ${times.map((t) => `${(t / 1000).toFixed(2)} s`).join(", ")} (median ${(times[Math.floor(times.length / 2)]! / 1000).toFixed(2)} s)`);
      const last = newest(clientDir);
      if (last) printSummary("client, last run", last, repo);
      const agent = newest(agentProfiles);
      if (agent) printSummary("agent process (per SSH session), last run", agent, repo);
    }
    if (kept !== undefined) {
      if (process.env.CWS_PROFILE_KEPT_FLAGS?.includes("--heapsnapshot-signal=SIGUSR2")) {
        // A heap snapshot of the kept session as it rests between syncs, into its working folder.
        process.kill(kept, "SIGUSR2");
        await new Promise((resolve) => setTimeout(resolve, 15_000));
      }
      const keptHwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${kept}/status`, "utf8"))?.[1];
      process.kill(kept, "SIGTERM");
      await new Promise((resolve) => setTimeout(resolve, 1500));
      const keptProfile = newest(path.join(profiles, "kept"));
      console.log("");
      if (keptHwm !== undefined) console.log(`kept session peak RSS: ${Math.round(Number(keptHwm) / 1024)} MiB`);
      if (keptProfile) printSummary(`kept session, all ${runs * 2 + 1} syncs together`, keptProfile, repo);
    }
    const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${hub}/status`, "utf8"))?.[1];
    if (hwm !== undefined) console.log(`\nhub peak RSS over these syncs: ${Math.round(Number(hwm) / 1024)} MiB`);
    process.kill(hub, "SIGTERM");
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const hubProfile = newest(hubProfiles);
    if (hubProfile) {
      console.log("");
      printSummary(`hub, all ${runs * 2 + 1} syncs together`, hubProfile, repo);
    }
    if (values.keep) console.log(`\nprofiles kept in ${profiles} (the kept session's log too)`);
  } finally {
    for (const pid of [...findProcesses(dataDir).map((p) => p.pid), ...(kept === undefined ? [] : [kept])]) {
      try { process.kill(pid, "SIGTERM"); } catch { /* gone already */ }
    }
    await sshd?.stop();
    await emptyTrash();
    await rm(work, { recursive: true, force: true }).catch(() => rmSync(work, { recursive: true, force: true }));
  }
}

/**
 * The initial push under the profiler: a hub that profiles itself is started before the push
 * (the agent uses a running hub), then create-superproject and the profiled sync run.
 */
async function profilePush(setup: { repo: string; cliEntry: string; serverMain: string; dataDir: string; root: string; profiles: string; env: NodeJS.ProcessEnv }): Promise<void> {
  const { repo, cliEntry, serverMain, dataDir, root, profiles, env } = setup;
  // The enrollment started a hub of its own: it goes first (only one hub may hold the store).
  for (const { pid } of findProcesses(dataDir)) process.kill(pid, "SIGTERM");
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const hubProfiles = path.join(profiles, "hub");
  // With the flags and allocator settings a hub started by an agent gets (hub-client.ts), so
  // its collections and memory are the real hub's. CWS_PROFILE_HUB_FLAGS adds V8 flags (e.g.
  // --trace-gc, whose lines go to hub-stdout.txt in the profiles folder).
  const { HUB_NODE_FLAGS } = await import(path.join(repo, "server-agent", "hub", "hub-client.ts")) as { HUB_NODE_FLAGS: string[] };
  const extra = (process.env.CWS_PROFILE_HUB_FLAGS ?? "").split(" ").filter((flag) => flag !== "");
  const profiling = PROFILING;
  const profile = (dir: string) => (profiling ? ["--cpu-prof", `--cpu-prof-dir=${dir}`] : []);
  const hub = spawnSyncDetached(REPO_NODE, [...HUB_NODE_FLAGS, ...extra, ...profile(hubProfiles), serverMain, "serve", "--data", dataDir, "--idle-exit-ms", "0"],
    { ...process.env, ...LOW_MEMORY_MALLOC_ENV }, path.join(profiles, "hub-stdout.txt"));
  await new Promise((resolve) => setTimeout(resolve, 1500));
  spawnSync("sync");
  const hubCpu = () => readFileSync(`/proc/${hub}/stat`, "utf8").split(") ")[1]!.split(" ").slice(11, 13).reduce((sum, ticks) => sum + Number(ticks) * 10, 0);
  const hubCpuBefore = hubCpu();
  const clientDir = path.join(profiles, "push");
  const created = run(REPO_NODE, [...profile(path.join(profiles, "create")), cliEntry, "create-superproject", "p", "--root", root], env);
  const pushed = await runTimed(REPO_NODE, [...profile(clientDir), cliEntry, "sync", "p", "--json"], { rssFile: path.join(profiles, "client-rss.txt"), env });
  if (pushed.code !== 0) throw new Error(`the push exited with ${pushed.code}: ${pushed.stderr}`);
  const sent = parseCwsSummary(pushed.stdout)?.payload?.sent ?? 0;
  console.log(`initial push: ${((created.ms + pushed.wallMs) / 1000).toFixed(2)} s (create-superproject ${(created.ms / 1000).toFixed(2)} s), ` +
    `client peak RSS ${Math.round((pushed.clientRssKiB ?? 0) / 1024)} MiB, ${(sent / 2 ** 20).toFixed(0)} MiB sent`);
  const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${hub}/status`, "utf8"))?.[1];
  if (hwm !== undefined) console.log(`hub peak RSS: ${Math.round(Number(hwm) / 1024)} MiB, hub CPU during the push ${((hubCpu() - hubCpuBefore) / 1000).toFixed(1)} s`);
  if (extra.some((flag) => flag.startsWith("--heapsnapshot-signal=SIGUSR2"))) {
    // The hub at rest after the push: its idle collection first, then a heap snapshot.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${hub}/status`, "utf8"))?.[1];
    console.log(`hub RSS at rest after the push: ${Math.round(Number(rss) / 1024)} MiB; heap snapshot requested`);
    process.kill(hub, "SIGUSR2");
    await new Promise((resolve) => setTimeout(resolve, 20_000));
  }
  process.kill(hub, "SIGTERM");
  await new Promise((resolve) => setTimeout(resolve, 1500));
  if (!profiling) return;
  const threads = readdirSync(clientDir).filter((f) => f.endsWith(".cpuprofile")).sort();
  let clientBusyMs = 0;
  for (const file of threads) {
    const thread = file.split(".")[4];
    clientBusyMs += printSummary(thread === "0" ? "client main thread" : `client worker thread ${thread}`, path.join(clientDir, file), repo);
  }
  const hubProfile = newest(hubProfiles);
  const hubBusyMs = hubProfile ? printSummary("hub", hubProfile, repo) : 0;
  console.log(`busy in the profiles: client ${(clientBusyMs / 1000).toFixed(1)} s (all threads), hub ${(hubBusyMs / 1000).toFixed(1)} s`);
}

/**
 * The pull of the benchmark: a freshly enrolled device attaches the superproject to an empty
 * folder and syncs (every file comes down), with the client under the profiler and its peak
 * RSS read by GNU time. With `against`, each run pulls once with this checkout and once with
 * the other one (same server, same data, alternating, so the machine's load hits both alike).
 */
async function profilePull(context: {
  work: string; cliEntry: string; agentCommand: string; sshd: SshdHandle; runs: number; profiles: string; repo: string; agentProfiles: string; env: NodeJS.ProcessEnv; hub: number; wrap: string[]; against?: string;
}): Promise<void> {
  const { work, agentCommand, sshd, runs, profiles, repo, agentProfiles } = context;
  const variants = [{ name: "this checkout", repo, cli: context.cliEntry, dir: path.join(profiles, "pull") }];
  if (context.against !== undefined) {
    const other = path.resolve(context.against);
    variants.push({ name: other, repo: other, cli: cliOf(other), dir: path.join(profiles, "pull-against") });
  }
  const results = variants.map(() => ({ times: [] as number[], rss: [] as number[] }));
  for (let i = 0; i < runs; i++) {
    // Every other run the other checkout goes first: the second pull of a pair was measured to
    // run 1-2 s slower at 5,000 files on a busy machine, whichever checkout it was.
    const order = [...variants.entries()];
    if (i % 2 === 1) order.reverse();
    for (const [v, variant] of order) {
      const home = path.join(work, `home-pull-${v}-${i}`);
      const root = path.join(work, `device-pull-${v}-${i}`);
      mkdirSync(root, { recursive: true });
      const env = { ...context.env, CWS_HOME: home };
      run(REPO_NODE, [variant.cli, "enroll-device", "--host", sshd.host, "--port", String(sshd.port), "--user", sshd.user, "--identity", sshd.clientKeyPath,
        "--known-hosts", sshd.knownHostsPath, "--device-name", `pull-${v}-${i}`, "--passphrase-file", path.join(work, "pass.txt"), "--agent-command", agentCommand, "--yes"], env);
      // Timed too: the benchmark's pull is this command and the sync.
      const attach = run(REPO_NODE, [variant.cli, "attach-superproject", "p", "--root", root], env);
      spawnSync("sync");
      const rssFile = path.join(work, `pull-rss-${v}-${i}.txt`);
      const hubBefore = cpuSeconds(context.hub);
      const timed = run(TIME_PATH, ["-f", "%U %S %M", "-o", rssFile, ...context.wrap.map((w) => w.replaceAll("{run}", `${v}-${i}`)), REPO_NODE, ...(PROFILING ? ["--cpu-prof", `--cpu-prof-dir=${variant.dir}`] : []), variant.cli, "sync", "p", "--json"], env);
      results[v]!.times.push(timed.ms);
      const hubCpu = cpuSeconds(context.hub) - hubBefore;
      const [user, system, rssKib] = readFileSync(rssFile, "utf8").trim().split("\n").pop()!.split(" ").map(Number);
      results[v]!.rss.push(Math.round(rssKib! / 1024));
      console.log(`pull ${i + 1}, ${variant.name}: ${(timed.ms / 1000).toFixed(2)} s (attach-superproject before it ${(attach.ms / 1000).toFixed(2)} s), client CPU ${user!.toFixed(2)} s user + ${system!.toFixed(2)} s system, hub CPU ${hubCpu.toFixed(2)} s, client peak RSS ${results[v]!.rss.at(-1)} MiB (load ${readFileSync("/proc/loadavg", "utf8").split(" ")[0]})`);
      // Set aside, not deleted: deleting 50,000 files slows the next pull's file creation (trash.ts).
      await discard(root);
      await discard(home);
    }
  }
  for (const [v, variant] of variants.entries()) {
    const { times, rss } = results[v]!;
    const median = [...times].sort((a, b) => a - b)[Math.floor(times.length / 2)]!;
    console.log(`\npull, ${variant.name}: ${times.map((t) => `${(t / 1000).toFixed(2)} s`).join(", ")} (median ${(median / 1000).toFixed(2)} s); client peak RSS ${rss.map((r) => `${r} MiB`).join(", ")}`);
    const last = newest(variant.dir);
    if (last) printSummary("client, last run", last, variant.repo);
  }
  const agent = newest(agentProfiles);
  if (agent) printSummary("agent process (per SSH session), last run", agent, repo);
}

/** A process's CPU time so far (user + system), in seconds, from /proc/PID/stat. */
function cpuSeconds(pid: number): number {
  // The fields after the command name (which may hold spaces) start at its closing parenthesis.
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/**
 * False with CWS_PROFILE_OFF=1: times without the profiler. Its overhead is uneven (a third or
 * more on the busiest thread, more at start-up), so before/after comparisons of wall time run
 * without it.
 */
const PROFILING = process.env.CWS_PROFILE_OFF !== "1";

function cliOf(repo: string): string {
  return ["cws.mjs", "cws.ts"].map((f) => path.join(repo, "src", "cli", f)).find(existsSync)!;
}

function spawnSyncDetached(command: string, args: string[], env: NodeJS.ProcessEnv = process.env, stdoutFile?: string): number {
  const { spawn } = process.getBuiltinModule("node:child_process");
  const { openSync } = process.getBuiltinModule("node:fs");
  const out = stdoutFile === undefined ? "ignore" : openSync(stdoutFile, "w");
  const child = spawn(command, args, { detached: true, stdio: ["ignore", out, out], env });
  child.unref();
  return child.pid!;
}

if (import.meta.main) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
