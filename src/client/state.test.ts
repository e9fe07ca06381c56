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
