/**
 * `npm run bench`: cws against rsync and Unison on the same generated data, over the same
 * sshd, in one run. See docs/performance.md for what it measures and how to read it.
 *
 *   node bench/run.ts [--quick] [--files N] [--mib N] [--runs N] [--scale-runs N] [--seed N]
 *                     [--no-scale] [--tools cws,rsync -a,...] [--out DIR] [--write-docs]
 *                     [--docs-only] [--keep] [--timeout SECONDS] [--no-install]
 *
 * For each data set (the base one, then the scale one at 10× the files) and each tool, in
 * turn: a fresh copy of the data as device A; N initial pushes, each to an empty server;
 * N no-op syncs; N syncs after a "1% change" (the same deterministic edits for every tool);
 * N pulls onto a fresh second device, the last one checked file by file against device A.
 * Progress goes to stderr; the table to stdout; JSON and SVG to the output folder.
 *
 * This is not a test: `npm test` does not run it.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, mkdirSync, readFileSync, renameSync, statSync, utimesSync } from "node:fs";
import { mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { REPO_ROOT, startSshd, type SshdHandle } from "../test/helpers/sshd.ts";
import { CwsRunner } from "./cws-runner.ts";
import { generateDataset, listFiles, mutateOnePercent, mutationTargets, planBytes, planDataset, planFiles, scalePlan, type DatasetPlan } from "./dataset.ts";
import { ensureDependencies, machineInfo, versionOf } from "./deps.ts";
import { findProcesses, killGroup, type Measurement, runningGroups, tail, withoutSshChatter } from "./measure.ts";
import {
  BASELINE,
  type BenchResults,
  type DatasetInfo,
  datasetLabel,
  formatBytes,
  formatTime,
  readResults,
  renderDocsSection,
  renderSvg,
  renderTextTable,
  replaceDocsSection,
  SCENARIOS,
  type Scenario,
  type ScenarioResult,
  summarize,
} from "./report.ts";
import { RsyncRunner } from "./rsync-runner.ts";
import { type SlowLink, type SlowLinkOptions, startSlowLink } from "./slow-link.ts";
import { CIPHER, opensshArgs, type Tool, type ToolContext } from "./tool.ts";
import { discard, emptyTrash, useTrash } from "./trash.ts";
import { UnisonRunner } from "./unison-runner.ts";

const MIB = 1024 * 1024;
const ALL_TOOLS = ["rsync -a", "rsync -az", "unison", "cws", "cws-cold"] as const;

const USAGE = `Usage: node bench/run.ts [options]   (npm run bench -- [options])

  --quick            small data set, one run each (finishes in under a minute)
  --files N          files in the base data set (default 5000; quick 150)
  --mib N            size of the base data set in MiB (default 300; quick 6)
  --runs N           runs per scenario on the base data set, median reported (default 3; quick 1)
  --scale-runs N     runs of push and pull on the scale data set (default 1; no-op and
                     1% change get --runs runs there too)
  --scale-factor N   file-count factor of the scale data set (default 10)
  --no-scale         skip the scale data set
  --no-slow-link     skip the slow-link runs (initial push and pull of the base data set
                     through a shaped relay, see --slow-link-mbit and --slow-link-rtt)
  --slow-link-mbit N bandwidth of the slow link in Mbit/s, each direction (default 50)
  --slow-link-rtt MS round-trip time of the slow link in milliseconds (default 20)
  --seed N           seed of the generated data (default 1)
  --tools LIST       comma-separated subset of: ${ALL_TOOLS.join(", ")} (rsync -a is always run: it is the baseline)
  --out DIR          where latest.json and latest.svg go (default bench/results)
  --write-docs       also regenerate the results section of docs/performance.md
  --docs-only        only regenerate docs/performance.md from DIR/latest.json, run nothing
  --keep             keep the temporary work folder (its path is printed; the trees
                     and logs of every tool are in its trash/ folder)
  --timeout S        seconds one command may take before it is killed (default 600; quick 120)
  --no-install       never run apt-get; just say what is missing
  --help             this text
`;

interface Options {
  quick: boolean;
  files: number;
  mib: number;
  runs: number;
  scaleRuns: number;
  scaleFactor: number;
  scale: boolean;
  slowLink: boolean;
  slowLinkMbit: number;
  slowLinkRttMs: number;
  seed: number;
  tools: string[];
  out: string;
  writeDocs: boolean;
  docsOnly: boolean;
  keep: boolean;
  timeoutMs: number;
  install: boolean;
}

function positiveInt(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new Error(`Cannot use --${name} ${JSON.stringify(text)}: expected a whole number of at least 1`);
  return value;
}

function parseOptions(argv: string[]): Options | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: "boolean", default: false },
      files: { type: "string" },
      mib: { type: "string" },
      runs: { type: "string" },
      "scale-runs": { type: "string" },
      "scale-factor": { type: "string" },
      "no-scale": { type: "boolean", default: false },
      "no-slow-link": { type: "boolean", default: false },
      "slow-link-mbit": { type: "string" },
      "slow-link-rtt": { type: "string" },
      seed: { type: "string" },
      tools: { type: "string" },
      out: { type: "string" },
      "write-docs": { type: "boolean", default: false },
      "docs-only": { type: "boolean", default: false },
      keep: { type: "boolean", default: false },
      timeout: { type: "string" },
      "no-install": { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return undefined;
  }
  const quick = values.quick;
  const tools = values.tools === undefined ? [...ALL_TOOLS] : values.tools.split(",").map((t) => t.trim()).filter((t) => t !== "");
  for (const t of tools) {
    if (!(ALL_TOOLS as readonly string[]).includes(t)) throw new Error(`Cannot run unknown tool "${t}": choose from ${ALL_TOOLS.join(", ")}`);
  }
  // rsync -a is the yardstick of every ratio, so it always runs, and first.
  const ordered = ALL_TOOLS.filter((t) => t === BASELINE || tools.includes(t));
  const seed = values.seed === undefined ? 1 : Number(values.seed);
  if (!Number.isInteger(seed) || seed < 0) throw new Error(`Cannot use --seed ${JSON.stringify(values.seed)}: expected a whole number`);
  return {
    quick,
    files: positiveInt("files", values.files, quick ? 150 : 5000),
    mib: positiveInt("mib", values.mib, quick ? 6 : 300),
    runs: positiveInt("runs", values.runs, quick ? 1 : 3),
    scaleRuns: positiveInt("scale-runs", values["scale-runs"], 1),
    scaleFactor: positiveInt("scale-factor", values["scale-factor"], 10),
    scale: !values["no-scale"],
    slowLink: !values["no-slow-link"],
    slowLinkMbit: positiveInt("slow-link-mbit", values["slow-link-mbit"], 50),
    slowLinkRttMs: positiveInt("slow-link-rtt", values["slow-link-rtt"], 20),
    seed,
    tools: ordered,
    out: path.resolve(values.out ?? path.join(REPO_ROOT, "bench", "results")),
    writeDocs: values["write-docs"],
    docsOnly: values["docs-only"],
    keep: values.keep,
    timeoutMs: positiveInt("timeout", values.timeout, quick ? 120 : 600) * 1000,
    install: !values["no-install"],
  };
}

const started = performance.now();
function log(message: string): void {
  process.stderr.write(`[bench ${((performance.now() - started) / 1000).toFixed(1).padStart(6)}s] ${message}\n`);
}

function makeTool(name: string, context: ToolContext): Tool {
  switch (name) {
    case "rsync -a":
      return new RsyncRunner(context, { compress: false });
    case "rsync -az":
      return new RsyncRunner(context, { compress: true });
    case "unison":
      return new UnisonRunner(context);
    case "cws":
      return new CwsRunner(context);
    case "cws-cold":
      return new CwsRunner(context, { cold: true });
    default:
      throw new Error(`Cannot make unknown tool "${name}"`);
  }
}

function toolDirName(name: string): string {
  return name.replace(/[^a-z0-9]+/gi, "-");
}

/**
 * Makes device A for one tool: a copy of the pristine data set with its modes and mtimes (as
 * a user's existing folder would be). Files are hard-linked, which takes seconds instead of
 * a minute for the scale set; the files the 1% change will edit get their own copy (a new
 * inode, same bytes and mtime) right away, before anything is synced, so in-place appends
 * and edits never reach the pristine copy or another tool's, and no tool sees an inode change
 * in the middle of its runs.
 */
