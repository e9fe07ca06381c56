import { test } from "node:test";
import assert from "node:assert/strict";
import { isCwsError } from "../../src/errors.ts";
import { xxh64Hex } from "../../src/core/hash.ts";
import { BUNDLE_MAGIC, END_RECORD_BYTES, FLAG_ZSTD, RECORD_HEADER_BYTES } from "../../src/protocol/bundle.ts";
import { ChunkIndex, parseChunkId } from "./chunk-index.ts";
import { encodePackIndex, PackEntries, parsePackIndex } from "./pack-index.ts";
import type { PackEntry } from "./pack-index.ts";

/** A chunk id made of a number, spread over the whole hash like a real xxh64. */
function idOf(n: number, rawLength = 1000 + (n % 7)): string {
  return `${xxh64Hex(Buffer.from(`chunk ${n}`))}-${rawLength}`;
}

/** Entries of a pack of `ids`, records back to back after the pack's magic in their given order. */
function entriesOf(pack: string, ids: readonly string[]): PackEntry[] {
  let offset = BUNDLE_MAGIC.byteLength;
  return ids.map((id, i) => {
    const entry = { id, pack, offset, storedLength: 100 + i, flags: i % 2 === 0 ? 0 : FLAG_ZSTD };
    offset += RECORD_HEADER_BYTES + entry.storedLength;
    return entry;
  });
}

/** The pack's size that fits its entries: the last record, then the end record. */
function packBytesOf(entries: readonly PackEntry[]): number {
  const last = entries[entries.length - 1];
  return (last === undefined ? BUNDLE_MAGIC.byteLength : last.offset + RECORD_HEADER_BYTES + last.storedLength) + END_RECORD_BYTES;
}

/** A pack's entries as the store loads them from its index file. */
function loaded(pack: string, ids: readonly string[]): { entries: PackEntries; objects: PackEntry[] } {
  const objects = entriesOf(pack, ids);
  return { entries: parsePackIndex(encodePackIndex(objects, packBytesOf(objects)), pack).entries, objects };
}

test("ChunkIndex finds each chunk's pack and entry, across packs and past its first table size", () => {
  const index = new ChunkIndex();
  const packs = [0, 1, 2, 3].map((p) => loaded(`${p}`.repeat(16), Array.from({ length: 1500 }, (_, i) => idOf(p * 1500 + i))));
  for (const { entries } of packs) index.add(entries);
  assert.equal(index.size, 6000);
  for (const { objects } of packs) {
    for (const object of objects) {
      assert.equal(index.has(object.id), true);
      assert.deepEqual(index.get(object.id), object);
    }
  }
  assert.equal(index.has(idOf(6000)), false);
  assert.equal(index.get(idOf(6000)), undefined);
  // The same hash with another length is another chunk.
  const [hash, length] = packs[0]!.objects[0]!.id.split("-");
  assert.equal(index.has(`${hash}-${Number(length) + 1}`), false);
  assert.deepEqual(index.ids().sort(), packs.flatMap(({ objects }) => objects.map((object) => object.id)).sort());
});

test("ChunkIndex keeps the first pack's location of a chunk stored twice, lists it once, and moves it when that pack is removed", () => {
  const shared = [idOf(1), idOf(2)];
  const first = loaded("a".repeat(16), [idOf(0), ...shared]);
  const second = loaded("b".repeat(16), [...shared, idOf(3)]);
  const index = new ChunkIndex();
  index.add(first.entries);
  index.add(second.entries);
  assert.equal(index.size, 4);
  assert.deepEqual(index.ids().sort(), [idOf(0), ...shared, idOf(3)].sort());
  for (const id of shared) assert.equal(index.get(id)?.pack, "a".repeat(16));
  // A repack removed the first pack: its chunks found elsewhere now point there, the rest are gone.
  index.rebuild([second.entries]);
  assert.equal(index.size, 3);
  for (const id of shared) assert.deepEqual(index.get(id), second.objects.find((object) => object.id === id));
  assert.equal(index.has(idOf(0)), false);
  index.rebuild([]);
  assert.equal(index.size, 0);
  assert.deepEqual(index.ids(), []);
});

