/**
 * End-to-end sync through every layer (client, local transport, agent, hub, store) with real
 * files, a real hub process and real SQLite.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readFile, readdir, stat, writeFile, appendFile, utimes, rm } from "node:fs/promises";
import { join, relative } from "node:path";
import { randomBytes } from "node:crypto";
import { makeCluster, type TestCluster } from "./helpers/cluster.ts";
import { connectLocal } from "../src/transport/local.ts";
import { isCwsError } from "../src/errors.ts";

let cluster: TestCluster;
before(async () => { cluster = await makeCluster(); });
after(async () => { await cluster.close(); });

/** Every file under a folder with its bytes and mtime, for tree comparisons. */
async function snapshotTree(root: string): Promise<Map<string, { data: string; mtimeMs: number; mode: number } | "dir">> {
  const result = new Map<string, { data: string; mtimeMs: number; mode: number } | "dir">();
  async function walk(dir: string): Promise<void> {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      const key = relative(root, path);
      if (entry.isDirectory()) {
        result.set(key, "dir");
        await walk(path);
      } else {
        const info = await stat(path);
        result.set(key, { data: (await readFile(path)).toString("base64"), mtimeMs: Math.floor(info.mtimeMs), mode: info.mode & 0o777 });
      }
    }
  }
  await walk(root);
  return result;
}


async function writeWorkspace(root: string): Promise<void> {
  await mkdir(join(root, "notes", "deep"), { recursive: true });
  await mkdir(join(root, "empty-folder"), { recursive: true });
  await writeFile(join(root, "AGENTS.md"), "# Agents\n\nBe careful.\n");
  for (let i = 0; i < 20; i++) await writeFile(join(root, "notes", `note-${i}.md`), `# Note ${i}\n\n${"text ".repeat(200 * i)}\n`);
  await writeFile(join(root, "notes", "deep", "big.jsonl"), randomBytes(1_500_000).toString("base64"));
  await writeFile(join(root, "script.sh"), "#!/bin/sh\necho hi\n", { mode: 0o755 });
  // Files edited a minute ago, as a person's would be when they sync: files modified within the
  // scanner's racy window are deliberately hashed again, which is not what these tests measure.
  const aMinuteAgo = new Date(Date.now() - 60_000);
  for (const file of await readdir(root, { recursive: true })) await utimes(join(root, file), aMinuteAgo, aMinuteAgo);
  await utimes(join(root, "AGENTS.md"), new Date("2024-01-02T03:04:05Z"), new Date("2024-01-02T03:04:05Z"));
}

test("device A → server → device B gives byte-identical trees with mtimes and modes kept", async () => {
  const { a, b, rootA, rootB } = await cluster.pair("identical");
  await writeWorkspace(rootA);
  const pushed = await a.sync("identical");
  assert.equal(pushed.pushed.files, 23);
  assert.ok(pushed.snapshot !== null);
  const pulled = await b.sync("identical");
  assert.equal(pulled.pulled.files, 23);
  assert.deepEqual(await snapshotTree(rootB), await snapshotTree(rootA));
  assert.equal((await stat(join(rootB, "AGENTS.md"))).mtime.toISOString(), "2024-01-02T03:04:05.000Z");

  // Edits on B come back to A.
  await appendFile(join(rootB, "notes", "deep", "big.jsonl"), "\n{\"appended\":true}\n");
  await rm(join(rootB, "notes", "note-3.md"));
  await writeFile(join(rootB, "notes", "new.md"), "# New on B\n");
  const back = await b.sync("identical");
  assert.equal(back.pushed.files, 2);
  assert.equal(back.pushed.deleted, 1);
  // Only the tail of the appended file travels, not the whole file.
  assert.ok(back.pushed.bytes < 300_000, `pushed ${back.pushed.bytes} bytes for an append`);
  const onA = await a.sync("identical");
  assert.equal(onA.pulled.files, 2);
  assert.equal(onA.pulled.deleted, 1);
  assert.ok(onA.pulled.reusedChunks > 0, "unchanged chunks of the appended file are reused locally");
  assert.deepEqual(await snapshotTree(rootA), await snapshotTree(rootB));
  // The deleted file went to A's backup area first.
  assert.ok(onA.backupDir !== null);
  assert.equal(await readFile(join(onA.backupDir!, "notes", "note-3.md"), "utf8"), `# Note 3\n\n${"text ".repeat(600)}\n`);
});

