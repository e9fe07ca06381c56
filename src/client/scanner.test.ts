import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, mkdir, readFile, rm, stat, symlink, truncate, utimes, writeFile, appendFile } from "node:fs/promises";
import { rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isCwsError } from "../errors.ts";
import { xxh64Hex } from "../core/hash.ts";
import { MAX_CHUNK_SIZE } from "../core/chunker.ts";
import { Manifest, chunkId, type ManifestEntry } from "../core/manifest.ts";
import { READ_BUFFER_BYTES, readFileChunks } from "./file-chunks.ts";
import { scanTree, type ScanOptions } from "./scanner.ts";
import { addToStatCache } from "./stat-cache.ts";

/** An hour ago, so that every fixture file is old enough to be cached (not "racy"). */
const PAST_SECONDS = Math.floor(Date.now() / 1000) - 3600;

function randomBytes(length: number, seed: number): Uint8Array {
  const data = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    data[i] = x & 0xff;
  }
  return data;
}

interface Fixture {
  dir: string;
  root: string;
  cache: string;
  [Symbol.asyncDispose](): Promise<void>;
}

/** A temp superproject with files to sync, files to ignore, an empty folder and symlinks. */
async function makeFixture(): Promise<Fixture> {
  const dir = await mkdtemp(join(tmpdir(), "cws-scanner-"));
  const root = join(dir, "root");
  const files: Record<string, string | Uint8Array> = {
    "AGENTS.md": "# Agents\n",
    "notes/plan.md": "- step one\n- step two\n",
    // Bigger than one read buffer: streamed through the async readers in several reads.
    "notes/deep/data.bin": randomBytes(READ_BUFFER_BYTES + MAX_CHUNK_SIZE + 1000, 11),
    // Smaller than one read buffer but several chunks: hashed by the synchronous path.
    "notes/deep/medium.bin": randomBytes(MAX_CHUNK_SIZE + 5000, 12),
    "empty.txt": "",
    ".hidden": "dotfiles are synced\n",
    ".cwsignore": "# local build output\nbuild/\n*.log\n!keep.log\n",
    "keep.log": "re-included by a negation\n",
    "debug.log": "ignored by .cwsignore\n",
    "build/out.txt": "ignored by .cwsignore\n",
    ".git/config": "ignored by default\n",
    "node_modules/pkg/index.js": "ignored by default\n",
    "notes/node_modules/x.js": "ignored by default at any depth\n",
    "Thumbs.db": "ignored by default\n",
    "notes/.DS_Store": "ignored by default\n",
    "~$report.docx": "ignored by default\n",
    "notes/draft.md.cws-tmp": "ignored by default\n",
  };
  for (const [path, content] of Object.entries(files)) {
    await mkdir(join(root, path, ".."), { recursive: true });
    await writeFile(join(root, path), content);
  }
  await mkdir(join(root, "empty-folder"));
  await mkdir(join(root, ".cws"));
  await symlink("AGENTS.md", join(root, "link-to-file"));
  await symlink("notes", join(root, "link-to-folder"));
  for (const path of Object.keys(files)) await utimes(join(root, path), PAST_SECONDS, PAST_SECONDS);
  return {
    dir,
    root,
    cache: join(dir, "stat-cache.json"),
    async [Symbol.asyncDispose]() {
      await rm(dir, { recursive: true, force: true });
    },
  };
}

const SYNCED_PATHS = [
  "files/.cwsignore",
  "files/.hidden",
  "files/AGENTS.md",
  "files/empty-folder",
  "files/empty.txt",
  "files/keep.log",
  "files/notes",
  "files/notes/deep",
  "files/notes/deep/data.bin",
  "files/notes/deep/medium.bin",
  "files/notes/plan.md",
];

function scan(fixture: Fixture, options: Partial<ScanOptions> = {}) {
  const warnings: string[] = [];
  const result = scanTree({ root: fixture.root, statCachePath: fixture.cache, onWarning: (m) => warnings.push(m), ...options });
  return result.then((r) => ({ ...r, warnings }));
}

