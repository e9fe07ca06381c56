import assert from "node:assert/strict";
import { test } from "node:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileSystemSyncer } from "./fs-atomic.ts";

const linux = process.platform === "linux";

test("FileSystemSyncer answers every request in order from one helper, and a failed sync as false", { skip: !linux, timeout: 60_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), "cws-syncer-"));
  const syncer = new FileSystemSyncer(dir);
  const missing = new FileSystemSyncer(join(dir, "no-such-folder"));
  try {
    await writeFile(join(dir, "f"), "written before the barrier");
    // Asked several times before any answer: each request gets its own.
    assert.deepEqual(await Promise.all([syncer.sync(), syncer.sync(), syncer.sync()]), [true, true, true]);
    assert.equal(await missing.sync(), false, "sync -f of a path that does not exist fails");
    assert.equal(await syncer.sync(), true, "the helper still answers after a failure elsewhere");
  } finally {
    syncer.close();
    missing.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test("FileSystemSyncer answers a request made before close, and falls back to its own sync once the helper is gone", { skip: !linux, timeout: 60_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), "cws-syncer-"));
  const syncer = new FileSystemSyncer(dir);
  try {
    const pending = syncer.sync();
    syncer.close();
    assert.equal(await pending, true);
    // Closed: later requests run `sync -f` themselves.
    assert.equal(await syncer.sync(), true);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("FileSystemSyncer answers where it cannot help: false off Linux", { skip: linux }, async () => {
  const syncer = new FileSystemSyncer(tmpdir());
  assert.equal(await syncer.sync(), false);
  syncer.close();
});
