import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile, readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { zstdDecompressSync } from "node:zlib";
import { isCwsError } from "../errors.ts";
import { xxh64Hex } from "../core/hash.ts";
import { chunkId, MAX_CHUNK_BYTES } from "../core/manifest.ts";
import { BUNDLE_MAGIC, BundleWriter, FLAG_ZSTD, FrameDecoder, keepSpareBuffers, MIN_COMPRESSED_CHUNK_BYTES, RECORD_HEADER_BYTES, RecordDecoder, readBundle, readBundleBytes, releaseSpareBuffers, SpareBuffers, verifyRecord } from "./bundle.ts";
import type { BundleRecord } from "./bundle.ts";

async function tempDir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "cws-bundle-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function idOf(bytes: Uint8Array): string {
  return chunkId([xxh64Hex(bytes), bytes.byteLength]);
}

function text(bytes: number, seed = 0): Uint8Array {
  const line = `# Notes ${seed}\nSome markdown that repeats and therefore compresses well.\n`;
  return Buffer.from(line.repeat(Math.ceil(bytes / line.length)).slice(0, bytes));
}

async function readAll(path: string, options = {}): Promise<BundleRecord[]> {
  return Array.fromAsync(readBundle(path, options));
}

async function writeBundle(path: string, chunks: Uint8Array[]): Promise<void> {
  const writer = await BundleWriter.create(path);
  for (const chunk of chunks) await writer.add(idOf(chunk), chunk);
  await writer.finish();
}

test("readBundle() round-trips compressible and incompressible chunks written by BundleWriter", async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, "a.bundle");
  const chunks = [text(64 * 1024, 1), randomBytes(100_000), text(10, 2), randomBytes(MAX_CHUNK_BYTES), new Uint8Array(0)];
  const writer = await BundleWriter.create(path);
  for (const chunk of chunks) await writer.add(idOf(chunk), chunk);
  const result = await writer.finish();
  assert.equal(result.records, chunks.length);
  assert.equal(result.bytes, (await readFile(path)).byteLength);
  assert.deepEqual(await readdir(dir), ["a.bundle"], "the temp file is renamed away");

  const records = await readAll(path);
  assert.deepEqual(records.map((r) => r.id), chunks.map(idOf));
  for (const [i, record] of records.entries()) {
    assert.deepEqual(Buffer.from(verifyRecord(record)), Buffer.from(chunks[i]));
  }
  // Text compresses, random bytes are stored raw.
  assert.equal(records[0].flags, FLAG_ZSTD);
  assert.ok(records[0].stored.byteLength < 64 * 1024 / 4);
  assert.equal(records[1].flags, 0);
  assert.equal(records[3].flags, 0);
});

test("BundleWriter.add() stores raw when asked not to compress", async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, "raw.bundle");
  const chunk = text(50_000);
  const writer = await BundleWriter.create(path);
  await writer.add(idOf(chunk), chunk, { compress: false });
  await writer.finish();
  const [record] = await readAll(path);
  assert.equal(record.flags, 0);
  assert.deepEqual(Buffer.from(record.raw()), Buffer.from(chunk));
});

test("addStored() copies a record without recompressing it", async (t) => {
  const dir = await tempDir(t);
  const source = join(dir, "source.bundle");
  const copy = join(dir, "copy.bundle");
  await writeBundle(source, [text(30_000), randomBytes(5_000)]);
  const writer = await BundleWriter.create(copy);
  const originals = await readAll(source);
  for (const record of originals) await writer.addStored(record.id, record.flags, record.stored);
  await writer.finish();
  assert.deepEqual(await readFile(copy), await readFile(source));
});

test("readBundle() reads an empty bundle as no records", async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, "empty.bundle");
  await writeBundle(path, []);
  assert.deepEqual(await readAll(path), []);
});

