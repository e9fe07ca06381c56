import assert from "node:assert/strict";
import { test, type TestContext } from "node:test";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { readSnapshot, writeSnapshot } from "./journal-file.ts";
import { snapshotLines, type SnapshotSections } from "./snapshot-lines.ts";

/** A fresh folder holding the snapshot `s.json`, removed after the test. */
async function snapshotPath(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "cws-snapshot-lines-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return join(dir, "s.json");
}

/** An owner that keeps every item of the sections `names` (and refuses items that are `false`). */
function collector(names: readonly string[]): SnapshotSections & { items: unknown[][] } {
  const items: unknown[][] = names.map(() => []);
  return { names, items, item: (section, json) => json !== false && items[section]!.push(json) > 0 };
}

/** A head, entries of about 100 bytes (2.4 MB for 24,000: several blocks and many groups), and paths. */
function sample(entries: number): { head: Record<string, unknown>; rows: unknown[]; paths: string[] } {
  const rows = Array.from({ length: entries }, (_, i) => [`files/folder-${i % 97}/file-${i}.txt`, i, 1.5 * i, null, i * 7, "0123456789abcdef", i % 3 === 0 ? 1 : ["fedcba9876543210", i]]);
  return { head: { format: 2, journal: "0123456789abcdef", ignoreRules: "{\"rules\":[\"*.tmp\"]}" }, rows, paths: ["files/a\nb", "files/\"quoted\"", "files/ünïcode"] };
}

const NAMES = ["entries", "unchecked"] as const;

async function written(path: string, entries: number): Promise<ReturnType<typeof sample>> {
  const data = sample(entries);
  await writeSnapshot(path, (epoch) => snapshotLines({ ...data.head, journal: epoch }, [["entries", data.rows], ["unchecked", data.paths]]));
  data.head.journal = JSON.parse((await readFile(path, "utf8")).split("\n")[0]! + "]}").journal;
  return data;
}

test("snapshotLines() writes one JSON document that any JSON reader takes whole, an item per line", async (t) => {
  const path = await snapshotPath(t);
  const data = await written(path, 5);
  const text = await readFile(path, "utf8");
  assert.deepEqual(JSON.parse(text), { ...data.head, entries: data.rows, unchecked: data.paths }, "an older cws reads it with JSON.parse");
  assert.equal(text.split("\n").length, 1 + 5 + 1 + 3 + 1 + 1, "head, entries, the next section, paths, the end, and the final newline");
  const empty = [...snapshotLines({}, [["rows", []]])].join("");
  assert.deepEqual(JSON.parse(empty), { rows: [] });
});

test("readSnapshot() with sections reads the layout of lines back as it was, across blocks, groups and a long line", async (t) => {
  const path = await snapshotPath(t);
  const data = await written(path, 24_000);
  // One line longer than a block (1 MiB), in the middle of the entries.
  data.rows.splice(12_000, 0, ["files/long", 0, 0, null, 0, "0123456789abcdef", ["x".repeat(3 * 1024 * 1024)]]);
  await writeSnapshot(path, (epoch) => snapshotLines({ ...data.head, journal: epoch }, [["entries", data.rows], ["unchecked", data.paths]]));
  const owner = collector(NAMES);
  const read = await readSnapshot(path, owner);
  assert.ok(read?.sectioned, "read in lines");
  assert.equal((read.json as { format: number }).format, 2);
  assert.equal((read.json as { entries?: unknown }).entries, undefined, "the head holds no section");
  assert.equal(read.bytes, (await readFile(path)).length);
  assert.deepEqual(owner.items, [data.rows, data.paths]);
});

test("readSnapshot() with sections parses a snapshot on one line (an older cws) whole", async (t) => {
  const path = await snapshotPath(t);
  const document = { format: 2, journal: "0123456789abcdef", entries: [[1]], unchecked: [] };
  await writeFile(path, JSON.stringify(document));
  const owner = collector(NAMES);
  const read = await readSnapshot(path, owner);
  assert.deepEqual([read?.sectioned, read?.json, owner.items], [false, document, [[], []]]);
});

test("readSnapshot() with sections refuses a torn or damaged snapshot in the layout of lines", async (t) => {
  const path = await snapshotPath(t);
  await written(path, 3);
  const good = await readFile(path, "utf8");
  const lines = good.split("\n");
  const cases: Array<[string, string]> = [
    ["torn in an item", good.slice(0, good.indexOf("\n", good.indexOf("\n") + 1) + 20)],
    ["torn after a whole line", lines.slice(0, 3).join("\n") + "\n"],
    ["torn before the end", good.slice(0, good.lastIndexOf("]}"))],
    ["a raw line break inside a string", [lines[0], `${lines[1]!.slice(0, 5)}\n${lines[1]!.slice(5)}`, ...lines.slice(2)].join("\n")],
    ["a missing comma", [lines[0], lines[1]!.slice(0, -1), ...lines.slice(2)].join("\n")],
    ["a comma before the end of a section", [lines[0], lines[1], lines[2], `${lines[3]},`, ...lines.slice(4)].join("\n")],
    ["a line of a comma alone", [lines[0], lines[1], ",", ...lines.slice(2)].join("\n")],
    ["garbage in an item", [lines[0], "[not json],", ...lines.slice(2)].join("\n")],
    ["a section out of order", good.replace(`],"unchecked":[`, `],"other":[`)],
    ["data after the end", `${good}{}`],
    ["an item the owner refuses", [lines[0], "false,", ...lines.slice(2)].join("\n")],
  ];
  for (const [name, text] of cases) {
    await writeFile(path, text);
    const read = await readSnapshot(path, collector(NAMES));
    assert.equal(read?.json, undefined, name);
    assert.equal(typeof read?.invalid, "string", name);
  }
  // The end's own newline may be missing.
  await writeFile(path, good.trimEnd());
  assert.notEqual((await readSnapshot(path, collector(NAMES)))?.json, undefined);
});

test("writeSnapshot() leaves the old snapshot and no temp file when writing its pieces fails", async (t) => {
  const path = await snapshotPath(t);
  await written(path, 3);
  const before = await readFile(path, "utf8");
  function* failing(): Generator<string> {
    yield "x".repeat(512 * 1024);
    throw new Error("the encoder failed half way");
  }
  await assert.rejects(writeSnapshot(path, () => failing()), /half way/);
  assert.equal(await readFile(path, "utf8"), before);
  assert.deepEqual(await readdir(dirname(path)), ["s.json"]);
});

test("readSnapshot() with sections finds the end of a section that falls on the edge of a read block", async (t) => {
  const path = await snapshotPath(t);
  const data = sample(8_000);
  const write = (padding: number) => writeSnapshot(path, (epoch) => snapshotLines({ ...data.head, journal: epoch, pad: "p".repeat(padding) }, [["entries", data.rows], ["unchecked", data.paths]]));
  await write(0);
  const block = 1024 * 1024;
  const at = (await readFile(path)).indexOf("\n]");
  assert.ok(at < block - 2, "the first section ends before the first block does");
  // The line break before `]` as the block's last byte, its first byte of the next, and around.
  for (const shift of [-2, -1, 0, 1, 2]) {
    await write(block - 1 - at + shift);
    const owner = collector(NAMES);
    const read = await readSnapshot(path, owner);
    assert.notEqual(read?.json, undefined, `shift ${shift}: ${read?.invalid}`);
    assert.deepEqual(owner.items, [data.rows, data.paths], `shift ${shift}`);
  }
});
