/**
 * The index of a pack file: which chunks it holds and where. Written after its pack, with a
 * checksum, so a torn or damaged index is detected instead of trusted.
 *
 * ```
 * index  = magic count:u32 packBytes:u64 entry{count} checksum:u64    big-endian
 * magic  = "CWSPIDX1"
 * entry  = hash:u64 rawLength:u32 offset:u64 storedLength:u32 flags:u8   (25 bytes)
 * ```
 *
 * - Entries are sorted by (hash, rawLength) without duplicates.
 * - `offset` is the offset of the record's header in the pack (a bundle-format file), so a
 *   reader can check the header against the entry before trusting the stored bytes.
 * - `packBytes` is the pack's exact size: an index paired with a truncated pack is refused.
 * - `checksum` is the xxh64 of every byte before it.
 */
import { CwsError } from "../../src/errors.ts";
import { xxh64Hex } from "../../src/core/hash.ts";
import { MAX_CHUNK_BYTES } from "../../src/core/manifest.ts";
import { BUNDLE_MAGIC, END_RECORD_BYTES, FLAG_ZSTD, MAX_STORED_OVERHEAD_BYTES, RECORD_HEADER_BYTES } from "../../src/protocol/bundle.ts";

export const INDEX_MAGIC = Buffer.from("CWSPIDX1", "latin1");
const HEADER_BYTES = INDEX_MAGIC.byteLength + 4 + 8;
const ENTRY_BYTES = 25;
const CHECKSUM_BYTES = 8;

/** Where one chunk sits in one pack. */
export interface PackEntry {
  /** The chunk id, `<hash>-<rawLength>`. */
  id: string;
  /** The pack holding it (its file name without extension). */
  pack: string;
  /** Offset of the record header in the pack. */
  offset: number;
  /** Length of the stored bytes after the header. */
  storedLength: number;
  /** The record's flags. */
  flags: number;
}

/** Encodes an index for the given entries of one pack of `packBytes` bytes. */
export function encodePackIndex(entries: readonly PackEntry[], packBytes: number): Buffer {
  // The sort keys are computed once per entry, not once per comparison.
  const sorted = entries
    .map((entry) => ({ entry, hash: entry.id.slice(0, 16), length: Number(entry.id.slice(17)) }))
    .sort((a, b) => (a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : a.length - b.length))
    .map(({ entry }) => entry);
  const bytes = Buffer.alloc(HEADER_BYTES + sorted.length * ENTRY_BYTES + CHECKSUM_BYTES);
  INDEX_MAGIC.copy(bytes, 0);
  bytes.writeUInt32BE(sorted.length, 8);
  writeU64(bytes, packBytes, 12);
  let at = HEADER_BYTES;
  for (const entry of sorted) {
    const dash = entry.id.indexOf("-");
    bytes.write(entry.id.slice(0, dash), at, 8, "hex");
    bytes.writeUInt32BE(Number(entry.id.slice(dash + 1)), at + 8);
    writeU64(bytes, entry.offset, at + 12);
    bytes.writeUInt32BE(entry.storedLength, at + 20);
    bytes.writeUInt8(entry.flags, at + 24);
    at += ENTRY_BYTES;
  }
  bytes.write(xxh64Hex(bytes.subarray(0, at)), at, CHECKSUM_BYTES, "hex");
  return bytes;
}

/**
 * The entries of one pack, as its index holds them: 25 bytes each, sorted by (hash,
 * rawLength), in one buffer of their own. A chunk's location costs these 25 bytes, not a string
 * and an object per chunk in the JavaScript heap (about 150 bytes, and work for every full
 * collection: 60,000 of them after a 50,000-file push). `PackEntry` objects are made only
 * for the entries a caller asks for.
 */
export class PackEntries {
  /** The pack (its file name without extension). */
  readonly pack: string;
  /** How many entries. */
  readonly count: number;
  readonly #bytes: Buffer;

  /** `bytes` holds checked entries in index order (see parsePackIndex); it is kept, not copied. */
  constructor(pack: string, bytes: Buffer) {
    this.pack = pack;
    this.#bytes = bytes;
    this.count = bytes.byteLength / ENTRY_BYTES;
  }

  /**
   * The entries of an index this process just encoded (encodePackIndex), copied out of it
   * into a buffer of their own.
   */
  static ofEncoded(index: Uint8Array, pack: string): PackEntries {
    return new PackEntries(pack, copyOut(index, HEADER_BYTES, index.byteLength - CHECKSUM_BYTES));
  }

  /** The upper 32 bits of entry `slot`'s hash. */
  hashHigh(slot: number): number {
    return this.#bytes.readUInt32BE(slot * ENTRY_BYTES);
  }

  /** The lower 32 bits of entry `slot`'s hash. */
  hashLow(slot: number): number {
    return this.#bytes.readUInt32BE(slot * ENTRY_BYTES + 4);
  }

