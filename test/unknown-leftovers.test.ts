/**
 * Nothing lost (issue 11, findings 1 and 2): a file the scan cannot read is unknown, not
 * absent, and leftovers of interrupted runs clean themselves without bringing deleted folders
 * back.
 *
 * Unreadable files are made with a real `chmod 000`. Tests run as root here, and root ignores
 * permission bits, so every sync of those tests runs the real `cws` CLI as the unprivileged
 * user `nobody` (through runuser), with the whole throw-away installation owned by it; the
 * hub is then started by nobody's agents too.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { chmod, mkdir, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeCluster, REPO, stopHub, type TestCluster, type TestDevice } from "./helpers/cluster.ts";
import { deadPid } from "./helpers/dead-pid.ts";
import { oneSentence } from "./helpers/one-sentence.ts";
import { letOthersReachCheckout } from "./helpers/account.ts";

let cluster: TestCluster;
before(async () => { cluster = await makeCluster(); });
after(async () => { await cluster.close(); });

const canDropPrivileges = process.getuid?.() === 0 && spawnSync("runuser", ["-u", "nobody", "--", "true"]).status === 0;
if (canDropPrivileges) letOthersReachCheckout();

interface CliResult { code: number | null; stdout: string; stderr: string }

/** Runs `cws` as the user nobody with a device's state dir. */
function cliAsNobody(device: TestDevice, args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn("runuser", ["-u", "nobody", "--", process.execPath, join(REPO, "src", "cli", "cws.ts"), ...args], {
      env: { ...process.env, CWS_HOME: device.home },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (piece) => { stdout += piece; });
    child.stderr.on("data", (piece) => { stderr += piece; });
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** Hands a whole installation to nobody: the hub root started is stopped, every file chowned. */
async function handToNobody(own: TestCluster): Promise<void> {
  await stopHub(own.dataDir);
  const chowned = spawnSync("chown", ["-R", "nobody:nogroup", own.dir]);
  assert.equal(chowned.status, 0, String(chowned.stderr));
}

async function syncJson(device: TestDevice, slug: string): Promise<any> {
  const result = await cliAsNobody(device, ["sync", slug, "--json"]);
  assert.equal(result.code, 0, `sync failed: ${result.stderr}${result.stdout}`);
  return JSON.parse(result.stdout);
}

test("an unreadable file is never pushed as a delete, never pulled over, and syncs once it can be read", { skip: !canDropPrivileges && "needs root and runuser to drop to nobody" }, async (t) => {
  // Its own installation, as it ends up owned by nobody.
  const own = await makeCluster();
  t.after(() => own.close());
  const slug = "unreadable";
  const { a, b, rootA, rootB } = await own.pair(slug);
  await writeFile(join(rootA, "secret.md"), "# v1\n");
  await writeFile(join(rootA, "other.md"), "other v1\n");
  await handToNobody(own);
  await syncJson(a, slug);
  await syncJson(b, slug);

  // A cannot read secret.md any more, and changes other.md: the change goes, no delete does.
  await chmod(join(rootA, "secret.md"), 0o000);
  await writeFile(join(rootA, "other.md"), "other v2\n");
  spawnSync("chown", ["nobody:nogroup", join(rootA, "other.md")]);
  const text = await cliAsNobody(a, ["sync", slug]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /pushed 1 files, 0 deletions/);
  assert.match(text.stdout, /NOT SYNCED files\/secret\.md: it could not be opened: EACCES.*left as it is here and on the server; give your user read access/);
  const onB = await syncJson(b, slug);
  assert.equal(onB.pulled.deleted, 0);
  assert.equal(await readFile(join(rootB, "secret.md"), "utf8"), "# v1\n", "B keeps its copy");
  assert.equal(await readFile(join(rootB, "other.md"), "utf8"), "other v2\n");

  // B changes the file A cannot read: A neither pulls over it nor pushes anything for it.
  await writeFile(join(rootB, "secret.md"), "# v2 from B\n");
  spawnSync("chown", ["nobody:nogroup", join(rootB, "secret.md")]);
  assert.equal((await syncJson(b, slug)).pushed.files, 1);
  const held = await syncJson(a, slug);
  assert.deepEqual([held.pushed.files, held.pushed.deleted, held.pulled.files, held.conflicts.length], [0, 0, 0, 0]);
  assert.deepEqual(held.unknown.map((u: { path: string }) => u.path), ["files/secret.md"]);
  assert.match(held.unknown[0].next, /read access/);
  assert.equal((await stat(join(rootA, "secret.md"))).mode & 0o777, 0, "A's file was not touched");

  // Readable again: A's copy is still the base version, so B's change comes down, no conflict.
  await chmod(join(rootA, "secret.md"), 0o644);
  const healed = await syncJson(a, slug);
  assert.deepEqual([healed.pulled.files, healed.conflicts.length, healed.unknown.length], [1, 0, 0]);
  assert.equal(await readFile(join(rootA, "secret.md"), "utf8"), "# v2 from B\n");

  // A folder this user may not write to: the pull ends in one sentence with exit code 4.
  await writeFile(join(rootB, "new.md"), "new\n");
  spawnSync("chown", ["nobody:nogroup", join(rootB, "new.md")]);
  await syncJson(b, slug);
  await chmod(rootA, 0o555);
  const denied = await cliAsNobody(a, ["sync", slug]);
  await chmod(rootA, 0o755);
  assert.equal(denied.code, 4, denied.stderr);
  assert.match(oneSentence(denied), /^cws: Cannot .* as permission was denied \(EACCES\): give your user access to it/);
  assert.doesNotMatch(denied.stderr, /^\s+at /m);
  assert.equal((await syncJson(a, slug)).pulled.files, 1, "the retry pulls it once it may");
});

test("temp files of a killed pull are removed by the next sync and never block a folder delete", async () => {
  const slug = "leftover-tmp";
  const { a, b, rootA, rootB } = await cluster.pair(slug);
  await mkdir(join(rootA, "d"));
  await writeFile(join(rootA, "d", "x.md"), "x\n");
  await writeFile(join(rootA, "keep.md"), "keep\n");
  await a.sync(slug);
  await b.sync(slug);
  // What a pull killed before its rename leaves: one temp file from an older cws (no pid), one
  // from a run whose process is gone; and a temp file of a run still alive (this process).
  const dead = deadPid();
  const stale = join(rootB, "d", `.0123abcd-${dead}-0.cws-tmp`);
  await writeFile(stale, "half a file");
  const alive = join(rootB, `.0123abcd-${process.pid}-1.cws-tmp`);
  await writeFile(alive, "being written");
  const again = await b.sync(slug);
  assert.equal(again.leftoversRemoved >= 1, true);
  assert.deepEqual((await readdir(join(rootB, "d"))).sort(), ["x.md"], "the dead run's temp file is gone");
  assert.equal(await readFile(alive, "utf8"), "being written", "a live run's temp file stays");
  assert.equal(again.pushed.files + again.pushed.deleted, 0, "temp files are never user files");

  // A deletes the folder while B has a leftover in it again: B removes the folder all the same.
  await writeFile(stale, "half a file");
  await rm(join(rootA, "d"), { recursive: true });
  await a.sync(slug);
  const deleted = await b.sync(slug);
  assert.deepEqual(deleted.pulled.skipped, []);
  await assert.rejects(stat(join(rootB, "d")), /ENOENT/);
  assert.equal((await b.sync(slug)).pushed.files + (await a.sync(slug)).pulled.files, 0);
});

test("a folder deleted on another device does not come back when this device holds .DS_Store or unsynced files in it", async () => {
  const slug = "no-resurrection";
  const { a, b, rootA, rootB } = await cluster.pair(slug);
  for (const d of ["litter", "kept"]) {
    await mkdir(join(rootA, d));
    await writeFile(join(rootA, d, "note.md"), `${d}\n`);
  }
  await a.sync(slug);
  await b.sync(slug);
  await writeFile(join(rootB, "litter", ".DS_Store"), "finder");
  // An ignored file B keeps in the other folder: it must stay, and the folder with it.
  await writeFile(join(rootB, ".cwsignore"), "*.log\n");
  await writeFile(join(rootB, "kept", "build.log"), "B's own log\n");
  const ignoreFile = await b.sync(slug);
  assert.equal(ignoreFile.pushed.files, 1);
  await a.sync(slug);

  await rm(join(rootA, "litter"), { recursive: true });
  await rm(join(rootA, "kept"), { recursive: true });
  await a.sync(slug);
  const onB = await b.sync(slug);
  await assert.rejects(stat(join(rootB, "litter")), /ENOENT/, "litter alone does not keep a folder");
  assert.ok(onB.backupDir !== null);
  assert.equal(await readFile(join(onB.backupDir, "litter", ".DS_Store"), "utf8"), "finder", ".DS_Store went to the backup");
  assert.equal(await readFile(join(rootB, "kept", "build.log"), "utf8"), "B's own log\n", "an unsynced file is never lost");
  assert.deepEqual(onB.pulled.skipped.map((s) => s.path), ["files/kept"]);

  // The next syncs neither push the kept folder back nor pull anything: A stays without it.
  for (let round = 0; round < 2; round++) {
    const again = await b.sync(slug);
    assert.equal(again.pushed.files + again.pushed.deleted, 0, `round ${round}: B pushes nothing`);
    const onA = await a.sync(slug);
    assert.equal(onA.pulled.files, 0);
  }
  await assert.rejects(stat(join(rootA, "kept")), /ENOENT/, "the deleted folder did not come back on A");
  const conn = await a.connect();
  const { snapshot } = await conn.call("head", { slug });
  const { manifest } = await conn.call("fetchManifest", { slug, snapshotId: snapshot!.id });
  await conn.close();
  assert.deepEqual(manifest.entries.map((e) => e.path).filter((p) => p.startsWith("files/kept") || p.startsWith("files/litter")), []);
});

test("work folders of killed runs in the temp folder are removed by the next sync", async () => {
  const slug = "leftover-workdirs";
  const { a, rootA } = await cluster.pair(slug);
  await writeFile(join(rootA, "a.md"), "a\n");
  const dead = deadPid();
  const stale = join(tmpdir(), `cws-pull-${dead}-AbC123`);
  const live = join(tmpdir(), `cws-push-${process.pid}-XyZ789`);
  for (const dir of [stale, live]) {
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "spool"), "x".repeat(1000));
  }
  // Any cws sync on this machine may remove the stale folder (so no count is asserted); after
  // this one it is gone, and the live run's folder is not.
  await a.sync(slug);
  await assert.rejects(stat(stale), /ENOENT/);
  assert.ok((await stat(live)).isDirectory(), "a live run's folder stays");
  await rm(live, { recursive: true });
});