function makeDeviceA(pristine: string, deviceA: string, mutationSeeds: readonly number[]): void {
  const result = spawnSync("cp", ["-al", pristine, deviceA], { stdio: ["ignore", "ignore", "pipe"], encoding: "utf8" });
  if (result.status !== 0) throw new Error(`Cannot copy ${pristine} to ${deviceA}: ${result.stderr.trim()}`);
  const files = listFiles(deviceA);
  const targets = new Set<string>();
  for (const seed of mutationSeeds) {
    const { rollouts, notes } = mutationTargets(files, seed);
    for (const file of [...rollouts, ...notes]) targets.add(file);
  }
  for (const relative of targets) {
    const file = path.join(deviceA, relative);
    const stat = statSync(file);
    const temp = `${file}.bench-copy`;
    copyFileSync(file, temp);
    chmodSync(temp, stat.mode & 0o7777);
    utimesSync(temp, stat.atime, stat.mtime);
    renameSync(temp, file);
  }
}

/**
 * Writes dirty pages to disk (`sync`) before a timed run. Without it, the write-back of the
 * data just generated, copied or pushed runs during the next measurement, and the tool that
 * happens to come next (rsync -a, the baseline, for the freshly generated set) pays for the
 * previous step's writes.
 */
function flushWrites(): void {
  spawnSync("sync", [], { stdio: "ignore" });
}

