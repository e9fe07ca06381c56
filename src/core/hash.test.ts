import { test } from "node:test";
import assert from "node:assert/strict";
import xxhash from "xxhash-wasm";
import { HASH_PIECE_BYTES, createXxh64, initHash, xxh64Hex } from "./hash.ts";

const utf8 = (s: string) => new TextEncoder().encode(s);

test("xxh64Hex() matches the published xxh64 vectors (seed 0)", () => {
  const vectors: Array<[string, string]> = [
    ["", "ef46db3751d8e999"],
    ["a", "d24ec4f1a98c6e5b"],
    ["abc", "44bc2cf5ad770999"],
    ["The quick brown fox jumps over the lazy dog", "0b242d361fda71bc"],
  ];
  for (const [input, expected] of vectors) assert.equal(xxh64Hex(utf8(input)), expected, JSON.stringify(input));
});

test("xxh64Hex() zero-pads to 16 lower-case hex digits", () => {
  // xxh64("49") starts with a zero nibble, so a missing padStart would give 15 digits.
  assert.equal(xxh64Hex(utf8("49")), "0bfbbc8d2c79f71e");
  for (let i = 0; i < 200; i++) assert.match(xxh64Hex(utf8(String(i))), /^[0-9a-f]{16}$/);
});

test("xxh64Hex() hashes a view, not its whole underlying buffer", () => {
  const buffer = utf8("xxabcxx");
  assert.equal(xxh64Hex(buffer.subarray(2, 5)), xxh64Hex(utf8("abc")));
});

test("createXxh64() gives the one-shot digest however the input is split", async () => {
  await initHash(); // idempotent: the module already initialised itself on import
  const data = new Uint8Array(3 * HASH_PIECE_BYTES + 12345);
  for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
  const reference = (await xxhash()).h64Raw(data, 0n).toString(16).padStart(16, "0");
  assert.equal(xxh64Hex(data), reference, "pieced one-shot of a large input");
  for (const piece of [7, 1000, 65536, HASH_PIECE_BYTES + 1, data.length]) {
    const hasher = createXxh64();
    for (let offset = 0; offset < data.length; offset += piece) hasher.update(data.subarray(offset, offset + piece));
    assert.equal(hasher.digestHex(), reference, `pieces of ${piece}`);
  }
});

test("createXxh64() hashers can be interleaved", () => {
  const a = createXxh64();
  const b = createXxh64();
  a.update(utf8("The quick brown fox "));
  b.update(utf8("a"));
  a.update(utf8("jumps over the lazy dog"));
  b.update(utf8("bc"));
  assert.equal(a.digestHex(), "0b242d361fda71bc");
  assert.equal(b.digestHex(), "44bc2cf5ad770999");
  assert.equal(createXxh64().digestHex(), "ef46db3751d8e999");
});