function entry(manifest: Manifest, path: string): ManifestEntry {
  const found = manifest.entries.find((e) => e.path === path);
  assert.ok(found, `no entry ${path}`);
  return found;
}

test("scanTree() lists files and folders, sorted, with the hashes of their content", async () => {
  await using fixture = await makeFixture();
  const { manifest, problems, hashedFiles } = await scan(fixture);
  assert.deepEqual(
    manifest.entries.map((e) => e.path),
    SYNCED_PATHS,
  );
  Manifest.parse(manifest); // sorted, no duplicates, every entry well-formed
  assert.equal(hashedFiles, 8);
  assert.deepEqual(
    problems.map((p) => p.path),
    ["files/link-to-file", "files/link-to-folder"],
  );
  for (const e of manifest.entries) {
    const abs = join(fixture.root, e.path.slice("files/".length));
    const stats = await stat(abs);
    assert.equal(e.mtimeMs, stats.mtimeMs, `${e.path} mtime`);
    assert.equal(e.mode, stats.mode & 0o777, `${e.path} mode`);
    if (e.kind === "dir") continue;
    const content = await readFile(abs);
    assert.equal(e.size, content.length);
    assert.equal(e.hash, xxh64Hex(content), `${e.path} hash`);
    let offset = 0;
    for (const [hash, length] of e.chunks) {
      assert.equal(hash, xxh64Hex(content.subarray(offset, offset + length)));
      offset += length;
    }
    assert.equal(offset, content.length);
  }
  assert.equal(entry(manifest, "files/empty-folder").kind, "dir");
  assert.deepEqual(entry(manifest, "files/empty.txt").chunks, []);
  assert.ok(entry(manifest, "files/notes/deep/data.bin").chunks.length >= 5, "a big file has several chunks");
  assert.ok(entry(manifest, "files/notes/deep/medium.bin").chunks.length >= 2, "a medium file has several chunks");
});

test("scanTree() skips symlinks with a problem and never follows them", async () => {
  await using fixture = await makeFixture();
  const { manifest, problems } = await scan(fixture);
  assert.ok(!manifest.entries.some((e) => e.path.startsWith("files/link-to")), "no entry for or below a link");
  for (const problem of problems) assert.match(problem.reason, /symbolic link/);
});

test("scanTree() applies extraIgnore rules and a changed .cwsignore", async () => {
  await using fixture = await makeFixture();
  await writeFile(join(fixture.root, ".cwsignore"), "notes/deep/\n");
  const { manifest } = await scan(fixture, { extraIgnore: ["/AGENTS.md"] });
  const paths = manifest.entries.map((e) => e.path);
  assert.ok(!paths.includes("files/AGENTS.md"), "extraIgnore rule applies");
  assert.ok(!paths.some((p) => p.startsWith("files/notes/deep")), "the folder rule drops the folder and its content");
  assert.ok(paths.includes("files/debug.log") && paths.includes("files/build/out.txt"), "the old .cwsignore rules are gone");
  assert.ok(!paths.includes("files/.git/config") && !paths.includes("files/Thumbs.db"), "defaults still apply");
});

test("scanTree() with the stat cache re-hashes nothing on a second scan", async () => {
  await using fixture = await makeFixture();
  const first = await scan(fixture);
  const second = await scan(fixture);
  assert.equal(second.hashedFiles, 0);
  assert.equal(second.hashedBytes, 0);
  assert.deepEqual(second.manifest, first.manifest);
  assert.deepEqual(second.warnings, []);
});

test("scanTree() re-hashes exactly the file whose stat changed", async () => {
  await using fixture = await makeFixture();
  await scan(fixture);
  const plan = join(fixture.root, "notes/plan.md");
  await utimes(plan, PAST_SECONDS + 60, PAST_SECONDS + 60);
  const touched = await scan(fixture);
  assert.equal(touched.hashedFiles, 1);
  assert.equal(touched.hashedBytes, (await stat(plan)).size);

  // Same size and mtime put back, but the content differs: the ctime still gives it away.
  await writeFile(plan, "- step ONE\n- step TWO\n");
  await utimes(plan, PAST_SECONDS + 60, PAST_SECONDS + 60);
  const rewritten = await scan(fixture);
  assert.equal(rewritten.hashedFiles, 1);
  assert.equal(entry(rewritten.manifest, "files/notes/plan.md").hash, xxh64Hex(await readFile(plan)));
});

