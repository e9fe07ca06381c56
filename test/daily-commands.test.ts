/**
 * Daily commands through the real `cws` CLI (child processes, local transport): what
 * update-from-server replaced, what override-current-state would replace before it asks,
 * and progress for programs (`--json`) and logs (not a terminal).
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { makeCluster, type TestCluster } from "./helpers/cluster.ts";

let cluster: TestCluster;
before(async () => { cluster = await makeCluster(); });
after(async () => { await cluster.close(); });

test("update-from-server lists the local files it replaced, each backed up first", async () => {
  const { a, b, rootA, rootB } = await cluster.pair("update");
  await writeFile(join(rootA, "plan.md"), "# plan from A\n");
  await a.sync("update");
  await b.sync("update");
  await writeFile(join(rootA, "plan.md"), "# plan from A, second version\n");
  await a.sync("update");
  await writeFile(join(rootB, "plan.md"), "# B's own edit, not synced\n");
  const update = await b.cli(["update-from-server", "update"]);
  assert.equal(update.code, 0, update.stderr);
  assert.match(update.stdout, /1 local file\(s\) replaced or deleted, each backed up first in (\S+):\n\s+plan\.md\n/);
  const backupDir = /backed up first in (\S+):/.exec(update.stdout)![1];
  assert.equal(await readFile(join(backupDir, "plan.md"), "utf8"), "# B's own edit, not synced\n");
  assert.equal(await readFile(join(rootB, "plan.md"), "utf8"), "# plan from A, second version\n");
});

test("override-current-state shows the head it replaces (device, time, files) and asks; without a terminal it needs --yes", async () => {
  const { a, b, rootA, rootB } = await cluster.pair("override");
  await writeFile(join(rootA, "shared.md"), "# from A\n");
  await a.sync("override");
  await writeFile(join(rootB, "mine.md"), "# only on B\n");
  const refused = await b.cli(["override-current-state", "override"]);
  assert.equal(refused.code, 130, refused.stderr);
  assert.match(refused.stderr, /This replaces the server's state of override: snapshot \d+ \(\d+ files\), written by override-a on /);
  assert.match(refused.stderr, /~ mine\.md/);
  assert.match(refused.stderr, /- shared\.md/);
  assert.match(refused.stderr, /Run it again with --yes/);
  const headOf = async () => {
    const conn = await a.connect();
    try {
      return await conn.call("head", { slug: "override" });
    } finally {
      await conn.close();
    }
  };
  const head = await headOf();
  const done = await b.cli(["override-current-state", "override", "--yes"]);
  assert.equal(done.code, 0, done.stderr);
  const after = await headOf();
  assert.notEqual(after.snapshot?.id, head.snapshot?.id, "the refused run changed nothing; --yes did");
  assert.equal(after.snapshot?.kind, "override");
});

test("progress: --json runs print JSON progress lines on stderr and the result once on stdout; a non-terminal gets a line per phase", async () => {
  const { a, rootA } = await cluster.pair("progress");
  await writeFile(join(rootA, "p.md"), "# progress\n");
  const json = await a.cli(["sync", "progress", "--json"]);
  assert.equal(json.code, 0, json.stderr);
  assert.equal(JSON.parse(json.stdout).ok, true);
  const events = json.stderr.trim().split("\n").map((line) => JSON.parse(line) as { type: string; event: string; phase?: string });
  assert.ok(events.every((e) => e.type === "progress"));
  assert.deepEqual(events.filter((e) => e.event === "phase").map((e) => e.phase), ["scan", "plan", "push", "commit", "done"]);
  await writeFile(join(rootA, "q.md"), "# more\n");
  const text = await a.cli(["sync", "progress"]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stderr, /^cws: scanning the folder\ncws: comparing with the server\ncws: uploading changes\ncws: committing on the server\n/);
});
