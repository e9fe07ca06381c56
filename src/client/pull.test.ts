import assert from "node:assert/strict";
import { test } from "node:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startWriteback } from "./pull.ts";

test("startWriteback starts the file system's writeback in the background and says when it ended, also when it failed", { skip: process.platform !== "linux", timeout: 60_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), "cws-writeback-"));
  try {
    // The pull starts the next one only after `done`: it must come for a failure too.
    for (const path of [dir, join(dir, "no-such-folder")]) {
      let ended = 0;
      const finished = new Promise<void>((resolve) => {
        assert.equal(startWriteback(path, () => {
          ended++;
          resolve();
        }), true);
      });
      await finished;
      assert.ok(ended >= 1);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