test("readBundle() refuses a bundle cut short anywhere, even at a record boundary", async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, "full.bundle");
  const chunks = [text(20_000), randomBytes(3_000)];
  await writeBundle(path, chunks);
  const full = await readFile(path);
  const firstRecordEnd = BUNDLE_MAGIC.byteLength + RECORD_HEADER_BYTES + (await readAll(path))[0].stored.byteLength;
  for (const cut of [4, 8, 20, firstRecordEnd, full.byteLength - 21, full.byteLength - 2, full.byteLength - 1]) {
    const cutPath = join(dir, `cut-${cut}.bundle`);
    await writeFile(cutPath, full.subarray(0, cut));
    await assert.rejects(readAll(cutPath), (error) => isCwsError(error, "CORRUPT"), `cut at ${cut}`);
  }
});

test("readBundle() refuses a wrong record count and trailing data", async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, "b.bundle");
  await writeBundle(path, [text(1000)]);
  const full = await readFile(path);
  const wrongCount = Buffer.from(full);
  wrongCount.writeUInt32BE(2, wrongCount.byteLength - 4);
  await writeFile(join(dir, "count.bundle"), wrongCount);
  await assert.rejects(readAll(join(dir, "count.bundle")), /declares 2 records but holds 1/);
  await writeFile(join(dir, "trailing.bundle"), Buffer.concat([full, Buffer.from([0])]));
  await assert.rejects(readAll(join(dir, "trailing.bundle")), /data after its end record/);
});

test("readBundle() refuses a file that does not start with the magic", async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, "bad.bundle");
  await writeFile(path, Buffer.from("CWSBNDL2\xff".padEnd(40, "\0"), "latin1"));
  await assert.rejects(readAll(path), (error) => isCwsError(error, "CORRUPT") && /does not start with "CWSBNDL1"/.test(error.message));
});

test("readBundle() refuses an oversize record before allocating it", async (t) => {
  const dir = await tempDir(t);
  const header = Buffer.alloc(RECORD_HEADER_BYTES);
  header.writeUInt8(0, 0);
  header.writeUInt32BE(0xffff_fff0, 9); // a 4 GiB raw length
  header.writeUInt32BE(0xffff_fff0, 13);
  const huge = join(dir, "huge.bundle");
  await writeFile(huge, Buffer.concat([BUNDLE_MAGIC, header]));
  await assert.rejects(readAll(huge), (error) => isCwsError(error, "FRAME_TOO_LARGE") && /chunk limit/.test(error.message));

  // A stored length far beyond its raw length is refused as well.
  header.writeUInt8(FLAG_ZSTD, 0);
  header.writeUInt32BE(100, 9);
  header.writeUInt32BE(200_000, 13);
  const inflated = join(dir, "inflated.bundle");
  await writeFile(inflated, Buffer.concat([BUNDLE_MAGIC, header]));
  await assert.rejects(readAll(inflated), (error) => isCwsError(error, "FRAME_TOO_LARGE"));
});

test("readBundle() refuses more records than maxRecords", async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, "many.bundle");
  await writeBundle(path, [text(10, 1), text(10, 2), text(10, 3)]);
  assert.equal((await readAll(path, { maxRecords: 3 })).length, 3);
  await assert.rejects(readAll(path, { maxRecords: 2 }), (error) => isCwsError(error, "FRAME_TOO_LARGE"));
});

test("verifyRecord() detects a flipped byte in raw and compressed records", async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, "v.bundle");
  await writeBundle(path, [randomBytes(2_000), text(20_000)]);
  const full = await readFile(path);
  const records = await readAll(path);
  for (const record of records) {
    const damaged = Buffer.from(full);
    // Flip a byte in the middle of the record's stored bytes.
    damaged[record.offset + RECORD_HEADER_BYTES + Math.floor(record.stored.byteLength / 2)] ^= 0x40;
    const damagedPath = join(dir, `damaged-${record.offset}.bundle`);
    await writeFile(damagedPath, damaged);
    const reread = (await readAll(damagedPath)).find((r) => r.offset === record.offset)!;
    // The structure is intact; only the content check catches it.
    assert.throws(() => verifyRecord(reread), (error) => isCwsError(error, "CORRUPT"));
  }
});

test("BundleWriter.abort() removes the temp file", async (t) => {
  const dir = await tempDir(t);
  const writer = await BundleWriter.create(join(dir, "x.bundle"));
  await writer.add(idOf(text(100)), text(100));
  await writer.abort();
  assert.deepEqual(await readdir(dir), []);
});

