/**
 * The contract between the benchmark's orchestration (`run.ts`) and one tool under test
 * (cws, rsync, Unison). A tool is driven through the same steps for every data set:
 *
 *   prepare(deviceA)      once; deviceA is a fresh copy of the data set (not timed)
 *   resetServer()         before every initial-push run: an empty server (not timed)
 *   push()                initial push of deviceA                       (timed)
 *   sync()                no-op sync, and after each 1% change          (timed)
 *   preparePull()         a fresh second device (not timed)
 *   pull()                pull onto the second device                   (timed)
 *   secondDeviceRoot()    where pull() wrote, to check the result
 *   dispose()             remove its folders, stop what it started
 *
 * Methods are called one at a time, never concurrently.
 */
import path from "node:path";
import type { SshdHandle } from "../test/helpers/sshd.ts";
import type { Measurement } from "./measure.ts";
import type { Scenario } from "./report.ts";

/** The cipher cws prefers; every OpenSSH client in the benchmark is told to use it too. */
export const CIPHER = "aes128-gcm@openssh.com";

/** What every tool gets from the orchestration. */
export interface ToolContext {
  sshd: SshdHandle;
  /** A folder only this tool writes to (for this data set). */
  workDir: string;
  /** Milliseconds one command may run before it is killed. */
  timeoutMs: number;
  /** Absolute path of the repository. */
  repoRoot: string;
  /** Progress output (stderr). */
  log(message: string): void;
}

export interface Tool {
  /** Short name in tables and JSON, e.g. "rsync -a". */
  readonly name: string;
  /**
   * The scenarios this tool is measured in (all when absent). Without "push", the initial push
   * still runs, untimed, to give the other scenarios their server copy.
   */
  readonly scenarios?: readonly Scenario[];
  /** Undefined when the tool can run here, else a one-line reason (shown instead of numbers). */
  unavailable(): Promise<string | undefined>;
  prepare(deviceA: string): Promise<void>;
  resetServer(): Promise<void>;
  push(): Promise<Measurement>;
  sync(): Promise<Measurement>;
  preparePull(): Promise<void>;
  pull(): Promise<Measurement>;
  secondDeviceRoot(): string;
  dispose(): Promise<void>;
}

/**
 * The OpenSSH client arguments shared by rsync and Unison: the benchmark's key and
 * known_hosts, strict host-key checking, no prompts, no user config, the cipher cws prefers,
 * and `LogLevel=VERBOSE` so ssh reports the bytes it moved when it exits.
 */
export function opensshArgs(sshd: SshdHandle): string[] {
  for (const p of [sshd.clientKeyPath, sshd.knownHostsPath]) {
    // rsync's -e and Unison's -sshargs split on white space; the temp paths never contain any.
    if (/\s/.test(p)) throw new RangeError(`Cannot pass "${p}" to ssh through rsync/unison as it contains white space`);
  }
  return [
    "-F", "/dev/null",
    "-i", sshd.clientKeyPath,
    "-p", String(sshd.port),
    "-o", `UserKnownHostsFile=${sshd.knownHostsPath}`,
    "-o", "StrictHostKeyChecking=yes",
    "-o", "BatchMode=yes",
    "-o", "IdentitiesOnly=yes",
    "-o", "Compression=no",
    "-o", "LogLevel=VERBOSE",
    "-c", CIPHER,
  ];
}

/** A path inside the tool's work dir. */
export function inWork(context: ToolContext, ...parts: string[]): string {
  return path.join(context.workDir, ...parts);
}
