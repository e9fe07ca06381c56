/**
 * Content-defined chunking (FastCDC with a gear hash and normalized chunking).
 *
 * The spec, as cws uses it (changing any of it changes every chunk id, so it is part of the
 * storage format):
 *
 * - Sizes: MIN 16 KiB, AVG 64 KiB, MAX 256 KiB. Input shorter than or equal to MIN is one
 *   chunk; empty input is no chunk; only the last chunk of an input may be shorter than MIN.
 * - Gear hash: 32 bits, `h = (h << 1) + GEAR[byte]` (mod 2^32). Because of the shift, `h` depends
 *   only on the last 32 bytes, so a boundary depends only on nearby content and an insertion
 *   moves at most the boundaries next to it.
 * - GEAR is 256 words from mulberry32 seeded with {@linkcode GEAR_SEED} (deterministic, the same
 *   on every device and every run).
 * - For each chunk, the first MIN bytes are skipped without hashing (FastCDC's cut-point
 *   skipping, which is also where most of the speed comes from). The hash starts at 0 at
 *   offset MIN. Up to offset AVG a byte ends the chunk when `h & MASK_S == 0` (18 bits: harder
 *   to hit); from AVG to MAX when `h & MASK_L == 0` (14 bits: easier). This is FastCDC's
 *   normalized chunking, level 2 (log2(AVG) = 16, plus and minus 2), which pulls chunk sizes
 *   towards AVG. A chunk that reaches MAX bytes is cut there.
 * - The masks use the top bits of `h`, which mix in the most preceding bytes (bit k of `h`
 *   depends on the last k + 1 bytes).
 *
 * Pure: no I/O, no allocations per byte. `chunkLengths` and `Chunker` share one scanning
 * function, so the streaming form gives the same boundaries however the input is split.
 */
import { MAX_CHUNK_BYTES } from "./chunk-id.ts";

/** No chunk except an input's last is shorter than this, in bytes. */
export const MIN_CHUNK_SIZE = 16 * 1024;
/** The size normalized chunking aims for, in bytes. */
export const AVG_CHUNK_SIZE = 64 * 1024;
/** No chunk is longer than this, in bytes; equal to MAX_CHUNK_BYTES of the manifest model. */
export const MAX_CHUNK_SIZE = 256 * 1024;

if (MAX_CHUNK_SIZE !== MAX_CHUNK_BYTES) {
  // A chunker that cuts larger chunks than the manifest accepts would produce unsyncable files.
  throw new Error(`MAX_CHUNK_SIZE ${MAX_CHUNK_SIZE} differs from MAX_CHUNK_BYTES ${MAX_CHUNK_BYTES}`);
}

/** The seed of the gear table ("cws1" in ASCII). Part of the storage format: never change it. */
export const GEAR_SEED = 0x63777331;

// Top 18 and top 14 bits of a 32-bit word, as signed 32-bit ints to match `h`'s arithmetic.
const MASK_S = ~((1 << (32 - 18)) - 1) | 0;
const MASK_L = ~((1 << (32 - 14)) - 1) | 0;

/** mulberry32: a tiny, well-mixed 32-bit PRNG; good enough for a gear table, and fully specified. */
function mulberry32(seed: number): () => number {
  let a = seed | 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) | 0;
  };
}

function makeGear(seed: number): Int32Array {
  const next = mulberry32(seed);
  const table = new Int32Array(256);
  for (let i = 0; i < 256; i++) table[i] = next();
  return table;
}

/** The gear table, exported read-only in spirit so tests can pin it. */
export const GEAR: Int32Array = makeGear(GEAR_SEED);

// findCut's second result (the hash to carry into the next piece), kept in a module variable
// so the hot function can return a plain number without allocating an object.
let carriedHash = 0;

/**
 * Scans `data[pos..end)` for the end of the current chunk, which already holds `size` bytes
 * (from earlier pieces) and whose gear hash is `hash`. Returns the index just after the cut,
 * or -1 when the chunk continues past `end`; then `carriedHash` holds the hash to resume with.
 */
