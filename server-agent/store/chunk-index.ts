/**
 * The store's chunk index: which pack holds each chunk, across every loaded pack. An
 * open-addressing hash table in one typed array, keyed on the chunk's hash and raw length,
 * whose buckets name a pack (by its number here) and an entry slot in that pack's
 * `PackEntries`, where the key itself is read back to compare. So a chunk costs 8 bytes of
 * table (at most half full) beside its 25 bytes of index entry, all outside the JavaScript
 * heap: a `Map` from id strings to entry objects held about 150 bytes a chunk in the heap
 * (60,000 chunks after a 50,000-file push: about 9 MiB, marked by every full collection).
 *
 * ```
 * bucket = packNumber + 1 : u32, slot : u32      (0 in the first word: empty)
 * start  = (hashLow ^ rawLength * 0x9e3779b1) & (capacity - 1), then linear probing
 * ```
 *
 * The hash is an xxh64, so its low bits are already uniform. When a chunk is in several packs
 * the first pack added wins (as a `Map` that is only ever added to); removing a pack rebuilds
 * the table from the packs left, in the order they were added.
 */
import type { PackEntries, PackEntry } from "./pack-index.ts";

/** Buckets of a new, empty table (a power of two). */
const MIN_CAPACITY = 1024;

/** The largest length a chunk id spells (up to 7 digits, see parseChunkId). */
const MAX_ID_LENGTH = 9_999_999;

/** Where a chunk is: its pack's entries and its slot in them. */
export interface ChunkSlot {
  entries: PackEntries;
  slot: number;
}

export class ChunkIndex {
  /** Packs by number; a removed pack's number stays free until the next rebuild. */
  #packs: PackEntries[] = [];
  #table = new Uint32Array(MIN_CAPACITY * 2);
  #mask = MIN_CAPACITY - 1;
  #size = 0;

  /** How many distinct chunks the index holds. */
  get size(): number {
    return this.#size;
  }

  /** Adds a pack's entries; a chunk already indexed (in a pack added earlier) keeps its place. */
  add(entries: PackEntries): void {
    const number = this.#packs.length;
    this.#packs.push(entries);
    this.#reserve(this.#size + entries.count);
    for (let slot = 0; slot < entries.count; slot++) this.#insert(number, entries, slot);
  }

  /** Empties the index and adds `packs` in order (after packs were removed). */
  rebuild(packs: Iterable<PackEntries>): void {
    this.#packs = [];
    this.#table = new Uint32Array(MIN_CAPACITY * 2);
    this.#mask = MIN_CAPACITY - 1;
    this.#size = 0;
    for (const entries of packs) this.add(entries);
  }

  /** True if chunk `id` is indexed. */
  has(id: string): boolean {
    return this.#find(id) >= 0;
  }

  /**
   * True if the chunk of this hash (16 lower-case hex digits) and raw length is indexed:
   * `has(chunkId([hash, rawLength]))` without making the id (a commit's walk over a whole tree
   * asks this for each of its 50,000 chunk references).
   */
  holds(hash: string, rawLength: number): boolean {
    if (typeof hash !== "string" || hash.length !== 16 || !Number.isInteger(rawLength) || rawLength < 0 || rawLength > MAX_ID_LENGTH) return false;
    const high = hexWord(hash, 0);
    const low = hexWord(hash, 8);
    return high >= 0 && low >= 0 && this.#table[this.#probe(high, low, rawLength)] !== 0;
  }