/** The seed of the 1% change of each run: the same for every tool. */
function mutationSeed(options: Options, run: number): number {
  return options.seed * 1000 + run;
}

/**
 * Checks that the second device got what device A has: every file, byte for byte. Extra files
 * on the second device (a tool's own metadata) are allowed.
 */
function compareTrees(expected: string, actual: string): string | undefined {
  const want = listFiles(expected);
  const have = new Set(listFiles(actual));
  const missing: string[] = [];
  const different: string[] = [];
  for (const file of want) {
    if (!have.has(file)) missing.push(file);
    else if (!readFileSync(path.join(expected, file)).equals(readFileSync(path.join(actual, file)))) different.push(file);
  }
  if (missing.length === 0 && different.length === 0) return undefined;
  const example = missing[0] ?? different[0];
  return `the second device's copy differs from device A: ${missing.length} of ${want.length} files missing, ${different.length} different (e.g. ${example})`;
}

interface DatasetRun {
  name: string;
  plan: DatasetPlan;
  /** Runs of the initial push and the pull (the expensive scenarios). */
  runs: number;
  /** Runs of the no-op and 1% change syncs (cheap, so the scale set gets as many as the base). */
  syncRuns: number;
  /** The scenarios run on this data set (all when absent). */
  scenarios?: readonly Scenario[];
  /** When set, every tool reaches the server through a shaped relay (slow-link.ts). */
  link?: SlowLinkOptions;
}

