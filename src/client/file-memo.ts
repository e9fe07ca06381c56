/**
 * Parsed state files kept in memory by a long-lived process (the kept session, kept-session.ts),
 * so that a sync of a large tree does not read and parse its base manifest and stat cache again
 * when they did not change. A kept value is used only while the file on disk is the very file
 * it came from or went to: same device, inode, size, and modification and change times in
 * nanoseconds. cws replaces these files by rename (a new inode), and anything else that writes
 * them changes their times, so a file changed by another command is always read afresh.
 *
 * Off unless `keepParsedFiles()` was called: a one-shot command reads each file once anyway.
 */
import { statSync } from "node:fs";

let kept: Map<string, { identity: string; value: unknown }> | null = null;

/** Turns keeping on for this process. */
export function keepParsedFiles(): void {
  kept ??= new Map();
}

/** The identity of the file at `path`, or undefined when there is none. */
function identityOf(path: string): string | undefined {
  try {
    const stats = statSync(path, { bigint: true, throwIfNoEntry: false });
    return stats === undefined ? undefined : `${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeNs}:${stats.ctimeNs}`;
  } catch {
    return undefined;
  }
}

/** The value kept for `path`, when keeping is on and the file is still the one it was kept for. */
export function keptValue<T>(path: string): T | undefined {
  const entry = kept?.get(path);
  if (entry === undefined) return undefined;
  if (identityOf(path) === entry.identity) return entry.value as T;
  kept!.delete(path);
  return undefined;
}

/** Keeps `value` as the content of the file at `path` as it is now (just read or just written). */
export function keepValue(path: string, value: unknown): void {
  if (kept === null) return;
  const identity = identityOf(path);
  if (identity === undefined) kept.delete(path);
  else kept.set(path, { identity, value });
}

/** Whether keeping is on (callers may then prepare a value for keeping, e.g. freeze it). */
export function keepingParsedFiles(): boolean {
  return kept !== null;
}