test("BundleWriter.create() refuses to write through an existing temp file", async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, "y.bundle.tmp"), "planted");
  await assert.rejects(BundleWriter.create(join(dir, "y.bundle")), /EEXIST/);
});

test("readBundle() reads every record of a bundle several times larger than its read buffer", async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, "big.bundle");
  const writer = await BundleWriter.create(path);
  const ids: string[] = [];
  for (let i = 0; i < 40; i++) {
    const chunk = randomBytes(100_000);
    ids.push(idOf(chunk));
    await writer.add(ids[i], chunk);
  }
  await writer.finish();
  const seen: string[] = [];
  for await (const record of readBundle(path)) {
    verifyRecord(record);
    seen.push(record.id);
  }
  assert.deepEqual(seen, ids);
});

test("readBundle({ shareBlocks }) yields records that stay intact after the reader moves on", async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, "shared.bundle");
  const chunks: Uint8Array[] = [];
  // Mixed sizes, compressed and not, spanning several 1 MiB read blocks and their edges.
  for (let i = 0; i < 60; i++) chunks.push(i % 3 === 0 ? randomBytes(70_000 + i * 997) : text(50_000 + i * 1013, i));
  await writeBundle(path, chunks);
  // Every record is kept until the end: a reused block would have overwritten earlier ones.
  const records = await readAll(path, { shareBlocks: true });
  assert.deepEqual(records.map((record) => record.id), chunks.map(idOf));
  for (const [i, record] of records.entries()) assert.deepEqual(Buffer.from(verifyRecord(record)), Buffer.from(chunks[i]));
});

test("a streamed bundle of several frames stores small chunks raw, compresses the run of them as a whole, and reads back from a file and from memory", async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, "s.bundle");
  // Many small notes (raw records: below the per-chunk compression size) and one large text chunk.
  const chunks = [...Array.from({ length: 1000 }, (_, i) => text(2000 + i, i)), text(200 * 1024, 999), randomBytes(50_000)];
  const writer = await BundleWriter.create(path, { stream: true, durable: false });
  for (const chunk of chunks) await writer.add(idOf(chunk), chunk);
  const result = await writer.finish();
  const file = await readFile(path);
  assert.equal(result.fileBytes, file.byteLength);
  assert.ok(result.bytes > 2 * 1024 * 1024, "more than one frame");
  assert.ok(file.byteLength < result.bytes / 3, `the stream compresses the raw small records (${file.byteLength} of ${result.bytes} bytes)`);

  for (const records of [await readAll(path), await Array.fromAsync(readBundleBytes(file, "s.bundle"))]) {
    assert.deepEqual(records.map((r) => r.id), chunks.map(idOf));
    for (const [i, record] of records.entries()) assert.deepEqual(Buffer.from(verifyRecord(record)), Buffer.from(chunks[i]));
    assert.equal(records[0].flags, 0, "a small chunk is stored raw");
    assert.ok(chunks[0].byteLength < MIN_COMPRESSED_CHUNK_BYTES);
    assert.equal(records[1000].flags, FLAG_ZSTD, "a large chunk keeps its own frame");
  }
});

