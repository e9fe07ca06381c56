import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import zlib from "node:zlib";
import { chunkLengths } from "../../src/core/chunker.ts";
import { chunkId, type ManifestEntry } from "../../src/core/manifest.ts";
import { initHash, xxh64Hex } from "../../src/core/hash.ts";
import { BundleWriter } from "../../src/protocol/bundle.ts";
import { Store } from "../store/store.ts";
import { readEntry, readEntryRange, rolloutExtends } from "./stored-content.ts";

let dir: string;
let store: Store;
let bundles = 0;

before(async () => {
  await initHash();
  dir = await mkdtemp(join(tmpdir(), "cws-content-"));
  store = await Store.open(dir);
});
after(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

/** Stores `content` in chunks as the client would, and returns its manifest entry. */
async function put(path: string, content: Uint8Array): Promise<ManifestEntry> {
  const chunks: Array<[string, number]> = [];
  const name = `b${bundles++}.cwsb`;
  const writer = await BundleWriter.create(join(store.paths.incoming, name));
  let offset = 0;
  for (const length of chunkLengths(content)) {
    const piece = content.subarray(offset, offset + length);
    const ref: [string, number] = [xxh64Hex(piece), length];
    chunks.push(ref);
    await writer.add(chunkId(ref), piece);
    offset += length;
  }
  await writer.finish();
  await store.ingestBundle(name);
  return { path, kind: "file", size: content.byteLength, mtimeMs: 0, mode: 0o644, hash: xxh64Hex(content), chunks };
}

/** A rollout-like text of `lines` JSON lines, deterministic. */
function rollout(lines: number, tag = "x"): Buffer {
  return Buffer.from(Array.from({ length: lines }, (_, i) => JSON.stringify({ type: "response_item", i, tag, text: `line ${i} `.repeat(20) })).join("\n") + "\n");
}

const PATH = "codex/sessions/2026/01/02/rollout-2026-01-02T10-00-00-0198c1a2-0000-7000-8000-000000000001.jsonl";

test("an appended rollout extends the old one, reading only the old file's tail", async () => {
  const old = rollout(3000);
  const grown = Buffer.concat([old, rollout(200, "more")]);
  assert.ok(chunkLengths(old).length > 3, "the fixture spans several chunks");
  const oldEntry = await put(PATH, old);
  const grownEntry = await put(PATH, grown);
  const read = store.readChunk.bind(store);
  let reads = 0;
  store.readChunk = (id: string) => { reads++; return read(id); };
  try {
    assert.equal(await rolloutExtends(store, oldEntry, grownEntry), true);
  } finally {
    store.readChunk = read;
  }
  // The shared chunks are skipped by id; only the old last chunk and its counterpart are read.
  assert.ok(reads <= 4, `read ${reads} chunks`);
  assert.equal(await rolloutExtends(store, await put(PATH, old), await put(PATH, old)), true, "equal content extends");
});

test("a rewritten, truncated or unreadable rollout does not extend the old one", async () => {
  const old = rollout(3000);
  const rewritten = Buffer.from(old);
  rewritten[rewritten.byteLength - 10] ^= 1;
  const oldEntry = await put(PATH, old);
  assert.equal(await rolloutExtends(store, oldEntry, await put(PATH, Buffer.concat([rewritten, rollout(5, "tail")]))), false);
  assert.equal(await rolloutExtends(store, oldEntry, await put(PATH, old.subarray(0, old.byteLength - 100))), false);
  const missing: ManifestEntry = { ...oldEntry, chunks: [["0123456789abcdef", oldEntry.size]] };
  assert.equal(await rolloutExtends(store, oldEntry, { ...missing, size: oldEntry.size + 1, chunks: [["0123456789abcdef", oldEntry.size + 1]] }), false);
});

test("a rollout compressed to .jsonl.zst is compared by its decompressed content", async () => {
  const old = rollout(500);
  const oldEntry = await put(PATH, old);
  const zst = (bytes: Buffer) => zlib.zstdCompressSync(bytes);
  assert.equal(await rolloutExtends(store, oldEntry, await put(`${PATH}.zst`, zst(Buffer.concat([old, rollout(3, "z")])))), true);
  assert.equal(await rolloutExtends(store, oldEntry, await put(`${PATH}.zst`, zst(rollout(500, "other")))), false);
  assert.equal(await rolloutExtends(store, oldEntry, await put(`${PATH}.zst`, Buffer.from("not zstd at all"))), false);
});

test("readEntry reassembles a file and refuses one larger than its cap; readEntryRange reads a slice", async () => {
  const content = rollout(2000);
  const entry = await put("files/big.md", content);
  assert.deepEqual(await readEntry(store, entry, content.byteLength), content);
  assert.equal(await readEntry(store, entry, content.byteLength - 1), undefined);
  const from = 100_000;
  assert.deepEqual(await readEntryRange(store, entry, from, from + 5000), content.subarray(from, from + 5000));
});
