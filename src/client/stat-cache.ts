/**
 * The scanner's stat cache: for every file it hashed, the stat fields that identify that
 * version of the file (size, mtime, ctime, inode) and the hashes it found. When a later scan
 * sees the same stat fields, it reuses the hashes and does not read the file again, which is
 * what makes a no-op sync cheap (git's index and Mutagen's cache do the same).
 *
 * The cache is only an optimisation: a missing, unreadable or corrupt cache costs one full
 * re-hash, never a failed scan. It is stored as a snapshot plus a journal of the entries each
 * later scan or pull changed (journal-file.ts), so a scan that re-hashed 500 of 50,000 files
 * appends those 500 instead of rewriting the whole file; both are written crash-safely.
 *
 * Format 2 is compact because a no-op sync reads all of it: one array per file instead of an
 * object (about a quarter of the parse time of format 1 at 50,000 files), the single chunk of
 * a small file written as `1` (it is the whole file: same hash, same length), and it is
 * validated by the hand-written checks below rather than a zod schema per entry, which cost
 * more than the parse itself. Format 1 files (older cws) are still read, through zod, and replaced by the
 * next scan, so an upgrade never re-hashes a workspace. A format 2 snapshot is written an entry
 * per line (snapshot-lines.ts: still one JSON document) and read back in groups of lines; one
 * written on a single line by an older cws is parsed whole.
 *
 * The file also records the ignore rules every cached path was found not ignored by: while the
 * rules stay the same, the scanner need not match a cached path against them again (a path's
 * verdict depends only on the path and the rules). Paths added by a pull were never matched;
 * they are listed in `unchecked` until a scan has matched them.
 */
import { z } from "zod";
import { ChunkRef, HashHex, MAX_PATH_LENGTH } from "../core/manifest.ts";
import { decodeCompactChunks, encodeCompactChunks } from "../core/manifest-rows.ts";
import { keptValue, keepValue } from "./file-memo.ts";
import { appendRecord, journaledPaths, readJournal, readSnapshot, snapshotEpoch, writeSnapshot, type JournalOrigin, type SnapshotRead } from "./journal-file.ts";
import { snapshotLines, type SnapshotSections } from "./snapshot-lines.ts";

export const STAT_CACHE_FORMAT = 2;

/**
 * How recent a file's mtime may be, relative to the scan's start, before its hashes are not
 * cached. A file written again within the timestamp granularity (2 s on FAT, 1 s on some
 * network shares) right after we read it would keep its stat and hide its new content: git's
 * "racy clean" problem. Such files are simply hashed again by the next scan.
 */
export const RACY_WINDOW_MS = 2_000;

/** What the cache holds for one file. */
export interface StatCacheEntry {
  /** The file's length in bytes when it was hashed. */
  size: number;
  /** The modification time as stat reported it (fractional milliseconds kept). */
  mtimeMs: number;
  /** The status-change time; it catches rewrites that restore the old mtime. Absent: not compared. */
  ctimeMs?: number;
  /** The inode (file id); a replaced file has a new one even with equal size and mtime. */
  ino: number;
  /** The xxh64 of the whole content. */
  hash: string;
  /** The content-defined chunks of the content, in order. */
  chunks: ChunkRef[];
}

/**
 * The cached files by manifest path (`files/…`), kept sorted. A scan looks paths up in nearly
 * the same order, so a cursor finds most of them with one comparison (a binary search finds
 * the rest). This spares filling a Map, whose hashing of every freshly parsed path string was
 * a fifth of loading a 50,000-file cache.
 */
export class StatCacheEntries implements Iterable<[string, StatCacheEntry]> {
  #paths: string[];
  #entries: StatCacheEntry[];
  #cursor = 0;

