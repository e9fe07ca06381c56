/**
 * `node bench/server-memory.ts`: the server side's memory and the hub's time, scenario by
 * scenario, for one cws checkout: initial push, no-op, 1% change and pull onto a second device,
 * driven exactly as the benchmark drives them (bench/cws-runner.ts, the benchmark's sshd and
 * data set), so the figures are the benchmark's "Server RSS" column. For each scenario it also
 * prints the two parts of the server's peak (the session's agent, as GNU time saw it, and the
 * hub's VmHWM), the hub's resident memory before the scenario (what the benchmark's peak cannot
 * go below) and after it, and the hub's CPU time during it (from /proc).
 *
 *   node bench/server-memory.ts [--files N] [--mib N] [--scenarios push,noop,change,pull]
 *                               [--hub-node-options="FLAGS"] [--hub-env K=V,K=V] [--help]
 *
 * It measures the checkout it runs from (the agent command the benchmark enrolls names this
 * checkout's agent): for a before/after pair, run it from each checkout, one right after the
 * other. `--hub-node-options` runs the hub with these NODE_OPTIONS (e.g.
 * `--cpu-prof --cpu-prof-dir=DIR`, or `--heapsnapshot-signal=SIGUSR2`; after the hub's own
 * flags, HUB_NODE_FLAGS) and `--hub-env` with these variables (over its allocator settings),
 * started here rather than by the relay (sshd gives the relay a clean environment); the hub
 * writes a CPU profile when it exits, at the end.
 *
 * This is not a test: `npm test` does not run it.
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { REPO_NODE, REPO_ROOT, startSshd, type SshdHandle } from "../test/helpers/sshd.ts";
import { CwsRunner } from "./cws-runner.ts";
import { generateDataset, mutateOnePercent, planDataset, scalePlan } from "./dataset.ts";
import { HUB_NODE_FLAGS } from "../server-agent/hub/hub-client.ts";
import { LOW_MEMORY_MALLOC_ENV } from "../src/malloc-env.ts";
import { findProcesses, peakRssOf, readRssFile } from "./measure.ts";

/** Resident memory now and the CPU time so far (user + system) of a live process. */
function sample(pid: number): { rssMiB: number; cpuMs: number } | undefined {
  try {
    const rss = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
    // Fields 14 and 15 of /proc/PID/stat (after the command name in parentheses) are utime and stime in clock ticks.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]);
    return { rssMiB: Number(rss) / 1024, cpuMs: ticks * 10 };
  } catch {
    return undefined;
  }
}

