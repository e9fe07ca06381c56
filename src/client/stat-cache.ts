/**
 * The scanner's stat cache: for every file it hashed, the stat fields that identify that
 * version of the file (size, mtime, ctime, inode) and the hashes it found. When a later scan
 * sees the same stat fields, it reuses the hashes and does not read the file again, which is
 * what makes a no-op sync cheap (git's index and Mutagen's cache do the same).
 *
 * The cache is only an optimisation: a missing, unreadable or corrupt cache costs one full
 * re-hash, never a failed scan. It is written crash-safely (temp, fsync, rename).
 */
import { readFile } from "node:fs/promises";
import { z } from "zod";
import { ChunkRef, HashHex, MAX_PATH_LENGTH } from "../core/manifest.ts";
import { writeFileAtomic } from "../fs-atomic.ts";

export const STAT_CACHE_FORMAT = 1;

/**
 * How recent a file's mtime may be, relative to the scan's start, before its hashes are not
 * cached. A file written again within the timestamp granularity (2 s on FAT, 1 s on some
 * network shares) right after we read it would keep its stat and hide its new content: git's
 * "racy clean" problem. Such files are simply hashed again by the next scan.
 */
export const RACY_WINDOW_MS = 2_000;

export const StatCacheEntry = z
  .object({
    // size is the file's length in bytes when it was hashed.
    size: z.number().int().nonnegative(),
    // mtimeMs is the modification time as stat reported it (fractional milliseconds kept).
    mtimeMs: z.number(),
    // ctimeMs is the status-change time; it catches rewrites that restore the old mtime.
    ctimeMs: z.number().optional(),
    // ino is the inode (file id); a replaced file has a new one even with equal size and mtime.
    ino: z.number(),
    // hash is the xxh64 of the whole content.
    hash: HashHex,
    // chunks are the content-defined chunks of the content, in order.
    chunks: z.array(ChunkRef),
  })
  .refine((e) => e.chunks.reduce((sum, [, length]) => sum + length, 0) === e.size, {
    message: "Chunk lengths must add up to the file size",
  });
export type StatCacheEntry = z.infer<typeof StatCacheEntry>;

export const StatCacheFile = z.object({
  // format is the cache file's format version; another version is ignored (the cache rebuilds).
  format: z.literal(STAT_CACHE_FORMAT),
  // entries maps a manifest path (`files/…`) to what was found for it.
  entries: z.record(z.string().min(1).max(MAX_PATH_LENGTH), StatCacheEntry),
});
export type StatCacheFile = z.infer<typeof StatCacheFile>;

/** The stat fields the cache compares. */
export interface StatKey {
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  ino: number;
}

/** True when a cached entry still describes the file with these stat fields. */
export function statMatches(cached: StatCacheEntry, stat: StatKey): boolean {
  return (
    cached.size === stat.size &&
    cached.mtimeMs === stat.mtimeMs &&
    cached.ino === stat.ino &&
    (cached.ctimeMs === undefined || cached.ctimeMs === stat.ctimeMs)
  );
}

/**
 * Loads the cache at `path`. A missing file is an empty cache; an unreadable or invalid one is
 * an empty cache plus a warning, because the cost of losing it is only a re-hash.
 */
export async function loadStatCache(
  path: string,
  onWarning: (message: string) => void,
): Promise<Map<string, StatCacheEntry>> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") {
      // When the cache exists but cannot be read (permissions, a folder in its place).
      onWarning(`Cannot read the stat cache "${path}" as ${describe(error)}: every file will be hashed again`);
    }
    return new Map();
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    // When the file is not JSON at all, e.g. truncated by a crash of something other than cws.
    onWarning(`Cannot use the stat cache "${path}" as it is not valid JSON (${describe(error)}): every file will be hashed again`);
    return new Map();
  }
  const parsed = StatCacheFile.safeParse(json);
  if (!parsed.success) {
    // When the JSON does not have the cache's shape, e.g. written by another cws version.
    onWarning(`Cannot use the stat cache "${path}" as it does not match format ${STAT_CACHE_FORMAT}: every file will be hashed again`);
    return new Map();
  }
  return new Map(Object.entries(parsed.data.entries));
}

/** Writes the cache crash-safely; entries are sorted so the file is stable across runs. */
export async function saveStatCache(path: string, entries: Map<string, StatCacheEntry>): Promise<void> {
  const sorted = [...entries.keys()].sort();
  const file: StatCacheFile = { format: STAT_CACHE_FORMAT, entries: {} };
  for (const key of sorted) file.entries[key] = entries.get(key)!;
  await writeFileAtomic(path, JSON.stringify(file), { mode: 0o600 });
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
