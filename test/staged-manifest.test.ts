/**
 * A first push's manifest staged in pieces (stageManifest, then a commit naming the staged
 * manifest): the same head as a manifest sent whole, nothing visible before the commit, and
 * every piece checked and size-capped as a whole manifest would be. Real hub, real SQLite, real
 * files (the local transport).
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { makeCluster, type TestCluster } from "./helpers/cluster.ts";
import { isCwsError } from "../src/errors.ts";
import { MAX_MANIFEST_PIECE_ENTRIES, MAX_STAGED_MANIFEST_ENTRIES } from "../src/protocol/messages.ts";
import type { ManifestEntry } from "../src/core/manifest.ts";

let cluster: TestCluster;
before(async () => { cluster = await makeCluster(); });
after(async () => { await cluster.close(); });

/** Small pieces, so a tree of a few dozen entries is staged in several. */
const PIECE_ENV = { CWS_MANIFEST_PIECE_ENTRIES: "7" };

async function writeTree(root: string): Promise<void> {
  for (let d = 0; d < 4; d++) {
    await mkdir(join(root, `dir-${d}`, "sub"), { recursive: true });
    for (let f = 0; f < 6; f++) await writeFile(join(root, `dir-${d}`, `note-${f}.md`), `# note ${d}/${f}\n`);
    await writeFile(join(root, `dir-${d}`, "sub", "blob.bin"), randomBytes(50_000 + d));
  }
}

async function filesOf(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const name of await readdir(root, { recursive: true, withFileTypes: true })) {
    if (!name.isFile() || name.name.startsWith(".cws")) continue;
    const path = join(name.parentPath, name.name);
    out.set(path.slice(root.length), (await readFile(path)).toString("base64"));
  }
  return out;
}

function dir(path: string): ManifestEntry {
  return { path, kind: "dir", size: 0, mtimeMs: 0, mode: 0o755, hash: "", chunks: [] };
}

test("a first push staged in pieces makes the same head a second device pulls in full", async () => {
  const { a, b, rootA, rootB } = await cluster.pair("pieces");
  await writeTree(rootA);
  process.env.CWS_MANIFEST_PIECE_ENTRIES = PIECE_ENV.CWS_MANIFEST_PIECE_ENTRIES;
  try {
    const pushed = await a.sync("pieces");
    assert.equal(pushed.pushed.files, 28);
    assert.equal(pushed.snapshot?.files, 28);
  } finally {
    delete process.env.CWS_MANIFEST_PIECE_ENTRIES;
  }
  const pulled = await b.sync("pieces");
  assert.equal(pulled.pulled.files, 28);
  assert.deepEqual(await filesOf(rootB), await filesOf(rootA));
  // Nothing left to do on either side: the staged head is exactly the tree pushed.
  assert.equal((await a.sync("pieces")).pushed.files, 0);
});

for (const fault of ["client-after-first-piece", "agent-after-first-piece"] as const) {
  test(`a first push killed at ${fault} leaves no head, and the next sync commits the whole tree`, async () => {
    const slug = `staged-${fault.split("-")[0]}`;
    const { a, rootA } = await cluster.pair(slug);
    await writeTree(rootA);
    const killed = await a.cli(["sync", slug], { ...PIECE_ENV, CWS_FAULT: fault });
    if (fault === "client-after-first-piece") assert.equal(killed.signal, "SIGKILL", killed.stderr);
    else assert.match(killed.stderr, /connection to the agent closed/i);
    const conn = await a.connect();
    assert.equal((await conn.call("head", { slug })).snapshot, null, "no half-staged manifest became a head");
    await conn.close();
    const resumed = await a.cli(["sync", slug, "--json"], PIECE_ENV);
    assert.equal(resumed.code, 0, resumed.stderr);
    const check = await a.connect();
    assert.equal((await check.call("head", { slug })).snapshot?.files, 28);
    await check.close();
    assert.equal((JSON.parse(resumed.stdout) as { pushed: { files: number } }).pushed.files, 28);
  });
}

