/**
 * What the command line says when a command fails, and its exit code. Every failure a user can
 * cause or meet ends in one sentence saying what failed and what to do next, never a stack
 * trace. Only real bugs are "unexpected": their detail goes to a log file, which the message
 * names.
 *
 * Exit codes, by class (documented in docs/operations.md):
 *
 *   0    success
 *   1    cws refused or could not do what was asked (a wrong command line, bad input, not
 *        found, conflict, lease held, quarantine, damaged data): the message says why
 *   3    the server could not be reached or the session broke (SSH, agent, hub, auth)
 *   4    this device's disk or permissions failed (disk full, permission denied, read-only)
 *   70   an unexpected failure: a bug in cws; the message names the log with the detail
 *   130  interrupted (Ctrl+C)
 */
import { appendFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { isCwsError, type ErrorCode } from "../errors.ts";
import { PACKAGE_VERSION } from "../version.ts";

export const EXIT = { ok: 0, refused: 1, unreachable: 3, localSystem: 4, internal: 70, interrupted: 130 } as const;

/** Codes of failures to reach or keep talking to the server. */
const UNREACHABLE: ReadonlySet<ErrorCode> = new Set(["AGENT_MISSING", "CONNECTION_LOST", "HUB_UNAVAILABLE", "AUTH_FAILED", "HOST_KEY_MISMATCH", "PROTOCOL_MISMATCH"]);

/** One failure as it is shown: the sentence, the code for --json, the exit code. */
export interface Failure {
  message: string;
  code: ErrorCode;
  exitCode: number;
  data?: Record<string, unknown>;
}

/**
 * Classifies a thrown value. System errors of this device (errno codes) get a sentence of
 * their own; anything else that is not a CwsError is a bug, written with its stack to
 * `<logDir>/cws-errors.log`.
 */
export function describeFailure(error: unknown, logDir: string | null): Failure {
  if (isCwsError(error) && error.code !== "INTERNAL") {
    const exitCode = error.code === "CANCELLED" ? EXIT.interrupted : UNREACHABLE.has(error.code) ? EXIT.unreachable : EXIT.refused;
    return { message: error.message, code: error.code, exitCode, ...(error.data === undefined ? {} : { data: error.data }) };
  }
  const system = systemFailure(error);
  if (system !== null) return { message: system, code: "IO_FAILED", exitCode: EXIT.localSystem, data: { errno: (error as NodeJS.ErrnoException).code } };
  // A CwsError INTERNAL from the agent carries its own pointer to the agent's log; one raised
  // here, or any other error, is logged here.
  const summary = error instanceof Error ? error.message : String(error);
  const log = logDir === null ? null : writeLog(logDir, error);
  const where = log === null ? `\n${(error as Error)?.stack ?? String(error)}\n` : ` The details are in ${log}.`;
  return {
    message: `Unexpected failure (a bug in cws): ${summary}.${where} Please report it with the command you ran${log === null ? "" : " and that file"}`,
    code: "INTERNAL",
    exitCode: EXIT.internal,
  };
}

/** How a system call failed, by errno, and what the user can do; null when it is not a system error. */
const SYSTEM_ERRORS: Record<string, { what: string; next: string }> = {
  ENOSPC: { what: "the disk is full", next: "free some space and run the command again (files already written are complete; nothing was lost)" },
  EDQUOT: { what: "your disk quota is used up", next: "free some space and run the command again (nothing was lost)" },
  EACCES: { what: "permission was denied", next: "give your user access to it (or run cws as the user who owns it) and run the command again" },
  EPERM: { what: "the operation is not permitted", next: "check the file's owner and flags (e.g. immutable) and run the command again" },
  EROFS: { what: "the file system is read-only", next: "remount it writable or choose another folder" },
  ENAMETOOLONG: { what: "the name is too long for this file system", next: "shorten the folder's path or the file's name" },
  EMFILE: { what: "too many files are open", next: "raise the limit (`ulimit -n`) and run the command again" },
  ENFILE: { what: "the system has too many files open", next: "close some programs and run the command again" },
  EIO: { what: "the disk reported an I/O error", next: "check the disk (dmesg, SMART) before running the command again" },
  ENOTDIR: { what: "a part of the path is a file, not a folder", next: "check the path" },
  EISDIR: { what: "it is a folder where a file was expected", next: "check the path" },
  ENOENT: { what: "it does not exist", next: "check the path and run the command again" },
};

function systemFailure(error: unknown): string | null {
  const e = error as NodeJS.ErrnoException | undefined;
  if (e === undefined || e === null || typeof e.code !== "string" || typeof e.syscall !== "string") return null;
  const known = SYSTEM_ERRORS[e.code];
  if (known === undefined) return null;
  const target = typeof e.path === "string" ? ` "${e.path}"` : "";
  return `Cannot ${verb(e.syscall)}${target} as ${known.what} (${e.code}): ${known.next}`;
}

/** The action a system call stood for, as the sentence says it. */
function verb(syscall: string): string {
  if (/^(write|pwrite|writev|fsync|fdatasync|ftruncate|copyfile|futime|fchmod)/.test(syscall)) return "write to the disk";
  if (/^(mkdir|mkdtemp)/.test(syscall)) return "create the folder";
  if (/^(rename|link|symlink|copy)/.test(syscall)) return "move or copy";
  if (/^(unlink|rmdir|rm)/.test(syscall)) return "remove";
  if (/^(read|pread|stat|lstat|fstat|scandir|readdir|readlink|access|open)/.test(syscall)) return syscall.startsWith("open") ? "open" : "read";
  return `do "${syscall}" on`;
}

/** Appends a bug's detail to the log; returns its path, or null when even that fails. */
function writeLog(dir: string, error: unknown): string | null {
  const path = join(dir, "cws-errors.log");
  const lines = [`--- ${new Date().toISOString()} cws ${PACKAGE_VERSION} node ${process.version} ${process.platform}`, `argv: ${JSON.stringify(process.argv.slice(2))}`];
  for (let e: unknown = error, depth = 0; e !== undefined && depth < 5; e = (e as Error)?.cause, depth++) {
    lines.push(depth === 0 ? "" : "caused by:", (e as Error)?.stack ?? String(e));
  }
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    appendFileSync(join(dir, "cws-errors.log"), lines.join("\n") + "\n", { mode: 0o600 });
    return path;
  } catch {
    return null;
  }
}
