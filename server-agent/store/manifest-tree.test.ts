import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isCwsError } from "../../src/errors.ts";
import { applyManifestDelta, diffManifests, makeManifest, type Manifest, type ManifestEntry } from "../../src/core/manifest.ts";
import { manifestPushView } from "../../src/core/push-view.ts";
import { changedTravelProblems, travelProblems } from "../../src/core/portable-names.ts";
import { ManifestTrees } from "./manifest-tree.ts";
import { Store } from "./store.ts";

type TestContext = { after: (fn: () => Promise<void>) => void };

async function openTrees(t: TestContext): Promise<ManifestTrees> {
  const dir = await mkdtemp(join(tmpdir(), "cws-tree-"));
  const store = await Store.open(dir);
  t.after(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  return new ManifestTrees(store);
}

function hex(n: number): string {
  return n.toString(16).padStart(16, "0");
}

const file = (path: string, n: number, mtimeMs = 1): ManifestEntry => ({ path, kind: "file", size: n + 1, mtimeMs, mode: 0o644, hash: hex(n), chunks: [[hex(n), n + 1]] });
const folder = (path: string): ManifestEntry => ({ path, kind: "dir", size: 0, mtimeMs: 1, mode: 0o755, hash: "", chunks: [] });

/** A seeded tree with nested folders, names that sort across "/" (`a-b`, `a.md`, `a/…`) and files. */
function sampleTree(seed: number, files: number): Manifest {
  let state = seed;
  const next = () => (state = (state * 1103515245 + 12345) % 2147483648);
  const entries = new Map<string, ManifestEntry>();
  const names = ["a", "a-b", "a.md", "b", "notes", "x y"];
  for (let i = 0; i < files; i++) {
    const depth = 1 + (next() % 4);
    const parts = ["files"];
    for (let d = 0; d < depth; d++) parts.push(names[next() % names.length]);
    const path = `${parts.join("/")}-${i}.md`;
    for (let d = 2; d < parts.length; d++) entries.set(parts.slice(0, d).join("/"), folder(parts.slice(0, d).join("/")));
    entries.set(path, file(path, next() % 1000));
  }
  entries.set("codex/sessions/rollout-1.jsonl", file("codex/sessions/rollout-1.jsonl", 7));
  return makeManifest(entries.values());
}

test("a tree stores and reads back the very manifest, and the same manifest always has the same root", async (t) => {
  const trees = await openTrees(t);
  const manifest = sampleTree(1, 300);
  const root = await trees.putManifest(manifest);
  assert.deepEqual(await trees.getManifest(root), manifest);
  assert.equal(await new ManifestTrees(trees.store).putManifest(structuredClone(manifest)), root);
  assert.deepEqual(await trees.counts(root), {
    entries: manifest.entries.length,
    files: manifest.entries.filter((e) => e.kind === "file").length,
    bytes: manifest.entries.reduce((n, e) => n + e.size, 0),
  });
  assert.deepEqual(await trees.getManifest(await trees.putManifest(makeManifest([]))), makeManifest([]));
});

test("a delta on a tree gives the tree of the whole manifest with the delta applied, and writes only the folders on its paths", async (t) => {
  const trees = await openTrees(t);
  const base = sampleTree(2, 400);
  const root = await trees.putManifest(base);
  const objectsBefore = await countObjects(trees);
  const target = applyManifestDelta(base, {
    upserts: [file(base.entries[10].path, 5000, 9), file("files/new/folder/n.md", 5001), folder("files/new")],
    removes: [base.entries[20].path, "files/not-there"],
  });
  const delta = diffManifests(base, target);
  const { root: edited } = await trees.applyDelta(root, delta);
  assert.equal(edited, await trees.putManifest(target), "the edited tree is the canonical tree of the target");
  assert.deepEqual(await trees.getManifest(edited), target);
  const written = (await countObjects(trees)) - objectsBefore;
  assert.ok(written > 0 && written <= 14, `a three-path delta wrote ${written} folder objects`);
  await assert.rejects(trees.applyDelta(root, { upserts: [file("files/x", 1), file("files/x", 2)], removes: [] }), /duplicate path/);
});

test("removing every entry of a folder drops its object from the parent, so the tree equals the manifest without it", async (t) => {
  const trees = await openTrees(t);
  const base = makeManifest([folder("files/a"), file("files/a/x", 1), file("files/a/y", 2), file("files/b", 3)]);
  const { root } = await trees.applyDelta(await trees.putManifest(base), { upserts: [], removes: ["files/a/x", "files/a/y", "files/a"] });
  assert.equal(root, await trees.putManifest(makeManifest([file("files/b", 3)])));
});

test("the push view of two trees is the push view of the two whole manifests", async (t) => {
  const trees = await openTrees(t);
  for (const seed of [3, 4, 5]) {
    const before = sampleTree(seed, 250);
    const after = sampleTree(seed + 100, 250);
    // Mix: a shared part, a changed part, a deleted folder.
    const mixed = makeManifest([...before.entries.filter((_, i) => i % 3 !== 0), ...after.entries.filter((e, i) => i % 3 === 0 && !before.entries.some((b) => b.path === e.path))]);
    const view = await trees.pushView(await trees.putManifest(before), await trees.putManifest(mixed));
    const expected = manifestPushView(before, mixed);
    assert.deepEqual(view.changed, expected.changed);
    assert.equal(view.beforeFiles, expected.beforeFiles);
    for (const path of expected.changed) {
      assert.deepEqual(view.before(path), expected.before(path));
      assert.deepEqual(view.after(path), expected.after(path));
      for (let i = path.indexOf("/"); i !== -1; i = path.indexOf("/", i + 1)) {
        const up = path.slice(0, i);
        assert.deepEqual(view.before(up), expected.before(up), up);
        assert.equal(view.filesUnder("before", up), expected.filesUnder("before", up), up);
        assert.equal(view.filesUnder("after", up), expected.filesUnder("after", up), up);
      }
    }
  }
});

test("a file over a folder: the push view lists what the restored file would bury", async (t) => {
  const trees = await openTrees(t);
  const before = makeManifest([file("files/x", 1), file("files/y", 2)]);
  const after = makeManifest([folder("files/x"), file("files/x/a", 3), folder("files/x/d"), file("files/x/d/b", 4), file("files/y", 2)]);
  const view = await trees.pushView(await trees.putManifest(before), await trees.putManifest(after));
  assert.deepEqual(view.afterPathsUnder("files/x"), manifestPushView(before, after).afterPathsUnder("files/x"));
  assert.deepEqual(view.changed, ["files/x", "files/x/a", "files/x/d", "files/x/d/b"]);
});

test("names that travel: a delta is judged against the tree it makes, as the whole-manifest check judges it", async (t) => {
  const trees = await openTrees(t);
  const base = makeManifest([file("files/a.md", 1), folder("files/d"), file("files/d/e", 2)]);
  const root = await trees.putManifest(base);
  const cases: ManifestEntry[][] = [
    [file("files/a.md/under", 3)],
    [file("files/d", 4)],
    [file("files/ok.md", 5), file("files/CON.txt", 6)],
    [file("files/fine", 7)],
  ];
  for (const upserts of cases) {
    const removes = upserts.some((e) => e.path === "files/d") ? ["files/d"] : [];
    const delta = { upserts, removes };
    const edit = await trees.editDelta(root, delta);
    const got = changedTravelProblems(upserts, await edit.travelLookup(upserts));
    const whole = applyManifestDelta(base, delta);
    assert.deepEqual(got, travelProblems(whole.entries, new Set(upserts.map((e) => e.path))), JSON.stringify(upserts.map((e) => e.path)));
  }
});

test("a manifest stored whole by an earlier version is read, and turned into a tree once a commit builds on it", async (t) => {
  const trees = await openTrees(t);
  const manifest = sampleTree(6, 120);
  const legacy = await trees.store.putObject(Buffer.from(JSON.stringify(manifest)));
  assert.deepEqual(await trees.getManifest(legacy), manifest);
  assert.equal(await trees.isTree(legacy), false);
  const root = await trees.treeRoot(legacy);
  assert.notEqual(root, legacy);
  assert.equal(root, await trees.putManifest(manifest));
  const seen: string[] = [];
  await trees.walk(legacy, (_node, hash) => void seen.push(hash));
  assert.deepEqual(seen, [legacy], "a whole manifest is one object to keep");
});

test("a damaged folder object or a wrong count is reported as CORRUPT, never used", async (t) => {
  const trees = await openTrees(t);
  const root = await trees.putManifest(makeManifest([folder("files/a"), file("files/a/x", 1)]));
  const lying = await trees.store.putObject(Buffer.from(JSON.stringify({ tree: 1, entries: [], dirs: [{ name: "files", tree: (await trees.folder(root, "files"))!.dirs.get("a")!.tree, entries: 5, files: 1, bytes: 2 }] })));
  await assert.rejects(new ManifestTrees(trees.store).walk(lying, () => {}, { checkCounts: true }), (e) => isCwsError(e) && e.code === "CORRUPT" && /counts 5 entries/.test(e.message));
  const unsorted = await trees.store.putObject(Buffer.from(JSON.stringify({ tree: 1, entries: [{ ...file("b", 1), name: "b", path: undefined }, { ...file("a", 1), name: "a", path: undefined }], dirs: [] })));
  await assert.rejects(new ManifestTrees(trees.store).getManifest(unsorted), (e) => isCwsError(e) && e.code === "CORRUPT");
  const slash = await trees.store.putObject(Buffer.from(JSON.stringify({ tree: 1, entries: [], dirs: [{ name: "a/b", tree: hex(1), entries: 1, files: 1, bytes: 1 }] })));
  await assert.rejects(new ManifestTrees(trees.store).getManifest(slash), (e) => isCwsError(e) && e.code === "CORRUPT");
});

test("a walk by a fresh reader visits every folder object of a tree once, and fails on a damaged one deep down", async (t) => {
  const trees = await openTrees(t);
  const entries: ManifestEntry[] = [];
  for (let a = 0; a < 6; a++) {
    entries.push(folder(`files/a${a}`));
    for (let b = 0; b < 40; b++) {
      entries.push(folder(`files/a${a}/b${b}`));
      for (let i = 0; i < 3; i++) entries.push(file(`files/a${a}/b${b}/n${i}.md`, a * 1000 + b * 10 + i));
    }
  }
  const root = await trees.putManifest(makeManifest([folder("files"), ...entries]));
  const visited: string[] = [];
  let entriesSeen = 0;
  await new ManifestTrees(trees.store).walk(root, (node, hash) => {
    visited.push(hash);
    entriesSeen += node.entries.size;
  }, { checkCounts: true });
  assert.equal(visited.length, 1 + 1 + 6 + 6 * 40, "the root, files/, a*, a*/b*");
  assert.equal(new Set(visited).size, visited.length, "each folder once");
  assert.equal(visited.length, await countObjects(trees));
  assert.equal(entriesSeen, entries.length + 1);
  // One leaf's object damaged on disk: the walk reads it and refuses it.
  const leaf = (await trees.folder(root, "files/a5"))!.dirs.get("b39")!.tree;
  const path = join(trees.store.paths.objects, leaf.slice(0, 2), leaf);
  const bytes = await readFile(path);
  bytes[bytes.byteLength - 3] ^= 0x40;
  await writeFile(path, bytes);
  await assert.rejects(new ManifestTrees(trees.store).walk(root, () => {}), (e) => isCwsError(e) && e.code === "CORRUPT" && e.message.includes(leaf));
});

test("forEachChunk lists every chunk reference of a tree as its manifest holds them: deep folders, equal folders, several chunks a file, a whole manifest", async (t) => {
  const trees = await openTrees(t);
  const twice = (path: string): ManifestEntry[] => [folder(path), file(`${path}/same.md`, 5), { ...file(`${path}/big.jsonl`, 0), size: 30, hash: hex(9), chunks: [[hex(7), 10], [hex(8), 10], [hex(7), 10]] }];
  const manifest = makeManifest([...sampleTree(7, 300).entries, ...twice("files/copy-1"), ...twice("files/copy-2")]);
  const root = await trees.putManifest(manifest);
  assert.equal((await trees.folder(root, "files"))!.dirs.get("copy-1")!.tree, (await trees.folder(root, "files"))!.dirs.get("copy-2")!.tree, "two folders, one object");
  const listed = async (hash: string): Promise<string[]> => {
    const refs: string[] = [];
    await new ManifestTrees(trees.store).forEachChunk(hash, (chunk, length) => void refs.push(`${chunk}-${length}`));
    return refs.sort();
  };
  const expected = manifest.entries.flatMap((entry) => entry.chunks.map(([chunk, length]) => `${chunk}-${length}`)).sort();
  assert.deepEqual(await listed(root), expected);
  assert.deepEqual(await listed(await trees.store.putObject(Buffer.from(JSON.stringify(manifest)))), expected, "a whole manifest of an earlier version");
  assert.deepEqual(await listed(await trees.putManifest(makeManifest([]))), []);
});

test("forEachChunk refuses a damaged folder object, deep in the tree, as reading it as a node does", async (t) => {
  const trees = await openTrees(t);
  const entryOf = (e: ManifestEntry, name: string, extra: object = {}) => ({ name, kind: e.kind, size: e.size, mtimeMs: e.mtimeMs, mode: e.mode, hash: e.hash, chunks: e.chunks, ...extra });
  const good = { tree: 1, entries: [entryOf(file("x", 1), "a"), entryOf(file("x", 2), "b")], dirs: [] };
  const damaged: Array<[string, unknown]> = [
    ["another format", { tree: 2, entries: [], dirs: [] }],
    ["a whole manifest", { format: 1, entries: [] }],
    ["no entries", { tree: 1, dirs: [] }],
    ["an entry that is no object", { ...good, entries: [7] }],
    ["a name with a slash", { ...good, entries: [entryOf(file("x", 1), "a/b")] }],
    ["names out of order", { ...good, entries: [...good.entries].reverse() }],
    ["a size its chunks do not make", { ...good, entries: [{ ...entryOf(file("x", 1), "a"), size: 5 }] }],
    ["a chunk without a length", { ...good, entries: [{ ...entryOf(file("x", 1), "a"), chunks: [[hex(1)]] }] }],
    ["a key too many", { ...good, entries: [entryOf(file("x", 1), "a", { path: "elsewhere" })] }],
    ["a path too long", { ...good, entries: [entryOf(file("x", 1), "n".repeat(4090))] }],
    ["a sub-folder without counts", { ...good, dirs: [{ name: "d", tree: hex(1) }] }],
    ["sub-folders out of order", { ...good, dirs: [{ name: "e", tree: hex(1), entries: 1, files: 1, bytes: 1 }, { name: "d", tree: hex(1), entries: 1, files: 1, bytes: 1 }] }],
  ];
  for (const [what, json] of damaged) {
    const bad = await trees.store.putObject(Buffer.from(JSON.stringify(json)));
    // Two levels down, under "files/deep" (a path of 10 characters).
    const deep = await trees.store.putObject(Buffer.from(JSON.stringify({ tree: 1, entries: [], dirs: [{ name: "deep", tree: bad, entries: 2, files: 2, bytes: 5 }] })));
    const root = await trees.store.putObject(Buffer.from(JSON.stringify({ tree: 1, entries: [], dirs: [{ name: "files", tree: deep, entries: 3, files: 2, bytes: 5 }] })));
    const asNode = await new ManifestTrees(trees.store).node(bad, "files/deep").then(() => undefined, (error: unknown) => error);
    assert.ok(isCwsError(asNode, "CORRUPT"), `${what}: read as a node`);
    // The same sentence, but for a whole manifest where a folder belongs (each says so its own way).
    const same = (message: string) => (what === "a whole manifest" ? message.includes(bad) : message === asNode.message);
    await assert.rejects(new ManifestTrees(trees.store).forEachChunk(root, () => {}), (e) => isCwsError(e, "CORRUPT") && same(e.message), what);
  }
  // Damaged on disk: its hash no longer matches.
  const root = await trees.putManifest(makeManifest([folder("files/a"), file("files/a/x", 1), file("files/y", 2)]));
  const leaf = (await trees.folder(root, "files"))!.dirs.get("a")!.tree;
  const path = join(trees.store.paths.objects, leaf.slice(0, 2), leaf);
  const bytes = await readFile(path);
  bytes[bytes.byteLength - 3] ^= 0x40;
  await writeFile(path, bytes);
  await assert.rejects(new ManifestTrees(trees.store).forEachChunk(root, () => {}), (e) => isCwsError(e, "CORRUPT") && e.message.includes(leaf));
});

async function countObjects(trees: ManifestTrees): Promise<number> {
  let n = 0;
  for (const shard of await readdir(trees.store.paths.objects)) n += (await readdir(join(trees.store.paths.objects, shard))).length;
  return n;
}


test("a tree written as JSON text folder by folder is the whole manifest's JSON, entries in path order", async (t) => {
  const trees = await openTrees(t);
  for (const seed of [1, 2, 3]) {
    const manifest = sampleTree(seed, 400);
    const root = await trees.putManifest(manifest);
    const text = (await trees.manifestJson(root)).join("");
    assert.equal(text, JSON.stringify(manifest));
  }
  // A whole manifest of an earlier version, and an empty tree, read the same way.
  const whole = sampleTree(4, 50);
  const hash = await trees.store.putObject(Buffer.from(JSON.stringify(whole)));
  assert.equal((await trees.manifestJson(hash)).join(""), JSON.stringify(whole));
  const empty = await trees.putManifest(makeManifest([]));
  assert.equal((await trees.manifestJson(empty)).join(""), JSON.stringify(makeManifest([])));
});