  /** @param pairs any order; sorted here when they are not already. */
  constructor(pairs: Array<[string, StatCacheEntry]> = []) {
    let sorted = true;
    for (let i = 1; i < pairs.length && sorted; i++) sorted = pairs[i - 1][0] < pairs[i][0];
    if (!sorted) {
      // A stable sort of a walk's nearly sorted output costs little more than one pass; of
      // pairs with the same path the later one wins, as it would in a Map.
      const ordered = [...pairs].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
      pairs = ordered.filter((pair, i) => i + 1 === ordered.length || ordered[i + 1][0] !== pair[0]);
    }
    this.#paths = pairs.map((pair) => pair[0]);
    this.#entries = pairs.map((pair) => pair[1]);
  }

  get size(): number {
    return this.#paths.length;
  }

  get(path: string): StatCacheEntry | undefined {
    const paths = this.#paths;
    let at = this.#cursor;
    if (at >= paths.length || paths[at] !== path) {
      let hi = paths.length;
      at = 0;
      while (at < hi) {
        const mid = (at + hi) >>> 1;
        if (paths[mid] < path) at = mid + 1;
        else hi = mid;
      }
      if (at >= paths.length || paths[at] !== path) return undefined;
    }
    this.#cursor = at + 1;
    return this.#entries[at];
  }

