/**
 * Measures the store's ingest and bundle-preparation throughput on about 100 MiB of mixed
 * chunks (half Markdown-like text, half random bytes, 1-256 KiB each), in bundles of about
 * 32 MiB as a client would send them. Run: `node server-agent/store/ingest-bench.ts [MiB] [max chunk KiB]`
 * (a small maximum, e.g. 8, imitates a workspace of many small files).
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { xxh64Hex } from "../../src/core/hash.ts";
import { chunkId } from "../../src/core/manifest.ts";
import { BundleWriter, readBundle, verifyRecord } from "../../src/protocol/bundle.ts";
import { Store } from "./store.ts";

const totalBytes = Number(process.argv[2] ?? 100) * 1024 * 1024;
const maxChunkKiB = Number(process.argv[3] ?? 256);
const bundleBytes = 32 * 1024 * 1024;
const words = "the a sync chunk manifest thread rollout codex note plan skill agent server device lease".split(" ");

function textChunk(length: number, seed: number): Uint8Array {
  const parts: string[] = [];
  let size = 0;
  let state = seed;
  while (size < length) {
    state = (state * 1103515245 + 12345) >>> 0;
    const word = words[state % words.length];
    parts.push(word, state % 11 === 0 ? "\n" : " ");
    size += word.length + 1;
  }
  return Buffer.from(parts.join("").slice(0, length));
}

const dir = await mkdtemp(join(tmpdir(), "cws-bench-"));
try {
  const store = await Store.open(dir);
  const ids: string[] = [];
  const names: string[] = [];
  let made = 0;
  let writeMs = 0;
  while (made < totalBytes) {
    const name = `bench-${names.length}.cwsb`;
    const chunks: Uint8Array[] = [];
    let inBundle = 0;
    while (inBundle < bundleBytes && made + inBundle < totalBytes) {
      const length = 1024 + Math.floor(Math.random() * ((maxChunkKiB - 1) * 1024));
      const chunk = ids.length % 2 === 0 ? textChunk(length, ids.length) : randomBytes(length);
      chunks.push(chunk);
      ids.push(chunkId([xxh64Hex(chunk), length]));
      inBundle += length;
    }
    const started = performance.now();
    const writer = await BundleWriter.create(join(store.paths.incoming, name));
    for (const [i, chunk] of chunks.entries()) await writer.add(ids[ids.length - chunks.length + i], chunk);
    await writer.finish();
    writeMs += performance.now() - started;
    names.push(name);
    made += inBundle;
  }
  const mb = made / 1e6;
  console.log(`data: ${(made / 2 ** 20).toFixed(0)} MiB in ${ids.length} chunks, ${names.length} bundles`);
  console.log(`client BundleWriter (zstd + write + fsync): ${(mb / (writeMs / 1000)).toFixed(0)} MB/s`);

  let started = performance.now();
  let stored = 0;
  for (const name of names) stored += (await store.ingestBundle(name)).chunks;
  let ms = performance.now() - started;
  console.log(`ingestBundle (read, decompress, xxh64, pack + idx + fsync): ${(mb / (ms / 1000)).toFixed(0)} MB/s, ${ms.toFixed(0)} ms, ${stored} chunks`);

  started = performance.now();
  const missing = await store.missing(ids);
  console.log(`missing(${ids.length} ids): ${(performance.now() - started).toFixed(1)} ms, ${missing.length} missing`);

  started = performance.now();
  const { name, bytes } = await store.writeBundle(ids);
  ms = performance.now() - started;
  console.log(`writeBundle (copy stored records): ${(mb / (ms / 1000)).toFixed(0)} MB/s, ${(bytes / 2 ** 20).toFixed(0)} MiB on the wire`);

  started = performance.now();
  for await (const record of readBundle(join(store.paths.outgoing, name))) verifyRecord(record);
  ms = performance.now() - started;
  console.log(`client readBundle + verifyRecord: ${(mb / (ms / 1000)).toFixed(0)} MB/s`);
  await store.close();
} finally {
  await rm(dir, { recursive: true, force: true });
}