/** Runs every scenario of one tool on one data set; failures are recorded, never thrown. */
async function runTool(
  tool: Tool,
  dataset: DatasetRun,
  pristine: string,
  deviceA: string,
  options: Options,
  record: (scenario: Scenario, result: Omit<ScenarioResult, "dataset" | "scenario" | "tool">) => void,
): Promise<void> {
  const where = `${dataset.name} · ${tool.name}`;
  // A tool may measure only some scenarios (cws-cold: the syncs); it still pushes, untimed.
  const wanted = (scenario: Scenario): boolean =>
    (dataset.scenarios === undefined || dataset.scenarios.includes(scenario)) && (tool.scenarios === undefined || tool.scenarios.includes(scenario));
  const scenarios = SCENARIOS.filter(wanted);
  if (scenarios.length === 0) return;
  const failAll = (message: string): void => {
    for (const scenario of scenarios) {
      record(scenario, { runs: [], error: message });
      log(`${where} · ${scenario}: ${tool.name}: failed: ${message}`);
    }
  };
  const unavailable = await tool.unavailable();
  if (unavailable !== undefined) {
    for (const scenario of scenarios) record(scenario, { runs: [], skipped: unavailable });
    log(`${where}: skipped: ${unavailable}`);
    return;
  }
  try {
    makeDeviceA(pristine, deviceA, Array.from({ length: dataset.syncRuns }, (_, i) => mutationSeed(options, i + 1)));
    await tool.prepare(deviceA);
  } catch (error) {
    failAll(messageOf(error));
    return;
  }

  const timed = async (scenario: Scenario, runs: number, before: (run: number) => Promise<void>, step: () => Promise<Measurement>): Promise<boolean> => {
    const measurements: Measurement[] = [];
    try {
      for (let run = 1; run <= runs; run++) {
        await before(run);
        flushWrites();
        const m = await step();
        measurements.push(m);
        log(`${where} · ${scenario} ${run}/${runs}: ${formatTime(m.wallMs)}, ${formatBytes(m.payload === undefined ? undefined : m.payload.sent + m.payload.received)} payload`);
      }
    } catch (error) {
      const message = messageOf(error);
      record(scenario, { runs: measurements, error: message });
      log(`${where} · ${scenario}: ${tool.name}: failed: ${message}`);
      return false;
    }
    const summary = summarize(measurements);
    record(scenario, { runs: measurements, ...(summary === undefined ? {} : { summary }) });
    return true;
  };

  let pushed: boolean;
  if (wanted("push")) pushed = await timed("push", dataset.runs, () => tool.resetServer(), () => tool.push());
  else {
    try {
      await tool.resetServer();
      await tool.push();
      pushed = true;
    } catch (error) {
      failAll(messageOf(error));
      return;
    }
  }
  if (!pushed) {
    // Without a server copy, the later scenarios would only repeat the same failure.
    for (const scenario of SCENARIOS.slice(1)) {
      if (dataset.scenarios === undefined || dataset.scenarios.includes(scenario)) record(scenario, { runs: [], skipped: "not run, as the initial push failed" });
    }
    log(`${where}: no-op, 1% change and pull not run, as the initial push failed`);
    return;
  }
  if (wanted("noop")) await timed("noop", dataset.syncRuns, async () => {}, () => tool.sync());
  if (wanted("change")) {
    await timed(
      "change",
      dataset.syncRuns,
      async (run) => {
        // The same seed per run for every tool, so every tool syncs the very same edits.
        mutateOnePercent(deviceA, mutationSeed(options, run));
      },
      () => tool.sync(),
    );
  }
  if (!wanted("pull")) return;
  const pulled = await timed("pull", dataset.runs, () => tool.preparePull(), () => tool.pull());
  if (pulled) {
    const difference = compareTrees(deviceA, tool.secondDeviceRoot());
    // A tool that leaves a wrong copy gets no time for it.
    if (difference !== undefined) {
      record("pull", { runs: [], error: difference });
      log(`${where} · pull: ${tool.name}: failed: ${difference}`);
    } else {
      log(`${where} · pull: the second device matches device A`);
    }
  }
}

/**
 * One untimed SSH login before anything is measured, so that the first tool (rsync -a, the
 * baseline) does not alone pay for a cold sshd, a cold page cache for ssh's binaries and keys.
 */
function warmUp(sshd: SshdHandle): void {
  const result = spawnSync("ssh", [...opensshArgs(sshd), `${sshd.user}@${sshd.host}`, "true"], { stdio: ["ignore", "ignore", "pipe"], encoding: "utf8", timeout: 30_000 });
  if (result.status !== 0) throw new Error(`Cannot log in to the benchmark's sshd with ssh: ${tail(withoutSshChatter(result.stderr ?? ""))}`);
}

/**
 * The sshd handle as seen through a slow link: the relay's port, and a known_hosts file that
 * names the host key for that port (OpenSSH keys known hosts by `[host]:port`).
 */
async function throughLink(sshd: SshdHandle, link: SlowLink, dir: string): Promise<SshdHandle> {
  const knownHostsPath = path.join(dir, "known_hosts-slow-link");
  await writeFile(knownHostsPath, `[${link.host}]:${link.port} ${sshd.hostPublicKey}\n`, { mode: 0o600 });
  return { ...sshd, port: link.port, knownHostsPath };
}

function messageOf(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).replaceAll("\n", " ").slice(0, 400);
}

/** Writes a file crash-safely: temp name in the same folder, then rename. */
async function writeAtomic(file: string, text: string): Promise<void> {
  const temp = `${file}.${process.pid}.tmp`;
  await writeFile(temp, text);
  await rename(temp, file);
}