  *[Symbol.iterator](): Iterator<[string, StatCacheEntry]> {
    for (let i = 0; i < this.#paths.length; i++) yield [this.#paths[i], this.#entries[i]];
  }

  /**
   * These entries with `changes` applied (an entry: added or replaced; null: removed), in one
   * merge of the sorted lists rather than a sort of everything.
   */
  withChanges(changes: ReadonlyMap<string, StatCacheEntry | null>): StatCacheEntries {
    const keys = [...changes.keys()].sort();
    const paths: string[] = [];
    const entries: StatCacheEntry[] = [];
    const own = this.#paths;
    let i = 0;
    for (const key of keys) {
      while (i < own.length && own[i] < key) {
        paths.push(own[i]);
        entries.push(this.#entries[i++]);
      }
      if (i < own.length && own[i] === key) i++;
      const entry = changes.get(key)!;
      if (entry !== null) {
        paths.push(key);
        entries.push(entry);
      }
    }
    for (; i < own.length; i++) {
      paths.push(own[i]);
      entries.push(this.#entries[i]);
    }
    const merged = new StatCacheEntries();
    merged.#paths = paths;
    merged.#entries = entries;
    return merged;
  }

  /**
   * What turns `previous` into these entries: paths added or whose entry is another object (a
   * scan reuses the very cached object of an unchanged file), and paths gone.
   */
  changesSince(previous: StatCacheEntries): { upserts: Array<[string, StatCacheEntry]>; removes: string[] } {
    const upserts: Array<[string, StatCacheEntry]> = [];
    const removes: string[] = [];
    const before = previous.#paths;
    const after = this.#paths;
    let i = 0;
    let j = 0;
    while (i < before.length || j < after.length) {
      if (j >= after.length || (i < before.length && before[i] < after[j])) {
        removes.push(before[i++]);
      } else if (i >= before.length || after[j] < before[i]) {
        upserts.push([after[j], this.#entries[j++]]);
      } else {
        if (previous.#entries[i] !== this.#entries[j]) upserts.push([after[j], this.#entries[j]]);
        i++;
        j++;
      }
    }
    return { upserts, removes };
  }
}

/** A loaded cache. */
export interface StatCache {
  entries: StatCacheEntries;
  /** The ignore rules (joined, see the scanner) every cached path not in `unchecked` passed; null: unknown. */
  ignoreRules: string | null;
  /** Cached paths never matched against `ignoreRules` (added by a pull). */
  unchecked: Set<string>;
  /** The files this cache was read from, for a save that appends only what changed; absent: none usable. */
  origin?: JournalOrigin;
}

/**
 * One file of format 2: `[path, size, mtimeMs, ctimeMs | null, ino, hash, chunks]`, where
 * chunks is `1` for one chunk covering the whole file, else `[hash, length, hash, length, …]`.
 */
type EntryTuple = [string, number, number, number | null, number, string, 1 | Array<string | number>];

/**
 * One journal record (journal-file.ts): the entries added or replaced (`u`, as tuples) and the
 * paths removed (`r`) by one scan or pull, and the cache's ignore rules and unchecked paths
 * after it (both whole: the unchecked list is empty after every scan).
 */
interface CacheRecord {
  rules: string | null;
  un: string[];
  u: EntryTuple[];
  r: string[];
}

/** The largest number of entries accepted, far above any workspace, so a damaged file cannot balloon. */
const MAX_ENTRIES = 10_000_000;

const HASH_PATTERN = /^[0-9a-f]{16}$/;

/** True when a cached entry still describes the file with these stat fields. */
export function statMatches(cached: StatCacheEntry, stat: StatKey): boolean {
  return (
    cached.size === stat.size &&
    cached.mtimeMs === stat.mtimeMs &&
    cached.ino === stat.ino &&
    (cached.ctimeMs === undefined || cached.ctimeMs === stat.ctimeMs)
  );
}

/** The stat fields the cache compares. */
export interface StatKey {
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  ino: number;
}

/**
 * Loads the cache at `path` (its snapshot and journal). A missing file is an empty cache; an
 * unreadable or invalid one is an empty cache plus a warning, because the cost of losing it is
 * only a re-hash.
 */
export async function readStatCache(path: string, onWarning: (message: string) => void): Promise<StatCache> {
  const empty = (): StatCache => ({ entries: new StatCacheEntries(), ignoreRules: null, unchecked: new Set() });
  const files = journaledPaths(path);
  // In a kept session, the cache this process last read or wrote, while the files are still those.
  const kept = keptValue<StatCache>(files);
  if (kept !== undefined) return { ...kept, unchecked: new Set(kept.unchecked) };
  let snapshot: SnapshotRead | undefined;
  let journal: { records: unknown[]; origin: JournalOrigin };
  // A snapshot in the layout of lines hands its entries over one by one (snapshot-lines.ts).
  const items = new Format2Items();
  try {
    snapshot = await readSnapshot(path, items);
    if (snapshot === undefined) return empty();
    if (snapshot.json === undefined) {
      // When the file is not JSON at all, e.g. truncated by a crash of something other than cws.
      onWarning(`Cannot use the stat cache "${path}" as it is not valid JSON (${snapshot.invalid}): every file will be hashed again`);
      return empty();
    }
    journal = await readJournal(path, snapshot, snapshotEpoch(snapshot.json));
  } catch (error) {
    // When the cache exists but cannot be read (permissions, a folder in its place).
    onWarning(`Cannot read the stat cache "${path}" as ${describe(error)}: every file will be hashed again`);
    return empty();
  }
  const json = snapshot.json;
  const loaded = snapshot.sectioned ? items.cache(json) : (json as { format?: unknown } | null)?.format === 1 ? fromFormat1(json) : fromFormat2(json);
  const cache = loaded === null ? null : withRecords(loaded, journal.records);
  if (cache === null) {
    // When the JSON does not have the cache's shape, e.g. damaged or written by a newer cws.
    onWarning(`Cannot use the stat cache "${path}" as it does not match format ${STAT_CACHE_FORMAT}: every file will be hashed again`);
    return empty();
  }
  cache.origin = journal.origin;
  keepValue(files, cache, journal.origin.identity);
  return cache;
}

/**
 * Writes the cache crash-safely. With `previous` (the cache as read from these files), only the
 * difference is appended to the journal; the whole snapshot is written when there is no usable
 * previous state or the journal is due for compaction (journal-file.ts).
 *
 * @param ignoreRules the rules every path not in `unchecked` was matched against (null: none)
 */
export async function saveStatCache(
  path: string,
  entries: StatCacheEntries,
  ignoreRules: string | null = null,
  unchecked: Iterable<string> = [],
  previous?: StatCache,
): Promise<void> {
  const stillUnchecked = [...unchecked].filter((p) => entries.get(p) !== undefined).sort();
  let origin: JournalOrigin | null = null;
  if (previous?.origin !== undefined) {
    const { upserts, removes } = entries.changesSince(previous.entries);
    // The tuples are made as the record is encoded, which stops once it is too large for the journal.
    const record = { rules: ignoreRules, un: stillUnchecked, u: tuplesOf(upserts), r: removes } satisfies Record<keyof CacheRecord, unknown>;
    origin = await appendRecord(path, previous.origin, record);
  }
  // Written in pieces, an entry at a time (snapshot-lines.ts): at 50,000 files the whole text
  // was one string of about 7 MB, made beside the tuples of every entry.
  origin ??= await writeSnapshot(path, (epoch) =>
    snapshotLines({ format: STAT_CACHE_FORMAT, journal: epoch, ignoreRules }, [["entries", tuplesOf(entries)], ["unchecked", stillUnchecked]]),
  );
  keepValue(journaledPaths(path), { entries, ignoreRules, unchecked: new Set(stillUnchecked), origin } satisfies StatCache, origin.identity);
}

/**
 * Records files a pull just wrote: their entries are added, marked as not yet matched against
 * the ignore rules (the server's paths were never matched here).
 */
export async function addToStatCache(path: string, updates: Map<string, StatCacheEntry>): Promise<void> {
  const cache = await readStatCache(path, () => {});
  await saveStatCache(path, cache.entries.withChanges(updates), cache.ignoreRules, [...cache.unchecked, ...updates.keys()], cache);
}

function* tuplesOf(entries: Iterable<[string, StatCacheEntry]>): Generator<EntryTuple> {
  for (const [key, entry] of entries) yield tupleOf(key, entry);
}

function tupleOf(key: string, entry: StatCacheEntry): EntryTuple {
  return [key, entry.size, entry.mtimeMs, entry.ctimeMs ?? null, entry.ino, entry.hash, encodeCompactChunks(entry.hash, entry.size, entry.chunks)];
}

/** The cache with the journal's records applied, oldest first; null when a record is not valid. */
function withRecords(cache: StatCache, records: readonly unknown[]): StatCache | null {
  if (records.length === 0) return cache;
  const changes = new Map<string, StatCacheEntry | null>();
  let { ignoreRules, unchecked } = cache;
  for (const raw of records) {
    const record = raw as Partial<CacheRecord> | null;
    if (typeof record !== "object" || record === null) return null;
    if (record.rules !== null && typeof record.rules !== "string") return null;
    if (!Array.isArray(record.un) || !Array.isArray(record.u) || !Array.isArray(record.r)) return null;
    if (record.u.length > MAX_ENTRIES || record.r.length > MAX_ENTRIES || record.un.length > MAX_ENTRIES) return null;
    for (const p of record.r as unknown[]) {
      if (typeof p !== "string") return null;
      changes.set(p, null);
    }
    for (const item of record.u as unknown[]) {
      const entry = entryFromTuple(item);
      if (entry === null) return null;
      changes.set((item as EntryTuple)[0], entry);
    }
    unchecked = new Set();
    for (const p of record.un as unknown[]) {
      if (typeof p !== "string") return null;
      unchecked.add(p);
    }
    ignoreRules = record.rules;
  }
  return { entries: cache.entries.withChanges(changes), ignoreRules, unchecked };
}

/**
 * The entries and unchecked paths of a format 2 file, taken one at a time and checked by hand
 * (see the module comment): from a snapshot read in lines (snapshot-lines.ts), or from the
 * arrays of one parsed whole.
 */
class Format2Items implements SnapshotSections {
  readonly names = ["entries", "unchecked"] as const;
  readonly #pairs: Array<[string, StatCacheEntry]> = [];
  readonly #unchecked = new Set<string>();

  item(section: number, item: unknown): boolean {
    if (section === 0) {
      const entry = this.#pairs.length < MAX_ENTRIES ? entryFromTuple(item) : null;
      if (entry === null) return false;
      this.#pairs.push([(item as EntryTuple)[0], entry]);
      return true;
    }
    if (typeof item !== "string" || this.#unchecked.size >= MAX_ENTRIES) return false;
    this.#unchecked.add(item);
    return true;
  }

  /** The cache of these items and the file's other fields (`head`); null when those are not format 2. */
  cache(head: unknown): StatCache | null {
    if (typeof head !== "object" || head === null) return null;
    const file = head as { format?: unknown; ignoreRules?: unknown };
    if (file.format !== STAT_CACHE_FORMAT) return null;
    if (file.ignoreRules !== null && typeof file.ignoreRules !== "string") return null;
    return { entries: new StatCacheEntries(this.#pairs), ignoreRules: file.ignoreRules, unchecked: this.#unchecked };
  }
}

/** Validates a format 2 file parsed whole (an older cws wrote it on one line); null when it is not one. */
function fromFormat2(json: unknown): StatCache | null {
  const file = json as { entries?: unknown; unchecked?: unknown } | null;
  if (typeof file !== "object" || file === null || !Array.isArray(file.unchecked) || !Array.isArray(file.entries)) return null;
  const items = new Format2Items();
  for (const item of file.entries as unknown[]) if (!items.item(0, item)) return null;
  for (const p of file.unchecked as unknown[]) if (!items.item(1, p)) return null;
  return items.cache(json);
}

/** One checked entry of format 2, or null when the tuple is not a valid one. */
function entryFromTuple(item: unknown): StatCacheEntry | null {
  // Indexed reads rather than destructuring: this runs for every file of every scan.
  if (!Array.isArray(item) || item.length !== 7) return null;
  const path: unknown = item[0];
  const size: unknown = item[1];
  const mtimeMs: unknown = item[2];
  const ctimeMs: unknown = item[3];
  const ino: unknown = item[4];
  const hash: unknown = item[5];
  const rawChunks: unknown = item[6];
  if (typeof path !== "string" || path.length === 0 || path.length > MAX_PATH_LENGTH) return null;
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) return null;
  if (typeof mtimeMs !== "number" || !Number.isFinite(mtimeMs) || typeof ino !== "number" || !Number.isFinite(ino)) return null;
  if (ctimeMs !== null && (typeof ctimeMs !== "number" || !Number.isFinite(ctimeMs))) return null;
  if (typeof hash !== "string" || !HASH_PATTERN.test(hash)) return null;
  const chunks = decodeCompactChunks(rawChunks, hash, size);
  if (chunks === null) return null;
  return ctimeMs === null ? { size, mtimeMs, ino, hash, chunks } : { size, mtimeMs, ctimeMs, ino, hash, chunks };
}

// Format 1 (cws before the compact format): read once after an upgrade, then replaced.
const Format1Entry = z
  .object({
    size: z.number().int().nonnegative(),
    mtimeMs: z.number(),
    ctimeMs: z.number().optional(),
    ino: z.number(),
    hash: HashHex,
    chunks: z.array(ChunkRef),
  })
  .refine((e) => e.chunks.reduce((sum, [, length]) => sum + length, 0) === e.size, {
    message: "Chunk lengths must add up to the file size",
  });
const Format1File = z.object({
  format: z.literal(1),
  entries: z.record(z.string().min(1).max(MAX_PATH_LENGTH), Format1Entry),
});

function fromFormat1(json: unknown): StatCache | null {
  const parsed = Format1File.safeParse(json);
  if (!parsed.success) return null;
  return { entries: new StatCacheEntries(Object.entries(parsed.data.entries)), ignoreRules: null, unchecked: new Set() };
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