function findCut(data: Uint8Array, pos: number, end: number, size: number, hash: number): number {
  const gear = GEAR;
  let i = pos;
  let h = hash | 0;
  if (size < MIN_CHUNK_SIZE) {
    // Skip the first MIN bytes of the chunk: no boundary may fall there, so no hashing either.
    const need = MIN_CHUNK_SIZE - size;
    if (end - i <= need) {
      carriedHash = 0;
      return -1;
    }
    i += need;
    size = MIN_CHUNK_SIZE;
    h = 0;
  }
  // `base` is where the chunk starts relative to `data` (negative when it began in an earlier
  // piece), so `i - base` is the chunk's size so far.
  const base = i - size;
  let stop = Math.min(end, base + AVG_CHUNK_SIZE);
  for (; i < stop; i++) {
    h = ((h << 1) + gear[data[i]]) | 0;
    if ((h & MASK_S) === 0) return i + 1;
  }
  stop = Math.min(end, base + MAX_CHUNK_SIZE);
  for (; i < stop; i++) {
    h = ((h << 1) + gear[data[i]]) | 0;
    if ((h & MASK_L) === 0) return i + 1;
  }
  if (i - base >= MAX_CHUNK_SIZE) return i;
  carriedHash = h;
  return -1;
}

/**
 * Returns the lengths of the content-defined chunks of `data`, in order. They add up to
 * `data.length`; empty input gives `[]`.
 */
export function chunkLengths(data: Uint8Array): number[] {
  const lengths: number[] = [];
  let pos = 0;
  while (pos < data.length) {
    const cut = findCut(data, pos, data.length, 0, 0);
    if (cut === -1) {
      lengths.push(data.length - pos);
      break;
    }
    lengths.push(cut - pos);
    pos = cut;
  }
  return lengths;
}

/**
 * Streaming chunker: push the input in pieces of any size, get completed chunks back, and call
 * `finish()` at the end for the last one. The boundaries equal `chunkLengths` of the whole input.
 *
 * Memory: the chunker never keeps a reference to a pushed buffer; the unfinished tail (less
 * than MAX_CHUNK_SIZE bytes) is copied into an internal buffer. A returned chunk is either a view
 * into the buffer just pushed (valid until the caller reuses that buffer) or a fresh copy when it
 * spans pieces. So a caller may reuse one read buffer, as long as it consumes the returned chunks
 * before the next read.
 */
export class Chunker {
  #pending: Uint8Array | undefined;
  #pendingLength = 0;
  #hash = 0;

  /** Feeds the next piece of input; returns the chunks it completed, in order. */
  push(bytes: Uint8Array): Uint8Array[] {
    const chunks: Uint8Array[] = [];
    let pos = 0;
    while (pos < bytes.length) {
      const cut = findCut(bytes, pos, bytes.length, this.#pendingLength, this.#hash);
      if (cut === -1) {
        this.#hold(bytes.subarray(pos));
        this.#hash = carriedHash;
        break;
      }
      if (this.#pendingLength === 0) {
        chunks.push(bytes.subarray(pos, cut));
      } else {
        const chunk = new Uint8Array(this.#pendingLength + (cut - pos));
        chunk.set(this.#pending!.subarray(0, this.#pendingLength), 0);
        chunk.set(bytes.subarray(pos, cut), this.#pendingLength);
        chunks.push(chunk);
        this.#pendingLength = 0;
      }
      this.#hash = 0;
      pos = cut;
    }
    return chunks;
  }

  /** Ends the input; returns the last chunk, if any bytes are left, and resets the chunker. */
  finish(): Uint8Array[] {
    if (this.#pendingLength === 0) return [];
    const last = this.#pending!.slice(0, this.#pendingLength);
    this.#pendingLength = 0;
    this.#hash = 0;
    return [last];
  }

  #hold(bytes: Uint8Array): void {
    // findCut cuts at MAX_CHUNK_SIZE, so the unfinished chunk always fits below that size.
    this.#pending ??= new Uint8Array(MAX_CHUNK_SIZE);
    this.#pending.set(bytes, this.#pendingLength);
    this.#pendingLength += bytes.length;
  }
}
