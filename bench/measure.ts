/**
 * How the benchmark measures one command: wall time around the process, peak RSS of the
 * client through GNU time (`/usr/bin/time -f %M`), peak RSS of the server side through the
 * same wrapper in the remote command, SSH wire bytes from the OpenSSH client's own counter
 * (`LogLevel=VERBOSE` makes ssh print "Transferred: sent N, received M bytes" on exit), and a
 * timeout after which the whole process group is killed by its PID.
 */
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { readFile, rm } from "node:fs/promises";
import timers from "node:timers/promises";

/** GNU time; its `%M` is the peak resident set size in KiB. */
export const TIME_PATH = "/usr/bin/time";

/** Bytes in each direction, from the client's point of view. */
export interface ByteCounts {
  sent: number;
  received: number;
}

/** One timed run of one scenario by one tool. */
export interface Measurement {
  /** Wall time of the client command(s), in milliseconds. */
  wallMs: number;
  /** Bytes the tool itself counted on its channel (rsync `--stats`, cws `wire`); absent when the tool cannot say. */
  payload?: ByteCounts;
  /** Bytes of SSH packets (encrypted, with MACs) as the OpenSSH client counted them; absent for clients that are not OpenSSH. */
  ssh?: ByteCounts;
  /** Peak RSS of the client in KiB (the largest single process of the client's tree). */
  clientRssKiB?: number;
  /** Peak RSS of the server side in KiB (the largest single process started for the session). */
  serverRssKiB?: number;
}

/** What {@link runTimed} saw. */
export interface TimedRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  wallMs: number;
  clientRssKiB: number | undefined;
  timedOut: boolean;
}

/** Options for {@link runTimed}. */
export interface RunTimedOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /**
   * Milliseconds after which the process group is killed.
   *
   * @default {600000}
   */
  timeoutMs?: number;
  /** File GNU time writes the client's peak RSS to; a temp name beside nothing if absent. */
  rssFile: string;
}

/** Process groups started by {@link runTimed} and still running, so Ctrl+C can stop them by PID. */
export const runningGroups = new Set<number>();

/** Largest stdout kept, in bytes: cws prints a JSON summary, rsync a page of stats. */
const MAX_STDOUT_BYTES = 8 * 1024 * 1024;
/** Largest stderr kept, in bytes: the tail is what explains a failure. */
const MAX_STDERR_BYTES = 1024 * 1024;

/**
 * Runs `command args…` under GNU time and measures its wall time. The child gets its own
 * process group so a timeout can kill it and everything it started (ssh, rsync's forks)
 * by PID, without touching anything else on the machine.
 */
export async function runTimed(command: string, args: readonly string[], options: RunTimedOptions): Promise<TimedRun> {
  const { timeoutMs = 600_000, rssFile } = options;
  await rm(rssFile, { force: true });
  const started = performance.now();
  const child = spawn(TIME_PATH, ["-f", "%M", "-o", rssFile, command, ...args], {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  if (child.pid !== undefined) runningGroups.add(child.pid);
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (text: string) => {
    if (stdout.length < MAX_STDOUT_BYTES) stdout += text;
  });
  child.stderr.setEncoding("utf8").on("data", (text: string) => {
    stderr += text;
    if (stderr.length > 2 * MAX_STDERR_BYTES) stderr = stderr.slice(-MAX_STDERR_BYTES);
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup(child.pid);
  }, timeoutMs);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (c, s) => resolve([c, s]));
  }).finally(() => {
    clearTimeout(timer);
    if (child.pid !== undefined) runningGroups.delete(child.pid);
  });
  const wallMs = performance.now() - started;
  const clientRssKiB = await readRssFile(rssFile);
  return { code, signal, stdout, stderr: stderr.slice(-MAX_STDERR_BYTES), wallMs, clientRssKiB, timedOut };
}

/** Sends SIGKILL to a process group we started (negative PID), ignoring one that is gone. */
export function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // The group has already exited.
  }
}

/**
 * Reads the peak RSS (KiB) from a GNU time output file. The file may hold several records
 * (`-a` appends one per process, e.g. one per SSH session) and, for a failed command, a
 * "Command exited with non-zero status" line; the largest number wins.
 */
