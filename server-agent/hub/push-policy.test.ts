import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isCwsError } from "../../src/errors.ts";
import { xxh64Hex } from "../../src/core/hash.ts";
import { chunkId, makeManifest, type ManifestEntry } from "../../src/core/manifest.ts";
import { BundleWriter } from "../../src/protocol/bundle.ts";
import { ManifestTrees } from "../store/manifest-tree.ts";
import { Store } from "../store/store.ts";
import { requireTreeChunks } from "./push-policy.ts";

/** A store holding twelve chunks, and twelve files (one chunk each) in six folders that name them. */
async function storeWithFiles(t: TestContext): Promise<{ store: Store; trees: ManifestTrees; files: ManifestEntry[] }> {
  const dir = await mkdtemp(join(tmpdir(), "cws-policy-"));
  const store = await Store.open(dir);
  t.after(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  const files: ManifestEntry[] = [];
  const chunks: Buffer[] = [];
  for (let i = 0; i < 12; i++) {
    chunks.push(Buffer.from(`chunk number ${i}`));
    const hash = xxh64Hex(chunks[i]!);
    files.push({ path: `files/d${i % 6}/f${i}`, kind: "file", size: chunks[i]!.byteLength, mtimeMs: 1, mode: 0o644, hash, chunks: [[hash, chunks[i]!.byteLength]] });
  }
  await ingest(store, "chunks.cwsb", chunks);
  return { store, trees: new ManifestTrees(store), files };
}

async function ingest(store: Store, name: string, chunks: readonly Buffer[]): Promise<void> {
  const writer = await BundleWriter.create(join(store.paths.incoming, name));
  for (const chunk of chunks) await writer.add(chunkId([xxh64Hex(chunk), chunk.byteLength]), chunk);
  await writer.finish();
  await store.ingestBundle(name);
}

type TestContext = { after: (fn: () => Promise<void>) => void };

/** A file whose one chunk (`n`) no store holds. */
function lacking(path: string, n: number): ManifestEntry {
  const hash = n.toString(16).padStart(16, "0");
  return { path, kind: "file", size: 3, mtimeMs: 1, mode: 0o644, hash, chunks: [[hash, 3]] };
}

test("a commit's chunk check passes a tree whose every chunk is stored, and refuses one lacking a chunk wherever it lies", async (t) => {
  const { trees, files } = await storeWithFiles(t);
  await requireTreeChunks(trees, await trees.putManifest(makeManifest(files)));
  // One chunk lacking: in the first folder walked, in the last, alone in a folder of its own, at the root.
  for (const path of ["files/d0/lacking", "files/d5/lacking", "files/z/lacking", "lacking"]) {
    const root = await trees.putManifest(makeManifest([...files, lacking(path, 255)]));
    await assert.rejects(requireTreeChunks(new ManifestTrees(trees.store), root), (e) => isCwsError(e, "NOT_FOUND") && /lacks 1 chunk/.test(e.message) && /Run the sync again/.test(e.message), path);
  }
});

test("a commit's chunk check names every chunk the whole tree lacks, once each, among the first 20", async (t) => {
  const { trees, files } = await storeWithFiles(t);
  const more = [lacking("files/d0/a", 1), lacking("files/d3/b", 2), lacking("files/d3/c", 1), lacking("z", 3)];
  const root = await trees.putManifest(makeManifest([...files, ...more]));
  await assert.rejects(requireTreeChunks(trees, root), (e) => {
    assert.ok(isCwsError(e, "NOT_FOUND"));
    assert.match(e.message, /lacks 3 chunk\(s\)/);
    assert.deepEqual([...(e.data as { missing: string[] }).missing].sort(), [1, 2, 3].map((n) => `${n.toString(16).padStart(16, "0")}-3`));
    return true;
  });
});

test("a commit's chunk check finds a chunk another process stored after this store last looked", async (t) => {
  const { store, trees, files } = await storeWithFiles(t);
  const chunk = Buffer.from("stored by another agent process");
  const hash = xxh64Hex(chunk);
  const root = await trees.putManifest(makeManifest([...files, { path: "files/late", kind: "file", size: chunk.byteLength, mtimeMs: 1, mode: 0o644, hash, chunks: [[hash, chunk.byteLength]] }]));
  const other = await Store.open(store.paths.root);
  t.after(() => other.close());
  await ingest(other, "late.cwsb", [chunk]);
  assert.equal(store.holdsChunk(hash, chunk.byteLength), false, "not seen before the store looks again");
  await requireTreeChunks(trees, root);
  assert.equal(store.holdsChunk(hash, chunk.byteLength), true);
});

test("a commit's chunk check refuses a tree with a damaged folder object as CORRUPT, not as lacking chunks", async (t) => {
  const { trees, files } = await storeWithFiles(t);
  const root = await trees.putManifest(makeManifest(files));
  const leaf = (await trees.folder(root, "files"))!.dirs.get("d4")!.tree;
  const path = join(trees.store.paths.objects, leaf.slice(0, 2), leaf);
  const bytes = await readFile(path);
  bytes[bytes.byteLength - 3] ^= 0x40;
  await writeFile(path, bytes);
  await assert.rejects(requireTreeChunks(new ManifestTrees(trees.store), root), (e) => isCwsError(e, "CORRUPT") && e.message.includes(leaf));
});
