/**
 * A large JSON state file that changes a little at a time (the base manifest, the stat cache),
 * stored as a snapshot plus an append-only journal of changes beside it (`<file>.journal`), so
 * that a sync which touched 500 of 50,000 paths writes those 500 and not the whole file again.
 *
 *   <file>           the snapshot: the owner's JSON object, with a `journal` field naming its
 *                    journal by a random id (the epoch) chosen when the snapshot was written;
 *                    its large arrays one item per line, so that it is written and read in
 *                    bounded pieces (snapshot-lines.ts)
 *   <file>.journal   lines `<crc32 hex> <json>\n`: first `{"epoch": id}`, then one record per
 *                    change, oldest first, each the owner's JSON
 *
 * Crash safety. An appended record is durable once the journal is fsynced: that fsync is the
 * commit point of the change. A crash before it leaves either no record or a torn last line,
 * whose checksum fails: the record is then ignored as a whole, so a reader sees the state
 * before the change, never part of it. A journal whose epoch is not the snapshot's (left by a
 * crash between writing a new snapshot and removing the old journal, or by an older cws that
 * rewrote the snapshot without one) holds nothing for this snapshot and is ignored. After any
 * such irregularity (torn tail, foreign journal) the next write is a whole snapshot, which
 * removes the journal: nothing is appended after bytes that are not ours.
 *
 * Compaction. When the journal has grown past a quarter of the snapshot (and past a floor for
 * small files), the next write is a whole snapshot again (temp, fsync, rename) with a new
 * epoch, and the journal is removed. A cold read then costs at most about 1.25 times a read of
 * the snapshot alone, and the writes of a long run of small changes stay proportional to the
 * changes, a full rewrite only every so often.
 *
 * A writer appends only when the snapshot and journal on disk are still exactly the files it
 * read (same identity: device, inode, size, times; see file-memo.ts): a record is a change
 * against that state. Otherwise it writes a whole snapshot, as cws always did.
 */
import { randomBytes } from "node:crypto";
import { open, rm, type FileHandle } from "node:fs/promises";
import { crc32 } from "node:zlib";
import { writeAll, writeFileAtomic, type FileData } from "../fs-atomic.ts";
import { faultPoint, type FaultPoint } from "../fault.ts";
import { filesIdentity, identityOfStats } from "./file-memo.ts";
import { parseSnapshot, type ParsedSnapshot, type SnapshotSections } from "./snapshot-lines.ts";

/** The journal of a state file is this file name with this suffix. */
export const JOURNAL_SUFFIX = ".journal";

/** The journal is compacted into a new snapshot once it outgrows this share of the snapshot… */
const COMPACT_SHARE = 0.25;
/** …and this many bytes, so that a small file does not rewrite its snapshot at every change. */
const COMPACT_FLOOR_BYTES = 256 * 1024;

/** Where a loaded state came from: what a later write must still find on disk to append to it. */
export interface JournalOrigin {
  /** The epoch of the snapshot; null when it has none (written by an older cws, or no snapshot). */
  readonly epoch: string | null;
  /** The identity of snapshot and journal as read or written (file-memo.ts `filesIdentity`). */
  readonly identity: string;
  readonly snapshotBytes: number;
  /** The length of the journal's valid part, header included (0: no journal). */
  readonly journalBytes: number;
  /** False when the journal holds bytes that are not valid records of this epoch (torn, foreign). */
  readonly clean: boolean;
}

/** The snapshot as parsed (snapshot-lines.ts) and how it was found. */
export interface SnapshotRead extends ParsedSnapshot {
  /** The snapshot's own identity, taken from the very handle it was read through. */
  identity: string;
}

/** The journal path of a state file. */
export function journalPath(path: string): string {
  return path + JOURNAL_SUFFIX;
}

/** The paths whose identity a kept value of this state file depends on. */
export function journaledPaths(path: string): readonly [string, string] {
  return [path, journalPath(path)];
}

/**
 * Reads and parses the snapshot at `path`; undefined when there is none. With `sections`, a
 * snapshot in the layout of lines is read in bounded pieces, its sections' items handed to the
 * owner (snapshot-lines.ts); any other is parsed whole. Read errors are thrown.
 */
export async function readSnapshot(path: string, sections?: SnapshotSections): Promise<SnapshotRead | undefined> {
  const handle = await openIfExists(path);
  if (handle === undefined) return undefined;
  try {
    const identity = identityOfStats(await handle.stat({ bigint: true }));
    return { ...(await parseSnapshot(handle, sections)), identity };
  } finally {
    await handle.close();
  }
}

