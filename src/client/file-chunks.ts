/**
 * Reading a scanned file's chunks back, each checked against the scan's hashes: what an upload
 * sends (bundle-build.ts, on the push's worker threads). It is kept apart from the scanner so
 * that a worker loads only this, Node's fs and xxhash, not the scanner's ignore rules, stat
 * cache and zod schemas (about 14 MiB of every worker's memory for zod alone).
 */
import { closeSync, constants as fsConstants, openSync, readSync } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { CwsError } from "../errors.ts";
import { createXxh64, xxh64Hex } from "../core/hash.ts";
import { chunkId } from "../core/chunk-id.ts";
import type { ManifestEntry } from "../core/manifest.ts";

/** The size of each read, in bytes: large enough for few system calls, small enough to hold 4 of. */
export const READ_BUFFER_BYTES = 1024 * 1024;

// Opening with O_NOFOLLOW makes a file swapped for a symlink after the walk fail instead of
// being followed, and O_NONBLOCK keeps a file swapped for a FIFO from blocking the open (it has
// no effect on regular files). Windows has neither flag (0 there); the walk's lstat must do.
export const OPEN_FLAGS = fsConstants.O_RDONLY | (fsConstants.O_NOFOLLOW ?? 0) | (fsConstants.O_NONBLOCK ?? 0);

/**
 * One buffer that chunks are read into, one after another, for a consumer that is done with
 * each chunk before it asks for the next (a streamed bundle copies or compresses it at once).
 * Fresh buffers per chunk (up to 256 KiB) or small file (up to 1 MiB) outlived the young
 * generation of a push worker and piled up in its memory until a full collection.
 */
export class ChunkScratch {
  #buffer: Uint8Array | undefined;

  /** `length` bytes of the kept buffer (its content is not cleared), valid until the next call. */
  take(length: number): Uint8Array {
    if (this.#buffer === undefined || this.#buffer.byteLength < length) this.#buffer = new Uint8Array(Math.max(length, READ_BUFFER_BYTES + 1));
    return this.#buffer.subarray(0, length);
  }
}

/**
 * Reads a file and yields its chunks by the lengths in `entry.chunks`, verifying each xxh64 and
 * at the end the whole file's. Each yielded `data` is a fresh buffer the consumer may keep,
 * or with `scratch` a view of its buffer, valid until the next chunk is asked for.
 *
 * @throws {CwsError} CORRUPT when the content differs from the entry (the file changed since
 *   the scan), NOT_FOUND when the file no longer exists.
 */
export async function* readFileChunks(absPath: string, entry: ManifestEntry, scratch?: ChunkScratch): AsyncGenerator<{ id: string; data: Uint8Array }> {
  if (entry.kind !== "file") throw new TypeError(`readFileChunks() needs a file entry, got a ${entry.kind}: ${entry.path}`);
  if (entry.size < READ_BUFFER_BYTES) {
    // Small files are read whole with synchronous calls, as the scanner does, for the same reason.
    yield* smallFileChunks(entry, readSmallFileSync(absPath, entry, scratch));
    return;
  }
  let handle: FileHandle;
  try {
    handle = await open(absPath, OPEN_FLAGS);
  } catch (error) {
    throw isErrno(error, "ENOENT") ? vanishedSinceScan(entry, error) : error;
  }
  try {
    const whole = createXxh64();
    let position = 0;
    for (const ref of entry.chunks) {
      const [expected, length] = ref;
      // A fresh buffer per chunk unless the consumer is done with each one first: it may keep it.
      const data = scratch?.take(length) ?? new Uint8Array(length);
      const got = await readFully(handle, data, position);
      const actual = xxh64Hex(data.subarray(0, got));
      if (got !== length || actual !== expected) {
        throw changedSinceScan(entry, `chunk at byte ${position} should be ${length} bytes with xxh64 ${expected}, found ${got} bytes with xxh64 ${actual}`);
      }
      whole.update(data);
      position += length;
      yield { id: chunkId(ref), data };
    }
    // One byte more than the entry's size means the file grew since the scan.
    const probe = new Uint8Array(1);
    if ((await readFully(handle, probe, position)) !== 0) {
      throw changedSinceScan(entry, `it is longer than the ${entry.size} bytes scanned`);
    }
    const wholeHash = whole.digestHex();
    if (wholeHash !== entry.hash) {
      throw changedSinceScan(entry, `its xxh64 is ${wholeHash}, the scan found ${entry.hash}`);
    }
  } finally {
    await handle.close();
  }
}

/** Reads a small file whole into a fresh buffer (or `scratch`'s), one byte longer than expected to notice growth. */
function readSmallFileSync(absPath: string, entry: ManifestEntry, scratch: ChunkScratch | undefined): Uint8Array {
  let fd: number;
  try {
    fd = openSync(absPath, OPEN_FLAGS);
  } catch (error) {
    throw isErrno(error, "ENOENT") ? vanishedSinceScan(entry, error) : error;
  }
  try {
    const content = scratch?.take(entry.size + 1) ?? new Uint8Array(entry.size + 1);
    let filled = 0;
    for (;;) {
      const bytesRead = readSync(fd, content, filled, content.length - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
      if (filled === content.length) break;
    }
    return content.subarray(0, filled);
  } finally {
    closeSync(fd);
  }
}

/** Checks a small file's content against its entry, then yields its chunks as views of it. */
function* smallFileChunks(entry: ManifestEntry, content: Uint8Array): Generator<{ id: string; data: Uint8Array }> {
  if (content.length !== entry.size) {
    throw changedSinceScan(entry, `it is ${content.length > entry.size ? "longer" : "shorter"} than the ${entry.size} bytes scanned`);
  }
  const wholeHash = xxh64Hex(content);
  if (wholeHash !== entry.hash) throw changedSinceScan(entry, `its xxh64 is ${wholeHash}, the scan found ${entry.hash}`);
  let position = 0;
  for (const ref of entry.chunks) {
    const [expected, length] = ref;
    const data = content.subarray(position, position + length);
    const actual = xxh64Hex(data);
    if (actual !== expected) {
      throw changedSinceScan(entry, `chunk at byte ${position} should have xxh64 ${expected}, found ${actual}`);
    }
    position += length;
    yield { id: chunkId(ref), data };
  }
}

// When the file was deleted between the scan and the read (e.g. the upload).
function vanishedSinceScan(entry: ManifestEntry, cause: unknown): CwsError {
  return new CwsError("NOT_FOUND", `Cannot read "${entry.path}" as it no longer exists; scan again and retry`, {
    cause,
    data: { path: entry.path },
  });
}

// When a file's content no longer matches what the scan recorded.
function changedSinceScan(entry: ManifestEntry, detail: string): CwsError {
  return new CwsError("CORRUPT", `Cannot read "${entry.path}" as it changed since it was scanned (${detail}); scan again and retry`, {
    data: { path: entry.path },
  });
}

/** Reads into `target` from `position` until it is full or the file ends; returns the bytes read. */
async function readFully(handle: FileHandle, target: Uint8Array, position: number): Promise<number> {
  let filled = 0;
  while (filled < target.length) {
    const { bytesRead } = await handle.read(target, filled, target.length - filled, position + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return filled;
}

export function isErrno(error: unknown, code: string): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === code;
}