  /** Where chunk `id` is, or undefined (also for a string that is not a chunk id). */
  slotOf(id: string): ChunkSlot | undefined {
    const bucket = this.#find(id);
    if (bucket < 0) return undefined;
    return { entries: this.#packs[this.#table[bucket] - 1]!, slot: this.#table[bucket + 1]! };
  }

  /** Chunk `id`'s location as an entry object, or undefined. */
  get(id: string): PackEntry | undefined {
    const found = this.slotOf(id);
    return found === undefined ? undefined : found.entries.entryAt(found.slot, id);
  }

  /** The id of every indexed chunk, once each, in no particular order. */
  ids(): string[] {
    const ids: string[] = [];
    const table = this.#table;
    for (let bucket = 0; bucket < table.length; bucket += 2) {
      if (table[bucket] !== 0) ids.push(this.#packs[table[bucket]! - 1]!.idAt(table[bucket + 1]!));
    }
    return ids;
  }

  /** The bucket (its first word's index) holding `id`, or -1. */
  #find(id: string): number {
    const key = parseChunkId(id);
    if (key === undefined) return -1;
    const bucket = this.#probe(key[0], key[1], key[2]);
    return this.#table[bucket] === 0 ? -1 : bucket;
  }

  #insert(number: number, entries: PackEntries, slot: number): void {
    const bucket = this.#probe(entries.hashHigh(slot), entries.hashLow(slot), entries.rawLength(slot));
    if (this.#table[bucket] !== 0) return; // indexed already, in a pack added earlier
    this.#table[bucket] = number + 1;
    this.#table[bucket + 1] = slot;
    this.#size++;
  }

  /** The bucket holding the chunk with this key, or the empty bucket where it would go. */
  #probe(high: number, low: number, rawLength: number): number {
    const table = this.#table;
    for (let bucket = startBucket(low, rawLength, this.#mask); ; bucket = (bucket + 2) & (table.length - 1)) {
      const number = table[bucket]!;
      if (number === 0) return bucket;
      const entries = this.#packs[number - 1]!;
      const slot = table[bucket + 1]!;
      if (entries.hashLow(slot) === low && entries.hashHigh(slot) === high && entries.rawLength(slot) === rawLength) return bucket;
    }
  }

  /** Grows the table so that `count` chunks leave it at most half full. */
  #reserve(count: number): void {
    let capacity = this.#mask + 1;
    while (count * 2 > capacity) capacity *= 2;
    if (capacity === this.#mask + 1) return;
    const old = this.#table;
    this.#table = new Uint32Array(capacity * 2);
    this.#mask = capacity - 1;
    this.#size = 0;
    for (let bucket = 0; bucket < old.length; bucket += 2) {
      if (old[bucket] !== 0) this.#insert(old[bucket]! - 1, this.#packs[old[bucket]! - 1]!, old[bucket + 1]!);
    }
  }
}

/** The first bucket to probe for a key, as an index of the table's words. */
function startBucket(low: number, rawLength: number, mask: number): number {
  return ((low ^ Math.imul(rawLength, 0x9e3779b1)) & mask) * 2;
}

/**
 * A chunk id's hash (upper and lower 32 bits) and raw length, read without making strings, or
 * undefined if `id` is not `<16 lower-case hex digits>-<1 to 7 digits>` without a leading zero.
 */
export function parseChunkId(id: string): [number, number, number] | undefined {
  if (typeof id !== "string" || id.length < 18 || id.length > 24 || id.charCodeAt(16) !== 45) return undefined;
  // One spelling per chunk: a length with a leading zero names no chunk (ids are made by
  // chunkId, which never writes one), as it named none when the index was a Map of ids.
  if (id.charCodeAt(17) === 48 && id.length > 18) return undefined;
  const high = hexWord(id, 0);
  const low = hexWord(id, 8);
  let rawLength = 0;
  for (let i = 17; i < id.length; i++) {
    const digit = id.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) return undefined;
    rawLength = rawLength * 10 + digit;
  }
  return high < 0 || low < 0 ? undefined : [high, low, rawLength];
}

/** The 8 hex digits of `text` from `at` as an unsigned number, or -1. */
function hexWord(text: string, at: number): number {
  let value = 0;
  for (let i = at; i < at + 8; i++) {
    const c = text.charCodeAt(i);
    const digit = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : -1;
    if (digit < 0) return -1;
    value = value * 16 + digit;
  }
  return value;
}
