import { test } from "node:test";
import assert from "node:assert/strict";
import { appendFile, mkdir, mkdtemp, open, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Chunker } from "../core/chunker.ts";
import { createXxh64, xxh64Hex } from "../core/hash.ts";
import type { ManifestEntry } from "../core/manifest.ts";
import { hashAppendedFile, mayBeAppended } from "./append-hash.ts";
import { READ_BUFFER_BYTES } from "./file-chunks.ts";
import { scanTree } from "./scanner.ts";
import { readStatCache, type StatCacheEntry } from "./stat-cache.ts";

/** An hour ago, so that the files are old enough for the stat cache (not "racy"). */
const PAST_SECONDS = Math.floor(Date.now() / 1000) - 3600;

/** JSONL lines that vary enough to be cut into many content-defined chunks. */
function rolloutLines(count: number, seed: number): string {
  let x = seed >>> 0 || 1;
  const lines: string[] = [];
  for (let i = 0; i < count; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    lines.push(JSON.stringify({ type: "event_msg", n: i, seed, text: `turn ${i} ${x.toString(36).repeat(1 + (x % 40))}` }));
  }
  return `${lines.join("\n")}\n`;
}

async function withFolder(run: (root: string, cache: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "cws-append-"));
  await mkdir(join(dir, "root"));
  try {
    await run(join(dir, "root"), join(dir, "stat-cache.json"));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function scanEntry(root: string, path: string, statCachePath?: string): Promise<ManifestEntry> {
  const { manifest } = await scanTree({ root, ...(statCachePath === undefined ? {} : { statCachePath }) });
  const entry = manifest.entries.find((e) => e.path === `files/${path}`);
  assert.ok(entry, `${path} is in the manifest`);
  return entry;
}

async function cachedEntry(statCachePath: string, path: string): Promise<StatCacheEntry> {
  const cache = await readStatCache(statCachePath, () => {});
  const entry = cache.entries.get(`files/${path}`);
  assert.ok(entry, `${path} is in the stat cache`);
  return entry;
}

test("a grown rollout is hashed from its last cached chunk on, with the same chunks as a full hash", async () => {
  await withFolder(async (root, cache) => {
    const file = join(root, "rollout.jsonl");
    await writeFile(file, rolloutLines(30_000, 1));
    await utimes(file, PAST_SECONDS, PAST_SECONDS);
    const first = await scanEntry(root, "rollout.jsonl", cache);
    assert.ok(first.size > READ_BUFFER_BYTES && first.chunks.length > 4, `a multi-chunk file (${first.size} bytes, ${first.chunks.length} chunks)`);
    const cached = await cachedEntry(cache, "rollout.jsonl");

    await appendFile(file, rolloutLines(800, 2));
    await utimes(file, PAST_SECONDS + 60, PAST_SECONDS + 60);
    const fresh = await scanEntry(root, "rollout.jsonl");
    const handle = await open(file);
    const stats = await handle.stat();
    await handle.close();
    assert.ok(mayBeAppended(cached, stats));
    const appended = await hashAppendedFile(file, cached, Buffer.allocUnsafe(READ_BUFFER_BYTES), new Chunker(), undefined);
    assert.ok(appended, "recognised as an append");
    assert.equal(appended.hash, fresh.hash);
    assert.deepEqual(appended.chunks, fresh.chunks);
    // Every chunk but the old last one is reused as it was.
    assert.deepEqual(appended.chunks.slice(0, first.chunks.length - 1), first.chunks.slice(0, -1));

    // The scanner takes the same path and records the same result.
    const rescanned = await scanEntry(root, "rollout.jsonl", cache);
    assert.equal(rescanned.hash, fresh.hash);
    assert.deepEqual(rescanned.chunks, fresh.chunks);
  });
});

test("a grown file whose old part changed is not taken for an append, and is hashed in full", async () => {
  await withFolder(async (root, cache) => {
    const file = join(root, "rollout.jsonl");
    await writeFile(file, rolloutLines(30_000, 3));
    await utimes(file, PAST_SECONDS, PAST_SECONDS);
    await scanEntry(root, "rollout.jsonl", cache);
    const cached = await cachedEntry(cache, "rollout.jsonl");

    // Same inode, longer, but one byte in the middle of the old content differs.
    const handle = await open(file, "r+");
    await handle.write(Buffer.from("X"), 0, 1, Math.floor(cached.size / 2));
    await handle.close();
    await appendFile(file, rolloutLines(500, 4));
    await utimes(file, PAST_SECONDS + 60, PAST_SECONDS + 60);

    assert.equal(await hashAppendedFile(file, cached, Buffer.allocUnsafe(READ_BUFFER_BYTES), new Chunker(), undefined), undefined);
    const fresh = await scanEntry(root, "rollout.jsonl");
    const rescanned = await scanEntry(root, "rollout.jsonl", cache);
    assert.equal(rescanned.hash, fresh.hash);
    assert.deepEqual(rescanned.chunks, fresh.chunks);
    assert.notEqual(rescanned.hash, cached.hash);
  });
});

test("a streaming xxh64 digest read mid-stream equals the hash of the bytes so far, and the stream goes on", () => {
  const a = new TextEncoder().encode(rolloutLines(2_000, 5));
  const b = new TextEncoder().encode(rolloutLines(100, 6));
  const hasher = createXxh64();
  hasher.update(a);
  assert.equal(hasher.digestHex(), xxh64Hex(a));
  hasher.update(b);
  const both = new Uint8Array(a.length + b.length);
  both.set(a);
  both.set(b, a.length);
  assert.equal(hasher.digestHex(), xxh64Hex(both));
});
