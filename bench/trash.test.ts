import assert from "node:assert/strict";
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import test from "node:test";
import { discard, emptyTrash, useTrash } from "./trash.ts";

test("discarded trees wait in the trash until it is emptied, and a missing tree is no error", async () => {
  const work = await mkdtemp(path.join(os.tmpdir(), "cws-trash-"));
  try {
    const tree = path.join(work, "device-b");
    mkdirSync(path.join(tree, "sub"), { recursive: true });
    writeFileSync(path.join(tree, "sub", "a.txt"), "a");
    useTrash(path.join(work, "trash"));
    await discard(tree);
    await discard(path.join(work, "never-made"));
    assert.equal(existsSync(tree), false);
    assert.deepEqual(readdirSync(path.join(work, "trash")).length, 1);
    await emptyTrash();
    assert.equal(existsSync(path.join(work, "trash")), false);
    // Without a trash, discard deletes at once.
    mkdirSync(tree);
    await discard(tree);
    assert.equal(existsSync(tree), false);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});