test("the agent refuses pieces and staged commits that do not add up, with the right error and no head", async () => {
  const a = await cluster.device("staged-hostile");
  const conn = await a.connect();
  const slug = "staged-hostile";
  await conn.call("createSuperproject", { slug });
  const refused = async (call: Promise<unknown>, code: Parameters<typeof isCwsError>[1], what: string) => {
    await assert.rejects(call, (error: unknown) => {
      assert.ok(isCwsError(error, code), `${what}: ${String(error)}`);
      return true;
    });
  };
  const piece = (entries: ManifestEntry[]) => ({ format: 1 as const, entries });
  const many = Array.from({ length: MAX_MANIFEST_PIECE_ENTRIES + 1 }, (_, i) => dir(`files/d${String(i).padStart(6, "0")}`));
  await refused(conn.call("stageManifest", { slug, piece: 0, manifest: piece(many) }), "INVALID_ARGUMENT", "a piece over the cap");
  await refused(conn.call("stageManifest", { slug, piece: 0, manifest: piece([]) }), "INVALID_ARGUMENT", "an empty piece");
  await refused(conn.call("stageManifest", { slug, piece: 1, manifest: piece([dir("files/a")]) }), "INVALID_ARGUMENT", "a piece without the ones before it");
  await refused(conn.call("commit", { slug, base: null, staged: { pieces: 1, entries: MAX_STAGED_MANIFEST_ENTRIES + 1 }, kind: "push" }), "INVALID_ARGUMENT", "a staged manifest over the cap");
  await refused(conn.call("commit", { slug, base: null, manifest: piece([dir("files/a")]), staged: { pieces: 1, entries: 1 }, kind: "push" }), "INVALID_ARGUMENT", "a whole and a staged manifest at once");

  // Pieces must continue each other in path order.
  assert.deepEqual(await conn.call("stageManifest", { slug, piece: 0, manifest: piece([dir("files/b"), dir("files/c")]) }), { entries: 2 });
  await refused(conn.call("stageManifest", { slug, piece: 1, manifest: piece([dir("files/a")]) }), "INVALID_ARGUMENT", "a piece before the previous one's last path");
  // That failure voided the staged manifest: its continuation and its commit are refused too.
  await refused(conn.call("stageManifest", { slug, piece: 1, manifest: piece([dir("files/d")]) }), "INVALID_ARGUMENT", "a piece of a voided manifest");
  await refused(conn.call("commit", { slug, base: null, staged: { pieces: 1, entries: 2 }, kind: "push" }), "INVALID_ARGUMENT", "a commit of a voided manifest");

  // A piece whose counts the commit does not name is refused.
  await conn.call("stageManifest", { slug, piece: 0, manifest: piece([dir("files/b")]) });
  await conn.call("stageManifest", { slug, piece: 1, manifest: piece([dir("files/c")]) });
  await refused(conn.call("commit", { slug, base: null, staged: { pieces: 1, entries: 1 }, kind: "push" }), "INVALID_ARGUMENT", "a commit missing a piece");

  // What a whole manifest's commit refuses, a piece refuses: a name that cannot travel, an
  // entry under a file staged in an earlier piece.
  await refused(conn.call("stageManifest", { slug, piece: 0, manifest: piece([dir("files/con")]) }), "INVALID_PATH", "a Windows device name");
  const empty = { kind: "file" as const, size: 0, mtimeMs: 0, mode: 0o644, hash: "ef46db3751d8e999", chunks: [] };
  await conn.call("stageManifest", { slug, piece: 0, manifest: piece([{ path: "files/x", ...empty }]) });
  await refused(conn.call("stageManifest", { slug, piece: 1, manifest: piece([{ path: "files/x/y", ...empty }]) }), "INVALID_PATH", "a file under a file of an earlier piece");
  // Chunks are checked when the commit names the staged manifest (pieces may travel while the
  // bundles still upload): one the store lacks is refused then, under the hub's head lock.
  const lacking = { path: "files/lacking", kind: "file" as const, size: 5, mtimeMs: 0, mode: 0o644, hash: "0123456789abcdef", chunks: [["0123456789abcdef", 5]] as Array<[string, number]> };
  await conn.call("stageManifest", { slug, piece: 0, manifest: piece([lacking]) });
  await refused(conn.call("commit", { slug, base: null, staged: { pieces: 1, entries: 1 }, kind: "push" }), "NOT_FOUND", "chunks the store lacks");

  assert.equal((await conn.call("head", { slug })).snapshot, null, "nothing refused became a head");
  // A staged manifest belongs to its session: another one cannot commit it.
  await conn.call("stageManifest", { slug, piece: 0, manifest: piece([dir("files/kept")]) });
  const other = await a.connect();
  await refused(other.call("commit", { slug, base: null, staged: { pieces: 1, entries: 1 }, kind: "push" }), "INVALID_ARGUMENT", "another session's staged manifest");
  await other.close();
  const committed = await conn.call("commit", { slug, base: null, staged: { pieces: 1, entries: 1 }, kind: "push" });
  assert.equal(committed.snapshot.files, 0);
  assert.deepEqual((await conn.call("fetchManifest", { slug, snapshotId: committed.snapshot.id })).manifest.entries.map((e) => e.path), ["files/kept"]);
  await conn.close();
});