test("a second sync with no change transfers no chunk and re-hashes no file", async () => {
  const { a, b, rootA } = await cluster.pair("noop");
  await writeWorkspace(rootA);
  await a.sync("noop");
  await b.sync("noop");
  for (const device of [a, b]) {
    const again = await device.sync("noop");
    assert.equal(again.scanned.hashedFiles, 0, `${device.name} re-hashed files`);
    assert.equal(again.pushed.chunks, 0);
    assert.equal(again.pulled.chunks, 0);
    assert.equal(again.pulled.files, 0);
    assert.ok(again.wire.sent + again.wire.received < 2000, `no-op moved ${again.wire.sent + again.wire.received} bytes`);
  }
});

test("`cws sync` scans while it connects, finds nothing to do the second time, and fails cleanly on a missing folder", async () => {
  const { a, rootA } = await cluster.pair("cli-noop");
  await writeWorkspace(rootA);
  const first = await a.cli(["sync", "cli-noop", "--json"]);
  assert.equal(first.code, 0, first.stderr);
  const again = await a.cli(["sync", "cli-noop", "--json"]);
  assert.equal(again.code, 0, again.stderr);
  const summary = JSON.parse(again.stdout);
  assert.equal(summary.scanned.hashedFiles, 0);
  assert.equal(summary.pushed.files + summary.pushed.deleted + summary.pulled.files + summary.pulled.deleted, 0);
  assert.equal(summary.snapshot.id, JSON.parse(first.stdout).snapshot.id);

  // The scan fails while the connection is still being opened: the error is reported, and
  // the command does not wait on (or leak) the session.
  await rm(rootA, { recursive: true });
  const missing = await a.cli(["sync", "cli-noop", "--json"]);
  assert.equal(missing.code, 1);
  assert.equal(JSON.parse(missing.stdout).error.code, "NOT_FOUND");
});

test("both sides changing one file keeps the server version live and backs the local one up", async () => {
  const { a, b, rootA, rootB } = await cluster.pair("conflict");
  await writeFile(join(rootA, "plan.md"), "# Plan\nbase\n");
  await a.sync("conflict");
  await b.sync("conflict");
  await writeFile(join(rootA, "plan.md"), "# Plan\nfrom A\n");
  await writeFile(join(rootB, "plan.md"), "# Plan\nfrom B\n");
  await a.sync("conflict");
  const result = await b.sync("conflict");
  assert.deepEqual(result.conflicts.map((c) => c.path), ["files/plan.md"]);
  assert.equal(await readFile(join(rootB, "plan.md"), "utf8"), "# Plan\nfrom A\n");
  assert.equal(await readFile(result.conflicts[0].backup!, "utf8"), "# Plan\nfrom B\n");
});

test("a sync killed after its first bundle leaves the head alone and the next sync sends only the rest", async () => {
  const { a, rootA } = await cluster.pair("killed-upload");
  await writeFile(join(rootA, "seed.md"), "# seed\n");
  const first = await a.sync("killed-upload");
  await mkdir(join(rootA, "data"));
  for (let i = 0; i < 8; i++) await writeFile(join(rootA, "data", `blob-${i}.bin`), randomBytes(600_000));
  const killed = await a.cli(["sync", "killed-upload"], { CWS_FAULT: "client-after-first-bundle", CWS_BUNDLE_TARGET_BYTES: String(1_000_000) });
  assert.equal(killed.signal, "SIGKILL", killed.stderr);
  const conn = await a.connect();
  const { snapshot } = await conn.call("head", { slug: "killed-upload" });
  await conn.close();
  assert.equal(snapshot?.id, first.snapshot?.id, "the head did not move");
  const resumed = await a.sync("killed-upload");
  assert.ok(resumed.snapshot!.id > first.snapshot!.id);
  const totalChunks = resumed.pushed.chunks;
  // 8 × 600 kB of random data is ~ 8 × 3 chunks; the killed run stored at least one bundle.
  assert.ok(totalChunks > 0 && resumed.pushed.bytes < 8 * 600_000 - 500_000, `resumed push re-sent ${resumed.pushed.bytes} bytes`);
});

