import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Chunker } from "../core/chunker.ts";
import { initHash } from "../core/hash.ts";
import { READ_BUFFER_BYTES } from "./file-chunks.ts";
import { hashFileSync } from "./file-hash.ts";
import { ScanHashPool } from "./scan-hash-pool.ts";

test("ScanHashPool hashes files as the main thread does and reports what it cannot read", async () => {
  await initHash();
  const dir = await mkdtemp(join(tmpdir(), "cws-scan-pool-"));
  const pool = new ScanHashPool();
  try {
    const big = Buffer.alloc(READ_BUFFER_BYTES * 2 + 12345);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7919) >>> 3;
    await writeFile(join(dir, "big.bin"), big);
    await writeFile(join(dir, "small.md"), "# small\n");
    await mkdir(join(dir, "folder"));
    const [bigOutcome, smallOutcome, folder, missing] = await Promise.all([
      pool.hash(join(dir, "big.bin"), big.length),
      pool.hash(join(dir, "small.md"), 8),
      pool.hash(join(dir, "folder"), 0),
      pool.hash(join(dir, "missing"), 0),
    ]);
    const buffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
    assert.deepEqual(bigOutcome, hashFileSync(join(dir, "big.bin"), buffer, new Chunker()));
    assert.deepEqual(smallOutcome, hashFileSync(join(dir, "small.md"), buffer, new Chunker()));
    assert.ok(bigOutcome?.ok && bigOutcome.chunks.length > 2, "a file of several reads has several chunks");
    assert.deepEqual(folder, { ok: false, reason: "it is no longer a regular file" });
    assert.deepEqual(missing, { ok: false, reason: "it vanished during the scan" });
    assert.equal(pool.queuedFiles, 0);
    assert.equal(pool.queuedBytes, 0);
  } finally {
    await pool.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test("ScanHashPool answers null for files it still held when it closed, and for later ones", async () => {
  const pool = new ScanHashPool();
  const held = pool.hash("/nonexistent/never-read", 1);
  await pool.close();
  assert.equal(await held, null);
  assert.equal(pool.usable, false);
  assert.equal(await pool.hash("/nonexistent/after-close", 1), null);
});