test("a streamed bundle with pass-through carries large records in raw zstd frames that any zstd decoder reads, and refuses a raw frame whose blocks do not add up", async (t) => {
  const dir = await tempDir(t);
  // Small notes around a large text chunk (a zstd record) and large incompressible chunks (raw records).
  const compressible = text(200 * 1024, 7);
  const chunks = [...Array.from({ length: 300 }, (_, i) => text(1500 + i, i)), compressible, randomBytes(200_000), text(3000, 1), randomBytes(MAX_CHUNK_BYTES)];
  const plain = join(dir, "plain.bundle");
  await writeBundle(plain, chunks);
  const path = join(dir, "s.bundle");
  const writer = await BundleWriter.create(path, { stream: true, durable: false, passThrough: true });
  for (const chunk of chunks) await writer.add(idOf(chunk), chunk);
  await writer.finish();
  const file = await readFile(path);
  // Without pass-through (for older readers) the large records are compressed with the rest.
  const legacyPath = join(dir, "legacy.bundle");
  const legacy = await BundleWriter.create(legacyPath, { stream: true, durable: false });
  for (const chunk of chunks) await legacy.add(idOf(chunk), chunk);
  await legacy.finish();
  const legacyFile = await readFile(legacyPath);
  assert.deepEqual((await Array.fromAsync(readBundleBytes(legacyFile, "legacy"))).map((r) => r.id), chunks.map(idOf));

  // Every frame is a zstd frame, and their contents make the plain bundle: an older reader,
  // which decompresses every frame with zstd, reads the same records.
  const contents: Buffer[] = [];
  const rawFrameStarts: number[] = [];
  for (let at = 8; at < file.byteLength;) {
    const length = file.readUInt32BE(at);
    if (file[at + 8] === 0xa0) rawFrameStarts.push(at);
    contents.push(zstdDecompressSync(file.subarray(at + 4, at + 4 + length)));
    at += 4 + length;
  }
  assert.deepEqual(Buffer.concat(contents), await readFile(plain));
  // The large zstd record's stored frame is in the file as it was stored (not compressed again).
  const stored = (await readAll(plain)).find((record) => record.flags === FLAG_ZSTD)!.stored;
  assert.ok(file.indexOf(Buffer.from(stored)) > 0, "the stored zstd frame passes through");
  for (const records of [await readAll(path), await Array.fromAsync(readBundleBytes(file, "s.bundle"))]) {
    assert.deepEqual(records.map((r) => r.id), chunks.map(idOf));
    for (const [i, record] of records.entries()) assert.deepEqual(Buffer.from(verifyRecord(record)), Buffer.from(chunks[i]));
  }

  // A raw block that claims more bytes than its frame holds is refused, not read past.
  assert.ok(rawFrameStarts.length >= 2, "raw frames carry the large records");
  const rawFrameAt = rawFrameStarts[0]!;
  const damaged = Buffer.from(file);
  assert.equal(damaged.readUInt32LE(rawFrameAt + 4), 0xfd2fb528, "a raw frame starts there");
  damaged.writeUIntLE(((128 * 1024) << 3) | 1, rawFrameAt + 4 + 9, 3);
  await assert.rejects(Array.fromAsync(readBundleBytes(damaged, "damaged")), (error) => isCwsError(error) && error.code === "CORRUPT");
});

test("a streamed bundle cut short or inflated beyond its cap is refused as corrupt", async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, "s.bundle");
  const chunks = Array.from({ length: 50 }, (_, i) => randomBytes(3000 + i));
  const writer = await BundleWriter.create(path, { stream: true, durable: false });
  for (const chunk of chunks) await writer.add(idOf(chunk), chunk);
  await writer.finish();
  const file = await readFile(path);
  // Incompressible runs go out in raw frames, straight from the run's buffer.
  const whole = await readAll(path);
  assert.deepEqual(whole.map((r) => r.id), chunks.map(idOf));
  for (const [i, record] of whole.entries()) assert.ok(Buffer.from(verifyRecord(record)).equals(chunks[i]!));
  const cut = join(dir, "cut.bundle");
  await writeFile(cut, file.subarray(0, file.byteLength - 40));
  await assert.rejects(readAll(cut), (error) => isCwsError(error) && error.code === "CORRUPT");
  await assert.rejects(Array.fromAsync(readBundleBytes(file.subarray(0, file.byteLength - 40), "cut")), (error) => isCwsError(error) && error.code === "CORRUPT");
  // A frame whose declared length is beyond the cap is refused before anything is allocated for it.
  const huge = Buffer.from(file);
  huge.writeUInt32BE(0x7fffffff, 8);
  await assert.rejects(Array.fromAsync(readBundleBytes(huge, "huge")), (error) => isCwsError(error) && error.code === "CORRUPT");
});

