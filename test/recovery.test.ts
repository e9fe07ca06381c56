/**
 * End-to-end recovery: checkpoints and restore, local backups, and the server's maintenance
 * commands (verify finds damage, gc keeps everything still referenced, backup copies a
 * consistent state while the hub runs).
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { open, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { makeCluster, REPO, stopHub, type TestCluster, type TestDevice } from "./helpers/cluster.ts";
import { createSuperproject, attachSuperproject } from "../src/client/commands/superprojects.ts";
import { initHash, xxh64Hex } from "../src/core/hash.ts";
import { chunkId, manifestChunkIds } from "../src/core/manifest.ts";
import { BUNDLE_MAGIC, RECORD_HEADER_BYTES } from "../src/protocol/bundle.ts";
import { Store } from "../server-agent/store/store.ts";
import { putManifest } from "../server-agent/store/manifest-objects.ts";
import { connectHub } from "../server-agent/hub/hub-client.ts";
import { startHub } from "../server-agent/hub/hub-server.ts";
import { isCwsError } from "../src/errors.ts";

let cluster: TestCluster;
before(async () => {
  cluster = await makeCluster();
  await initHash();
});
after(async () => { await cluster.close(); });

/** Devices with the superproject bound: the first creates it unless `attach` says it exists. */
async function bound(c: TestCluster, slug: string, names: string[], attach = false): Promise<Array<{ device: TestDevice; root: string }>> {
  const result = [];
  for (const [i, name] of names.entries()) {
    const device = await c.device(`${slug}-${name}`);
    const root = await c.folder(`${slug}-${name}`);
    const conn = await device.connect();
    try {
      if (i === 0 && !attach) await createSuperproject(conn, await device.state(), { slug, root });
      else await attachSuperproject(conn, await device.state(), { slug, root });
    } finally {
      await conn.close();
    }
    result.push({ device, root });
  }
  return result;
}

function server(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(REPO, "server-agent", "server-main.ts"), ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (piece) => { stdout += piece; });
    child.stderr.on("data", (piece) => { stderr += piece; });
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

function json(output: { code: number | null; stdout: string; stderr: string }): any {
  assert.equal(output.code, 0, `command failed: ${output.stderr}`);
  return JSON.parse(output.stdout);
}

/** The chunk id of a small file's content (one chunk). */
function smallChunk(content: string | Buffer): string {
  const bytes = Buffer.from(content);
  return chunkId([xxh64Hex(bytes), bytes.byteLength]);
}

test("a restore brings back a deleted file on every device, as a new snapshot that can itself be undone", async () => {
  const slug = "restore";
  const [{ device: a, root: rootA }, { device: b, root: rootB }] = await bound(cluster, slug, ["a", "b"]);
  for (const name of ["f.txt", "g.txt", "h.txt"]) await writeFile(join(rootA, name), `${name} content\n`);
  const first = await a.sync(slug);
  await b.sync(slug);
  await rm(join(rootA, "f.txt"));
  const deleted = await a.sync(slug);
  assert.equal(deleted.pushed.deleted, 1);
  assert.equal((await b.sync(slug)).pulled.deleted, 1);

  const listed = json(await b.cli(["checkpoints", "list", slug, "--json"]));
  assert.deepEqual(listed.checkpoints.map((s: { id: number }) => s.id), [deleted.snapshot!.id, first.snapshot!.id]);
  const restored = json(await b.cli(["restore", slug, "--checkpoint", String(first.snapshot!.number ?? first.snapshot!.id), "--json"]));
  assert.equal(restored.snapshot.kind, "restore");
  assert.equal(restored.previousHead, deleted.snapshot!.id);
  assert.equal(restored.snapshot.parent, deleted.snapshot!.id);

  for (const [device, root] of [[a, rootA], [b, rootB]] as const) {
    const synced = await device.sync(slug);
    assert.equal(synced.pulled.files, 1, `${device.name} pulls the restored file`);
    assert.equal(await readFile(join(root, "f.txt"), "utf8"), "f.txt content\n");
  }
  const history = json(await a.cli(["checkpoints", "list", slug, "--json"]));
  assert.equal(history.checkpoints.length, 3, "the deleting snapshot stays a checkpoint");
});

