/**
 * Builds one push bundle: reads the files of one bundle plan, keeps the chunks the plan wants,
 * compresses them and writes the bundle file. It is the CPU-heavy part of a push (zstd), so it
 * runs in the push workers (push-worker.ts) for large pushes and on the main thread for small
 * ones; both call `buildBundle`, so the two paths cannot drift apart.
 */
import { closeSync, constants as fsConstants, fstatSync, openSync, readSync } from "node:fs";
import { BundleWriter, MAX_BUNDLE_RECORDS } from "../protocol/bundle.ts";
import { xxh64Hex } from "../core/hash.ts";
import { chunkId } from "../core/chunk-id.ts";
import type { ManifestEntry } from "../core/manifest.ts";
import { CwsError } from "../errors.ts";
import { ChunkScratch, readFileChunks } from "./file-chunks.ts";

/** File extensions whose content is already compressed: zstd is not even tried on them. */
const INCOMPRESSIBLE = /\.(zst|gz|tgz|zip|7z|xz|bz2|png|jpe?g|gif|webp|mp[34]|mov|pdf|woff2?)$/i;

/** One file of a bundle plan with the way to read its chunks (verified against the entry). */
export interface BundleSource {
  entry: ManifestEntry;
  /**
   * The chunks, each a fresh buffer, or with `scratch` (given when the consumer is done with
   * each chunk before it asks for the next) possibly views of its one buffer.
   */
  read(scratch?: ChunkScratch): AsyncIterable<{ id: string; data: Uint8Array }>;
}

/** A finished bundle file and what it carries. */
export interface BuiltBundle {
  path: string;
  /** Records in the bundle. */
  chunks: number;
  /** Raw bytes of those chunks. */
  raw: number;
  /** Size of the bundle file. */
  bytes: number;
}

/**
 * Writes the chunks of `sources` whose ids are in `wanted` to a new bundle at `path`, each
 * once, in the order met; a streamed bundle (`stream`, when the agent reads them) compresses
 * the small chunks in runs. The bundle is a throw-away copy (the next run rebuilds it after a
 * crash), so it is not fsynced.
 *
 * @throws CwsError CORRUPT / NOT_FOUND when a file changed or vanished since the scan (from the
 *   sources' readers), CORRUPT when a wanted chunk was not met, CANCELLED on `signal`.
 */
export async function buildBundle(path: string, sources: Iterable<BundleSource>, wanted: readonly string[], options: { stream: boolean; signal?: AbortSignal }): Promise<BuiltBundle> {
  const { stream, signal } = options;
  if (wanted.length > MAX_BUNDLE_RECORDS) throw new RangeError(`A bundle plan of ${wanted.length} chunks exceeds ${MAX_BUNDLE_RECORDS}`);
  const left = new Set(wanted);
  const writer = await BundleWriter.create(path, { durable: false, stream });
  // A writer that copies or compresses each chunk at once lets the files be read into one
  // buffer for the whole bundle: fresh buffers per chunk or small file piled up in a push
  // worker's memory until a full collection.
  const scratch = writer.copiesChunks ? new ChunkScratch() : undefined;
  let raw = 0;
  try {
    for (const { entry, read } of sources) {
      const compress = !INCOMPRESSIBLE.test(entry.path);
      for await (const chunk of read(scratch)) {
        if (signal?.aborted) throw new CwsError("CANCELLED", "The push was cancelled; chunks already uploaded are kept on the server");
        // A chunk shared by two files (or twice in one) is sent once.
        if (!left.delete(chunk.id)) continue;
        await writer.add(chunk.id, chunk.data, { compress });
        raw += chunk.data.byteLength;
      }
    }
    if (left.size > 0) {
      throw new CwsError("CORRUPT", `${left.size} chunk(s) could not be read back from the local files: they changed during the sync. Run the sync again.`);
    }
    const { fileBytes, records } = await writer.finish();
    return { path, chunks: records, raw, bytes: fileBytes };
  } catch (error) {
    await writer.abort().catch(() => {});
    throw error;
  }
}

/**
 * A file (or the chunks `from` to `to`, exclusive, of a file too big for one bundle) to read
 * from disk into a bundle.
 */
export interface DiskPart {
  absPath: string;
  entry: ManifestEntry;
  from?: number;
  to?: number;
}

/** The reader of a disk part: the whole file through `readFileChunks`, or just its range. */
export function diskSource(part: DiskPart): BundleSource {
  const { absPath, entry, from, to } = part;
  if (from === undefined || to === undefined) return { entry, read: (scratch) => readFileChunks(absPath, entry, scratch) };
  return { entry, read: (scratch) => readChunkRange(absPath, entry, from, to, scratch) };
}

/**
 * Reads chunks `from` to `to` (exclusive) of a file, verifying each chunk's xxh64 and the
 * file's size. The whole-file hash is not checked (that needs every byte): each part of a file
 * split across bundles checks its own chunks, which is what the server stores.
 *
 * @throws CwsError CORRUPT when the file changed since the scan, NOT_FOUND when it is gone.
 */
export async function* readChunkRange(absPath: string, entry: ManifestEntry, from: number, to: number, scratch?: ChunkScratch): AsyncGenerator<{ id: string; data: Uint8Array }> {
  let fd: number;
  try {
    fd = openSync(absPath, fsConstants.O_RDONLY | (fsConstants.O_NOFOLLOW ?? 0));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") {
      throw new CwsError("NOT_FOUND", `Cannot read "${entry.path}" as it no longer exists; scan again and retry`, { cause: error, data: { path: entry.path } });
    }
    throw error;
  }
  try {
    const size = fstatSync(fd).size;
    if (size !== entry.size) throw changedSinceScan(entry, `it has ${size} bytes, the scan found ${entry.size}`);
    let position = 0;
    for (let i = 0; i < from; i++) position += entry.chunks[i][1];
    for (let i = from; i < to; i++) {
      const ref = entry.chunks[i];
      const [expected, length] = ref;
      // A fresh buffer per chunk (a plain bundle's writer keeps it until its next flush), unless `scratch`.
      const data = scratch?.take(length) ?? new Uint8Array(length);
      let filled = 0;
      while (filled < length) {
        const got = readSync(fd, data, filled, length - filled, position + filled);
        if (got === 0) break;
        filled += got;
      }
      const actual = xxh64Hex(data.subarray(0, filled));
      if (filled !== length || actual !== expected) {
        throw changedSinceScan(entry, `chunk at byte ${position} should be ${length} bytes with xxh64 ${expected}, found ${filled} bytes with xxh64 ${actual}`);
      }
      position += length;
      yield { id: chunkId(ref), data };
    }
  } finally {
    closeSync(fd);
  }
}

function changedSinceScan(entry: ManifestEntry, detail: string): CwsError {
  return new CwsError("CORRUPT", `Cannot read "${entry.path}" as it changed since it was scanned (${detail}); scan again and retry`, {
    data: { path: entry.path },
  });
}
