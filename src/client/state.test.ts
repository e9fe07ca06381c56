import assert from "node:assert/strict";
import { test } from "node:test";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isCwsError } from "../errors.ts";
import type { Manifest } from "../core/manifest.ts";
import { StateStore } from "./state.ts";

const H = "0123456789abcdef";
const base: Manifest = {
  format: 1,
  entries: [
    { path: "files/a", kind: "dir", size: 0, mtimeMs: 5, mode: 0o755, hash: "", chunks: [] },
    { path: "files/a/b.md", kind: "file", size: 3, mtimeMs: 7, mode: 0o644, hash: H, chunks: [[H, 3]] },
  ],
};

async function withState(work: (state: StateStore) => Promise<void>): Promise<void> {
  const home = await mkdtemp(join(tmpdir(), "cws-state-"));
  try {
    await work(await StateStore.open(home));
  } finally {
    await rm(home, { recursive: true, force: true });
  }
}

test("a base manifest is written compactly and read back as it was", async () => {
  await withState(async (state) => {
    await state.writeBase("s", base);
    assert.ok(Array.isArray(JSON.parse(await readFile(state.basePath("s"), "utf8")).rows));
    assert.deepEqual(await state.readBase("s"), base);
  });
});

test("a base manifest is written a row per line, and one on one line (the previous version) is still read", async () => {
  await withState(async (state) => {
    await state.writeBase("s", base);
    const text = await readFile(state.basePath("s"), "utf8");
    assert.equal(text.split("\n").length, 1 + 2 + 1 + 1, "head, rows, the end, the final newline");
    await writeFile(state.basePath("s"), JSON.stringify(JSON.parse(text)));
    assert.deepEqual(await (await StateStore.open(state.home)).readBase("s"), base);
  });
});

test("a base manifest in lines that is torn or out of order is refused as CORRUPT", async () => {
  await withState(async (state) => {
    await state.writeBase("s", base);
    const good = await readFile(state.basePath("s"), "utf8");
    const [head, first, second, ...rest] = good.split("\n");
    for (const text of [good.slice(0, good.length - 4), [head, `${second},`, first!.slice(0, -1), ...rest].join("\n")]) {
      await writeFile(state.basePath("s"), text);
      await assert.rejects((await StateStore.open(state.home)).readBase("s"), (error) => isCwsError(error, "CORRUPT"), text);
    }
  });
});

test("a base manifest written by an older cws, in the plain form, is still read", async () => {
  await withState(async (state) => {
    await writeFile(state.basePath("s"), JSON.stringify(base));
    assert.deepEqual(await state.readBase("s"), base);
  });
});

test("a damaged base manifest is refused as CORRUPT, in either form", async () => {
  await withState(async (state) => {
    for (const text of ["{not json", JSON.stringify({ format: 1, rows: [["files/a", -1, 0o755]] }), JSON.stringify({ format: 1, entries: [{ path: "" }] })]) {
      await writeFile(state.basePath("s"), text);
      await assert.rejects(state.readBase("s"), (error) => isCwsError(error, "CORRUPT"), text);
    }
  });
});

const changed: Manifest = {
  format: 1,
  entries: [
    base.entries[0],
    { path: "files/a/b.md", kind: "file", size: 4, mtimeMs: 9, mode: 0o644, hash: "fedcba9876543210", chunks: [["fedcba9876543210", 4]] },
    { path: "files/c.md", kind: "file", size: 3, mtimeMs: 8, mode: 0o600, hash: H, chunks: [[H, 3]] },
  ],
};

test("a base changed after it was read is recorded as a journal record, and read back whole by a new store", async () => {
  await withState(async (state) => {
    await state.writeBase("s", base);
    const snapshot = await readFile(state.basePath("s"), "utf8");
    assert.deepEqual(await state.readBase("s"), base);
    await state.writeBase("s", changed);
    await state.writeBase("s", { format: 1, entries: [changed.entries[0], changed.entries[2]] });
    assert.equal(await readFile(state.basePath("s"), "utf8"), snapshot, "the snapshot is not rewritten");
    assert.equal((await readFile(`${state.basePath("s")}.journal`, "utf8")).trim().split("\n").length, 3, "a header and one record per write");
    const fresh = await StateStore.open(state.home);
    assert.deepEqual(await fresh.readBase("s"), { format: 1, entries: [changed.entries[0], changed.entries[2]] });
  });
});

test("a base of the plain form is migrated to a snapshot with a journal on its first write", async () => {
  await withState(async (state) => {
    await writeFile(state.basePath("s"), JSON.stringify(base));
    assert.deepEqual(await state.readBase("s"), base);
    await state.writeBase("s", changed);
    const written = JSON.parse(await readFile(state.basePath("s"), "utf8"));
    assert.ok(Array.isArray(written.rows) && typeof written.journal === "string", "now the compact form, with a journal epoch");
    assert.deepEqual(await (await StateStore.open(state.home)).readBase("s"), changed);
  });
});

test("a journal record that does not hold a valid entry makes the base CORRUPT, not silently older", async () => {
  await withState(async (state) => {
    await state.writeBase("s", base);
    await state.readBase("s");
    await state.writeBase("s", changed);
    const journal = `${state.basePath("s")}.journal`;
    const [header] = (await readFile(journal, "utf8")).split("\n");
    const json = JSON.stringify({ u: [["files/x", -1, 0o755]], r: [] });
    const { crc32 } = await import("node:zlib");
    await writeFile(journal, `${header}\n${crc32(Buffer.from(json)).toString(16).padStart(8, "0")} ${json}\n`);
    await assert.rejects((await StateStore.open(state.home)).readBase("s"), (error) => isCwsError(error, "CORRUPT"));
  });
});
