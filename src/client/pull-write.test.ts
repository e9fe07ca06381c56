import assert from "node:assert/strict";
import { test } from "node:test";
import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { initHash, xxh64Hex } from "../core/hash.ts";
import { encodeRecordPayload } from "../protocol/bundle.ts";
import { BatchWriter, type FinishedFile } from "./pull-write.ts";

await initHash();

for (const threaded of [true, false]) {
  const where = threaded ? "on the writer thread" : "on the calling thread";

  test(`BatchWriter writes files ${where} from bytes copied as they are given, with their mode, mtime and stat`, async () => {
    const dir = await mkdtemp(join(tmpdir(), "pull-write-test-"));
    const finished: FinishedFile[] = [];
    const writer = new BatchWriter(threaded, (file) => finished.push(file));
    try {
      // One buffer for every write, overwritten after each: the writer must have copied it.
      const scratch = Buffer.alloc(64 * 1024);
      const expected: Buffer[] = [];
      const mtimeMs = Date.UTC(2024, 0, 2, 3, 4, 5);
      for (let file = 0; file < 40; file++) {
        writer.open(file, join(dir, `f${file}`));
        // File 7 spans several batches (5 MiB in 64 KiB writes); the others take a few writes.
        const pieces = file === 7 ? 80 : 1 + (file % 3);
        const parts: Buffer[] = [];
        for (let i = 0; i < pieces; i++) {
          const data = randomBytes(file === 7 ? scratch.length : 100 + file);
          data.copy(scratch);
          await writer.write(file, scratch.subarray(0, data.length), false);
          scratch.fill(0);
          parts.push(data);
        }
        expected.push(Buffer.concat(parts));
        await writer.finish(file, { path: `f${file}`, hash: xxh64Hex(expected[file]!), mode: 0o640, mtimeMs });
      }
      await writer.drain();
      assert.equal(finished.length, 40);
      for (const [file, content] of expected.entries()) {
        const path = join(dir, `f${file}`);
        assert.ok((await readFile(path)).equals(content), `f${file} has the bytes written`);
        const st = await stat(path);
        assert.equal(st.mode & 0o777, 0o640);
        assert.equal(st.mtimeMs, mtimeMs);
        const reported = finished.find((f) => f.file === file)!;
        assert.deepEqual(reported, { file, size: st.size, mtimeMs: st.mtimeMs, ino: st.ino });
      }
    } finally {
      await writer.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test(`BatchWriter ${where} decodes downloaded records, writes only those matching their hash, and checks each whole file`, async () => {
    const dir = await mkdtemp(join(tmpdir(), "pull-write-test-"));
    const finished: FinishedFile[] = [];
    const writer = new BatchWriter(threaded, (file) => finished.push(file));
    try {
      const raw = Buffer.from("a compressible line of a rollout\n".repeat(4000));
      const { flags, stored } = encodeRecordPayload(raw);
      assert.equal(flags, 1, "the record is zstd-compressed");
      const record = { id: `${xxh64Hex(raw)}-${raw.length}`, hash: xxh64Hex(raw), rawLength: raw.length, flags };
      writer.open(0, join(dir, "good"));
      await writer.write(0, stored, false, record);
      await writer.write(0, stored, false, record);
      const twice = Buffer.concat([raw, raw]);
      await writer.finish(0, { path: "good", hash: xxh64Hex(twice), mode: 0o644, mtimeMs: Date.now() });
      await writer.drain();
      assert.ok((await readFile(join(dir, "good"))).equals(twice), "decoded bytes were written");
      assert.equal(finished.length, 1);

      // A record whose bytes do not hash to its id is refused before any of it is written.
      const bad = Buffer.from(stored);
      bad[bad.length - 5]! ^= 0xff;
      writer.open(1, join(dir, "bad"));
      await writer.write(1, Buffer.from("head"), false);
      await writer.write(1, bad, false, record);
      await assert.rejects(writer.drain(), (error: NodeJS.ErrnoException) => error.code === "CORRUPT");
      assert.equal((await readFile(join(dir, "bad"))).toString(), "head");
    } finally {
      await writer.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test(`BatchWriter ${where} refuses a file whose bytes do not hash to its content hash`, async () => {
    const dir = await mkdtemp(join(tmpdir(), "pull-write-test-"));
    const writer = new BatchWriter(threaded, () => {});
    try {
      writer.open(0, join(dir, "f0"));
      await writer.write(0, Buffer.from("not what the manifest says"), false);
      await writer.finish(0, { path: "files/f0", hash: xxh64Hex(Buffer.from("the manifest's content")), mode: 0o644, mtimeMs: Date.now() });
      await assert.rejects(writer.drain(), (error: Error & { code?: string }) => error.code === "CORRUPT" && error.message.includes("files/f0"));
    } finally {
      await writer.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test(`BatchWriter ${where} writes a one-chunk file from its checked record without hashing it again, refuses a bad record or a short file, and gives the file its mode`, async () => {
    const dir = await mkdtemp(join(tmpdir(), "pull-write-test-"));
    const writer = new BatchWriter(threaded, () => {});
    try {
      const raw = Buffer.from("one chunk, one file\n".repeat(3000));
      const { flags, stored } = encodeRecordPayload(raw);
      const hash = xxh64Hex(raw);
      const record = { id: `${hash}-${raw.length}`, hash, rawLength: raw.length, flags };
      writer.open(0, join(dir, "one"), 0o755, raw.length);
      await writer.write(0, stored, false, record);
      await writer.finish(0, { path: "one", hash, mode: 0o755, mtimeMs: Date.now() });
      await writer.drain();
      assert.ok((await readFile(join(dir, "one"))).equals(raw));
      assert.equal((await stat(join(dir, "one"))).mode & 0o777, 0o755);

      // The chunk is still checked: a damaged record never lands.
      const bad = Buffer.from(stored);
      bad[bad.length - 5]! ^= 0xff;
      writer.open(1, join(dir, "bad"), 0o644, raw.length);
      await writer.write(1, bad, false, record);
      await assert.rejects(writer.drain(), (error: NodeJS.ErrnoException) => error.code === "CORRUPT");
      assert.equal((await readFile(join(dir, "bad"))).byteLength, 0);
    } finally {
      await writer.close();
    }
    // A one-chunk file left short of its size (its write missing) fails its finish.
    const second = new BatchWriter(threaded, () => {});
    try {
      second.open(0, join(dir, "short"), 0o644, 100);
      await second.write(0, Buffer.alloc(50), false);
      await second.finish(0, { path: "files/short", hash: xxh64Hex(Buffer.alloc(100)), mode: 0o644, mtimeMs: Date.now() });
      await assert.rejects(second.drain(), (error: Error & { code?: string }) => error.code === "CORRUPT" && error.message.includes("files/short"));
    } finally {
      await second.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test(`BatchWriter ${where} keeps every operation of a batch that grows past its usual count (many files opened before any is written)`, async () => {
    const dir = await mkdtemp(join(tmpdir(), "pull-write-test-"));
    const finished: FinishedFile[] = [];
    const writer = new BatchWriter(threaded, (file) => finished.push(file));
    try {
      const count = 2000;
      for (let file = 0; file < count; file++) writer.open(file, join(dir, `f${file}`), 0o644);
      for (let file = 0; file < count; file++) {
        const content = Buffer.from(`file ${file}\n`);
        await writer.write(file, content, false);
        await writer.finish(file, { path: `f${file}`, hash: xxh64Hex(content), mode: 0o644, mtimeMs: Date.now() });
      }
      await writer.drain();
      assert.equal(finished.length, count);
      for (const file of [0, 999, count - 1]) assert.equal((await readFile(join(dir, `f${file}`))).toString(), `file ${file}\n`);
    } finally {
      await writer.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test(`BatchWriter ${where} makes folders before the files given after them and renames finished files in order`, async () => {
    const dir = await mkdtemp(join(tmpdir(), "pull-write-test-"));
    const finished: FinishedFile[] = [];
    const writer = new BatchWriter(threaded, (file) => finished.push(file));
    try {
      // More folders than one batch holds, handed over before any file is written.
      const folders = Array.from({ length: 1000 }, (_, i) => join(dir, `d${i % 10}`, `e${i}`));
      for (const folder of folders) writer.mkdir(folder);
      writer.offer();
      for (const [file, folder] of folders.entries()) {
        const content = Buffer.from(`file ${file}\n`);
        writer.open(file, join(folder, "temp"), 0o644);
        await writer.write(file, content, false);
        await writer.finish(file, { path: `f${file}`, hash: xxh64Hex(content), mode: 0o644, mtimeMs: Date.now() });
      }
      await writer.drain();
      assert.equal(finished.length, folders.length);
      for (const [file, folder] of folders.entries()) writer.rename(file, join(folder, "temp"), join(folder, "final"));
      await writer.drain();
      for (const file of [0, 500, 999]) {
        assert.equal((await readFile(join(folders[file]!, "final"))).toString(), `file ${file}\n`);
        await assert.rejects(stat(join(folders[file]!, "temp")), { code: "ENOENT" });
      }
    } finally {
      await writer.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test(`BatchWriter ${where} closed in the middle of files leaves none of their descriptors open`, async () => {
    const dir = await mkdtemp(join(tmpdir(), "pull-write-test-"));
    // Descriptors belong to the whole process, not to the thread that opened them: a writer
    // stopped while it holds files open must leave none behind, as a kept session runs pull
    // after pull in one process.
    const openFds = async () => (await readdir("/proc/self/fd")).length;
    const before = await openFds();
    const writer = new BatchWriter(threaded, () => {});
    try {
      for (let file = 0; file < 20; file++) {
        writer.open(file, join(dir, `f${file}`));
        await writer.write(file, randomBytes(1000), false);
      }
      // Every open and write applied, no file finished.
      await writer.drain();
    } finally {
      await writer.close();
    }
    assert.equal(await openFds(), before);
    await rm(dir, { recursive: true, force: true });
  });

  test(`BatchWriter ${where} reports a failed system call with its errno code and refuses more work`, async () => {
    const dir = await mkdtemp(join(tmpdir(), "pull-write-test-"));
    const writer = new BatchWriter(threaded, () => {});
    try {
      writer.open(0, join(dir, "missing-folder", "f0"));
      await writer.write(0, Buffer.from("content"), false);
      await writer.finish(0, { path: "f0", hash: xxh64Hex(Buffer.from("content")), mode: 0o644, mtimeMs: Date.now() });
      await assert.rejects(writer.drain(), (error: NodeJS.ErrnoException) => error.code === "ENOENT");
      writer.open(1, join(dir, "f1"));
      await assert.rejects(writer.drain(), (error: NodeJS.ErrnoException) => error.code === "ENOENT");
    } finally {
      await writer.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
}
