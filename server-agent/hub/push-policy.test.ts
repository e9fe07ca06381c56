import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isCwsError } from "../../src/errors.ts";
import { xxh64Hex } from "../../src/core/hash.ts";
import { chunkId, makeManifest, type ManifestEntry } from "../../src/core/manifest.ts";
import { BundleWriter } from "../../src/protocol/bundle.ts";
import { ManifestTrees } from "../store/manifest-tree.ts";
import { Store } from "../store/store.ts";
import { requireTreeChunks } from "./push-policy.ts";

test("a commit's chunk check asks about a whole tree batch by batch and refuses a lacking chunk in any batch, the last one too", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "cws-policy-"));
  const store = await Store.open(dir);
  t.after(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  // Twelve stored chunks, one file each, in six folders.
  const writer = await BundleWriter.create(join(store.paths.incoming, "chunks.cwsb"));
  const files: ManifestEntry[] = [];
  for (let i = 0; i < 12; i++) {
    const chunk = Buffer.from(`chunk number ${i}`);
    const hash = xxh64Hex(chunk);
    await writer.add(chunkId([hash, chunk.byteLength]), chunk);
    files.push({ path: `files/d${i % 6}/f${i}`, kind: "file", size: chunk.byteLength, mtimeMs: 1, mode: 0o644, hash, chunks: [[hash, chunk.byteLength]] });
  }
  await writer.finish();
  await store.ingestBundle("chunks.cwsb");
  const trees = new ManifestTrees(store);
  const lacking = (path: string): ManifestEntry => ({ path, kind: "file", size: 3, mtimeMs: 1, mode: 0o644, hash: "00000000000000ff", chunks: [["00000000000000ff", 3]] });

  // Whole: every batch of 5 (and the last, partial one) passes.
  await requireTreeChunks(trees, await trees.putManifest(makeManifest(files)), 5);
  // One chunk lacking, in the first folder walked, in the last, and alone in a folder of its own.
  for (const path of ["files/d0/lacking", "files/d5/lacking", "files/z/lacking"]) {
    const root = await trees.putManifest(makeManifest([...files, lacking(path)]));
    await assert.rejects(requireTreeChunks(new ManifestTrees(store), root, 5), (e) => isCwsError(e, "NOT_FOUND") && /lacks 1 chunk/.test(e.message), path);
  }
});
