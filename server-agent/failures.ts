/**
 * What the server side says when a request fails for a reason that is not a CwsError: a full
 * disk is the server's state, not a bug, and ends in one sentence with the next step
 * (`DISK_FULL`); anything else is a real bug and becomes `INTERNAL`, whose message names the
 * log that holds the detail (the stack trace never crosses the wire).
 */
import { CwsError } from "../src/errors.ts";

/** True for "no space left": ENOSPC, a quota (EDQUOT), or SQLite's "database or disk is full". */
export function isDiskFull(error: unknown): boolean {
  const { code, errcode, message } = (error ?? {}) as { code?: unknown; errcode?: unknown; message?: unknown };
  if (code === "ENOSPC" || code === "EDQUOT") return true;
  // Node's SQLite module reports SQLITE_FULL (13) with code ERR_SQLITE_ERROR and the errcode beside it.
  return errcode === 13 || (typeof message === "string" && /database or disk is full/.test(message));
}

// What a request writes, in a person's words, for the message of a full disk.
const WRITES: Record<string, string> = {
  ingestBundle: "the uploaded chunks",
  commit: "the new snapshot",
  prepareBundle: "the bundle this device was to download",
  createSuperproject: "the new superproject",
  registerDevice: "the new device",
  enroll: "the new device",
};

/** The DISK_FULL error for a request (`method`) that found the server's disk full. */
export function serverDiskFull(method: string, dataDir: string): CwsError {
  const what = WRITES[method] ?? `what ${method} writes`;
  return new CwsError(
    "DISK_FULL",
    `The server's disk is full: ${what} could not be stored under ${dataDir}. Free space on the server (\`cws-server gc\` removes old snapshots and leftovers) and sync again.`,
    { data: { dataDir, request: method } },
  );
}

/**
 * The error a failed request answers with: the CwsError itself, DISK_FULL for a full disk, or
 * INTERNAL naming `logFile` (after `log` wrote the detail there, under `incident`).
 */
export function explainFailure(error: unknown, context: { what: string; dataDir: string; logFile: string; log: (line: string) => void }): CwsError {
  if (error instanceof CwsError) return error;
  if (isDiskFull(error)) {
    context.log(`${context.what}: disk full: ${(error as Error)?.message ?? String(error)}`);
    return serverDiskFull(context.what, context.dataDir);
  }
  const incident = Math.random().toString(36).slice(2, 10);
  context.log(`internal error ${incident} in ${context.what}: ${(error as Error)?.stack ?? String(error)}`);
  return new CwsError(
    "INTERNAL",
    `${context.what} failed unexpectedly on the server (incident ${incident}); the details are in ${context.logFile} there. Please report it with that part of the log.`,
    { data: { incident, log: context.logFile }, cause: error },
  );
}