async function writeDocs(results: BenchResults): Promise<string> {
  const file = path.join(REPO_ROOT, "docs", "performance.md");
  const markdown = await readFile(file, "utf8");
  await writeAtomic(file, replaceDocsSection(markdown, renderDocsSection(results)));
  return file;
}

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2));
  if (options === undefined) return 0;
  if (options.docsOnly) {
    const results = await readResults(path.join(options.out, "latest.json"));
    log(`updated ${path.relative(process.cwd(), await writeDocs(results))} from ${path.join(options.out, "latest.json")}`);
    return 0;
  }

  const { missingOptional } = ensureDependencies({ install: options.install, log });
  if (missingOptional.length > 0) log(`not installed (those tools are skipped): ${missingOptional.join(", ")}`);

  const startedAt = new Date().toISOString();
  const basePlan = planDataset({ seed: options.seed, files: options.files, totalBytes: options.mib * MIB });
  const datasets: DatasetRun[] = [{ name: "base", plan: basePlan, runs: options.runs, syncRuns: options.runs }];
  if (options.scale) {
    datasets.push({ name: `scale ×${options.scaleFactor}`, plan: scalePlan(basePlan, options.scaleFactor), runs: options.scaleRuns, syncRuns: options.runs });
  }
  if (options.slowLink) {
    const link = { bitsPerSecond: options.slowLinkMbit * 1_000_000, rttMs: options.slowLinkRttMs };
    // The base data set again (push and pull only), every tool through the same shaped link.
    datasets.push({ name: `slow link ${options.slowLinkMbit} Mbit/s, ${options.slowLinkRttMs} ms RTT`, plan: basePlan, runs: options.scaleRuns, syncRuns: options.scaleRuns, scenarios: ["push", "pull"], link });
  }
  for (const d of datasets) {
    log(`data set ${d.name}: ${planFiles(d.plan)} files, about ${formatBytes(planBytes(d.plan))}; runs: ${d.runs} push/pull, ${d.syncRuns} no-op/change`);
  }

  const work = await mkdtemp(path.join(os.tmpdir(), "cws-bench-"));
  useTrash(path.join(work, "trash"));
  let sshd: SshdHandle | undefined;
  const cleanUp = async (): Promise<void> => {
    // Anything still running from our work folder (a cws hub an agent started, say) was
    // started by this run: stop it by PID before its folder goes away.
    for (const { pid } of findProcesses(work)) {
      try {
        process.kill(pid, "SIGTERM");
      } catch {
        // It exited between the scan and the signal.
      }
    }
    await sshd?.stop();
    // What the runs set aside (see trash.ts) goes now that nothing is timed any more, unless
    // the work folder is kept: its trash/ then holds every tool's trees (and logs) to look at.
    if (!options.keep) {
      await emptyTrash();
      await rm(work, { recursive: true, force: true });
    }
  };
  // Ctrl+C: stop what we started (by PID) and leave no temp data behind.
  const onSignal = (signal: NodeJS.Signals): void => {
    log(`${signal}: stopping`);
    for (const pid of runningGroups) killGroup(pid);
    void cleanUp().finally(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);

  const results: ScenarioResult[] = [];
  const datasetInfos: DatasetInfo[] = [];
  const notes: string[] = [];
  try {
    sshd = await startSshd();
    log(`sshd pid ${sshd.pid} on ${sshd.host}:${sshd.port}; work folder ${work}`);
    warmUp(sshd);
    for (const dataset of datasets) {
      const base = path.join(work, toolDirName(dataset.name));
      const pristine = path.join(base, "pristine");
      mkdirSync(base, { recursive: true });
      let link: SlowLink | undefined;
      let linkSshd = sshd;
      if (dataset.link !== undefined) {
        link = await startSlowLink(sshd, dataset.link);
        linkSshd = await throughLink(sshd, link, base);
        log(`${dataset.name}: relay on ${link.host}:${link.port} in front of sshd`);
      }
      log(`generating ${dataset.name} …`);
      const summary = generateDataset(pristine, dataset.plan);
      const info: DatasetInfo = { name: dataset.name, files: summary.files, bytes: summary.bytes, folders: summary.folders, byKind: summary.byKind, generateMs: summary.generateMs, runs: dataset.runs, syncRuns: dataset.syncRuns };
      datasetInfos.push(info);
      log(`generated ${datasetLabel(info)} in ${formatTime(summary.generateMs)}`);
      for (const name of options.tools) {
        // Every tool starts from the plain key: cws enrollment may have restricted it.
        await sshd.setAuthorizedKeys([sshd.clientPublicKey]);
        const toolDir = path.join(base, toolDirName(name));
        mkdirSync(toolDir, { recursive: true });
        const context: ToolContext = { sshd: linkSshd, workDir: path.join(toolDir, "work"), timeoutMs: options.timeoutMs, repoRoot: REPO_ROOT, log };
        mkdirSync(context.workDir, { recursive: true });
        const tool = makeTool(name, context);
        log(`${dataset.name} · ${name}: start`);
        await runTool(tool, dataset, pristine, path.join(toolDir, "device-a"), options, (scenario, result) => {
          const existing = results.findIndex((r) => r.dataset === dataset.name && r.scenario === scenario && r.tool === name);
          const row: ScenarioResult = { dataset: dataset.name, scenario, tool: name, ...result };
          if (existing === -1) results.push(row);
          else results[existing] = { ...results[existing]!, ...row, runs: row.runs.length > 0 ? row.runs : results[existing]!.runs };
        });
        await tool.dispose().catch((error: unknown) => log(`${name}: cleaning up failed: ${messageOf(error)}`));
        await discard(toolDir);
      }
      await discard(pristine);
      await link?.close();
    }
  } finally {
    await cleanUp();
    process.removeListener("SIGINT", onSignal);
    process.removeListener("SIGTERM", onSignal);
  }
  if (options.keep) log(`kept work folder ${work}`);

  if (options.tools.includes("unison") && results.some((r) => r.tool === "unison" && r.skipped === undefined)) {
    notes.push("Unison does not report its own byte count: its Payload column is n/a and its bytes ratio compares SSH bytes.");
  }
  if (options.tools.includes("cws") && results.some((r) => r.tool === "cws" && r.summary !== undefined && r.summary.sshBytes === undefined)) {
    notes.push("cws counts its own channel bytes (Payload); it does not run OpenSSH, so its SSH-bytes column is n/a.");
  }
  // Order rows as the report reads them: data set, scenario, tool.
  const order = (r: ScenarioResult): number =>
    datasets.findIndex((d) => d.name === r.dataset) * 100 + SCENARIOS.indexOf(r.scenario) * 10 + options.tools.indexOf(r.tool);
  results.sort((a, b) => order(a) - order(b));

  const finishedAt = new Date().toISOString();
  const bench: BenchResults = {
    format: 1,
    startedAt,
    finishedAt,
    durationMs: performance.now() - started,
    command: `node bench/run.ts ${process.argv.slice(2).join(" ")}`.trim(),
    options: { ...options, out: path.relative(REPO_ROOT, options.out) || "." },
    machine: machineInfo(),
    versions: {
      node: process.version.replace(/^v/, ""),
      rsync: versionOf("rsync", ["--version"]).replace(/^rsync\s+version\s+/, "").replace(/\s+/g, " "),
      unison: versionOf("unison", ["-version"]).replace(/^unison version /, ""),
      openssh: versionOf("ssh", ["-V"]).replace(/^OpenSSH_/, "").replace(/,.*$/, ""),
    },
    cipher: CIPHER,
    baseline: BASELINE,
    tools: options.tools,
    datasets: datasetInfos,
    results,
    notes,
  };

  mkdirSync(options.out, { recursive: true });
  await writeAtomic(path.join(options.out, "latest.json"), `${JSON.stringify(bench, null, 2)}\n`);
  await writeAtomic(path.join(options.out, "latest.svg"), renderSvg(bench));
  process.stdout.write(`\n${datasetInfos.map(datasetLabel).join("\n")}\n\n${renderTextTable(bench)}\n\n`);
  for (const note of notes) process.stdout.write(`Note: ${note}\n`);
  log(`wrote ${path.relative(process.cwd(), path.join(options.out, "latest.json"))} and latest.svg`);
  if (options.writeDocs) log(`updated ${path.relative(process.cwd(), await writeDocs(bench))}`);
  log(`done in ${formatTime(performance.now() - started)}`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`bench: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
