import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isCwsError } from "../../src/errors.ts";
import { xxh64Hex } from "../../src/core/hash.ts";
import { chunkId } from "../../src/core/manifest.ts";
import { BundleWriter, RECORD_HEADER_BYTES, readBundle, verifyRecord } from "../../src/protocol/bundle.ts";
import { Store } from "./store.ts";

type TestContext = { after: (fn: () => Promise<void>) => void };

async function openStore(t: TestContext): Promise<Store> {
  const dir = await mkdtemp(join(tmpdir(), "cws-store-"));
  const store = await Store.open(dir);
  t.after(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  return store;
}

function idOf(bytes: Uint8Array): string {
  return chunkId([xxh64Hex(bytes), bytes.byteLength]);
}

function text(bytes: number, seed: number): Uint8Array {
  const line = `## Section ${seed}\nMarkdown that compresses, seed ${seed}.\n`;
  return Buffer.from(line.repeat(Math.ceil(bytes / line.length)).slice(0, bytes));
}

/** Writes an incoming bundle of `chunks` and returns its name. */
async function stage(store: Store, name: string, chunks: Uint8Array[]): Promise<string> {
  const writer = await BundleWriter.create(join(store.paths.incoming, name));
  for (const chunk of chunks) await writer.add(idOf(chunk), chunk);
  await writer.finish();
  return name;
}

async function packFiles(store: Store): Promise<string[]> {
  return (await readdir(store.paths.packs)).sort();
}

const HOUR = 3_600_000;

/** Sets a file's mtime, so grace periods can be tested without waiting. */
async function age(path: string, mtimeMs: number): Promise<void> {
  await utimes(path, mtimeMs / 1000, mtimeMs / 1000);
}

test("ingestBundle() stores the chunks, deletes the bundle, and missing() then excludes them", async (t) => {
  const store = await openStore(t);
  const chunks = [text(40_000, 1), randomBytes(70_000), text(100, 2)];
  const ids = chunks.map(idOf);
  const other = idOf(text(5, 9));
  assert.deepEqual(await store.missing([...ids, other]), [...ids, other]);
  const result = await store.ingestBundle(await stage(store, "push-1.cwsb", chunks));
  assert.deepEqual(result, { chunks: 3, bytes: 40_100 + 70_000 });
  assert.deepEqual(await store.missing([...ids, other]), [other]);
  assert.equal(await store.has(ids[1]), true);
  assert.deepEqual(await readdir(store.paths.incoming), []);
  assert.equal((await packFiles(store)).length, 2, "one pack and one index");
  for (const [i, id] of ids.entries()) assert.deepEqual(Buffer.from(await store.readChunk(id)), Buffer.from(chunks[i]));
});

test("ingestBundle() keeps nothing of a bundle with one corrupted record and throws CORRUPT", async (t) => {
  const store = await openStore(t);
  const chunks = [text(30_000, 1), randomBytes(20_000), text(8_000, 3)];
  const name = await stage(store, "bad.cwsb", chunks);
  const path = join(store.paths.incoming, name);
  const records = await Array.fromAsync(readBundle(path));
  const bytes = await readFile(path);
  bytes[records[1].offset + RECORD_HEADER_BYTES + 1000] ^= 0x01; // flip one bit of the random chunk
  await writeFile(path, bytes);
  await assert.rejects(store.ingestBundle(name), (error) => isCwsError(error, "CORRUPT") && /hashes to/.test(error.message));
  assert.deepEqual(await store.missing(chunks.map(idOf)), chunks.map(idOf), "not even the good first chunk is kept");
  assert.deepEqual(await packFiles(store), []);
  assert.deepEqual(await readdir(store.paths.incoming), [], "the useless bundle is gone");
});

test("ingestBundle() refuses a truncated bundle and keeps nothing", async (t) => {
  const store = await openStore(t);
  const name = await stage(store, "cut.cwsb", [text(30_000, 1), text(30_000, 2)]);
  const path = join(store.paths.incoming, name);
  const bytes = await readFile(path);
  await writeFile(path, bytes.subarray(0, bytes.byteLength - 10));
  await assert.rejects(store.ingestBundle(name), (error) => isCwsError(error, "CORRUPT"));
  assert.deepEqual(await packFiles(store), []);
});

test("ingestBundle() stores a chunk once, whether repeated in a bundle or sent again", async (t) => {
  const store = await openStore(t);
  const a = text(10_000, 1);
  const b = randomBytes(10_000);
  assert.deepEqual(await store.ingestBundle(await stage(store, "one.cwsb", [a, a, b])), { chunks: 2, bytes: 20_000 });
  assert.deepEqual(await store.ingestBundle(await stage(store, "two.cwsb", [b, a])), { chunks: 0, bytes: 0 });
  assert.equal((await packFiles(store)).length, 2, "a bundle of no new chunks writes no pack");
  assert.equal(store.listChunkIds().length, 2);
});

test("ingestBundle() refuses names that leave the staging folder", async (t) => {
  const store = await openStore(t);
  for (const name of ["../x", "..", "a/b", "/etc/passwd", ".hidden", "a\0b", "x..y", ""]) {
    await assert.rejects(store.ingestBundle(name), (error) => isCwsError(error, "INVALID_PATH"), name);
  }
  await assert.rejects(store.ingestBundle("absent.cwsb"), (error) => isCwsError(error, "NOT_FOUND"));
});

test("a second Store on the same folder sees chunks ingested by the first", async (t) => {
  const first = await openStore(t);
  const second = await Store.open(first.paths.root);
  t.after(() => second.close());
  const chunk = text(20_000, 7);
  assert.deepEqual(await second.missing([idOf(chunk)]), [idOf(chunk)]);
  await first.ingestBundle(await stage(first, "b.cwsb", [chunk]));
  assert.deepEqual(await second.missing([idOf(chunk)]), []);
  assert.deepEqual(Buffer.from(await second.readChunk(idOf(chunk))), Buffer.from(chunk));
});

test("writeBundle() gives back the original bytes through readBundle(), plain and streamed", async (t) => {
  const store = await openStore(t);
  const chunks = [text(60_000, 1), randomBytes(256 * 1024), new Uint8Array(0), text(3, 4)];
  await store.ingestBundle(await stage(store, "in.cwsb", chunks));
  // Stored order (read back to back in one go) and reverse order (one read each).
  for (const [stream, ids] of [false, true].flatMap((s) => [[s, chunks.map(idOf)], [s, chunks.map(idOf).reverse()]] as const)) {
    const { name, bytes } = await store.writeBundle([...ids, ids[0]], { stream });
    const path = join(store.paths.outgoing, name);
    assert.equal(bytes, (await readFile(path)).byteLength);
    const records = await Array.fromAsync(readBundle(path));
    assert.deepEqual(records.map((r) => r.id), ids, "requested order, duplicates once");
    for (const record of records) {
      assert.deepEqual(Buffer.from(verifyRecord(record)), Buffer.from(chunks.find((c) => idOf(c) === record.id)!));
    }
    await store.releaseOutgoing(name);
  }
  assert.deepEqual(await readdir(store.paths.outgoing), []);
});

test("writeBundle() prepares streamed bundles at once and one after another from reused buffers, each with its own bytes, and one larger than a reused buffer", async (t) => {
  const store = await openStore(t);
  // Pull-like content: small notes, large text chunks (zstd records), large random chunks (raw).
  const groups = Array.from({ length: 4 }, (_, g) => [
    ...Array.from({ length: 40 }, (_, i) => text(1000 + i, g * 100 + i)),
    text(200_000, g),
    randomBytes(200_000),
    ...Array.from({ length: 10 }, (_, i) => text(500 + i, g * 100 + 50 + i)),
  ]);
  // More than one reused read buffer (6 MiB) holds: the rest is read into buffers of its own.
  const large = Array.from({ length: 30 }, () => randomBytes(256 * 1024));
  await store.ingestBundle(await stage(store, "in.cwsb", [...groups.flat(), ...large]));
  const check = async (chunks: Uint8Array[], name: string): Promise<void> => {
    const records = await Array.fromAsync(readBundle(join(store.paths.outgoing, name)));
    assert.deepEqual(records.map((r) => r.id), chunks.map(idOf));
    for (const [i, record] of records.entries()) assert.deepEqual(Buffer.from(verifyRecord(record)), Buffer.from(chunks[i]!));
    await store.releaseOutgoing(name);
  };
  const together = await Promise.all(groups.map((chunks) => store.writeBundle(chunks.map(idOf), { stream: true, passThrough: true })));
  for (const [g, { name }] of together.entries()) await check(groups[g]!, name);
  for (const chunks of [...groups.reverse(), large]) await check(chunks, (await store.writeBundle(chunks.map(idOf), { stream: true, passThrough: true })).name);
});

test("writeBundle() refuses an unknown chunk and writes nothing", async (t) => {
  const store = await openStore(t);
  const known = text(100, 1);
  await store.ingestBundle(await stage(store, "in.cwsb", [known]));
  const unknown = idOf(text(100, 2));
  await assert.rejects(store.writeBundle([idOf(known), unknown], { name: "out.cwsb" }), (error) => {
    return isCwsError(error, "NOT_FOUND") && (error.data?.missing as string[])[0] === unknown;
  });
  assert.deepEqual(await readdir(store.paths.outgoing), []);
  await assert.rejects(store.writeBundle([idOf(known)], { name: "../out" }), (error) => isCwsError(error, "INVALID_PATH"));
});

test("readChunk() detects a stored chunk damaged on disk", async (t) => {
  const store = await openStore(t);
  const chunk = randomBytes(5_000);
  await store.ingestBundle(await stage(store, "in.cwsb", [chunk]));
  const pack = (await packFiles(store)).find((name) => name.endsWith(".pack"))!;
  const path = join(store.paths.packs, pack);
  const bytes = await readFile(path);
  bytes[8 + RECORD_HEADER_BYTES + 10] ^= 0xff;
  await writeFile(path, bytes);
  await assert.rejects(store.readChunk(idOf(chunk)), (error) => isCwsError(error, "CORRUPT"));
  const { chunks, problems } = await store.verifyAll();
  assert.equal(chunks, 0);
  assert.deepEqual(problems.map((p) => [p.kind, p.name]), [["chunk", idOf(chunk)]]);
});

test("a torn index is skipped and its chunks count as missing", async (t) => {
  const store = await openStore(t);
  const chunk = text(1_000, 1);
  await store.ingestBundle(await stage(store, "in.cwsb", [chunk]));
  const index = (await packFiles(store)).find((name) => name.endsWith(".idx"))!;
  const bytes = await readFile(join(store.paths.packs, index));
  await writeFile(join(store.paths.packs, index), bytes.subarray(0, bytes.byteLength - 3));
  const logged: string[] = [];
  const reopened = await Store.open(store.paths.root, { log: (line) => logged.push(line) });
  t.after(() => reopened.close());
  assert.deepEqual(await reopened.missing([idOf(chunk)]), [idOf(chunk)]);
  assert.match(logged.join("\n"), /size does not match/);
  assert.equal((await reopened.verifyAll()).problems[0]?.kind, "index");
});

test("putObject() and getObject() round-trip, idempotently", async (t) => {
  const store = await openStore(t);
  const manifest = Buffer.from(JSON.stringify({ format: 1, entries: Array.from({ length: 500 }, (_, i) => ({ path: `files/n${i}.md` })) }));
  const hash = await store.putObject(manifest);
  assert.equal(hash, xxh64Hex(manifest));
  assert.equal(await store.putObject(manifest), hash);
  assert.deepEqual(Buffer.from(await store.getObject(hash)), manifest);
  assert.deepEqual(await readdir(join(store.paths.objects, hash.slice(0, 2))), [hash], "one file, no temp left");
  assert.deepEqual(Buffer.from(await store.getObject(await store.putObject(new Uint8Array(0)))), Buffer.alloc(0));
  await assert.rejects(store.getObject("0123456789abcdef"), (error) => isCwsError(error, "NOT_FOUND"));
  await assert.rejects(store.getObject("../../etc/passwd"), (error) => isCwsError(error, "INVALID_ARGUMENT"));
});

/** Distinct small objects, like a commit's folder objects. */
function folderObjects(count: number, seed: string): Buffer[] {
  return Array.from({ length: count }, (_, i) => Buffer.from(JSON.stringify({ folder: `${seed}/${i}`, entries: [`a${i}.md`, `b${i}.md`] })));
}

/** Every object file under a final name in the store, and the temp files beside them. */
async function objectFiles(store: Store): Promise<{ objects: string[]; temps: string[] }> {
  const objects: string[] = [];
  const temps: string[] = [];
  for (const shard of await readdir(store.paths.objects)) {
    for (const name of await readdir(join(store.paths.objects, shard))) (name.endsWith(".tmp") ? temps : objects).push(name);
  }
  return { objects: objects.sort(), temps };
}

test("putObjects() stores a batch (new, already present, repeated) and returns each hash in order", async (t) => {
  const store = await openStore(t);
  const raws = folderObjects(40, "batch");
  const present = await store.putObject(raws[3]);
  const batch = [...raws, raws[7], raws[0]];
  const hashes = await store.putObjects(batch);
  assert.deepEqual(hashes, batch.map((raw) => xxh64Hex(raw)));
  assert.equal(hashes[3], present);
  for (let i = 0; i < batch.length; i++) assert.deepEqual(Buffer.from(await store.getObject(hashes[i])), batch[i]);
  assert.deepEqual(await objectFiles(store), { objects: [...new Set(hashes)].sort(), temps: [] }, "one file per object, no temp left");
  // A small batch (below the barrier's threshold) goes through putObject, with the same result.
  const few = folderObjects(3, "few");
  for (const [i, hash] of (await store.putObjects(few)).entries()) assert.deepEqual(Buffer.from(await store.getObject(hash)), few[i]);
});

for (const fault of ["store-objects-before-rename", "store-objects-mid-rename"] as const) {
  test(`a store killed at ${fault} has no torn object, its temp files go with repack(), and the batch then stores`, async (t) => {
    const store = await openStore(t);
    const raws = folderObjects(64, fault);
    // A real crash: another process writes the batch and is killed at the fault point.
    const script = join(store.paths.tmp, "put.mts");
    await writeFile(script, `import { Store } from ${JSON.stringify(new URL("./store.ts", import.meta.url).href)};
const store = await Store.open(${JSON.stringify(join(store.paths.objects, "..", ".."))});
await store.putObjects(${JSON.stringify(raws.map((raw) => raw.toString()))}.map((text) => Buffer.from(text)));
`);
    const child = spawnSync(process.execPath, [script], { env: { ...process.env, CWS_FAULT: fault }, encoding: "utf8" });
    assert.equal(child.signal, "SIGKILL", `killed at the fault point (stdout ${child.stdout}, stderr ${child.stderr})`);
    const after = await objectFiles(store);
    assert.ok(after.temps.length > 0, "the batch left temp files");
    if (fault === "store-objects-before-rename") assert.equal(after.objects.length, 0);
    else assert.ok(after.objects.length > 0 && after.objects.length < raws.length, `half renamed: ${after.objects.length}`);
    // Whatever has a final name has its whole content: a later putObject would trust it.
    for (const hash of after.objects) assert.ok(raws.some((raw) => xxh64Hex(raw) === hash) && (await store.getObject(hash)).byteLength > 0);
    await store.repack(new Set(), { graceMs: 0, now: Date.now() + 1000 });
    assert.deepEqual((await objectFiles(store)).temps, [], "repack removed the temp files");
    const hashes = await store.putObjects(raws);
    for (let i = 0; i < raws.length; i++) assert.deepEqual(Buffer.from(await store.getObject(hashes[i])), raws[i]);
  });
}

test("getObject() detects a damaged object", async (t) => {
  const store = await openStore(t);
  const hash = await store.putObject(Buffer.from("a manifest ".repeat(100)));
  const path = join(store.paths.objects, hash.slice(0, 2), hash);
  const bytes = await readFile(path);
  bytes[bytes.byteLength - 5] ^= 0x10;
  await writeFile(path, bytes);
  await assert.rejects(store.getObject(hash), (error) => isCwsError(error, "CORRUPT"));
  // An object whose content is valid but under the wrong name is caught too.
  const other = await store.putObject(Buffer.from("another"));
  await writeFile(path, await readFile(join(store.paths.objects, other.slice(0, 2), other)));
  await assert.rejects(store.getObject(hash), (error) => isCwsError(error, "CORRUPT") && /hashes to/.test(error.message));
  assert.equal((await store.verifyAll()).problems.length, 1);
});

test("getObject() reads back objects whose files end just before, at and after its read buffer's end, and very large ones", async (t) => {
  const store = await openStore(t);
  // Random bytes do not compress: each file is its raw length plus a few bytes of headers, so
  // these sizes put the files' ends on both sides of the 64 KiB read buffer's.
  const raws: Uint8Array[] = [];
  for (let length = 64 * 1024 - 40; length <= 64 * 1024 + 8; length++) raws.push(randomBytes(length));
  // Over 1 MiB (the kept zstd contexts are freed after it), then small ones through new contexts.
  raws.push(Buffer.from("a manifest stored whole ".repeat(60_000)), randomBytes(2 * 1024 * 1024), Buffer.from("small"), Buffer.alloc(0));
  const sizes = new Set<number>();
  for (const raw of raws) {
    const hash = await store.putObject(raw);
    sizes.add((await readFile(join(store.paths.objects, hash.slice(0, 2), hash))).byteLength);
    assert.deepEqual(Buffer.from(await store.getObject(hash)), Buffer.from(raw));
  }
  assert.ok(sizes.has(64 * 1024) && [...sizes].some((size) => size < 64 * 1024) && [...sizes].some((size) => size > 64 * 1024 && size < 70 * 1024), `file sizes ${[...sizes].sort((a, b) => a - b).join(", ")} straddle the read buffer's end`);
  // The kept contexts still read and write after all that.
  const hashes = await store.putObjects(folderObjects(20, "after"));
  for (const [i, raw] of folderObjects(20, "after").entries()) assert.deepEqual(Buffer.from(await store.getObject(hashes[i])), raw);
});

test("getObject() refuses an object whose frame holds more or fewer bytes than its header claims, and reads the next one", async (t) => {
  const store = await openStore(t);
  const hash = await store.putObject(Buffer.from("a folder object ".repeat(50)));
  const path = join(store.paths.objects, hash.slice(0, 2), hash);
  const bytes = await readFile(path);
  const claimed = bytes.readUInt32BE(8);
  // The last lie claims nearly the 256 MiB cap for an 800-byte object (the one-off context's path).
  const huge = 250 * 1024 * 1024;
  for (const [lie, why] of [[claimed - 1, /compressed data is damaged/], [claimed + 1, /holds 800 bytes instead of 801/], [huge, /holds 800 bytes instead of 262144000/]] as const) {
    bytes.writeUInt32BE(lie, 8);
    await writeFile(path, bytes);
    await assert.rejects(store.getObject(hash), (error) => isCwsError(error, "CORRUPT") && why.test(error.message));
    // The kept zstd context, left mid-frame by the refused one, reads a sound object.
    const other = await store.putObject(Buffer.from(`another ${lie}`));
    assert.equal(Buffer.from(await store.getObject(other)).toString(), `another ${lie}`);
  }
});

test("repack() keeps live chunks, drops dead ones, and never touches a young pack", async (t) => {
  const store = await openStore(t);
  const now = Date.UTC(2025, 0, 10);
  const live = [text(20_000, 1), randomBytes(30_000)];
  const dead = [text(20_000, 2), randomBytes(10_000)];
  await store.ingestBundle(await stage(store, "old.cwsb", [live[0], dead[0], live[1]]));
  const oldPacks = await packFiles(store);
  for (const name of oldPacks) await age(join(store.paths.packs, name), now - 2 * HOUR);
  const young = [text(5_000, 3), dead[1]];
  await store.ingestBundle(await stage(store, "young.cwsb", young));
  const youngPacks = (await packFiles(store)).filter((name) => !oldPacks.includes(name));
  for (const name of youngPacks) await age(join(store.paths.packs, name), now - 1000);

  // Neither dead[1] nor young[0] is live, but their pack is younger than the grace period.
  const liveIds = new Set(live.map(idOf));
  const result = await store.repack(liveIds, { graceMs: HOUR, now });
  assert.equal(result.packsYoung, 1);
  assert.equal(result.packsRewritten, 1);
  assert.equal(result.chunksDropped, 1);
  assert.equal(result.packsWritten, 1);
  assert.ok(result.bytesFreed > 0);

  const after = await packFiles(store);
  for (const name of youngPacks) assert.ok(after.includes(name), `young ${name} is kept`);
  for (const name of oldPacks) assert.ok(!after.includes(name), `old ${name} is removed`);
  assert.deepEqual(await store.missing([...live, ...dead, ...young].map(idOf)), [idOf(dead[0])]);
  for (const chunk of [...live, ...young]) assert.deepEqual(Buffer.from(await store.readChunk(idOf(chunk))), Buffer.from(chunk));

  // A store opened afterwards sees only the new packs, and nothing damaged.
  const fresh = await Store.open(store.paths.root);
  t.after(() => fresh.close());
  assert.deepEqual(Buffer.from(await fresh.readChunk(idOf(live[1]))), Buffer.from(live[1]));
  assert.equal((await store.verifyAll()).problems.length, 0);
});

test("repack() follows up with a store that still had the old pack loaded", async (t) => {
  const store = await openStore(t);
  const other = await Store.open(store.paths.root);
  t.after(() => other.close());
  const now = Date.UTC(2025, 0, 10);
  const [keep, drop] = [text(9_000, 1), text(9_000, 2)];
  await store.ingestBundle(await stage(store, "a.cwsb", [keep, drop]));
  assert.equal(await other.has(idOf(keep)), true);
  for (const name of await packFiles(store)) await age(join(store.paths.packs, name), now - 2 * HOUR);
  await store.repack(new Set([idOf(keep)]), { graceMs: HOUR, now });
  // `other` still maps the chunk to the removed pack; reads must find its new home.
  const { name } = await other.writeBundle([idOf(keep)]);
  const [record] = await Array.fromAsync(readBundle(join(other.paths.outgoing, name)));
  assert.deepEqual(Buffer.from(verifyRecord(record)), Buffer.from(keep));
  assert.deepEqual(Buffer.from(await other.readChunk(idOf(keep))), Buffer.from(keep));
  await assert.rejects(other.readChunk(idOf(drop)), (error) => isCwsError(error, "NOT_FOUND"));
});

test("repack() removes old orphans, staging files and unreferenced objects, but not young ones", async (t) => {
  const store = await openStore(t);
  const now = Date.UTC(2025, 0, 10);
  const orphanPack = join(store.paths.packs, "00112233445566ff.pack");
  const oldTemp = join(store.paths.packs, "aabbccddeeff0011.pack.tmp");
  const oldIncoming = join(store.paths.incoming, "stale.cwsb");
  const youngIncoming = join(store.paths.incoming, "uploading.cwsb");
  for (const path of [orphanPack, oldTemp, oldIncoming, youngIncoming]) await writeFile(path, "x");
  const keptObject = await store.putObject(Buffer.from("live manifest"));
  const deadObject = await store.putObject(Buffer.from("dead manifest"));
  const youngDeadObject = await store.putObject(Buffer.from("young dead manifest"));
  for (const path of [orphanPack, oldTemp, oldIncoming]) await age(path, now - 2 * HOUR);
  for (const hash of [keptObject, deadObject]) await age(join(store.paths.objects, hash.slice(0, 2), hash), now - 2 * HOUR);
  await age(youngIncoming, now - 10);
  await age(join(store.paths.objects, youngDeadObject.slice(0, 2), youngDeadObject), now - 10);

  const result = await store.repack(new Set(), { graceMs: HOUR, now, liveObjects: new Set([keptObject]) });
  assert.equal(result.filesRemoved, 3);
  assert.equal(result.objectsRemoved, 1);
  assert.deepEqual(await packFiles(store), []);
  assert.deepEqual(await readdir(store.paths.incoming), ["uploading.cwsb"]);
  await store.getObject(keptObject);
  await store.getObject(youngDeadObject);
  await assert.rejects(store.getObject(deadObject), (error) => isCwsError(error, "NOT_FOUND"));
});

test("a chunk stored in two packs is listed once, read from either, and kept once by repack()", async (t) => {
  const store = await openStore(t);
  const now = Date.UTC(2025, 0, 10);
  const chunks = [text(9_000, 1), randomBytes(4_000), text(300, 2)];
  await store.ingestBundle(await stage(store, "a.cwsb", chunks));
  // The same pack under a second name: what two pushes storing the same chunks at once leave.
  const [index, pack] = await packFiles(store);
  const copy = "0123456789abcdef";
  await writeFile(join(store.paths.packs, `${copy}.pack`), await readFile(join(store.paths.packs, pack!)));
  await writeFile(join(store.paths.packs, `${copy}.idx`), await readFile(join(store.paths.packs, index!)));
  const reopened = await Store.open(store.paths.root);
  t.after(() => reopened.close());
  assert.deepEqual(reopened.listChunkIds().sort(), chunks.map(idOf).sort());
  assert.deepEqual(await reopened.missing(chunks.map(idOf)), []);
  for (const chunk of chunks) assert.deepEqual(Buffer.from(await reopened.readChunk(idOf(chunk))), Buffer.from(chunk));

  for (const name of await packFiles(store)) await age(join(store.paths.packs, name), now - 2 * HOUR);
  const result = await reopened.repack(new Set(chunks.map(idOf)), { graceMs: HOUR, now });
  assert.deepEqual([result.packsKept, result.packsRemoved, result.chunksDropped], [1, 1, 3]);
  assert.equal((await packFiles(store)).length, 2, "one pack and its index left");
  // Whichever copy the index pointed to, every chunk is found in the pack left, by this store
  // (its index rebuilt) and by the one that still had both packs loaded.
  for (const reader of [reopened, store]) {
    assert.deepEqual(reader.listChunkIds().sort(), chunks.map(idOf).sort());
    for (const chunk of chunks) assert.deepEqual(Buffer.from(await reader.readChunk(idOf(chunk))), Buffer.from(chunk));
  }
  assert.equal((await reopened.verifyAll()).problems.length, 0);
});