test("ChunkIndex answers no for strings that are not chunk ids, and for another spelling of one", () => {
  const { entries, objects } = loaded("c".repeat(16), [idOf(5, 7), idOf(6, 0)]);
  const index = new ChunkIndex();
  index.add(entries);
  const [hash] = objects[0]!.id.split("-");
  for (const id of [`${hash}-07`, `${hash.toUpperCase()}-7`, `${hash}7`, `${hash}-`, `${hash}-7x`, `${hash.slice(1)}-7`, "", "../../etc-1"]) {
    assert.equal(index.has(id), false, id);
    assert.equal(parseChunkId(id), undefined, id);
  }
  assert.equal(index.has(`${hash}-7`), true);
  assert.equal(index.has(objects[1]!.id), true, "a chunk of length 0");
});

test("ChunkIndex.holds(hash, length) answers as has() of the id they make, without the id", () => {
  const { entries, objects } = loaded("f".repeat(16), Array.from({ length: 1500 }, (_, i) => idOf(i, 1000 + i)));
  const index = new ChunkIndex();
  index.add(entries);
  for (const { id } of objects) {
    const [hash, length] = id.split("-") as [string, string];
    assert.equal(index.holds(hash, Number(length)), true, id);
    assert.equal(index.holds(hash, Number(length) + 1), false, `${id} with another length`);
  }
  const [hash, length] = objects[1]!.id.split("-") as [string, string];
  // What no id spells: another hash, a hash that is not 16 lower-case hex digits, a length
  // that is not a whole number of at most 7 digits.
  for (const [h, n] of [[idOf(5000).slice(0, 16), Number(length)], [hash.toUpperCase(), Number(length)], [hash.slice(1), Number(length)], [`${hash}0`, Number(length)], [`${hash.slice(0, 15)}g`, Number(length)], [hash, Number(length) + 0.5], [hash, -1], [hash, 10_000_000], [hash, Number.NaN]] as Array<[string, number]>) {
    assert.equal(index.holds(h, n), false, `${h} ${n}`);
    assert.equal(index.holds(h, n), index.has(`${h}-${n}`), `${h} ${n}`);
  }
});

test("PackEntries round-trips an index's entries, sorted, as objects", () => {
  const ids = [idOf(9), idOf(3), idOf(4)];
  const objects = entriesOf("d".repeat(16), ids);
  const encoded = encodePackIndex(objects, packBytesOf(objects));
  const parsed = parsePackIndex(encoded, "d".repeat(16));
  assert.equal(parsed.packBytes, packBytesOf(objects));
  const sorted = [...objects].sort((a, b) => (a.id < b.id ? -1 : 1));
  assert.deepEqual(parsed.entries.entries(), sorted);
  assert.deepEqual(PackEntries.ofEncoded(encoded, "d".repeat(16)).entries(), sorted);
});

test("parsePackIndex() refuses a damaged index as CORRUPT, even with a valid checksum", () => {
  const pack = "e".repeat(16);
  const objects = entriesOf(pack, [idOf(1), idOf(2), idOf(3)]);
  const packBytes = packBytesOf(objects);
  const good = encodePackIndex(objects, packBytes);
  /** The index with entry `i` changed by `edit`, checksum made valid again. */
  const edited = (i: number, edit: (entry: Buffer) => void): Buffer => {
    const bytes = Buffer.from(good);
    edit(bytes.subarray(20 + i * 25, 20 + (i + 1) * 25));
    bytes.write(xxh64Hex(bytes.subarray(0, bytes.byteLength - 8)), bytes.byteLength - 8, 8, "hex");
    return bytes;
  };
  const sortedIds = objects.map((object) => object.id).sort();
  const cases: Array<[string, Uint8Array, RegExp]> = [
    ["torn", good.subarray(0, good.byteLength - 1), /size does not match/],
    ["a flipped bit", Buffer.from(good).fill(good[30]! ^ 1, 30, 31), /checksum/],
    ["a wrong magic", Buffer.concat([Buffer.from("CWSPIDX2"), good.subarray(8)]), /no valid header/],
    ["two entries swapped", edited(0, (entry) => entry.write(sortedIds[2]!.slice(0, 16), 0, 8, "hex")), /not sorted/],
    ["an entry twice", edited(1, (entry) => good.copy(entry, 0, 20, 20 + 12)), /not sorted/],
    ["unknown flags", edited(1, (entry) => entry.writeUInt8(0x80, 24)), /unknown flags/],
    ["an impossible length", edited(1, (entry) => entry.writeUInt32BE(2 ** 30, 8)), /impossible lengths/],
    ["an entry past the pack's end", edited(2, (entry) => entry.writeUInt32BE(packBytes, 16)), /outside the pack/],
  ];
  for (const [what, bytes, message] of cases) {
    assert.throws(() => parsePackIndex(bytes, pack), (error) => isCwsError(error, "CORRUPT") && message.test(error.message), what);
  }
});