/**
 * The epoch a parsed snapshot names, or null. Owners store it in the field `journal`.
 */
export function snapshotEpoch(json: unknown): string | null {
  const epoch = (json as { journal?: unknown } | null)?.journal;
  return typeof epoch === "string" && /^[0-9a-f]{16}$/.test(epoch) ? epoch : null;
}

/**
 * The records of the journal of the snapshot just read (`snapshot` undefined: there is none),
 * oldest first, and the origin a later append needs. Records are returned as parsed JSON, for
 * the owner to validate.
 */
export async function readJournal(path: string, snapshot: SnapshotRead | undefined, epoch: string | null): Promise<{ records: unknown[]; origin: JournalOrigin }> {
  const snapshotIdentity = snapshot?.identity ?? "-";
  const read = await readWhole(journalPath(path));
  const noJournal = (clean: boolean) => ({
    records: [],
    origin: { epoch, identity: `${snapshotIdentity}|${read?.identity ?? "-"}`, snapshotBytes: snapshot?.bytes ?? 0, journalBytes: 0, clean },
  });
  if (read === undefined) return noJournal(true);
  if (epoch === null) return noJournal(false);
  const records: unknown[] = [];
  const data = read.data;
  let at = 0;
  let header = true;
  while (at < data.length) {
    const end = data.indexOf(0x0a, at);
    if (end < 0) break;
    const record = decodeLine(data.subarray(at, end));
    if (record === undefined) break;
    if (header) {
      if ((record as { epoch?: unknown } | null)?.epoch !== epoch) return noJournal(false);
      header = false;
    } else {
      records.push(record);
    }
    at = end + 1;
  }
  if (header) return noJournal(false);
  return {
    records,
    origin: { epoch, identity: `${snapshotIdentity}|${read.identity}`, snapshotBytes: snapshot?.bytes ?? 0, journalBytes: at, clean: at === data.length },
  };
}

/**
 * A journal record: an object whose fields are JSON values, or lists given as any iterable
 * (an array, a generator), which are encoded an item at a time.
 */
export type JournalRecord = Record<string, unknown>;

/**
 * Appends `record` to the journal of `path`, durably, when the files on disk are still those
 * `origin` describes and the journal is not due for compaction. Returns the new origin, or null
 * when the caller must write a whole snapshot instead. A record too large for the journal is
 * found so while it is encoded, and never encoded whole: the first sync of a large tree changes
 * every entry, and its record would be as large as the snapshot.
 *
 * @param midAppend the fault point between the two halves of the record (crash tests)
 */
export async function appendRecord(path: string, origin: JournalOrigin | undefined, record: JournalRecord, midAppend?: FaultPoint): Promise<JournalOrigin | null> {
  if (origin === undefined || origin.epoch === null || !origin.clean) return null;
  const limit = Math.max(COMPACT_FLOOR_BYTES, origin.snapshotBytes * COMPACT_SHARE);
  const line = encodeLine(record, limit - origin.journalBytes);
  if (line === null) return null;
  const journalBytes = origin.journalBytes + line.length;
  if (journalBytes > limit) return null;
  const paths = journaledPaths(path);
  if (filesIdentity(paths) !== origin.identity) return null;
  if (origin.journalBytes === 0) {
    // A new journal appears whole, header and first record, or not at all.
    const header = encodeLine({ epoch: origin.epoch })!;
    await writeFileAtomic(paths[1], Buffer.concat([header, line]), { mode: 0o600 });
    return { ...origin, identity: filesIdentity(paths) ?? "", journalBytes: header.length + line.length };
  }
  const handle = await open(paths[1], "a", 0o600);
  try {
    // Written in two halves only so that the crash test can stop between them (a torn record).
    const half = line.length >> 1;
    await writeAll(handle, line.subarray(0, half));
    if (midAppend !== undefined) faultPoint(midAppend);
    await writeAll(handle, line.subarray(half));
    await handle.sync();
  } finally {
    await handle.close();
  }
  return { ...origin, identity: filesIdentity(paths) ?? "", journalBytes };
}