test("backups restore copies deleted files back, never over a newer local file, and the next sync shares them", async () => {
  const slug = "local-backups";
  const [{ device: a, root: rootA }, { device: b, root: rootB }] = await bound(cluster, slug, ["a", "b"]);
  await writeFile(join(rootA, "d.txt"), "d, old\n");
  await writeFile(join(rootA, "n.txt"), "n, old\n");
  await writeFile(join(rootA, "keep.txt"), "keep\n");
  await a.sync(slug);
  await b.sync(slug);
  await rm(join(rootA, "d.txt"));
  await writeFile(join(rootA, "n.txt"), "n, new\n");
  await a.sync(slug);
  const onB = await b.sync(slug);
  assert.ok(onB.backupDir !== null);

  const listed = json(await b.cli(["backups", "list", slug, "--json"]));
  assert.equal(listed.backups.length, 1);
  const [set] = listed.backups;
  assert.equal(set.files, 2);
  const result = json(await b.cli(["backups", "restore", slug, set.id, "--json"]));
  assert.deepEqual(result.restored, ["d.txt"]);
  assert.deepEqual(result.skipped.map((s: { path: string }) => s.path), ["n.txt"]);
  assert.match(result.skipped[0].reason, /newer/);
  assert.equal(await readFile(join(rootB, "d.txt"), "utf8"), "d, old\n");
  assert.equal(await readFile(join(rootB, "n.txt"), "utf8"), "n, new\n");
  const shared = await b.sync(slug);
  assert.equal(shared.pushed.files, 1);

  const missing = await b.cli(["backups", "restore", slug, set.id, "--path", "nothing-here.txt"]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /holds nothing at nothing-here\.txt/);
});

test("gc keeps every chunk a retained snapshot or a pending item references, and spares fresh uploads for the grace period", async () => {
  const slug = "gc";
  const [{ device: a, root: rootA }] = await bound(cluster, slug, ["a"]);
  const plan = `# Plan\n\n${Array.from({ length: 8 }, (_, i) => `## Step ${i}\n\n${"Details that matter. ".repeat(20)}\n`).join("\n")}`;
  await writeFile(join(rootA, "plan.md"), plan);
  await writeFile(join(rootA, "keep.txt"), "kept all along\n");
  await writeFile(join(rootA, "x.txt"), "x version 1\n");
  await a.sync(slug);
  await writeFile(join(rootA, "x.txt"), "x version 2\n");
  await a.sync(slug);
  await writeFile(join(rootA, "x.txt"), "x version 3\n");
  const third = await a.sync(slug);
  // A held Markdown cut: its content is referenced only by the pending item.
  const cut = plan.slice(0, 60);
  await writeFile(join(rootA, "plan.md"), cut);
  const held = (await a.sync(slug)).quarantine.held;
  assert.equal(held.length, 1);
  // An upload that never got committed (the client died just before the commit).
  const fresh = randomBytes(20_000).toString("hex").slice(0, 10_000);
  await writeFile(join(rootA, "fresh.txt"), fresh);
  const killed = await a.cli(["sync", slug], { CWS_FAULT: "client-before-commit" });
  assert.equal(killed.signal, "SIGKILL", killed.stderr);
  await rm(join(rootA, "fresh.txt"));

  const hub = await connectHub(cluster.dataDir);
  try {
    await hub.call("settings", { slug, retention: { keepLast: 1, keepDailyDays: 0 } });
  } finally {
    await hub.close();
  }
  const chunks = {
    v1: smallChunk("x version 1\n"), v2: smallChunk("x version 2\n"), v3: smallChunk("x version 3\n"),
    keep: smallChunk("kept all along\n"), planOld: smallChunk(plan), planCut: smallChunk(cut), fresh: smallChunk(fresh),
  };

  // With the default grace period nothing young is touched, but retention already drops snapshots.
  const gentle = json(await server(["gc", "--data", cluster.dataDir, "--json"]));
  assert.deepEqual(gentle.snapshotsDropped, [{ slug, ids: [third.snapshot!.id - 1, third.snapshot!.id - 2] }]);
  assert.ok(gentle.repack.packsYoung > 0);
  let store = await Store.open(cluster.dataDir);
  assert.deepEqual(await store.missing(Object.values(chunks)), []);
  await store.close();

  const strict = json(await server(["gc", "--data", cluster.dataDir, "--grace", "0", "--json"]));
  assert.ok(strict.repack.chunksDropped >= 3);
  store = await Store.open(cluster.dataDir);
  try {
    assert.deepEqual((await store.missing(Object.values(chunks))).sort(), [chunks.v1, chunks.v2, chunks.fresh].sort());
  } finally {
    await store.close();
  }

  // What is left is whole: a new device gets the head, the item can still be accepted, verify is clean.
  const [{ device: c, root: rootC }] = await bound(cluster, slug, ["c"], true);
  await c.sync(slug);
  assert.equal(await readFile(join(rootC, "x.txt"), "utf8"), "x version 3\n");
  assert.equal(await readFile(join(rootC, "plan.md"), "utf8"), plan);
  json(await c.cli(["quarantine", "accept", String(held[0].id), "--json"]));
  await c.sync(slug);
  assert.equal(await readFile(join(rootC, "plan.md"), "utf8"), cut);
  const checked = json(await server(["verify", "--data", cluster.dataDir, "--json"]));
  assert.deepEqual(checked.problems, []);
  const listed = json(await c.cli(["checkpoints", "list", slug, "--json"]));
  assert.ok(!listed.checkpoints.some((s: { id: number }) => s.id < third.snapshot!.id), "dropped checkpoints are gone from the list");
});