for (const fault of ["client-before-commit", "agent-before-hub-commit"] as const) {
  test(`a sync killed at ${fault} leaves the head at the old snapshot and the next sync re-sends no chunk`, async () => {
    const slug = `killed-${fault.split("-")[0]}`;
    const { a, rootA } = await cluster.pair(slug);
    await writeFile(join(rootA, "seed.md"), "# seed\n");
    const first = await a.sync(slug);
    await writeFile(join(rootA, "more.bin"), randomBytes(400_000));
    const killed = await a.cli(["sync", slug], { CWS_FAULT: fault });
    if (fault === "client-before-commit") assert.equal(killed.signal, "SIGKILL", killed.stderr);
    else assert.match(killed.stderr, /connection to the agent closed/i);
    const conn = await a.connect();
    assert.equal((await conn.call("head", { slug })).snapshot?.id, first.snapshot?.id);
    await conn.close();
    const resumed = await a.sync(slug);
    assert.equal(resumed.pushed.chunks, 0, "every chunk was already stored");
    assert.equal(resumed.pushed.files, 1);
    assert.equal(resumed.snapshot?.id, first.snapshot!.id + 1);
  });
}

test("the agent refuses paths with .. or absolute paths and writes nothing outside its data dir", async () => {
  const a = await cluster.device("paths");
  const conn = await a.connect();
  await conn.call("createSuperproject", { slug: "paths" });
  const before = (await readdir(cluster.dir)).sort();
  const evil = [
    "files/../../escape.txt",
    "/etc/escape.txt",
    "files/a/../../../escape.txt",
    "C:\\escape.txt",
    "files/nul\u0000byte",
  ];
  for (const path of evil) {
    const manifest = { format: 1 as const, entries: [{ path, kind: "file" as const, size: 0, mtimeMs: 0, mode: 0o644, hash: "ef46db3751d8e999", chunks: [] }] };
    await assert.rejects(conn.call("commit", { slug: "paths", base: null, manifest, kind: "push" }), (error: unknown) => {
      assert.ok(isCwsError(error, "INVALID_PATH"), `${path}: ${String(error)}`);
      assert.match((error as Error).message, /path/i);
      return true;
    });
  }
  await assert.rejects(conn.call("ingestBundle", { name: "../../escape.bundle" }), (error: unknown) => isCwsError(error, "INVALID_ARGUMENT"));
  await assert.rejects(conn.call("releaseBundle", { name: "../hub.sqlite" }), (error: unknown) => isCwsError(error, "INVALID_ARGUMENT"));
  assert.equal((await conn.call("head", { slug: "paths" })).snapshot, null);
  await conn.close();
  assert.deepEqual((await readdir(cluster.dir)).sort(), before);
});

test("a session that has not opened an enrolled device is refused", async () => {
  const conn = await connectLocal({ dataDir: cluster.dataDir });
  try {
    await assert.rejects(conn.call("listSuperprojects", {}), (error: unknown) => isCwsError(error, "NOT_ENROLLED"));
    await assert.rejects(conn.call("open", { deviceId: "00000000-0000-4000-8000-000000000000" }), (error: unknown) => isCwsError(error, "NOT_ENROLLED"));
    await assert.rejects(conn.call("enroll", { deviceName: "x", passphrase: "wrong passphrase" }), (error: unknown) => isCwsError(error, "AUTH_FAILED"));
  } finally {
    await conn.close();
  }
});

test("delete-superproject-server removes the server copy, unbinds it, and leaves local files alone", async () => {
  const { a, rootA } = await cluster.pair("doomed");
  await writeFile(join(rootA, "keep-me.md"), "# still here\n");
  await a.sync("doomed");
  const refused = await a.cli(["delete-superproject-server", "doomed"]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /--force/);
  const deleted = await a.cli(["delete-superproject-server", "doomed", "--force", "--json"]);
  assert.equal(deleted.code, 0, deleted.stderr);
  assert.equal(JSON.parse(deleted.stdout).unbound, true);
  const conn = await a.connect();
  assert.ok(!(await conn.call("listSuperprojects", {})).superprojects.some((s) => s.slug === "doomed"));
  await conn.close();
  assert.equal(await readFile(join(rootA, "keep-me.md"), "utf8"), "# still here\n");
  assert.equal((await a.state()).data.superprojects.doomed, undefined);
});

