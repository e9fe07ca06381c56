/**
 * Crash tests of the base's journal (src/client/journal-file.ts): the real CLI is killed with
 * SIGKILL while it records its new base: halfway through appending the journal record, while a
 * new base snapshot is being written in pieces (before its rename), and between renaming a new
 * base snapshot into place and removing the old journal. After each
 * kill the base on disk describes either the state before the sync or the state after it,
 * never a mix, and the next sync converges: nothing is pushed again, the head does not move,
 * and the base is the head's manifest.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { appendFile, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { makeCluster, type TestCluster } from "./helpers/cluster.ts";
import type { Manifest } from "../src/core/manifest.ts";
import type { FaultPoint } from "../src/fault.ts";
import type { TestDevice } from "./helpers/cluster.ts";

let cluster: TestCluster;
before(async () => {
  cluster = await makeCluster();
});
after(async () => {
  await cluster.close();
});

async function writeVersion(root: string, version: number): Promise<void> {
  for (let i = 0; i < 20; i++) {
    await mkdir(join(root, `notes/${i % 3}`), { recursive: true });
    // Every version changes a few notes, adds one and removes the one before.
    if (i % 5 === version % 5) await writeFile(join(root, `notes/${i % 3}/note-${i}.md`), `# Note ${i}, version ${version}\n`);
    else if (version === 1) await writeFile(join(root, `notes/${i % 3}/note-${i}.md`), `# Note ${i}\n`);
  }
  await writeFile(join(root, `added-${version}.md`), `# added in version ${version}\n`);
  await rm(join(root, `added-${version - 1}.md`), { force: true });
}

/** The base manifest as a new process finds it on disk. */
async function baseOnDisk(device: TestDevice, slug: string): Promise<Manifest> {
  return (await device.state()).readBase(slug);
}

/** The server's head snapshot and its manifest. */
async function serverHead(device: TestDevice, slug: string): Promise<{ id: number; manifest: Manifest }> {
  const conn = await device.connect();
  try {
    const { snapshot } = await conn.call("head", { slug });
    assert.ok(snapshot !== null);
    return { id: snapshot.id, manifest: (await conn.call("fetchManifest", { slug, snapshotId: snapshot.id })).manifest };
  } finally {
    await conn.close();
  }
}

const FAULTS: FaultPoint[] = ["client-base-mid-append", "client-base-mid-snapshot", "client-base-before-journal-reset"];

for (const fault of FAULTS) {
  test(`a sync killed at ${fault} leaves the old or the new base, never a mix, and the next sync converges`, async () => {
    const slug = `journal-${fault.replace(/^client-base-/, "")}`;
    const { a, rootA } = await cluster.pair(slug);
    await writeVersion(rootA, 1);
    await a.sync(slug);
    await writeVersion(rootA, 2);
    const second = await a.sync(slug);
    const journal = join(a.home, "bases", `${slug}.json.journal`);
    assert.match(await readFile(journal, "utf8"), /\n.+\n/, "the second sync appended its base to the journal");
    if (fault !== "client-base-mid-append") {
      // A torn tail, as an earlier crash leaves one: the next base is then a whole snapshot.
      await appendFile(journal, "0badc0de {\"u\":[");
    }
    const old = await baseOnDisk(a, slug);

    await writeVersion(rootA, 3);
    const killed = await a.cli(["sync", slug], { CWS_FAULT: fault });
    assert.equal(killed.signal, "SIGKILL", `the CLI reached ${fault}: ${killed.stderr}`);

    const head = await serverHead(a, slug);
    assert.notEqual(head.id, second.snapshot!.id, "the commit happened before the base was recorded");
    const committed = head.manifest;
    const found = await baseOnDisk(a, slug);
    const which = JSON.stringify(found) === JSON.stringify(old) ? "old" : JSON.stringify(found) === JSON.stringify(committed) ? "new" : "a mix";
    assert.equal(which, fault === "client-base-before-journal-reset" ? "new" : "old", "the base is one whole state");

    const next = await a.sync(slug);
    assert.equal(next.pushed.files + next.pushed.deleted, 0, "nothing committed is pushed again");
    assert.equal(next.snapshot!.id, head.id, "the head did not move");
    assert.equal((await a.state()).data.superprojects[slug].base, head.id);
    assert.deepEqual(await baseOnDisk(a, slug), committed);
  });
}