test("scanTree() does not cache files modified just before the scan", async () => {
  await using fixture = await makeFixture();
  const aSecondAfterTheFiles = () => PAST_SECONDS * 1000 + 1000;
  await scan(fixture, { now: aSecondAfterTheFiles });
  const second = await scan(fixture, { now: aSecondAfterTheFiles });
  assert.equal(second.hashedFiles, 8, "racy files are hashed again");
  await scan(fixture);
  assert.equal((await scan(fixture)).hashedFiles, 0, "once old enough they are cached");
});

test("scanTree() survives a corrupt stat cache with a warning", async () => {
  await using fixture = await makeFixture();
  const expected = (await scanTree({ root: fixture.root })).manifest;
  const garbageFiles = [
    "{not json",
    JSON.stringify({ format: 1, entries: { "files/AGENTS.md": { size: -1 } } }),
    "[]",
    JSON.stringify({ format: 2, ignoreRules: null, unchecked: [], entries: [["files/AGENTS.md", 9, 1, 1, 1, "0123456789abcdef", 1], ["files/x", -1, 1, 1, 1, "0123456789abcdef", []]] }),
    JSON.stringify({ format: 2, ignoreRules: null, unchecked: [], entries: [["files/AGENTS.md", 9, 1, 1, 1, "0123456789abcdef", ["0123456789abcdef", 8]]] }),
  ];
  for (const garbage of garbageFiles) {
    await writeFile(fixture.cache, garbage);
    const result = await scan(fixture);
    assert.equal(result.warnings.length, 1, garbage);
    assert.match(result.warnings[0], /stat cache/);
    assert.equal(result.hashedFiles, 8);
    assert.deepEqual(result.manifest, expected);
  }
  assert.equal((await scan(fixture)).hashedFiles, 0, "the cache was rewritten");
});

test("scanTree() reports NFC-equal twins and maps non-NFC names to their disk path", async () => {
  await using fixture = await makeFixture();
  const nfd = "cafe\u0301.md";
  await writeFile(join(fixture.root, nfd), "decomposed\n");
  const once = await scan(fixture);
  assert.ok(once.manifest.entries.some((e) => e.path === "files/caf\u00e9.md"));
  assert.equal(once.diskPaths.get("files/caf\u00e9.md"), nfd);

  await writeFile(join(fixture.root, "caf\u00e9.md"), "composed\n");
  const twice = await scan(fixture);
  assert.equal(twice.manifest.entries.filter((e) => e.path === "files/caf\u00e9.md").length, 1);
  assert.ok(twice.problems.some((p) => p.path === "files/caf\u00e9.md" && /Unicode/.test(p.reason)));
});

test("scanTree() refuses a missing root instead of returning an empty tree", async () => {
  await using fixture = await makeFixture();
  await assert.rejects(scanTree({ root: join(fixture.dir, "missing") }), (error) => isCwsError(error, "NOT_FOUND"));
  await assert.rejects(scanTree({ root: join(fixture.root, "AGENTS.md") }), (error) => isCwsError(error, "INVALID_ARGUMENT"));
});

test("scanTree() stops with CANCELLED when its signal aborts", async () => {
  await using fixture = await makeFixture();
  const controller = new AbortController();
  const progress: number[] = [];
  const scanning = scan(fixture, {
    signal: controller.signal,
    onProgress: ({ files }) => {
      progress.push(files);
      controller.abort();
    },
  });
  await assert.rejects(scanning, (error) => isCwsError(error, "CANCELLED"));
  assert.ok(progress.length >= 1);
  await assert.rejects(stat(fixture.cache), { code: "ENOENT" }, "a cancelled scan writes no cache");
});