export function parseRssFile(text: string): number | undefined {
  let peak: number | undefined;
  for (const line of text.split("\n")) {
    if (!/^\d+$/.test(line.trim())) continue;
    const value = Number(line.trim());
    peak = peak === undefined ? value : Math.max(peak, value);
  }
  return peak;
}

/** {@link parseRssFile} on a file, or undefined if it does not exist. */
export async function readRssFile(file: string): Promise<number | undefined> {
  const text = await readFile(file, "utf8").catch(() => undefined);
  return text === undefined ? undefined : parseRssFile(text);
}

/**
 * Waits for a server-side GNU time file: the remote process may still be exiting when the
 * client returns (a client can close the channel before the server has finished).
 */
export async function waitForRssFile(file: string, options: { timeoutMs?: number } = {}): Promise<number | undefined> {
  const { timeoutMs = 3000 } = options;
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await readRssFile(file);
    if (value !== undefined || performance.now() > deadline) return value;
    await timers.setTimeout(20);
  }
}

/**
 * Sums the byte counters OpenSSH prints at `LogLevel=VERBOSE` when a connection ends
 * ("Transferred: sent 3388, received 103472 bytes, in 0.2 seconds"), one line per connection.
 */
export function parseSshTransferred(stderr: string): ByteCounts | undefined {
  let found = false;
  const total = { sent: 0, received: 0 };
  for (const match of stderr.matchAll(/Transferred: sent (\d+), received (\d+) bytes/g)) {
    found = true;
    total.sent += Number(match[1]);
    total.received += Number(match[2]);
  }
  return found ? total : undefined;
}

/** Drops OpenSSH's verbose chatter from a stderr text, so error messages show what matters. */
export function withoutSshChatter(stderr: string): string {
  return stderr
    .split("\n")
    .filter((line) => !/^(Transferred: |Bytes per second: |Authenticated to |Warning: Permanently added)/.test(line.trim()))
    .join("\n")
    .trim();
}

/** The last few non-empty lines of a text, for one-line failure messages. */
export function tail(text: string, lines = 3): string {
  return text.split("\n").map((l) => l.trim()).filter((l) => l !== "").slice(-lines).join(" | ");
}

/**
 * The peak RSS (VmHWM, KiB) of live processes whose command line contains `marker`, e.g.
 * a hub that a cws agent started and that outlives the session. Returns their PIDs too, so
 * the caller can stop them by PID.
 */
export function findProcesses(marker: string): { pid: number; peakRssKiB: number | undefined }[] {
  const out: { pid: number; peakRssKiB: number | undefined }[] = [];
  if (!existsSync("/proc")) return out;
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${name}/cmdline`, "utf8").replaceAll("\0", " ");
      if (!cmdline.includes(marker)) continue;
      out.push({ pid: Number(name), peakRssKiB: peakRssOf(Number(name)) });
    } catch {
      // The process exited while we looked.
    }
  }
  return out;
}

/** The peak RSS (VmHWM) of a live process in KiB, or undefined when it is gone or not readable. */
export function peakRssOf(pid: number): number | undefined {
  try {
    const hwm = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return hwm === null ? undefined : Number(hwm[1]);
  } catch {
    return undefined;
  }
}

/** Resets one process's peak RSS (see resetPeakRss). */
export function resetPeakRssOf(pid: number): void {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, "5");
  } catch {
    // Gone, or a kernel without this knob: its figure stays the lifetime peak.
  }
}

/**
 * Resets the peak RSS (VmHWM) of live processes whose command line contains `marker`, by
 * writing 5 to /proc/PID/clear_refs (Linux 4.0+), so that their VmHWM afterwards is the peak
 * of the next measurement rather than of the process's whole life. Processes that cannot be
 * reset are left as they are.
 */
export function resetPeakRss(marker: string): void {
  for (const { pid } of findProcesses(marker)) resetPeakRssOf(pid);
}

/** The median of some numbers (the mean of the middle two for an even count). */
export function median(values: readonly number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
