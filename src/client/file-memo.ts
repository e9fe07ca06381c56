/**
 * Parsed state files kept in memory by a long-lived process (the kept session, kept-session.ts),
 * so that a sync of a large tree does not read and parse its base manifest and stat cache again
 * when they did not change. A kept value is used only while the files on disk are the very files
 * it came from or went to: same device, inode, size, and modification and change times in
 * nanoseconds. cws replaces these files by rename (a new inode) or appends to their journals
 * (a new size and times: journal-file.ts), and anything else that writes them changes their
 * times, so a file changed by another command is always read afresh.
 *
 * A value may depend on several files (a snapshot and its journal): it is kept under the list
 * of their paths and used only while every one of them is unchanged (or still absent).
 *
 * Off unless `keepParsedFiles()` was called: a one-shot command reads each file once anyway.
 */
import { statSync, type BigIntStats } from "node:fs";

let kept: Map<string, { identity: string; value: unknown }> | null = null;

/** Turns keeping on for this process. */
export function keepParsedFiles(): void {
  kept ??= new Map();
}

/** The identity of one file's version, from its stats. */
export function identityOfStats(stats: BigIntStats): string {
  return `${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeNs}:${stats.ctimeNs}`;
}

/**
 * The identity of the files at `paths` as they are now (`-` for one that does not exist), or
 * undefined when the first of them does not exist or cannot be looked at.
 */
export function filesIdentity(paths: readonly string[]): string | undefined {
  const parts: string[] = [];
  for (const path of paths) {
    let stats: BigIntStats | undefined;
    try {
      stats = statSync(path, { bigint: true, throwIfNoEntry: false });
    } catch {
      return undefined;
    }
    if (stats === undefined && parts.length === 0) return undefined;
    parts.push(stats === undefined ? "-" : identityOfStats(stats));
  }
  return parts.join("|");
}

function listOf(paths: string | readonly string[]): readonly string[] {
  return typeof paths === "string" ? [paths] : paths;
}

/** The value kept for `paths`, when keeping is on and the files are still the ones it was kept for. */
export function keptValue<T>(paths: string | readonly string[]): T | undefined {
  const list = listOf(paths);
  const key = list.join("\n");
  const entry = kept?.get(key);
  if (entry === undefined) return undefined;
  if (filesIdentity(list) === entry.identity) return entry.value as T;
  kept!.delete(key);
  return undefined;
}

/**
 * Keeps `value` as the content of the files at `paths` as they are now (just read or just
 * written), or as they were when `identity` was taken from them (safer: nothing can change them
 * unseen between the read and the keeping).
 */
export function keepValue(paths: string | readonly string[], value: unknown, identity: string | undefined = filesIdentity(listOf(paths))): void {
  if (kept === null) return;
  const list = listOf(paths);
  if (identity === undefined) kept.delete(list.join("\n"));
  else kept.set(list.join("\n"), { identity, value });
}

/** Whether keeping is on (callers may then prepare a value for keeping, e.g. freeze it). */
export function keepingParsedFiles(): boolean {
  return kept !== null;
}