test("readFileChunks() yields the entry's chunks and refuses a file changed since the scan", async () => {
  await using fixture = await makeFixture();
  const { manifest } = await scan(fixture);
  assert.deepEqual(await Array.fromAsync(readFileChunks(join(fixture.root, "empty.txt"), entry(manifest, "files/empty.txt"))), []);
  // data.bin is streamed chunk by chunk; medium.bin is read whole (smaller than a read buffer).
  for (const name of ["notes/deep/data.bin", "notes/deep/medium.bin"]) {
    const scanned = entry(manifest, `files/${name}`);
    const abs = join(fixture.root, name);
    const content = await readFile(abs);

    const chunks = await Array.fromAsync(readFileChunks(abs, scanned));
    assert.deepEqual(
      chunks.map((c) => c.id),
      scanned.chunks.map(chunkId),
      name,
    );
    assert.ok(Buffer.concat(chunks.map((c) => c.data)).equals(content), name);

    const corrupt = (error: unknown) => isCwsError(error, "CORRUPT");
    const flipAt = MAX_CHUNK_SIZE + 5; // inside the second chunk or later, not the first
    content[flipAt] ^= 0xff;
    await writeFile(abs, content);
    await assert.rejects(Array.fromAsync(readFileChunks(abs, scanned)), corrupt, `${name}: a flipped byte`);
    content[flipAt] ^= 0xff;
    await writeFile(abs, content);
    await appendFile(abs, "more");
    await assert.rejects(Array.fromAsync(readFileChunks(abs, scanned)), corrupt, `${name}: a grown file`);
    await truncate(abs, 100);
    await assert.rejects(Array.fromAsync(readFileChunks(abs, scanned)), corrupt, `${name}: a shrunk file`);
    await rm(abs);
    await assert.rejects(Array.fromAsync(readFileChunks(abs, scanned)), (error) => isCwsError(error, "NOT_FOUND"), `${name}: a deleted file`);
  }
});

test("scanTree() survives files that vanish between the walk and the read", async () => {
  await using fixture = await makeFixture();
  const many = join(fixture.root, "many");
  await mkdir(many);
  for (let i = 0; i < 20; i++) await writeFile(join(many, `f${i}.md`), `file ${i}\n`);
  let deleted = false;
  const { manifest, problems } = await scan(fixture, {
    onProgress: () => {
      // Runs after the first file; later files the walk already listed are gone when read.
      if (!deleted) rmSync(many, { recursive: true });
      deleted = true;
    },
  });
  Manifest.parse(manifest);
  const survivors = manifest.entries.filter((e) => e.path.startsWith("files/many/") && e.kind === "file");
  assert.ok(survivors.length <= 1, "at most the file read before the deletion");
  for (const problem of problems.filter((p) => p.path.startsWith("files/many/"))) assert.match(problem.reason, /vanished/);
});

test("scanTree() matches cached files against changed ignore rules again", async () => {
  await using fixture = await makeFixture();
  await scan(fixture);
  await writeFile(join(fixture.root, ".cwsignore"), "plan.md\n");
  await utimes(join(fixture.root, ".cwsignore"), PAST_SECONDS, PAST_SECONDS);
  const paths = (await scan(fixture, { extraIgnore: ["/AGENTS.md"] })).manifest.entries.map((e) => e.path);
  assert.ok(!paths.includes("files/notes/plan.md"), "the new .cwsignore rule drops a cached file");
  assert.ok(!paths.includes("files/AGENTS.md"), "the new extraIgnore rule drops a cached file");
  assert.ok(paths.includes("files/debug.log"), "the old rule is gone");
});

test("scanTree() matches files a pull added to the cache against the ignore rules", async () => {
  await using fixture = await makeFixture();
  await scan(fixture);
  // As a pull records a file it wrote: here one that this device's rules ignore.
  const ignored = join(fixture.root, "debug.log");
  const stats = await stat(ignored);
  const content = await readFile(ignored);
  await addToStatCache(fixture.cache, new Map([["files/debug.log", { size: stats.size, mtimeMs: stats.mtimeMs, ctimeMs: stats.ctimeMs, ino: stats.ino, hash: xxh64Hex(content), chunks: [[xxh64Hex(content), content.length]] }]]));
  const { manifest, hashedFiles } = await scan(fixture);
  assert.deepEqual(manifest.entries.map((e) => e.path), SYNCED_PATHS);
  assert.equal(hashedFiles, 0);
});

