/**
 * Hashing a file that only grew at its end, as Codex rollouts (JSONL transcripts) do: a turn is
 * appended, nothing before it changes. Chunking (the gear hash over every byte, and an xxh64 per
 * chunk) costs several times more than the plain xxh64 of the same bytes, so when the stat
 * cache knows the file's last version, the old content is only checked, not chunked again:
 *
 * 1. The file is the same one (same inode) and longer than the cached version.
 * 2. Its first `cached.size` bytes still have the cached whole-file xxh64, `cached.hash`: that
 *    hash, kept from the last scan, is the check that the prefix is unchanged (mtime is not
 *    trusted for it). A mismatch means the file was edited, not appended to: undefined is
 *    returned and the caller hashes it in full.
 * 3. Content-defined boundaries depend only on the bytes since the previous boundary, so every
 *    cached chunk but the last (which ended where the old file ended, not at a content
 *    boundary) is still a chunk of the new content. Only the bytes from the start of that last
 *    chunk on go through the chunker; the result equals chunking the whole file.
 *
 * The push then sends only the new chunks (the server has the others), reading just their
 * range of the file (see push.ts).
 */
import { constants as fsConstants, type Stats } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import type { Chunker } from "../core/chunker.ts";
import { createXxh64 } from "../core/hash.ts";
import type { ChunkRef } from "../core/manifest.ts";
import { finishChunkRefs, pushChunkRefs } from "./file-hash.ts";
import type { StatCacheEntry } from "./stat-cache.ts";

const OPEN_FLAGS = fsConstants.O_RDONLY | (fsConstants.O_NOFOLLOW ?? 0) | (fsConstants.O_NONBLOCK ?? 0);

/** The hashes of the grown file, or undefined when it is not an append of the cached version. */
export interface AppendedHash {
  stat: Stats;
  hash: string;
  chunks: ChunkRef[];
}

/** Whether `stats` may be an append to the cached version (the cheap test before any read). */
export function mayBeAppended(cached: StatCacheEntry | undefined, stats: { size: number; ino: number }): cached is StatCacheEntry {
  return cached !== undefined && cached.chunks.length >= 2 && stats.ino === cached.ino && stats.size > cached.size;
}

/**
 * Hashes `absPath` as an append to `cached` through `buffer` and `chunker`, or returns undefined
 * when it is not one (prefix changed, file replaced or changed while read): the caller then
 * hashes the file in full, which also reports any read problem.
 */
export async function hashAppendedFile(absPath: string, cached: StatCacheEntry, buffer: Buffer, chunker: Chunker, signal: AbortSignal | undefined): Promise<AppendedHash | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(absPath, OPEN_FLAGS);
  } catch {
    return undefined;
  }
  try {
    const before = await handle.stat();
    if (!before.isFile() || !mayBeAppended(cached, before)) return undefined;
    const kept = cached.chunks.slice(0, -1);
    let keptBytes = 0;
    for (const [, length] of kept) keptBytes += length;
    const whole = createXxh64();
    chunker.finish(); // starts from a clean state whatever the last file left
    const chunks: ChunkRef[] = kept;
    let position = 0;
    while (position < before.size) {
      if (signal?.aborted) return undefined;
      // Reads stop at the end of the cached prefix, so its digest can be taken right there.
      const end = position < cached.size ? Math.min(cached.size, position + buffer.length) : position + buffer.length;
      const { bytesRead } = await handle.read(buffer, 0, end - position, position);
      if (bytesRead === 0) break;
      const piece = buffer.subarray(0, bytesRead);
      whole.update(piece);
      if (position + bytesRead > keptBytes) {
        const fresh = position >= keptBytes ? piece : piece.subarray(keptBytes - position);
        pushChunkRefs(chunker, fresh, chunks);
      }
      position += bytesRead;
      // The digest can be read mid-stream: more bytes may follow it.
      if (position === cached.size && whole.digestHex() !== cached.hash) {
        chunker.finish();
        return undefined;
      }
    }
    finishChunkRefs(chunker, chunks);
    const after = await handle.stat();
    if (position !== before.size || after.size !== before.size || after.mtimeMs !== before.mtimeMs || after.ctimeMs !== before.ctimeMs) return undefined;
    return { stat: before, hash: whole.digestHex(), chunks };
  } catch {
    chunker.finish();
    return undefined;
  } finally {
    await handle.close();
  }
}