test("a commit delta is checked like a whole manifest: evil paths and unknown chunks are refused", async () => {
  const { a, rootA } = await cluster.pair("delta");
  await writeFile(join(rootA, "one.md"), "# one\n");
  const first = await a.sync("delta");
  const conn = await a.connect();
  try {
    const evil = { path: "files/../../escape.txt", kind: "file" as const, size: 0, mtimeMs: 0, mode: 0o644, hash: "ef46db3751d8e999", chunks: [] };
    await assert.rejects(conn.call("commit", { slug: "delta", base: first.snapshot!.id, delta: { upserts: [evil], removes: [] }, kind: "push" }), (error: unknown) => isCwsError(error, "INVALID_PATH"));
    const unknown = { path: "files/ghost.bin", kind: "file" as const, size: 5, mtimeMs: 0, mode: 0o644, hash: "0123456789abcdef", chunks: [["0123456789abcdef", 5] as [string, number]] };
    await assert.rejects(conn.call("commit", { slug: "delta", base: first.snapshot!.id, delta: { upserts: [unknown], removes: [] }, kind: "push" }), (error: unknown) => isCwsError(error, "NOT_FOUND"));
    assert.equal((await conn.call("head", { slug: "delta" })).snapshot?.id, first.snapshot!.id);
  } finally {
    await conn.close();
  }
  // A real change travels as a delta and lands.
  await writeFile(join(rootA, "two.md"), "# two\n");
  const second = await a.sync("delta");
  assert.equal(second.pushed.files, 1);
  assert.ok(second.wire.sent < 4000, `a one-file push sent ${second.wire.sent} bytes`);
});

test("a pull onto a device with a base asks for the delta since it; a lost base falls back to the whole manifest", async () => {
  const { a, b, rootA, rootB } = await cluster.pair("pull-delta");
  await mkdir(join(rootA, "many"), { recursive: true });
  for (let i = 0; i < 300; i++) await writeFile(join(rootA, "many", `n-${String(i).padStart(3, "0")}-with-a-longer-name.md`), `# ${i}\n`);
  await a.sync("pull-delta");
  await b.sync("pull-delta");
  const baseB = await b.sync("pull-delta");
  await writeFile(join(rootA, "many", "n-007-with-a-longer-name.md"), "# seven, edited\n");
  const pushed = await a.sync("pull-delta");

  // The delta since B's base: one entry, not the 300 of the whole manifest.
  const conn = await b.connect();
  try {
    assert.ok(conn.hello.capabilities.includes("manifest-delta"));
    const { delta } = await conn.call("fetchManifestDelta", { slug: "pull-delta", snapshotId: pushed.snapshot!.id, since: baseB.snapshot!.id });
    assert.deepEqual(delta.upserts.map((e) => e.path), ["files/many/n-007-with-a-longer-name.md"]);
    assert.deepEqual(delta.removes, []);
  } finally {
    await conn.close();
  }
  const pulled = await b.sync("pull-delta");
  assert.equal(pulled.pulled.files, 1);
  assert.ok(pulled.wire.received < 6000, `a one-file pull received ${pulled.wire.received} bytes`);
  assert.equal(await readFile(join(rootB, "many", "n-007-with-a-longer-name.md"), "utf8"), "# seven, edited\n");

  // B's base file damaged to a smaller tree: the delta does not add up to the head's totals, so
  // the whole manifest is fetched and the pull is still right (nothing deleted on B).
  await writeFile(join(rootA, "many", "n-008-with-a-longer-name.md"), "# eight, edited\n");
  await a.sync("pull-delta");
  const state = await b.state();
  const base = await state.readBase("pull-delta");
  await state.writeBase("pull-delta", { format: 1, entries: base.entries.filter((e) => !e.path.endsWith("n-100-with-a-longer-name.md")) });
  await b.sync("pull-delta");
  assert.equal(await readFile(join(rootB, "many", "n-008-with-a-longer-name.md"), "utf8"), "# eight, edited\n");
  assert.equal(await readFile(join(rootB, "many", "n-100-with-a-longer-name.md"), "utf8"), "# 100\n");
  assert.deepEqual(await snapshotTree(rootA), await snapshotTree(rootB));
});
