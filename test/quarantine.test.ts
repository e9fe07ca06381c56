/**
 * End-to-end quarantine: the hub runs the policy on every push, lands the rest of the push,
 * holds the suspicious part as an item, and devices neither lose files before the user decides
 * nor push the held change again; accept and reject work from the CLI.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFile, readdir, rm, writeFile, mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { makeCluster, type TestCluster, type TestDevice } from "./helpers/cluster.ts";
import { heldFilePath } from "../src/client/quarantine-held.ts";
import { isCwsError } from "../src/errors.ts";
import { chunkLengths } from "../src/core/chunker.ts";
import { initHash, xxh64Hex } from "../src/core/hash.ts";
import { pushChunks } from "../src/client/push.ts";

let cluster: TestCluster;
before(async () => { cluster = await makeCluster(); });
after(async () => { await cluster.close(); });


async function serverFiles(device: TestDevice, slug: string): Promise<Map<string, string>> {
  const conn = await device.connect();
  try {
    const { snapshot } = await conn.call("head", { slug });
    if (snapshot === null) return new Map();
    const { manifest } = await conn.call("fetchManifest", { slug, snapshotId: snapshot.id });
    return new Map(manifest.entries.filter((e) => e.kind === "file").map((e) => [e.path, e.hash]));
  } finally {
    await conn.close();
  }
}

async function pendingItems(device: TestDevice, slug: string) {
  const conn = await device.connect();
  try {
    return (await conn.call("quarantineList", { slug })).items;
  } finally {
    await conn.close();
  }
}

function parseJson(output: { code: number | null; stdout: string; stderr: string }): any {
  assert.equal(output.code, 0, `cws failed: ${output.stderr}`);
  return JSON.parse(output.stdout);
}

test("a push that deletes 80% of the files lands its other changes, holds the deletes, and accepting applies them in one step", async () => {
  const slug = "mass-delete";
  const { a, b, rootA, rootB } = await cluster.pair(slug);
  await mkdir(join(rootA, "notes"));
  for (let i = 0; i < 20; i++) await writeFile(join(rootA, "notes", `n${i}.txt`), `note ${i}\n`);
  await a.sync(slug);
  await b.sync(slug);
  assert.equal((await readdir(join(rootB, "notes"))).length, 20);

  // A deletes 16 of 20 files (80%), edits one survivor and adds a file.
  for (let i = 0; i < 16; i++) await rm(join(rootA, "notes", `n${i}.txt`));
  await writeFile(join(rootA, "notes", "n19.txt"), "note 19, edited\n");
  await writeFile(join(rootA, "added.txt"), "new\n");
  const pushed = await a.sync(slug);
  assert.equal(pushed.quarantine.held.length, 1);
  const [held] = pushed.quarantine.held;
  assert.equal(held.reason, "mass-delete");
  assert.equal(held.paths.length, 16);
  assert.equal(held.duplicate, false);
  assert.match(held.summary, /deletes 16 of 20 files/);

  // The edit and the addition landed; every deleted file is still live on the server.
  const server = await serverFiles(a, slug);
  assert.ok(server.has("files/added.txt"));
  for (let i = 0; i < 16; i++) assert.ok(server.has(`files/notes/n${i}.txt`), `n${i}.txt stays live while held`);

  // A's next sync does not push the held deletes again, and does not bring the files back.
  const again = await a.sync(slug);
  assert.equal(again.pushed.deleted, 0);
  assert.equal(again.pulled.files, 0);
  assert.deepEqual(again.quarantine.waiting.map((w) => w.id), [held.id]);
  assert.equal((await pendingItems(a, slug)).length, 1);

  // B gets the landed changes and never loses a file before the user decides.
  const onB = await b.sync(slug);
  assert.equal(onB.pulled.deleted, 0);
  assert.equal(await readFile(join(rootB, "notes", "n19.txt"), "utf8"), "note 19, edited\n");
  assert.equal(await readFile(join(rootB, "added.txt"), "utf8"), "new\n");
  assert.equal((await readdir(join(rootB, "notes"))).length, 20);

  // `cws status` counts the item; `cws quarantine list` shows it.
  const status = parseJson(await b.cli(["status", "--json"]));
  assert.equal(status.superprojects.find((row: { slug: string }) => row.slug === slug).quarantine, 1);
  const listed = parseJson(await b.cli(["quarantine", "list", slug, "--json"]));
  assert.deepEqual(listed.items.map((item: { id: number }) => item.id), [held.id]);
  assert.equal(listed.items[0].pathCount, 16);

  // One accept applies the whole cleanup; B then deletes the files, backing them up first.
  const accepted = parseJson(await b.cli(["quarantine", "accept", String(held.id), "--json"]));
  assert.equal(accepted.snapshot.kind, "accept-quarantine");
  assert.equal(accepted.item.status, "accepted");
  const cleaned = await b.sync(slug);
  assert.equal(cleaned.pulled.deleted, 16);
  assert.deepEqual((await readdir(join(rootB, "notes"))).sort(), ["n16.txt", "n17.txt", "n18.txt", "n19.txt"]);
  assert.ok(cleaned.backupDir !== null);
  assert.equal(await readFile(join(cleaned.backupDir!, "notes", "n0.txt"), "utf8"), "note 0\n");
  const settled = await a.sync(slug);
  assert.equal(settled.pushed.deleted + settled.pulled.deleted + settled.quarantine.waiting.length, 0);
  assert.equal((await pendingItems(a, slug)).length, 0);
});

test("a Markdown file cut to 10% is held, the server keeps the old version live, and rejecting brings it back", async () => {
  const slug = "md-drift";
  const { a, b, rootA, rootB } = await cluster.pair(slug);
  const full = Array.from({ length: 10 }, (_, i) => `## Section ${i}\n\n${"Important words. ".repeat(30)}\n`).join("\n");
  await writeFile(join(rootA, "plan.md"), `# Plan\n\n${full}`);
  await a.sync(slug);
  await b.sync(slug);
  const original = await readFile(join(rootA, "plan.md"), "utf8");
  const cut = original.slice(0, Math.floor(original.length / 10));
  await writeFile(join(rootA, "plan.md"), cut);

  const pushed = await a.sync(slug);
  assert.equal(pushed.quarantine.held.length, 1);
  assert.equal(pushed.quarantine.held[0].reason, "markdown-drift");
  const id = pushed.quarantine.held[0].id;
  assert.equal(await readFile(join(rootB, "plan.md"), "utf8"), original);
  const onB = await b.sync(slug);
  assert.equal(onB.pulled.files, 0, "the server keeps the old version live");
  assert.equal(await readFile(join(rootB, "plan.md"), "utf8"), original);

  // `show` explains it with the numbers and a diff of what would be lost.
  const shown = parseJson(await b.cli(["quarantine", "show", String(id), "--json"]));
  assert.equal(shown.item.metrics.beforeBytes, Buffer.byteLength(original));
  assert.equal(shown.item.metrics.afterBytes, Buffer.byteLength(cut));
  assert.equal(shown.diffs.length, 1);
  assert.match(shown.diffs[0].diff, /^-## Section 9$/m);
  const text = await b.cli(["quarantine", "show", String(id)]);
  assert.match(text.stdout, /markdown-drift/);
  assert.match(text.stdout, /diff of plan\.md \(/);
  assert.doesNotMatch(text.stdout, /files\//, "the internal files\/ prefix is not shown");

  // Rejecting keeps the server version; A gets it back, its cut version goes to its backups.
  const rejected = parseJson(await b.cli(["quarantine", "reject", String(id), "--json"]));
  assert.equal(rejected.item.status, "rejected");
  const back = await a.sync(slug);
  assert.deepEqual(back.quarantine.restoring, [id]);
  assert.equal(await readFile(join(rootA, "plan.md"), "utf8"), original);
  assert.ok(back.backupDir !== null);
  assert.equal(await readFile(join(back.backupDir!, "plan.md"), "utf8"), cut);
  const backups = parseJson(await a.cli(["backups", "list", slug, "--json"]));
  assert.ok(backups.backups.some((set: { dir: string }) => set.dir === back.backupDir));
  const quiet = await a.sync(slug);
  assert.equal(quiet.pushed.files + quiet.pulled.files + quiet.quarantine.restoring.length, 0);
});

test("the same held change pushed again by a device that lost its record is not queued twice", async () => {
  const slug = "dedupe";
  const { a, rootA } = await cluster.pair(slug);
  await writeFile(join(rootA, "AGENTS.md"), "# Agents\n");
  await writeFile(join(rootA, "other.txt"), "x\n");
  await a.sync(slug);
  await rm(join(rootA, "AGENTS.md"));
  const first = await a.sync(slug);
  assert.equal(first.quarantine.held[0]?.reason, "protected-delete");
  await rm(heldFilePath(await a.state(), slug));
  const second = await a.sync(slug);
  assert.equal(second.quarantine.held.length, 1);
  assert.equal(second.quarantine.held[0].id, first.quarantine.held[0].id);
  assert.equal(second.quarantine.held[0].duplicate, true);
  assert.equal(second.snapshot?.id, first.snapshot?.id, "nothing else landed, so the head did not move");
  assert.equal((await pendingItems(a, slug)).length, 1);
  const third = await a.sync(slug);
  assert.equal(third.pushed.deleted, 0);
});

test("accepting an item whose file changed since it was held is refused, and accept follows the lease rule", async () => {
  const slug = "accept-conflict";
  const { a, b, rootA, rootB } = await cluster.pair(slug);
  await writeFile(join(rootA, "notes.md"), `# Notes\n\n${"## Part\n\ntext text text\n\n".repeat(40)}`);
  await a.sync(slug);
  await b.sync(slug);
  await writeFile(join(rootA, "notes.md"), "# Notes\n");
  const id = (await a.sync(slug)).quarantine.held[0].id;

  // While B live-syncs (holds the lease), A may not decide.
  const connB = await b.connect();
  const lease = await connB.call("acquireLease", { slug });
  const refused = await a.cli(["quarantine", "accept", String(id)]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /live-syncing/);
  await connB.call("releaseLease", { token: lease.token });
  await connB.close();

  // B edits the same file normally; the held version would now overwrite that edit.
  await writeFile(join(rootB, "notes.md"), `# Notes\n\n${"## Part\n\ntext text text\n\n".repeat(41)}`);
  await b.sync(slug);
  const conn = await a.connect();
  try {
    await assert.rejects(conn.call("quarantineAccept", { id }), (error: unknown) => isCwsError(error, "CONFLICT"));
    const [item] = (await conn.call("quarantineList", { slug })).items;
    assert.equal(item.status, "pending");
  } finally {
    await conn.close();
  }
});

test("a Codex rollout rewritten instead of appended to is held, while an append lands", async () => {
  const slug = "rollout-rewrite";
  const a = await cluster.device(`${slug}-a`);
  const conn = await a.connect();
  try {
    await conn.call("createSuperproject", { slug });
    const path = "codex/sessions/2026/01/02/rollout-2026-01-02T10-00-00-0198c1a2-0000-7000-8000-0000000000aa.jsonl";
    const lines = (n: number, tag: string) => Array.from({ length: n }, (_, i) => JSON.stringify({ type: "response_item", i, tag, text: "words ".repeat(30) })).join("\n") + "\n";
    await initHash();
    const dir = await cluster.folder(`${slug}-blobs`);
    let version = 0;
    /** Uploads `content` as the file at `path` and returns a one-entry manifest holding it. */
    const manifestOf = async (content: string) => {
      const bytes = Buffer.from(content);
      const chunks: Array<[string, number]> = [];
      let offset = 0;
      for (const length of chunkLengths(bytes)) {
        chunks.push([xxh64Hex(bytes.subarray(offset, offset + length)), length]);
        offset += length;
      }
      const entry = { path, kind: "file" as const, size: bytes.byteLength, mtimeMs: 1_700_000_000_000, mode: 0o644, hash: xxh64Hex(bytes), chunks };
      // Each version in a folder of its own, at the entry's path inside it.
      const root = join(dir, `v${version++}`);
      await mkdir(dirname(join(root, path)), { recursive: true });
      await writeFile(join(root, path), bytes);
      await pushChunks({ conn, files: [{ entry, root }] });
      return { format: 1 as const, entries: [entry] };
    };
    const first = await conn.call("commit", { slug, base: null, manifest: await manifestOf(lines(2000, "a")), kind: "push" });
    assert.deepEqual(first.held ?? [], []);

    // Both devices appended from the same point: the second version is not an extension.
    const rewritten = await conn.call("commit", { slug, base: first.snapshot.id, manifest: await manifestOf(lines(2000, "a").slice(0, -50) + lines(10, "b")), kind: "push" });
    assert.equal(rewritten.held?.length, 1);
    assert.equal(rewritten.held?.[0].reason, "rollout-rewrite");
    assert.equal(rewritten.snapshot.id, first.snapshot.id, "nothing else landed");

    const appended = await conn.call("commit", { slug, base: first.snapshot.id, manifest: await manifestOf(lines(2000, "a") + lines(10, "c")), kind: "push" });
    assert.deepEqual(appended.held ?? [], []);
    assert.ok(appended.snapshot.id > first.snapshot.id);
  } finally {
    await conn.close();
  }
});