test("backup writes a copy of database and store that a hub can serve, while the hub keeps running", async () => {
  const slug = "backup";
  const [{ device: a, root: rootA }] = await bound(cluster, slug, ["a"]);
  await writeFile(join(rootA, "one.md"), "# One\n");
  await writeFile(join(rootA, "data.bin"), randomBytes(300_000));
  const synced = await a.sync(slug);
  const dir = join(cluster.dir, "server-backup");
  const report = json(await server(["backup", dir, "--data", cluster.dataDir, "--json"]));
  assert.ok(report.packs > 0 && report.objects > 0);
  const again = await server(["backup", dir, "--data", cluster.dataDir]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /not empty/);
  assert.ok((await a.sync(slug)).snapshot, "the original hub still serves");
  assert.deepEqual((await readdir(join(cluster.dataDir, "tmp"))).filter((n) => n.endsWith(".sqlite")), [], "the database copy left the data dir");

  // While a backup is being copied, gc waits its turn instead of removing what the copy needs.
  const live = await connectHub(cluster.dataDir);
  try {
    const started = await live.call("backupBegin", {});
    await assert.rejects(live.call("gc", { graceMs: 0 }), (error: unknown) => isCwsError(error, "CONFLICT"));
    await live.call("backupEnd", { id: started.id });
    assert.equal((await live.call("gc", { dryRun: true })).dryRun, true);
  } finally {
    await live.close();
  }

  const copy = await startHub({ dataDir: dir, idleExitMs: 0, log: () => {} });
  try {
    const hub = await connectHub(dir, { autoStart: false });
    try {
      const { snapshot } = await hub.call("head", { slug });
      assert.equal(snapshot?.id, synced.snapshot!.id);
      assert.deepEqual((await hub.call("verify", {})).problems, []);
      // Devices may know ids made after the backup: new ones skip far past them.
      const copyStore = await Store.open(dir);
      const emptied = await putManifest(copyStore, { format: 1, entries: [] });
      await copyStore.close();
      const made = await hub.call("commit", { slug, base: snapshot!.id, deviceId: snapshot!.deviceId, kind: "push", manifestHash: emptied });
      assert.ok(made.snapshot.id > synced.snapshot!.id + 999_999, `new snapshot id ${made.snapshot.id}`);
    } finally {
      await hub.close();
    }
  } finally {
    await copy.close();
  }
});

test("verify reports a corrupted chunk on disk and names the files that use it", async () => {
  // Its own server: the damage must not reach the other tests.
  const own = await makeCluster();
  try {
    const slug = "damaged";
    const [{ device: a, root: rootA }] = await bound(own, slug, ["a"]);
    await writeFile(join(rootA, "data.bin"), randomBytes(100_000));
    const synced = await a.sync(slug);
    const clean = await server(["verify", "--data", own.dataDir]);
    assert.equal(clean.code, 0, clean.stderr);
    assert.match(clean.stdout, /everything checks out/);

    const conn = await a.connect();
    const { manifest } = await conn.call("fetchManifest", { slug, snapshotId: synced.snapshot!.id });
    await conn.close();
    assert.ok(manifestChunkIds(manifest).size > 0);
    const packsDir = join(own.dataDir, "store", "packs");
    for (const name of (await readdir(packsDir)).filter((n) => n.endsWith(".pack"))) {
      const handle = await open(join(packsDir, name), "r+");
      try {
        // A byte in the middle of the first record's payload.
        const at = BUNDLE_MAGIC.byteLength + RECORD_HEADER_BYTES + 500;
        const byte = Buffer.alloc(1);
        await handle.read(byte, 0, 1, at);
        byte[0] ^= 0xff;
        await handle.write(byte, 0, 1, at);
      } finally {
        await handle.close();
      }
    }
    const damaged = await server(["verify", "--data", own.dataDir]);
    assert.equal(damaged.code, 1);
    assert.match(damaged.stdout, /DAMAGED chunk/);
    assert.match(damaged.stdout, /files\/data\.bin/);
  } finally {
    await stopHub(own.dataDir);
    await own.close();
  }
});
