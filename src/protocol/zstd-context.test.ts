import assert from "node:assert/strict";
import { test } from "node:test";
import zlib from "node:zlib";
import { ZstdDecoder, ZstdEncoder, ZstdFrameError } from "./zstd-context.ts";

function content(length: number, seed: number): Buffer {
  const bytes = Buffer.alloc(length);
  for (let i = 0; i < length; i++) bytes[i] = ((i * (7919 + seed)) >> 5) & 0xff;
  return bytes;
}

test("ZstdDecoder decodes frame after frame into the same buffer", () => {
  const decoder = new ZstdDecoder();
  const into = Buffer.alloc(300 * 1024);
  for (let seed = 0; seed < 6; seed++) {
    const raw = content(40_000 + seed * 30_000, seed);
    const length = decoder.decode(zlib.zstdCompressSync(raw), into);
    assert.equal(length, raw.byteLength);
    assert.ok(into.subarray(0, length).equals(raw));
  }
});

test("ZstdDecoder refuses invalid, cut-short, too long and trailing input, and decodes the next frame after each", () => {
  const decoder = new ZstdDecoder();
  const raw = content(100_000, 1);
  const frame = zlib.zstdCompressSync(raw);
  const into = Buffer.alloc(raw.byteLength + 1);
  const bad = [
    Buffer.from("not a zstd frame at all"),
    frame.subarray(0, frame.byteLength - 40),
    Buffer.concat([frame, zlib.zstdCompressSync(content(10, 2))]),
  ];
  for (const input of bad) {
    assert.throws(() => decoder.decode(input, into), ZstdFrameError);
    assert.equal(decoder.decode(frame, into), raw.byteLength);
    assert.ok(into.subarray(0, raw.byteLength).equals(raw));
  }
  // Content that fills the buffer may be longer than it: refused, as a caller asks for one byte more than it accepts.
  assert.throws(() => decoder.decode(frame, Buffer.alloc(raw.byteLength)), /longer than/);
  assert.throws(() => decoder.decode(frame, Buffer.alloc(1000)), /longer than/);
  assert.equal(decoder.decode(frame, into), raw.byteLength);
  assert.ok(into.subarray(0, raw.byteLength).equals(raw));
});

test("ZstdEncoder makes frame after frame byte for byte as zstdCompressSync does with room for the whole frame, and says when a frame does not fit its room", () => {
  const encoder = new ZstdEncoder(1);
  const into = Buffer.alloc(400 * 1024);
  const level = { params: { [zlib.constants.ZSTD_c_compressionLevel]: 1 }, chunkSize: into.byteLength };
  for (let seed = 0; seed < 6; seed++) {
    const raw = content(40_000 + seed * 30_000, seed);
    const expected = zlib.zstdCompressSync(raw, level);
    assert.deepEqual(into.subarray(0, encoder.encode(raw, into)), expected);
    // Too little room: no frame; the next one is whole again.
    assert.equal(encoder.encode(raw, into.subarray(0, expected.byteLength)), undefined);
    assert.equal(encoder.encode(raw, into.subarray(0, 100)), undefined);
    assert.deepEqual(into.subarray(0, encoder.encode(raw, into)), expected);
  }
  encoder.close();
  const raw = content(50_000, 9);
  assert.deepEqual(into.subarray(0, encoder.encode(raw, into)), zlib.zstdCompressSync(raw, level), "a new context after close");
});
