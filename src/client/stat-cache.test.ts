import assert from "node:assert/strict";
import { test } from "node:test";
import { mkdtemp, readFile, rm, stat, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { addToStatCache, readStatCache, saveStatCache, StatCacheEntries, type StatCacheEntry } from "./stat-cache.ts";

const H = "0123456789abcdef";
const entry = (size: number, ino = 1): StatCacheEntry => ({ size, mtimeMs: 1000 + size, ctimeMs: 2000 + size, ino, hash: H, chunks: [[H, size]] });

async function withCache(work: (path: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "cws-stat-cache-"));
  try {
    await work(join(dir, "p.stat.json"));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const noWarning = (message: string) => assert.fail(message);

test("StatCacheEntries sorts pairs given in walk order, the later of two equal paths winning", () => {
  const entries = new StatCacheEntries([["files/a/b", entry(1)], ["files/a.txt", entry(2)], ["files/a/b", entry(3)], ["files/0", entry(4)]]);
  assert.deepEqual([...entries].map(([path, e]) => [path, e.size]), [["files/0", 4], ["files/a.txt", 2], ["files/a/b", 3]]);
});

test("a cache saved against the one it was read from appends only the difference, and reads back the same", async () => {
  await withCache(async (path) => {
    const first = new StatCacheEntries([["files/a", entry(1)], ["files/b", entry(2)], ["files/c", entry(3)]]);
    await saveStatCache(path, first, "rules-1");
    const snapshot = await readFile(path, "utf8");
    const read = await readStatCache(path, noWarning);
    // As a scan builds the next cache: unchanged files keep their very cached object.
    const next = new StatCacheEntries([["files/a", read.entries.get("files/a")!], ["files/b", entry(20, 7)], ["files/d", entry(4)]]);
    await saveStatCache(path, next, "rules-2", [], read);
    assert.equal(await readFile(path, "utf8"), snapshot, "the snapshot is not rewritten");
    const [, record] = (await readFile(`${path}.journal`, "utf8")).trim().split("\n");
    const json = JSON.parse(record.slice(9)) as { u: Array<[string]>; r: string[] };
    assert.deepEqual([json.u.map((tuple) => tuple[0]), json.r], [["files/b", "files/d"], ["files/c"]], "only what changed is written");
    const again = await readStatCache(path, noWarning);
    assert.deepEqual([...again.entries], [...next]);
    assert.equal(again.ignoreRules, "rules-2");
    assert.deepEqual(again.unchecked, new Set());
  });
});

test("files a pull adds are journaled as unchecked, and a torn record costs only the newest entries", async () => {
  await withCache(async (path) => {
    await saveStatCache(path, new StatCacheEntries([["files/a", entry(1)]]), "rules");
    await readStatCache(path, noWarning);
    await addToStatCache(path, new Map([["files/p", entry(5)]]));
    let read = await readStatCache(path, noWarning);
    assert.deepEqual([...read.entries].map(([p]) => p), ["files/a", "files/p"]);
    assert.deepEqual([read.ignoreRules, [...read.unchecked]], ["rules", ["files/p"]]);
    await addToStatCache(path, new Map([["files/q", entry(6)]]));
    const journal = `${path}.journal`;
    await truncate(journal, (await stat(journal)).size - 5);
    read = await readStatCache(path, noWarning);
    assert.deepEqual([...read.entries].map(([p]) => p), ["files/a", "files/p"], "the torn record is ignored");
    // The next save replaces the torn journal with a whole snapshot.
    await addToStatCache(path, new Map([["files/r", entry(7)]]));
    await assert.rejects(stat(journal), { code: "ENOENT" });
    assert.deepEqual([...(await readStatCache(path, noWarning)).entries].map(([p]) => p), ["files/a", "files/p", "files/r"]);
  });
});

test("a cache is written an entry per line and read back the same; one written on one line by an older cws is still read", async () => {
  await withCache(async (path) => {
    const entries = new StatCacheEntries([["files/a", entry(1)], ["files/b", entry(2, 3)], ["files/c", { ...entry(0), chunks: [] }]]);
    await saveStatCache(path, entries, "rules", ["files/b"]);
    const text = await readFile(path, "utf8");
    assert.equal(text.split("\n").length, 1 + 3 + 1 + 1 + 1 + 1, "head, entries, the unchecked section, its path, the end, the final newline");
    const read = await readStatCache(path, noWarning);
    assert.deepEqual([[...read.entries], read.ignoreRules, read.unchecked], [[...entries], "rules", new Set(["files/b"])]);
    // The same document on one line, as the previous version wrote it.
    await writeFile(path, JSON.stringify(JSON.parse(text)));
    const old = await readStatCache(path, noWarning);
    assert.deepEqual([[...old.entries], old.ignoreRules, old.unchecked], [[...entries], "rules", new Set(["files/b"])]);
  });
});

test("a torn or damaged cache in lines is ignored with a warning, as one on one line is", async () => {
  await withCache(async (path) => {
    await saveStatCache(path, new StatCacheEntries([["files/a", entry(1)], ["files/b", entry(2)]]), "rules", ["files/b"]);
    const good = await readFile(path, "utf8");
    const lines = good.split("\n");
    for (const text of [
      good.slice(0, good.length - 10),
      [lines[0], "[\"files/a\",-1,1,1,1,\"0123456789abcdef\",1],", ...lines.slice(2)].join("\n"),
      good.replace(`"ignoreRules":"rules"`, `"ignoreRules":7`),
      good.replace(`"format":2`, `"format":3`),
      good.replace(`"files/b"\n]}`, `7\n]}`),
    ]) {
      await writeFile(path, text);
      const warnings: string[] = [];
      const read = await readStatCache(path, (message) => warnings.push(message));
      assert.equal(read.entries.size, 0, text);
      assert.match(warnings.join(), /stat cache .* every file will be hashed again/, text);
    }
  });
});
