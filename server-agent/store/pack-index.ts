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
 * Parses and checks an index read from disk.
 *
 * @throws CwsError CORRUPT when anything is off: size, magic, checksum, order, or an entry
 *   that does not fit in the pack.
 */
export function parsePackIndex(bytes: Uint8Array, pack: string): { packBytes: number; entries: PackEntry[] } {
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
  const entries: PackEntry[] = [];
  let previous = "";
  let previousLength = -1;
  for (let at = HEADER_BYTES; at < end; at += ENTRY_BYTES) {
    const hash = buffer.toString("hex", at, at + 8);
    const rawLength = buffer.readUInt32BE(at + 8);
    const offset = readU64(buffer, at + 12);
    const storedLength = buffer.readUInt32BE(at + 20);
    const flags = buffer.readUInt8(at + 24);
    if (hash < previous || (hash === previous && rawLength <= previousLength)) throw fail("its entries are not sorted");
    if (rawLength > MAX_CHUNK_BYTES || storedLength > rawLength + MAX_STORED_OVERHEAD_BYTES) throw fail(`entry ${hash} has impossible lengths`);
    if (flags !== 0 && flags !== FLAG_ZSTD) throw fail(`entry ${hash} has unknown flags`);
    if (offset < BUNDLE_MAGIC.byteLength || offset + RECORD_HEADER_BYTES + storedLength > packBytes - END_RECORD_BYTES) {
      throw fail(`entry ${hash} points outside the pack`);
    }
    entries.push({ id: `${hash}-${rawLength}`, pack, offset, storedLength, flags });
    previous = hash;
    previousLength = rawLength;
  }
  return { packBytes, entries };
}

function writeU64(buffer: Buffer, value: number, at: number): void {
  buffer.writeUInt32BE(Math.floor(value / 2 ** 32), at);
  buffer.writeUInt32BE(value >>> 0, at + 4);
}

function readU64(buffer: Buffer, at: number): number {
  // Pack sizes stay far below 2^53, so a Number is exact.
  return buffer.readUInt32BE(at) * 2 ** 32 + buffer.readUInt32BE(at + 4);
}
