import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile, appendFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { keepParsedFiles, keptValue, keepValue } from "./file-memo.ts";
import { writeFileAtomic } from "../fs-atomic.ts";

test("keptValue() returns a kept value only while the file is the one it was kept for", async () => {
  const dir = await mkdtemp(join(tmpdir(), "cws-memo-"));
  try {
    const path = join(dir, "base.json");
    await writeFile(path, "[1]");
    keepValue(path, "before keeping was on");
    assert.equal(keptValue(path), undefined, "nothing is kept until keepParsedFiles()");

    keepParsedFiles();
    keepValue(path, "one");
    assert.equal(keptValue(path), "one");

    // Replaced by rename, as cws writes it (a new inode): read afresh.
    await writeFileAtomic(path, "[1]");
    assert.equal(keptValue(path), undefined);

    // Changed in place by something else (same inode, new size and times): read afresh.
    keepValue(path, "two");
    await appendFile(path, " ");
    assert.equal(keptValue(path), undefined);

    // Deleted: nothing to keep.
    keepValue(path, "three");
    await rm(path);
    assert.equal(keptValue(path), undefined);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