/** The hub of a data dir: the one process whose command line names it with `serve`. */
function hubPid(dataDir: string): number | undefined {
  for (const { pid } of findProcesses(dataDir)) {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    if (cmdline.includes("\0serve\0")) return pid;
  }
  return undefined;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      files: { type: "string", default: "5000" },
      mib: { type: "string", default: "300" },
      scenarios: { type: "string", default: "push,noop,change,pull" },
      "hub-node-options": { type: "string" },
      "hub-env": { type: "string" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    // The usage is this file's header comment.
    console.log(readFileSync(new URL(import.meta.url), "utf8").split("*/")[0]!.replace(/^\/\*\*\n|^ \* ?/gm, ""));
    return;
  }
  const repo = REPO_ROOT;
  const files = Number(values.files);
  const scenarios = new Set(values.scenarios.split(","));
  const work = await mkdtemp(path.join(os.tmpdir(), "cws-server-memory-"));
  let sshd: SshdHandle | undefined;
  let runner: CwsRunner | undefined;
  try {
    sshd = await startSshd();
    const base = planDataset({ seed: 1, totalBytes: Number(values.mib) * 2 ** 20, files: Math.min(files, 5000) });
    const plan = files > 5000 ? scalePlan(base, Math.round(files / 5000)) : base;
    const deviceA = path.join(work, "device-a");
    const summary = generateDataset(deviceA, plan);
    console.log(`${repo}: ${summary.files} files, ${(summary.bytes / 2 ** 20).toFixed(0)} MiB`);
    runner = new CwsRunner({ sshd, workDir: path.join(work, "cws"), timeoutMs: 900_000, repoRoot: repo, log: (line) => console.error(line) });
    await runner.prepare(deviceA);
    await runner.resetServer();
    const dataDir = path.join(work, "cws", "server-data");
    if (values["hub-node-options"] !== undefined) {
      // sshd gives the relay a clean environment, so a hub the relay starts cannot be given
      // options from here: stop the hub enrollment started and start one with them instead.
      const pid = hubPid(dataDir);
      if (pid !== undefined) process.kill(pid, "SIGTERM");
      await new Promise((resolve) => setTimeout(resolve, 1000));
      // The hub's own flags and allocator settings first (as hub-client.ts starts it), so the
      // figures stay comparable with the relay's hub; the options given here come after them.
      const hubEnv: NodeJS.ProcessEnv = { ...LOW_MEMORY_MALLOC_ENV, ...process.env, NODE_OPTIONS: [...HUB_NODE_FLAGS, values["hub-node-options"]].join(" ") };
      for (const pair of values["hub-env"]?.split(",") ?? []) {
        const [key, value] = pair.split("=");
        if (key !== undefined && value !== undefined) hubEnv[key] = value;
      }
      spawn(REPO_NODE, [path.join(repo, "server-agent", "server-main.mjs"), "serve", "--data", dataDir, "--idle-exit-ms", "0"], { detached: true, stdio: "ignore", env: hubEnv }).unref();
      await new Promise((resolve) => setTimeout(resolve, 1500));
    }
    const steps: Array<[string, () => Promise<{ serverRssKiB?: number; wallMs: number }>]> = [
      ["initial push", () => runner!.push()],
      ["no-op", () => runner!.sync()],
      ["1% change", async () => { mutateOnePercent(deviceA, 1000); return runner!.sync(); }],
      ["pull", async () => { await runner!.preparePull(); return runner!.pull(); }],
    ];
    const keys = ["push", "noop", "change", "pull"];
    console.log("scenario        wall      server peak  (agent, hub)  hub before  hub after  hub CPU");
    for (const [i, [name, step]] of steps.entries()) {
      if (!scenarios.has(keys[i]!)) continue;
      const pid = hubPid(dataDir);
      const before = pid === undefined ? undefined : sample(pid);
      const measured = await step();
      const after = sample(hubPid(dataDir) ?? -1);
      // The two parts of the server peak: the session's agent (relay) as GNU time saw it, and
      // the hub's VmHWM (reset by the runner before the scenario).
      const agentPeakKiB = await readRssFile(path.join(work, "cws", "server-rss.txt"));
      const hubPeakKiB = peakRssOf(hubPid(dataDir) ?? -1);
      if (process.env.CWS_MEMORY_DEBUG_SIGNAL !== undefined) {
        const status = readFileSync(`/proc/${hubPid(dataDir)}/status`, "utf8");
        console.log((status.match(/^(RssAnon|RssFile).*$/gm) ?? []).join("  "));
        process.kill(hubPid(dataDir)!, process.env.CWS_MEMORY_DEBUG_SIGNAL as NodeJS.Signals);
        await new Promise((resolve) => setTimeout(resolve, 5000));
      }
      const cpu = after === undefined ? undefined : after.cpuMs - (before?.cpuMs ?? 0);
      const fmt = (mib: number | undefined) => (mib === undefined ? "—" : `${mib.toFixed(0)} MiB`);
      console.log(
        `${name.padEnd(14)}  ${(measured.wallMs / 1000).toFixed(2).padStart(6)} s  ${fmt(measured.serverRssKiB === undefined ? undefined : measured.serverRssKiB / 1024).padStart(9)}  ` +
          `${`${fmt(agentPeakKiB === undefined ? undefined : agentPeakKiB / 1024)}, ${fmt(hubPeakKiB === undefined ? undefined : hubPeakKiB / 1024)}`.padStart(18)}  ` +
          `${fmt(before?.rssMiB).padStart(10)}  ${fmt(after?.rssMiB).padStart(9)}  ${cpu === undefined ? "—" : `${cpu} ms`}`,
      );
    }
  } finally {
    await runner?.dispose().catch(() => {});
    await sshd?.stop();
    if (existsSync(work)) await rm(work, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
