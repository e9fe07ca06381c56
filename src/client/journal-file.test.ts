import assert from "node:assert/strict";
import { test } from "node:test";
import { mkdtemp, readFile, rm, stat, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { appendRecord, journalPath, readJournal, readSnapshot, snapshotEpoch, writeSnapshot, type JournalOrigin } from "./journal-file.ts";

async function withDir(work: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "cws-journal-"));
  try {
    await work(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The snapshot's JSON and the journal's records, as a reader finds them. */
async function load(path: string): Promise<{ snapshot: unknown; records: unknown[]; origin: JournalOrigin }> {
  const snapshot = await readSnapshot(path);
  const json: unknown = snapshot?.json;
  return { snapshot: json, ...(await readJournal(path, snapshot, snapshotEpoch(json))) };
}

const snapshotOf = (value: number) => (epoch: string) => JSON.stringify({ journal: epoch, value });

test("appendRecord() adds records a later read returns in order, beside an unchanged snapshot", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "s.json");
    const written = await writeSnapshot(path, snapshotOf(1));
    const snapshotBefore = await readFile(path, "utf8");
    let origin: JournalOrigin | null = written;
    for (const n of [1, 2, 3]) {
      origin = await appendRecord(path, origin!, { n });
      assert.notEqual(origin, null, `record ${n} was appended`);
    }
    assert.equal(await readFile(path, "utf8"), snapshotBefore, "the snapshot is not rewritten");
    const read = await load(path);
    assert.deepEqual(read.records, [{ n: 1 }, { n: 2 }, { n: 3 }]);
    assert.deepEqual(read.origin, origin, "a reader finds the files as the writer left them");
  });
});

test("a torn last record is ignored as a whole, and the next write is a snapshot that drops the journal", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "s.json");
    let origin = (await appendRecord(path, await writeSnapshot(path, snapshotOf(1)), { n: 1 }))!;
    origin = (await appendRecord(path, origin, { n: 2, pad: "x".repeat(100) }))!;
    // A crash in the middle of the second record: only part of its line reached the disk.
    const journal = journalPath(path);
    await truncate(journal, (await stat(journal)).size - 40);
    const read = await load(path);
    assert.deepEqual(read.records, [{ n: 1 }], "the state before the torn change");
    assert.equal(read.origin.clean, false);
    assert.equal(await appendRecord(path, read.origin, { n: 3 }), null, "nothing is appended after bytes that are not a record");
    await writeSnapshot(path, snapshotOf(3));
    assert.deepEqual((await load(path)).records, []);
    await assert.rejects(stat(journal), { code: "ENOENT" });
  });
});

test("a record whose bytes were damaged after its checksum ends the journal there", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "s.json");
    let origin = (await appendRecord(path, await writeSnapshot(path, snapshotOf(1)), { n: 1 }))!;
    origin = (await appendRecord(path, origin, { n: 2 }))!;
    await appendRecord(path, origin, { n: 3 });
    const journal = journalPath(path);
    const lines = (await readFile(journal, "utf8")).split("\n");
    lines[2] = lines[2].replace('"n":2', '"n":7');
    await writeFile(journal, lines.join("\n"));
    assert.deepEqual((await load(path)).records, [{ n: 1 }]);
  });
});

test("a journal of another snapshot (a crash after the snapshot's rename, or an older cws) is ignored", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "s.json");
    await appendRecord(path, await writeSnapshot(path, snapshotOf(1)), { n: 1 });
    const oldJournal = await readFile(journalPath(path));
    await writeSnapshot(path, snapshotOf(2));
    // As if the old journal's removal had not happened.
    await writeFile(journalPath(path), oldJournal);
    const read = await load(path);
    assert.deepEqual(read.snapshot, { journal: snapshotEpoch(read.snapshot), value: 2 });
    assert.deepEqual(read.records, []);
    assert.equal(await appendRecord(path, read.origin, { n: 2 }), null, "the foreign journal is replaced by a snapshot, not extended");
    // A snapshot without an epoch (an older cws wrote it) has no journal at all.
    await writeFile(path, JSON.stringify({ value: 3 }));
    const older = await load(path);
    assert.deepEqual([older.records, older.origin.epoch], [[], null]);
    assert.equal(await appendRecord(path, older.origin, { n: 3 }), null);
  });
});

test("appendRecord() refuses when the files changed since they were read, or the journal is due for compaction", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "s.json");
    const origin = (await appendRecord(path, await writeSnapshot(path, snapshotOf(1)), { n: 1 }))!;
    // Another process appended meanwhile: this origin's record would be against an older state.
    const other = await appendRecord(path, origin, { n: 2 });
    assert.notEqual(other, null);
    assert.equal(await appendRecord(path, origin, { n: 3 }), null);
    // A journal past the compaction floor (the snapshot is small) asks for a snapshot.
    const big = { pad: "y".repeat(300 * 1024) };
    assert.equal(await appendRecord(path, other!, big), null);
    assert.deepEqual((await load(path)).records, [{ n: 1 }, { n: 2 }]);
  });
});

test("appendRecord() encodes a record's lists an item at a time, and stops as soon as the record is too large for the journal", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "s.json");
    let origin = await writeSnapshot(path, snapshotOf(1));
    // A list given as a generator is written as an array.
    origin = (await appendRecord(path, origin, { n: 1, u: (function* () { yield [1, "a"]; yield [2, "b"]; })(), skipped: undefined }))!;
    assert.deepEqual((await load(path)).records, [{ n: 1, u: [[1, "a"], [2, "b"]] }]);
    // A change of a whole large tree: far more than the journal may hold.
    let made = 0;
    function* items(): Generator<string> {
      for (let i = 0; i < 1_000_000; i++, made++) yield `files/folder/file-${i}.txt`;
    }
    assert.equal(await appendRecord(path, origin, { u: items() }), null, "a whole snapshot is due instead");
    assert.ok(made < 20_000, `only the items that fit the journal were made (${made})`);
  });
});
