import { test } from "node:test";
import assert from "node:assert/strict";
import { applyManifestDelta, diffManifests, makeManifest, type ManifestEntry } from "./manifest.ts";

const file = (path: string, hash: string, mtimeMs = 1): ManifestEntry => ({ path, kind: "file", size: 1, mtimeMs, mode: 0o644, hash, chunks: [[hash, 1]] });
const dir = (path: string): ManifestEntry => ({ path, kind: "dir", size: 0, mtimeMs: 1, mode: 0o755, hash: "", chunks: [] });

test("a manifest delta carries only what changed and rebuilds the target exactly", () => {
  const base = makeManifest([dir("files/a"), file("files/a/x", "1111111111111111"), file("files/b", "2222222222222222"), file("files/c", "3333333333333333")]);
  const target = makeManifest([dir("files/a"), file("files/a/x", "1111111111111111", 2), file("files/c", "3333333333333333"), file("files/d", "4444444444444444")]);
  const delta = diffManifests(base, target);
  assert.deepEqual(delta.removes, ["files/b"]);
  assert.deepEqual(delta.upserts.map((e) => e.path), ["files/a/x", "files/d"], "an mtime-only change travels, an unchanged entry does not");
  assert.deepEqual(applyManifestDelta(base, delta), target);
  assert.deepEqual(diffManifests(target, target), { upserts: [], removes: [] });
});

test("a delta with the same path twice is refused", () => {
  const base = makeManifest([]);
  assert.throws(() => applyManifestDelta(base, { upserts: [file("files/x", "1111111111111111"), file("files/x", "2222222222222222")], removes: [] }), /Duplicate/);
});