test("a streamed bundle read with a frame decoder yields the same records, each valid until the next is asked for; a record decoder decodes into one buffer and refuses a wrong length", async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, "s.bundle");
  const chunks = [...Array.from({ length: 1500 }, (_, i) => text(2000 + i, i)), text(200 * 1024, 5), text(150 * 1024, 6)];
  const writer = await BundleWriter.create(path, { stream: true, durable: false });
  for (const chunk of chunks) await writer.add(idOf(chunk), chunk);
  await writer.finish();
  const file = await readFile(path);
  const frameDecoder = new FrameDecoder();
  const recordDecoder = new RecordDecoder();
  const ids: string[] = [];
  let compressed = 0;
  // Twice with the same decoders: the kept buffers and contexts serve bundle after bundle.
  for (let round = 0; round < 2; round++) {
    for await (const record of readBundleBytes(file, "s.bundle", { frameDecoder })) {
      const i = ids.length % chunks.length;
      const raw = verifyRecord({ ...record, raw: () => recordDecoder.decode(record.flags, record.stored, record.rawLength) });
      assert.ok(Buffer.from(raw).equals(chunks[i]!), `record ${i}`);
      if (record.flags === FLAG_ZSTD) {
        compressed++;
        assert.throws(() => recordDecoder.decode(record.flags, record.stored, record.rawLength - 1), (error) => isCwsError(error) && error.code === "CORRUPT");
      }
      ids.push(record.id);
    }
  }
  assert.deepEqual(ids, [...chunks.map(idOf), ...chunks.map(idOf)]);
  assert.equal(compressed, 4, "the large chunks are zstd records");

  // From a file (the store's ingest): each frame's content is copied into the read blocks, so
  // records kept until the end stay intact though the decoder's buffers serve frame after frame.
  const kept = await Array.fromAsync(readBundle(path, { shareBlocks: true, frameDecoder }));
  assert.deepEqual(kept.map((r) => r.id), chunks.map(idOf));
  for (const [i, record] of kept.entries()) assert.ok(Buffer.from(verifyRecord(record)).equals(chunks[i]!), `kept record ${i}`);
  // A damaged frame is refused as corrupt, and the same decoder then reads a sound bundle.
  const damaged = Buffer.from(file);
  damaged[8 + 4 + 20] ^= 0xff;
  const damagedPath = join(dir, "damaged.bundle");
  await writeFile(damagedPath, damaged);
  await assert.rejects(Array.fromAsync(readBundle(damagedPath, { frameDecoder })), (error) => isCwsError(error) && error.code === "CORRUPT");
  assert.equal((await Array.fromAsync(readBundle(path, { frameDecoder }))).length, chunks.length);
});

test("a plain bundle and a streamed one without pass-through say they are done with each chunk when add() returns, and are", async (t) => {
  const dir = await tempDir(t);
  const expected = [[{}, true], [{ stream: true }, true], [{ stream: true, passThrough: true }, false]] as const;
  for (const [i, [options, copies]] of expected.entries()) {
    const writer = await BundleWriter.create(join(dir, `b${i}.bundle`), { durable: false, ...options });
    assert.equal(writer.copiesChunks, copies, JSON.stringify(options));
    // Chunks' buffers overwritten after add() returns: a writer that copies keeps what was added.
    const originals = [text(100_000, i), randomBytes(60_000), text(3000, i + 1), randomBytes(2000)].map((chunk) => Buffer.from(chunk));
    for (const original of originals) {
      const chunk = Buffer.from(original);
      await writer.add(idOf(original), chunk);
      if (copies) chunk.fill(0);
    }
    await writer.finish();
    const records = await readAll(join(dir, `b${i}.bundle`));
    assert.deepEqual(records.map((record) => Buffer.from(verifyRecord(record))), originals);
  }
});

test("SpareBuffers keeps a given-back buffer for the next take, as long as keepSpareBuffers says, and releaseSpareBuffers lets it go", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  t.after(() => keepSpareBuffers(200));
  const spares = new SpareBuffers(1024, 2);
  const first = spares.take();
  spares.give(first);
  assert.equal(spares.take(), first, "reused at once");
  spares.give(first);
  t.mock.timers.tick(200);
  assert.notEqual(spares.take(), first, "let go 200 ms after its last use, by default");
  keepSpareBuffers(10_000);
  const kept = spares.take();
  spares.give(kept);
  t.mock.timers.tick(5_000);
  assert.equal(spares.take(), kept, "kept longer when asked");
  spares.give(kept);
  releaseSpareBuffers();
  assert.notEqual(spares.take(), kept, "and let go at once when told");
});
