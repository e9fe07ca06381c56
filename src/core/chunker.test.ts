import { test } from "node:test";
import assert from "node:assert/strict";
import {
  AVG_CHUNK_SIZE,
  Chunker,
  GEAR,
  MAX_CHUNK_SIZE,
  MIN_CHUNK_SIZE,
  chunkLengths,
} from "./chunker.ts";
import { xxh64Hex } from "./hash.ts";
import { MAX_CHUNK_BYTES } from "./manifest.ts";

/** Deterministic pseudo-random bytes (xorshift32), so every run sees the same data. */
function randomBytes(length: number, seed: number): Uint8Array {
  const data = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    data[i] = x & 0xff;
  }
  return data;
}

/** A seeded integer source for split points. */
function randomInts(seed: number): (below: number) => number {
  let x = seed >>> 0 || 1;
  return (below) => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x % below;
  };
}

/** Chunks `data` through the streaming Chunker, pushing it in the given piece sizes. */
function streamChunks(data: Uint8Array, pieceSize: (offset: number) => number): Uint8Array[] {
  const chunker = new Chunker();
  const out: Uint8Array[] = [];
  let offset = 0;
  while (offset < data.length) {
    const end = Math.min(data.length, offset + Math.max(1, pieceSize(offset)));
    // Copy each piece so that a chunk wrongly kept as a view of an old piece would show up.
    const piece = data.slice(offset, end);
    for (const chunk of chunker.push(piece)) out.push(chunk.slice());
    piece.fill(0xee);
    offset = end;
  }
  out.push(...chunker.finish());
  return out;
}

function chunkHashes(data: Uint8Array): string[] {
  const hashes: string[] = [];
  let offset = 0;
  for (const length of chunkLengths(data)) {
    hashes.push(`${xxh64Hex(data.subarray(offset, offset + length))}-${length}`);
    offset += length;
  }
  return hashes;
}

test("chunk size constants match the spec and the manifest's cap", () => {
  assert.equal(MIN_CHUNK_SIZE, 16 * 1024);
  assert.equal(AVG_CHUNK_SIZE, 64 * 1024);
  assert.equal(MAX_CHUNK_SIZE, 256 * 1024);
  assert.equal(MAX_CHUNK_SIZE, MAX_CHUNK_BYTES);
});

test("chunkLengths() of empty input is no chunk", () => {
  assert.deepEqual(chunkLengths(new Uint8Array()), []);
  const chunker = new Chunker();
  assert.deepEqual(chunker.push(new Uint8Array()), []);
  assert.deepEqual(chunker.finish(), []);
});

test("chunkLengths() keeps input up to the minimum size as one chunk", () => {
  for (const length of [1, 100, MIN_CHUNK_SIZE - 1, MIN_CHUNK_SIZE]) {
    assert.deepEqual(chunkLengths(randomBytes(length, length)), [length], `length ${length}`);
    const chunks = streamChunks(randomBytes(length, length), () => 7);
    assert.deepEqual(
      chunks.map((c) => c.length),
      [length],
      `streamed length ${length}`,
    );
  }
});

test("chunkLengths() keeps every chunk but the last within min and max", () => {
  const inputs = [
    randomBytes(4 * 1024 * 1024, 7),
    // Constant data never matches a mask, so it exercises the cut at MAX.
    new Uint8Array(1024 * 1024 + 123),
    // Low-entropy text, as Markdown and JSONL are.
    new TextEncoder().encode("# Notes\n\n- item one\n- item two\n".repeat(40_000)),
  ];
  for (const data of inputs) {
    const lengths = chunkLengths(data);
    assert.equal(
      lengths.reduce((a, b) => a + b, 0),
      data.length,
    );
    for (const [i, length] of lengths.entries()) {
      assert.ok(length <= MAX_CHUNK_SIZE, `chunk ${i} is ${length} bytes, above max`);
      if (i < lengths.length - 1) assert.ok(length > MIN_CHUNK_SIZE, `chunk ${i} is ${length} bytes, below min`);
    }
  }
  assert.deepEqual(chunkLengths(new Uint8Array(3 * MAX_CHUNK_SIZE)), [MAX_CHUNK_SIZE, MAX_CHUNK_SIZE, MAX_CHUNK_SIZE]);
});

test("chunkLengths() averages near the target size on random data", () => {
  const data = randomBytes(8 * 1024 * 1024, 99);
  const average = data.length / chunkLengths(data).length;
  assert.ok(average > 48 * 1024 && average < 96 * 1024, `average chunk ${Math.round(average)} bytes`);
});

test("chunk boundaries stay put around a 100-byte insertion", () => {
  const original = randomBytes(2 * 1024 * 1024, 1234);
  const insertAt = 1_000_003;
  const edited = new Uint8Array(original.length + 100);
  edited.set(original.subarray(0, insertAt), 0);
  edited.set(randomBytes(100, 5), insertAt);
  edited.set(original.subarray(insertAt), insertAt + 100);

  const before = new Set(chunkHashes(original));
  const after = chunkHashes(edited);
  const changed = after.filter((id) => !before.has(id));
  assert.ok(after.length > 10, "the test data must span many chunks");
  assert.ok(changed.length >= 1, "the chunk holding the insertion must change");
  assert.ok(changed.length <= 2, `${changed.length} chunks changed: ${changed.join(", ")}`);
});

test("Chunker gives the same chunks as chunkLengths() however the input is split", () => {
  const data = randomBytes(3 * 1024 * 1024 + 17, 555);
  const expected = chunkLengths(data);
  const next = randomInts(2024);
  const splits: Array<[string, (offset: number) => number]> = [
    ["random pieces up to 1 MiB", () => next(1024 * 1024)],
    ["random small pieces", () => next(5000)],
    ["pieces of exactly the minimum", () => MIN_CHUNK_SIZE],
    ["pieces of exactly the maximum", () => MAX_CHUNK_SIZE],
    ["one piece", () => data.length],
  ];
  for (const [name, pieceSize] of splits) {
    const chunks = streamChunks(data, pieceSize);
    assert.deepEqual(
      chunks.map((c) => c.length),
      expected,
      name,
    );
    let offset = 0;
    for (const chunk of chunks) {
      assert.ok(Buffer.from(chunk).equals(data.subarray(offset, offset + chunk.length)), `${name}: bytes at ${offset}`);
      offset += chunk.length;
    }
  }
  // Single-byte pushes over a shorter input exercise every carry-over path.
  const short = data.subarray(0, 300 * 1024);
  assert.deepEqual(
    streamChunks(short, () => 1).map((c) => c.length),
    chunkLengths(short),
  );
});

test("Chunker can be reused after finish()", () => {
  const data = randomBytes(500 * 1024, 77);
  const chunker = new Chunker();
  const first = [...chunker.push(data), ...chunker.finish()].map((c) => c.length);
  const second = [...chunker.push(data), ...chunker.finish()].map((c) => c.length);
  assert.deepEqual(first, chunkLengths(data));
  assert.deepEqual(second, first);
});

test("chunkLengths() is deterministic: the gear table and boundaries are pinned", () => {
  // These values are part of the storage format: if this test fails, chunk ids changed.
  assert.deepEqual(
    [...GEAR.subarray(0, 4)].map((v) => (v >>> 0).toString(16)),
    ["7c412bc4", "edf3b2d1", "cef4c978", "25946663"],
  );
  assert.deepEqual(
    chunkLengths(randomBytes(1 << 20, 42)),
    [37758, 19955, 65892, 70317, 101565, 65592, 101352, 77290, 53555, 70286, 68520, 106912, 76740, 79475, 53367],
  );
});
