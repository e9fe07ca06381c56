/**
 * cws in the benchmark, driven through its CLI exactly as a user would drive it. Everything
 * that depends on the CLI's shape is in this one file, so it is the only place to adjust when
 * the commands change.
 *
 * Expected interface (the client's state dir is chosen by `CWS_HOME=<dir>`):
 *
 *   node server-agent/server-main.ts init --data <serverDataDir> --passphrase-file <file>
 *   node src/cli/cws.mjs enroll-device --host 127.0.0.1 --port <p> --user <u> --identity <key>
 *        --known-hosts <file> --device-name <name> --passphrase-file <file>
 *        --agent-command "<abs node> <repo>/server-agent/agent/main.mjs --stdio --data <dir>" --yes
 *   node src/cli/cws.mjs create-superproject <slug> --root <dir>      (first device)
 *   node src/cli/cws.mjs attach-superproject <slug> --root <dir>      (second device)
 *   node src/cli/cws.mjs sync <slug> --json      → stdout: { "wire": { "sent": n, "received": n }, … }
 *
 * Scenario mapping: initial push = create-superproject + sync on a freshly initialised server
 * (both timed, as both are part of getting the data onto the server); no-op and 1% change =
 * sync; pull = attach-superproject + sync on a freshly enrolled second device. Server init and
 * enrollment are set-up and not timed.
 *
 * Server RSS: the agent command is wrapped in GNU time (`-a`, one record per SSH session);
 * a hub the agent leaves running is found by its data dir in /proc, its peak (VmHWM, reset
 * through /proc/PID/clear_refs before each measurement) is counted too, and it is stopped by
 * PID at the end.
 *
 * Kept session: after a sync that ran on its own, cws keeps a session with the server open in
 * the background (src/client/kept-session.ts), as a user's device would; the next syncs hand
 * their work to it. After each push and pull the runner waits (untimed) until that session
 * answers, as it would have long before a user's next sync. Its peak RSS (VmHWM, reset before
 * each measurement like the hub's) counts in the client RSS column. The tool "cws-cold" runs
 * with CWS_KEEP_SESSION=0: every sync opens its own session, the cost of a first sync after a
 * while; it is measured in the no-op and 1% change scenarios only.
 *
 * Bytes: cws counts its own channel bytes (`wire.sent`/`wire.received`, the payload inside
 * SSH). If it also reports the SSH connection's socket bytes as `wire.sshSent`/
 * `wire.sshReceived`, those fill the SSH-bytes column, comparable to OpenSSH's counter.
 */
import { existsSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { keptLogPath, keptSessionPid, keptSessionStatus, keptSocketPath } from "../src/client/kept-session-wire.ts";
import { agentCommandLine, REPO_NODE, shellQuote } from "../test/helpers/sshd.ts";
import { type ByteCounts, findProcesses, type Measurement, peakRssOf, resetPeakRss, resetPeakRssOf, runTimed, tail, TIME_PATH, waitForRssFile } from "./measure.ts";
import { discard } from "./trash.ts";
import type { Scenario } from "./report.ts";
import { inWork, type Tool, type ToolContext } from "./tool.ts";

/** The superproject's slug in the benchmark. */
const SLUG = "bench";

/** The part of `cws … --json` output the benchmark reads; everything else passes. */
const JsonSummary = z
  .object({
    wire: z
      .object({
        sent: z.number().int().nonnegative(),
        received: z.number().int().nonnegative(),
        sshSent: z.number().int().nonnegative().optional(),
        sshReceived: z.number().int().nonnegative().optional(),
      })
      .passthrough(),
  })
  .passthrough();

/** Reads the JSON summary from a command's stdout: the whole text, or its last line that parses. */
export function parseCwsSummary(stdout: string): { payload?: ByteCounts; ssh?: ByteCounts } | undefined {
  const candidates = [stdout.trim(), ...stdout.trim().split("\n").reverse()];
  for (const candidate of candidates) {
    if (!candidate.startsWith("{")) continue;
    let value: unknown;
    try {
      value = JSON.parse(candidate);
    } catch {
      continue;
    }
    const parsed = JsonSummary.safeParse(value);
    if (!parsed.success) continue;
    const { wire } = parsed.data;
    const ssh = wire.sshSent !== undefined && wire.sshReceived !== undefined ? { sent: wire.sshSent, received: wire.sshReceived } : undefined;
    return { payload: { sent: wire.sent, received: wire.received }, ...(ssh === undefined ? {} : { ssh }) };
  }
  return undefined;
}

/** The options of a cws tool in the benchmark. */
export interface CwsRunnerOptions {
  /** No kept session (CWS_KEEP_SESSION=0): the tool "cws-cold". @default false */
  cold?: boolean;
}

export class CwsRunner implements Tool {
  readonly name: string;
  readonly scenarios: readonly Scenario[] | undefined;
  readonly #cold: boolean;
  readonly #context: ToolContext;
  #deviceA = "";
  readonly #server: string;
  readonly #homeA: string;
  readonly #homeB: string;
  readonly #deviceB: string;
  readonly #passphraseFile: string;
  readonly #serverRss: string;
  readonly #clientRss: string;
  readonly #cli: string;
  readonly #serverMain: string;

  constructor(context: ToolContext, options: CwsRunnerOptions = {}) {
    this.#cold = options.cold === true;
    this.name = this.#cold ? "cws-cold" : "cws";
    this.scenarios = this.#cold ? ["noop", "change"] : undefined;
    this.#context = context;
    this.#server = inWork(context, "server-data");
    this.#homeA = inWork(context, "home-a");
    this.#homeB = inWork(context, "home-b");
    this.#deviceB = inWork(context, "device-b");
    this.#passphraseFile = inWork(context, "passphrase.txt");
    this.#serverRss = inWork(context, "server-rss.txt");
    this.#clientRss = inWork(context, "client-rss.txt");
    this.#cli = path.join(context.repoRoot, "src", "cli", "cws.mjs");
    this.#serverMain = path.join(context.repoRoot, "server-agent", "server-main.ts");
  }

  async unavailable(): Promise<string | undefined> {
    // A missing CLI is reported as a failure of each scenario, not as "not installed".
    return undefined;
  }

  async prepare(deviceA: string): Promise<void> {
    for (const file of [this.#cli, this.#serverMain, path.join(this.#context.repoRoot, "server-agent", "agent", "main.mjs")]) {
      if (!existsSync(file)) throw new Error(`${path.relative(this.#context.repoRoot, file)} does not exist yet`);
    }
    this.#deviceA = deviceA;
    await mkdir(this.#context.workDir, { recursive: true });
    // The passphrase goes in a file, never on a command line (DESIGN §10).
    await writeFile(this.#passphraseFile, "bench-secondary-passphrase\n", { mode: 0o600 });
  }

  async resetServer(): Promise<void> {
    this.#stopHubs();
    await this.#stopKeptSessions();
    for (const dir of [this.#server, this.#homeA]) await discard(dir);
    await this.#step("cws-server init", this.#serverMain, ["init", "--data", this.#server, "--passphrase-file", this.#passphraseFile]);
    await this.#enroll(this.#homeA, "bench-device-a");
  }

  async push(): Promise<Measurement> {
    const measured = await this.#measured(this.#homeA, [
      ["create-superproject", SLUG, "--root", this.#deviceA],
      ["sync", SLUG, "--json"],
    ]);
    await this.#awaitKeptSession(this.#homeA);
    return measured;
  }

  async sync(): Promise<Measurement> {
    return this.#measured(this.#homeA, [["sync", SLUG, "--json"]]);
  }

  async preparePull(): Promise<void> {
    await this.#stopKeptSessions([this.#homeB]);
    for (const dir of [this.#homeB, this.#deviceB]) await discard(dir);
    await mkdir(this.#deviceB, { recursive: true });
    await this.#enroll(this.#homeB, "bench-device-b");
  }

  async pull(): Promise<Measurement> {
    const measured = await this.#measured(this.#homeB, [
      ["attach-superproject", SLUG, "--root", this.#deviceB],
      ["sync", SLUG, "--json"],
    ]);
    await this.#awaitKeptSession(this.#homeB);
    return measured;
  }

  secondDeviceRoot(): string {
    return this.#deviceB;
  }

  async dispose(): Promise<void> {
    this.#stopHubs();
    await this.#stopKeptSessions();
    await discard(this.#context.workDir);
  }

  async #enroll(home: string, deviceName: string): Promise<void> {
    const { sshd } = this.#context;
    // GNU time wraps the agent so every SSH session appends its peak RSS to one file.
    const agentCommand = `${TIME_PATH} -a -f %M -o ${shellQuote(this.#serverRss)} ${agentCommandLine(this.#server)}`;
    await this.#step("cws enroll-device", this.#cli, [
      "enroll-device",
      "--host", sshd.host,
      "--port", String(sshd.port),
      "--user", sshd.user,
      "--identity", sshd.clientKeyPath,
      "--known-hosts", sshd.knownHostsPath,
      "--device-name", deviceName,
      "--passphrase-file", this.#passphraseFile,
      "--agent-command", agentCommand,
      "--yes",
    ], home);
  }

  /** Runs a set-up command (not timed); throws with its output if it fails. */
  async #step(label: string, script: string, args: string[], home?: string): Promise<void> {
    const run = await runTimed(REPO_NODE, [script, ...args], {
      rssFile: this.#clientRss,
      timeoutMs: this.#context.timeoutMs,
      env: { ...this.#env(), ...(home === undefined ? {} : { CWS_HOME: home }) },
    });
    if (run.timedOut) throw new Error(`${label} timed out after ${this.#context.timeoutMs} ms`);
    if (run.code !== 0) throw new Error(`${label} exited with ${run.code ?? run.signal}: ${tail(run.stderr || run.stdout)}`);
  }

  /** Runs the timed commands of one scenario and adds up their time and bytes. */
  async #measured(home: string, commands: string[][]): Promise<Measurement> {
    await rm(this.#serverRss, { force: true });
    resetPeakRss(this.#server);
    const kept = await keptSessionPid(home);
    if (kept !== null) resetPeakRssOf(kept);
    const total: Measurement = { wallMs: 0 };
    for (const args of commands) {
      const run = await runTimed(REPO_NODE, [this.#cli, ...args], {
        rssFile: this.#clientRss,
        timeoutMs: this.#context.timeoutMs,
        env: { ...this.#env(), CWS_HOME: home },
      });
      const label = `cws ${args[0]}`;
      if (run.timedOut) throw new Error(`${label} timed out after ${this.#context.timeoutMs} ms`);
      if (run.code !== 0) throw new Error(`${label} exited with ${run.code ?? run.signal}: ${tail(run.stderr || run.stdout)}`);
      total.wallMs += run.wallMs;
      if (run.clientRssKiB !== undefined) total.clientRssKiB = Math.max(total.clientRssKiB ?? 0, run.clientRssKiB);
      const summary = parseCwsSummary(run.stdout);
      if (summary?.payload !== undefined) total.payload = addBytes(total.payload, summary.payload);
      if (summary?.ssh !== undefined) total.ssh = addBytes(total.ssh, summary.ssh);
      if (args[0] === "sync" && summary === undefined) {
        throw new Error(`${label} --json printed no summary with "wire" bytes: ${tail(run.stdout)}`);
      }
    }
    // The kept session that ran the sync is part of the client, as the hub is of the server.
    const keptRss = kept === null ? undefined : peakRssOf(kept);
    if (keptRss !== undefined) total.clientRssKiB = Math.max(total.clientRssKiB ?? 0, keptRss);
    const agentRss = await waitForRssFile(this.#serverRss, { timeoutMs: 1500 });
    const hubRss = Math.max(0, ...findProcesses(this.#server).map((p) => p.peakRssKiB ?? 0));
    const serverRss = Math.max(agentRss ?? 0, hubRss);
    if (serverRss > 0) total.serverRssKiB = serverRss;
    return total;
  }

  /** The environment of every cws command: kept sessions off for cws-cold, the default otherwise. */
  #env(): NodeJS.ProcessEnv {
    const env = { ...process.env };
    delete env.CWS_KEEP_SESSION;
    return this.#cold ? { ...env, CWS_KEEP_SESSION: "0" } : env;
  }

  /**
   * Waits (untimed) until the kept session a sync started answers and has finished its warm-up
   * (a dry run of each superproject, see kept-session.ts): a user's next sync comes much later,
   * so a benchmark whose next sync queued behind the warm-up would time the warm-up instead.
   * The session says it is idle by naming the moment it will exit for idleness.
   */
  async #awaitKeptSession(home: string): Promise<void> {
    if (this.#cold) return;
    for (let waited = 0; waited < 120_000; waited += 50) {
      if (existsSync(keptSocketPath(home)) && (await keptSessionPid(home)) !== null) {
        const status = await keptSessionStatus(home);
        if (status !== null && status.idleExitAt !== null) return;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`no kept session of ${home} was ready within 120 s after the sync (see ${keptLogPath(home)})`);
  }

  /** Stops the kept sessions of this tool's devices, by the pid in their lock files. */
  async #stopKeptSessions(homes: string[] = [this.#homeA, this.#homeB]): Promise<void> {
    for (const home of homes) {
      const pid = await keptSessionPid(home);
      if (pid === null) continue;
      try {
        process.kill(pid, "SIGTERM");
      } catch {
        // It exited meanwhile.
      }
    }
  }

  /** Stops hubs (long-lived server processes) started for this tool's data dir, by PID. */
  #stopHubs(): void {
    for (const { pid } of findProcesses(this.#server)) {
      try {
        process.kill(pid, "SIGTERM");
      } catch {
        // It exited between the scan and the signal.
      }
    }
  }
}


function addBytes(a: ByteCounts | undefined, b: ByteCounts): ByteCounts {
  return a === undefined ? { ...b } : { sent: a.sent + b.sent, received: a.received + b.received };
}
