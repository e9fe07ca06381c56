/**
 * Chunk ids and the chunk size limit, without the manifest's zod schemas: the bundle format
 * and the workers of a push or pull need these, and a worker thread that loads zod pays about
 * 14 MiB for it. manifest.ts re-exports them for everyone else.
 */

/** The largest chunk the chunker may emit, in bytes. Larger chunks from a peer are refused. */
export const MAX_CHUNK_BYTES = 256 * 1024;

/** One chunk reference: its xxh64 (16 hex digits) and its length in bytes (manifest.ts has the schema). */
export type ChunkRefTuple = [hash: string, length: number];

/** The id under which a chunk is stored: its hash and length, so equal hashes of different lengths never collide. */
export function chunkId([hash, length]: ChunkRefTuple): string {
  return `${hash}-${length}`;
}

export function parseChunkId(id: string): ChunkRefTuple {
  const match = /^([0-9a-f]{16})-(\d{1,7})$/.exec(id);
  if (match === null) throw new TypeError(`Not a chunk id: ${JSON.stringify(id)}`);
  return [match[1]!, Number(match[2])];
}