/**
 * Writes a whole new snapshot crash-safely (temp, fsync, rename: the rename is the commit
 * point), under a new epoch, then removes the old journal. `encode` gets the epoch to store in
 * the snapshot's `journal` field; it may return the text in pieces (see fs-atomic.ts `FileData`),
 * so that a whole tree's snapshot is never one string in memory.
 *
 * @param faults the fault points (crash tests) while the snapshot is written (`midWrite`: its
 *   first pieces handed to the writer, the temp file not renamed) and between the rename and the
 *   journal's removal (`beforeReset`)
 */
export async function writeSnapshot(path: string, encode: (epoch: string) => FileData, faults: { midWrite?: FaultPoint; beforeReset?: FaultPoint } = {}): Promise<JournalOrigin> {
  const { midWrite, beforeReset } = faults;
  const epoch = randomBytes(8).toString("hex");
  const data = encode(epoch);
  const snapshotBytes = await writeFileAtomic(path, midWrite === undefined || typeof data === "string" || data instanceof Uint8Array ? data : faultAfterFirstPieces(data, midWrite), { mode: 0o600 });
  if (beforeReset !== undefined) faultPoint(beforeReset);
  // Not made durable: a journal that comes back after a power cut names the old epoch and is ignored.
  await rm(journalPath(path), { force: true });
  const paths = journaledPaths(path);
  return { epoch, identity: filesIdentity(paths) ?? "", snapshotBytes, journalBytes: 0, clean: true };
}

/** `pieces`, with the fault point reached once the first two have been handed on. */
function* faultAfterFirstPieces(pieces: Iterable<string | Uint8Array>, point: FaultPoint): Generator<string | Uint8Array> {
  let count = 0;
  for (const piece of pieces) {
    yield piece;
    if (++count === 2) faultPoint(point);
  }
}

/** The journal line of `record`; null when it would be longer than `maxBytes`. */
function encodeLine(record: JournalRecord, maxBytes = Infinity): Buffer | null {
  const text = recordJson(record, maxBytes);
  if (text === null) return null;
  const json = Buffer.from(text, "utf8");
  return Buffer.concat([Buffer.from(`${checksumOf(json)} `, "latin1"), json, Buffer.from("\n", "latin1")]);
}

/**
 * The JSON text of a record (its lists encoded an item at a time), or null as soon as it is
 * longer than `maxLength` characters (a character is at least one byte of UTF-8, so such a text
 * is longer than that many bytes too).
 */
function recordJson(record: JournalRecord, maxLength: number): string | null {
  const parts: string[] = [];
  let length = 2;
  const add = (text: string): boolean => {
    parts.push(text);
    length += text.length;
    return length <= maxLength;
  };
  for (const [key, value] of Object.entries(record)) {
    // As JSON.stringify does: a field without a value is left out.
    if (value === undefined) continue;
    if (!add(`${parts.length === 0 ? "" : ","}${JSON.stringify(key)}:`)) return null;
    if (typeof value !== "object" || value === null || !(Symbol.iterator in value)) {
      if (!add(JSON.stringify(value))) return null;
      continue;
    }
    let first = true;
    if (!add("[")) return null;
    for (const item of value as Iterable<unknown>) {
      if (!add(`${first ? "" : ","}${JSON.stringify(item) ?? "null"}`)) return null;
      first = false;
    }
    if (!add("]")) return null;
  }
  return `{${parts.join("")}}`;
}

/** A record's checksum as its line starts with it: crc32 in 8 hex digits. */
function checksumOf(json: Uint8Array): string {
  return crc32(json).toString(16).padStart(8, "0");
}

/** The record of one line, or undefined when the line is torn or damaged. */
function decodeLine(line: Buffer): unknown {
  if (line.length < 10 || line[8] !== 0x20) return undefined;
  const json = line.subarray(9);
  if (line.toString("latin1", 0, 8) !== checksumOf(json)) return undefined;
  try {
    return JSON.parse(json.toString("utf8"));
  } catch {
    return undefined;
  }
}

/** The bytes of the file at `path` and its identity from the same handle; undefined: no file. */
async function readWhole(path: string): Promise<{ data: Buffer; identity: string } | undefined> {
  const handle = await openIfExists(path);
  if (handle === undefined) return undefined;
  try {
    const stats = await handle.stat({ bigint: true });
    const data = await handle.readFile();
    return { data, identity: identityOfStats(stats) };
  } finally {
    await handle.close();
  }
}

/** The file at `path` open for reading; undefined when there is none. */
async function openIfExists(path: string): Promise<FileHandle | undefined> {
  try {
    return await open(path, "r");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}