test("scanTree() reuses a stat cache of the previous format instead of hashing again", async () => {
  await using fixture = await makeFixture();
  const first = await scan(fixture);
  const { entries } = JSON.parse(await readFile(fixture.cache, "utf8")) as { entries: Array<[string, number, number, number, number, string, 1 | Array<string | number>]> };
  const old: Record<string, unknown> = {};
  for (const [path, size, mtimeMs, ctimeMs, ino, hash, chunks] of entries) {
    const refs = chunks === 1 ? [[hash, size]] : Array.from({ length: chunks.length / 2 }, (_, i) => [chunks[2 * i], chunks[2 * i + 1]]);
    old[path] = { size, mtimeMs, ctimeMs, ino, hash, chunks: refs };
  }
  await writeFile(fixture.cache, JSON.stringify({ format: 1, entries: old }));
  const second = await scan(fixture);
  assert.equal(second.hashedFiles, 0);
  assert.deepEqual(second.warnings, []);
  assert.deepEqual(second.manifest, first.manifest);
  assert.equal(JSON.parse(await readFile(fixture.cache, "utf8")).format, 2, "the cache is rewritten in the current format");
});

test("scanTree() does not rewrite an unchanged stat cache", async () => {
  await using fixture = await makeFixture();
  await scan(fixture);
  const before = await stat(fixture.cache);
  await scan(fixture);
  const after = await stat(fixture.cache);
  assert.equal(after.ino, before.ino, "the file was not replaced");
  assert.equal(after.mtimeMs, before.mtimeMs);
});

test("scanTree() gives the same entries when a second thread hashes the files", async () => {
  await using fixture = await makeFixture();
  // Enough files that both threads take some: the thread's queue is bounded.
  const many = join(fixture.root, "many");
  await mkdir(many);
  for (let i = 0; i < 300; i++) await writeFile(join(many, `f${i}.bin`), randomBytes(1000 + i * 97, 100 + i));
  const alone = await scanTree({ root: fixture.root, hashThread: "never" });
  const shared = await scanTree({ root: fixture.root, hashThread: "always" });
  assert.deepEqual(shared.manifest, alone.manifest);
  assert.deepEqual(shared.problems, alone.problems);
  assert.equal(shared.hashedFiles, alone.hashedFiles);
  assert.equal(shared.hashedBytes, alone.hashedBytes);
  assert.equal(entry(shared.manifest, "files/notes/deep/data.bin").hash, xxh64Hex(await readFile(join(fixture.root, "notes/deep/data.bin"))));
});

test("scanTree() with a hashing thread keeps files that vanish as unknown, and stops on CANCELLED", async () => {
  await using fixture = await makeFixture();
  const many = join(fixture.root, "many");
  await mkdir(many);
  for (let i = 0; i < 200; i++) await writeFile(join(many, `f${i}.md`), `file ${i}\n`);
  let deleted = false;
  const { manifest, problems } = await scanTree({
    root: fixture.root,
    hashThread: "always",
    onProgress: () => {
      if (!deleted) rmSync(many, { recursive: true });
      deleted = true;
    },
  });
  Manifest.parse(manifest);
  const gone = problems.filter((p) => p.path.startsWith("files/many/"));
  const survivors = manifest.entries.filter((e) => e.path.startsWith("files/many/") && e.kind === "file");
  assert.equal(gone.length + survivors.length, 200, "every listed file is an entry or a problem, never dropped");
  for (const problem of gone) {
    assert.match(problem.reason, /vanished/);
    assert.equal(problem.unknown, true);
  }

  const controller = new AbortController();
  const scanning = scanTree({ root: fixture.root, hashThread: "always", signal: controller.signal, onProgress: () => controller.abort() });
  await assert.rejects(scanning, (error) => isCwsError(error, "CANCELLED"));
});
