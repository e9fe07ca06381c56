/**
 * Crash tests of the pull's write path (src/client/pull.ts, PullWriter): the real CLI is
 * killed with SIGKILL at every fault point between the first temp file and the recorded base.
 * After each kill no file of the tree is half-written (each is its old or its new version),
 * the base still names the old snapshot, and the next sync converges: the tree is the
 * server's, nothing is pushed back, and no temp file is left behind.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile, rm, writeFile, mkdir } from "node:fs/promises";
import { join, relative } from "node:path";
import { randomBytes } from "node:crypto";
import { makeCluster, type TestCluster } from "./helpers/cluster.ts";
import type { FaultPoint } from "../src/fault.ts";

let cluster: TestCluster;
before(async () => {
  cluster = await makeCluster();
});
after(async () => {
  await cluster.close();
});

/** Every regular file below `root` with its content, by path relative to `root`. */
async function treeOf(root: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  for (const entry of await readdir(root, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    files.set(relative(root, path), await readFile(path));
  }
  return files;
}

/** A tree with folders, small notes and a file of several chunks. */
async function writeVersion(root: string, version: number, big: Buffer): Promise<void> {
  for (let i = 0; i < 30; i++) {
    await mkdir(join(root, `notes/${i % 4}`), { recursive: true });
    await writeFile(join(root, `notes/${i % 4}/note-${i}.md`), `# Note ${i}, version ${version}\n\n${"words of a note ".repeat(40 + i)}\n`);
  }
  await writeFile(join(root, "big.bin"), big);
  if (version === 1) await writeFile(join(root, "gone.md"), "# deleted in version 2\n");
  else {
    await rm(join(root, "gone.md"), { force: true });
    await mkdir(join(root, "new/deep"), { recursive: true });
    await writeFile(join(root, "new/deep/fresh.md"), "# new in version 2\n");
  }
}

const FAULTS: FaultPoint[] = ["client-pull-mid-write", "client-pull-before-barrier", "client-mid-pull", "client-pull-mid-rename", "client-pull-before-base"];

for (const fault of FAULTS) {
  test(`a pull killed at ${fault} leaves every file whole and the old base, and the next sync converges without leftovers`, async () => {
    const slug = `pull-${fault.replace(/^client-(pull-)?/, "")}`;
    const { a, b, rootA, rootB } = await cluster.pair(slug);
    const bigV1 = randomBytes(900_000);
    await writeVersion(rootA, 1, bigV1);
    await a.sync(slug);
    const first = await b.sync(slug);
    const v1 = await treeOf(rootB);
    // Version 2: every note changes, the big file gets a new middle, one file goes, one comes.
    const bigV2 = Buffer.concat([bigV1.subarray(0, 300_000), randomBytes(300_000), bigV1.subarray(600_000)]);
    await writeVersion(rootA, 2, bigV2);
    const second = await a.sync(slug);
    const v2 = await treeOf(rootA);

    const killed = await b.cli(["sync", slug], { CWS_FAULT: fault });
    assert.equal(killed.signal, "SIGKILL", `the CLI reached ${fault}: ${killed.stderr}`);

    // Nothing is half-written in place: each file is its version 1 or its version 2.
    for (const [path, content] of await treeOf(rootB)) {
      if (path.endsWith(".cws-tmp")) continue;
      const whole = v1.get(path)?.equals(content) === true || v2.get(path)?.equals(content) === true;
      assert.ok(whole, `${path} is neither its old nor its new version`);
    }
    assert.equal((await b.state()).data.superprojects[slug].base, first.snapshot!.id, "the base is still the old snapshot");

    const next = await b.sync(slug);
    assert.equal(next.pushed.files + next.pushed.deleted, 0, "nothing of the interrupted pull is taken for a local change");
    assert.equal(next.snapshot!.id, second.snapshot!.id, "the head did not move");
    const after = await treeOf(rootB);
    assert.deepEqual([...after.keys()].filter((path) => path.endsWith(".cws-tmp")), [], "no temp file is left");
    assert.deepEqual([...after.keys()].sort(), [...v2.keys()].sort());
    for (const [path, content] of v2) assert.ok(after.get(path)!.equals(content), `${path} is the server's version`);
    assert.equal((await b.state()).data.superprojects[slug].base, second.snapshot!.id);
  });
}

test("a first pull killed once its first round of new files is in place leaves those whole and no base, and the next sync converges without leftovers", async () => {
  const slug = "pull-early-rename";
  const { a, b, rootA, rootB } = await cluster.pair(slug);
  // Enough new files for an early round (ROUND_FILES in pull.ts) and more after it.
  for (let i = 0; i < 2400; i++) {
    await mkdir(join(rootA, `notes/${i % 40}`), { recursive: true });
    await writeFile(join(rootA, `notes/${i % 40}/note-${i}.md`), `# Note ${i}\n\n${"a line of the note ".repeat(1 + (i % 7))}\n`);
  }
  const pushed = await a.sync(slug);
  const tree = await treeOf(rootA);

  const killed = await b.cli(["sync", slug], { CWS_FAULT: "client-pull-after-early-rename" });
  assert.equal(killed.signal, "SIGKILL", `the CLI reached the fault point: ${killed.stderr}`);
  const placed = [...(await treeOf(rootB))].filter(([path]) => !path.endsWith(".cws-tmp"));
  assert.ok(placed.length > 0, "the first round's files are in place");
  assert.ok(placed.length < tree.size, "the pull was stopped before its end");
  for (const [path, content] of placed) assert.ok(tree.get(path)?.equals(content), `${path} is whole`);
  assert.equal((await b.state()).data.superprojects[slug].base, null, "no base was recorded");

  const next = await b.sync(slug);
  assert.equal(next.pushed.files + next.pushed.deleted, 0, "the files placed early are not taken for local changes");
  assert.equal(next.snapshot!.id, pushed.snapshot!.id);
  const after = await treeOf(rootB);
  assert.deepEqual([...after.keys()].filter((path) => path.endsWith(".cws-tmp")), [], "no temp file is left");
  assert.equal(after.size, tree.size);
  for (const [path, content] of tree) assert.ok(after.get(path)?.equals(content), `${path} is the server's version`);
});
