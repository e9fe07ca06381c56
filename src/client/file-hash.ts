/**
 * Reading and hashing one file of a scan with synchronous calls: its chunks (content-defined,
 * each with its xxh64), its whole-content xxh64 and the stat it was read under. The scan's
 * main thread uses it for files smaller than one read buffer, and its hashing thread
 * (scan-hash-pool.ts) for files of any size, so both produce the same entries.
 *
 * The stat of the open file is taken before and after reading; when they differ, or the bytes
 * read differ from the size, the file changed while it was read and is read again, a few
 * times at most. Every failure is an outcome (a reason for the scan's problems), never a throw.
 */
import { closeSync, fstatSync, openSync, readSync, type Stats } from "node:fs";
import { Chunker, chunkLengths } from "../core/chunker.ts";
import { createXxh64, xxh64Hex } from "../core/hash.ts";
import type { ChunkRef } from "../core/manifest.ts";
import { isErrno, OPEN_FLAGS } from "./file-chunks.ts";

/** How often a file that changes while it is being read is read again before it is reported. */
export const MAX_READ_ATTEMPTS = 3;

/** The stat fields an entry and the stat cache use (plain, so that they cross to another thread). */
export interface FileStat {
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  ino: number;
  mode: number;
}

/** What hashing one file found, or why it could not. */
export type HashOutcome =
  | { ok: true; stat: FileStat; hash: string; chunks: ChunkRef[] }
  | { ok: false; reason: string };

/**
 * Reads and hashes a file smaller than `buffer` in one read. Returns undefined when the file
 * turns out not to fit the buffer, so that the caller streams it instead.
 */
export function hashSmallFileSync(absPath: string, buffer: Buffer): HashOutcome | undefined {
  return readingOpenFile(absPath, (fd, before) => readWhole(fd, before, buffer));
}

/**
 * Reads and hashes a file of any size through `buffer` and `chunker` (reset first, so whatever
 * an earlier file left in it does not matter): in one read when it fits the buffer, else
 * streamed, on the same descriptor. For a thread that may block on its reads.
 */
export function hashFileSync(absPath: string, buffer: Buffer, chunker: Chunker): HashOutcome {
  return readingOpenFile(absPath, (fd, before) => readWhole(fd, before, buffer) ?? readStreamed(fd, before, buffer, chunker))!;
}

/** A file that fits `buffer`, in one positioned read; undefined when it does not fit. */
function readWhole(fd: number, before: Stats, buffer: Buffer): HashOutcome | typeof CHANGED | undefined {
  if (before.size >= buffer.length) return undefined;
  // One read of the whole buffer: a short read of a regular file means end of file.
  const length = readSync(fd, buffer, 0, buffer.length, 0);
  if (length === buffer.length) return undefined;
  if (length !== before.size || !sameStat(before, fstatSync(fd))) return CHANGED;
  const content = buffer.subarray(0, length);
  const chunks: ChunkRef[] = [];
  let offset = 0;
  for (const chunkLength of chunkLengths(content)) {
    chunks.push([xxh64Hex(content.subarray(offset, offset + chunkLength)), chunkLength]);
    offset += chunkLength;
  }
  return { ok: true, stat: statFields(before), hash: xxh64Hex(content), chunks };
}

/**
 * A file of any size, read from its start in buffer-sized pieces through `chunker` (positioned
 * reads, so a readWhole before it on the same descriptor changes nothing).
 */
function readStreamed(fd: number, before: Stats, buffer: Buffer, chunker: Chunker): HashOutcome | typeof CHANGED {
  const whole = createXxh64();
  chunker.finish();
  const chunks: ChunkRef[] = [];
  let total = 0;
  try {
    for (;;) {
      const bytesRead = readSync(fd, buffer, 0, buffer.length, total);
      if (bytesRead === 0) break;
      const piece = buffer.subarray(0, bytesRead);
      whole.update(piece);
      pushChunkRefs(chunker, piece, chunks);
      total += bytesRead;
    }
  } finally {
    finishChunkRefs(chunker, chunks);
  }
  if (total !== before.size || !sameStat(before, fstatSync(fd))) return CHANGED;
  return { ok: true, stat: statFields(before), hash: whole.digestHex(), chunks };
}

/**
 * Pushes `piece` through `chunker` and appends the reference (xxh64, length) of each chunk it
 * completes to `refs`. The chunks may be views of the caller's read buffer, so they are hashed
 * here, before the next read reuses it.
 */
export function pushChunkRefs(chunker: Chunker, piece: Uint8Array, refs: ChunkRef[]): void {
  for (const chunk of chunker.push(piece)) refs.push([xxh64Hex(chunk), chunk.length]);
}

/** Appends the references of the chunks `chunker` still holds (the file's last) to `refs`, which resets it. */
export function finishChunkRefs(chunker: Chunker, refs: ChunkRef[]): void {
  for (const chunk of chunker.finish()) refs.push([xxh64Hex(chunk), chunk.length]);
}

/** What a reader returns when the file changed while it was read: it is read again. */
const CHANGED = Symbol("changed");

/**
 * Opens `absPath`, checks that it is still a regular file and hands it to `read` with its stat,
 * up to MAX_READ_ATTEMPTS times while `read` finds it changing. Failures become outcomes.
 */
function readingOpenFile(absPath: string, read: (fd: number, before: Stats) => HashOutcome | typeof CHANGED | undefined): HashOutcome | undefined {
  for (let attempt = 1; attempt <= MAX_READ_ATTEMPTS; attempt++) {
    let fd: number;
    try {
      fd = openSync(absPath, OPEN_FLAGS);
    } catch (error) {
      return openFailure(error);
    }
    try {
      const before = fstatSync(fd);
      if (!before.isFile()) return { ok: false, reason: "it is no longer a regular file" };
      const outcome = read(fd, before);
      if (outcome !== CHANGED) return outcome;
    } catch (error) {
      return { ok: false, reason: `it could not be read: ${describe(error)}` };
    } finally {
      closeSync(fd);
    }
  }
  return keptChanging();
}

export function openFailure(error: unknown): HashOutcome {
  if (isErrno(error, "ENOENT") || isErrno(error, "ENOTDIR")) return { ok: false, reason: "it vanished during the scan" };
  if (isErrno(error, "ELOOP")) return { ok: false, reason: "it became a symbolic link during the scan, which cws never follows or syncs" };
  return { ok: false, reason: `it could not be opened: ${describe(error)}` };
}

export function keptChanging(): HashOutcome {
  return { ok: false, reason: `it kept changing while it was read (${MAX_READ_ATTEMPTS} attempts)` };
}

export function sameStat(a: FileStat, b: FileStat): boolean {
  return a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs && a.ino === b.ino;
}

export function statFields(stats: Stats): FileStat {
  return { size: stats.size, mtimeMs: stats.mtimeMs, ctimeMs: stats.ctimeMs, ino: stats.ino, mode: stats.mode };
}

export function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