  /** The raw length of entry `slot`'s chunk. */
  rawLength(slot: number): number {
    return this.#bytes.readUInt32BE(slot * ENTRY_BYTES + 8);
  }

  /** The chunk id of entry `slot`, `<hash>-<rawLength>`. */
  idAt(slot: number): string {
    const at = slot * ENTRY_BYTES;
    return `${this.#bytes.toString("hex", at, at + 8)}-${this.#bytes.readUInt32BE(at + 8)}`;
  }

  /** Entry `slot` as an object (a new one each call). */
  entryAt(slot: number, id = this.idAt(slot)): PackEntry {
    const at = slot * ENTRY_BYTES;
    return { id, pack: this.pack, offset: readU64(this.#bytes, at + 12), storedLength: this.#bytes.readUInt32BE(at + 20), flags: this.#bytes.readUInt8(at + 24) };
  }

  /** Every entry as an object, in index order (new objects: for maintenance, which reads them all). */
  entries(): PackEntry[] {
    return Array.from({ length: this.count }, (_, slot) => this.entryAt(slot));
  }
}

/**
 * Parses and checks an index read from disk.
 *
 * @throws CwsError CORRUPT when anything is off: size, magic, checksum, order, or an entry
 *   that does not fit in the pack.
 */
export function parsePackIndex(bytes: Uint8Array, pack: string): { packBytes: number; entries: PackEntries } {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fail = (why: string) =>
    new CwsError("CORRUPT", `Cannot load the index of pack "${pack}" as ${why}; run "cws-server verify", then "cws-server gc" to drop it`, {
      data: { pack },
    });
  if (buffer.byteLength < HEADER_BYTES + CHECKSUM_BYTES || !INDEX_MAGIC.equals(buffer.subarray(0, 8))) throw fail("it has no valid header");
  const count = buffer.readUInt32BE(8);
  if (buffer.byteLength !== HEADER_BYTES + count * ENTRY_BYTES + CHECKSUM_BYTES) throw fail(`its size does not match its ${count} entries`);
  const end = buffer.byteLength - CHECKSUM_BYTES;
  if (xxh64Hex(buffer.subarray(0, end)) !== buffer.toString("hex", end)) throw fail("its checksum does not match (torn or damaged)");
  const packBytes = readU64(buffer, 12);
  // The order is checked on the numbers: for fixed-width lower-case hex, the same order as
  // the ids' text, without a string per entry.
  let previousHigh = -1;
  let previousLow = -1;
  let previousLength = -1;
  for (let at = HEADER_BYTES; at < end; at += ENTRY_BYTES) {
    const high = buffer.readUInt32BE(at);
    const low = buffer.readUInt32BE(at + 4);
    const rawLength = buffer.readUInt32BE(at + 8);
    const offset = readU64(buffer, at + 12);
    const storedLength = buffer.readUInt32BE(at + 20);
    const flags = buffer.readUInt8(at + 24);
    if ((high - previousHigh || low - previousLow || rawLength - previousLength) <= 0) throw fail("its entries are not sorted");
    if (rawLength > MAX_CHUNK_BYTES || storedLength > rawLength + MAX_STORED_OVERHEAD_BYTES) throw fail(`entry ${buffer.toString("hex", at, at + 8)} has impossible lengths`);
    if (flags !== 0 && flags !== FLAG_ZSTD) throw fail(`entry ${buffer.toString("hex", at, at + 8)} has unknown flags`);
    if (offset < BUNDLE_MAGIC.byteLength || offset + RECORD_HEADER_BYTES + storedLength > packBytes - END_RECORD_BYTES) {
      throw fail(`entry ${buffer.toString("hex", at, at + 8)} points outside the pack`);
    }
    previousHigh = high;
    previousLow = low;
    previousLength = rawLength;
  }
  return { packBytes, entries: new PackEntries(pack, copyOut(buffer, HEADER_BYTES, end)) };
}

/**
 * Bytes `from`..`to` of `bytes` in a buffer of their own: never a view of a larger buffer (a
 * file read whole) or a slice of Node's shared pool, which would keep all of it alive.
 */
function copyOut(bytes: Uint8Array, from: number, to: number): Buffer {
  const out = Buffer.allocUnsafeSlow(to - from);
  out.set(bytes.subarray(from, to));
  return out;
}

function writeU64(buffer: Buffer, value: number, at: number): void {
  buffer.writeUInt32BE(Math.floor(value / 2 ** 32), at);
  buffer.writeUInt32BE(value >>> 0, at + 4);
}

function readU64(buffer: Buffer, at: number): number {
  // Pack sizes stay far below 2^53, so a Number is exact.
  return buffer.readUInt32BE(at) * 2 ** 32 + buffer.readUInt32BE(at + 4);
}
