/**
 * Names that travel (DESIGN §6; issue 11, findings 3 and 4), end to end with real agents and a
 * real hub: a device keeps a name other devices cannot hold on itself and syncs the rest; the
 * agent refuses every commit, full or delta, that would make a head some device cannot apply;
 * and a head an older server already accepted does not stop a device from syncing.
 */
import assert from "node:assert/strict";
import { access, readFile, writeFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { isCwsError } from "../src/errors.ts";
import { makeCluster, type TestCluster } from "./helpers/cluster.ts";
import { connectHub } from "../server-agent/hub/hub-client.ts";
import { Store } from "../server-agent/store/store.ts";
import { getManifest, putManifest } from "../server-agent/store/manifest-objects.ts";
import { makeManifest, type ManifestEntry } from "../src/core/manifest.ts";

const EMPTY_HASH = "ef46db3751d8e999";
const empty = (path: string): ManifestEntry => ({ path, kind: "file", size: 0, mtimeMs: 0, mode: 0o644, hash: EMPTY_HASH, chunks: [] });
const folder = (path: string): ManifestEntry => ({ path, kind: "dir", size: 0, mtimeMs: 0, mode: 0o755, hash: "", chunks: [] });
const exists = (path: string) => access(path).then(() => true, () => false);

let cluster: TestCluster;
before(async () => { cluster = await makeCluster(); });
after(async () => { await cluster.close(); });

describe("a device with names that cannot travel", () => {
  it("keeps `Q:A notes.md` and a 258-byte name local, syncs the rest, and never reads them as deletes", async () => {
    const { a, b, rootA, rootB } = await cluster.pair("odd-names");
    const longCjk = "日".repeat(86) + ".md"; // 89 UTF-16 units (fine on NTFS), 261 bytes (not on ext4)
    await writeFile(join(rootA, "Q:A notes.md"), "finder's Q/A notes\n");
    await writeFile(join(rootA, longCjk.slice(0, 84) + ".md"), "an 84-character CJK name travels\n");
    await writeFile(join(rootA, "ok.md"), "fine\n");
    await mkdir(join(rootA, "aux"));
    await writeFile(join(rootA, "aux", "inside.md"), "under a reserved folder name\n");

    const first = await a.sync("odd-names");
    const held = first.problems.filter((p) => p.reason.startsWith("kept on this device")).map((p) => p.path).sort();
    assert.deepEqual(held, ["files/Q:A notes.md", "files/aux", "files/aux/inside.md"]);
    assert.match(first.problems.find((p) => p.path === "files/Q:A notes.md")!.reason, /windows-name.*":".*rename it to sync it/);

    await b.sync("odd-names");
    assert.equal(await readFile(join(rootB, "ok.md"), "utf8"), "fine\n");
    assert.ok(await exists(join(rootB, longCjk.slice(0, 84) + ".md")));
    assert.equal(await exists(join(rootB, "Q:A notes.md")), false);
    assert.equal(await exists(join(rootB, "aux")), false);

    // Again, with nothing changed: nothing is pushed, and above all no delete.
    const again = await a.sync("odd-names");
    assert.equal(again.pushed.files + again.pushed.deleted, 0);
    assert.equal(await readFile(join(rootA, "Q:A notes.md"), "utf8"), "finder's Q/A notes\n");
  });

  it("lists a name Windows cannot hold in text and --json output, and the sync exits 0", async () => {
    const { a, b, rootA, rootB } = await cluster.pair("cli-names");
    await writeFile(join(rootA, "why?.md"), "x");
    await writeFile(join(rootA, "plain.md"), "plain\n");
    const json = await a.cli(["sync", "cli-names", "--json"]);
    assert.equal(json.code, 0, json.stderr);
    const problems = JSON.parse(json.stdout).problems as Array<{ path: string; reason: string }>;
    assert.ok(problems.some((p) => p.path === "files/why?.md" && /windows-name/.test(p.reason)), json.stdout);
    const text = await a.cli(["sync", "cli-names"]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /warning files\/why\?\.md: kept on this device and not synced/);
    await b.sync("cli-names");
    assert.ok(await exists(join(rootB, "plain.md")));
    assert.equal(await exists(join(rootB, "why?.md")), false);
  });
});

describe("the agent refuses a commit some device cannot apply", () => {
  const bad: Array<{ what: string; entries: ManifestEntry[]; path: string; rule: string }> = [
    { what: "a file under a file", entries: [empty("files/a.md"), empty("files/a.md/b")], path: "files/a.md/b", rule: "file-under-file" },
    { what: "a name over 255 bytes", entries: [empty("files/" + "日".repeat(86))], path: "files/" + "日".repeat(86), rule: "name-too-long" },
    { what: "a:b", entries: [empty("files/a:b")], path: "files/a:b", rule: "windows-name" },
    { what: "a reserved name", entries: [empty("files/nul.txt")], path: "files/nul.txt", rule: "windows-name" },
    { what: "a bare files entry", entries: [folder("files"), empty("files/x")], path: "files", rule: "namespace-entry" },
    { what: "a bare codex entry", entries: [empty("codex")], path: "codex", rule: "namespace-entry" },
  ];

  it("in a full commit and in a delta, with INVALID_PATH naming the path and the rule", async () => {
    const { a, rootA } = await cluster.pair("refuse");
    await writeFile(join(rootA, "base.md"), "");
    const base = (await a.sync("refuse")).snapshot!.id;
    const conn = await a.connect();
    try {
      for (const { what, entries, path, rule } of bad) {
        const refused = (error: unknown) => {
          assert.ok(isCwsError(error, "INVALID_PATH"), `${what}: ${String(error)}`);
          assert.equal(error.data?.path, path, what);
          assert.equal(error.data?.rule, rule, what);
          assert.ok(error.message.includes(JSON.stringify(path)) && error.message.includes(rule), error.message);
          return true;
        };
        await assert.rejects(conn.call("commit", { slug: "refuse", base: null, manifest: makeManifest(entries), kind: "push" }), refused);
        await assert.rejects(conn.call("commit", { slug: "refuse", base, delta: { upserts: entries, removes: [] }, kind: "push" }), refused);
      }
      // A file turned into the parent of an existing entry is found against the resulting tree.
      await conn.call("commit", { slug: "refuse", base, delta: { upserts: [folder("files/d"), empty("files/d/x")], removes: [] }, kind: "push" });
      const head = (await conn.call("head", { slug: "refuse" })).snapshot!.id;
      await assert.rejects(
        conn.call("commit", { slug: "refuse", base: head, delta: { upserts: [empty("files/d")], removes: [] }, kind: "push" }),
        (error: unknown) => isCwsError(error, "INVALID_PATH") && error.data?.path === "files/d/x" && error.data?.rule === "file-under-file",
      );
      assert.equal((await conn.call("head", { slug: "refuse" })).snapshot!.id, head);
    } finally {
      await conn.close();
    }
  });
});

describe("a head an older server accepted", () => {
  it("does not stop a device: the rest pulls, the bad entries are named with the next step and left alone", async () => {
    const { a, b, rootA, rootB } = await cluster.pair("old-head");
    await writeFile(join(rootA, "keep.md"), "");
    const first = await a.sync("old-head");
    // What an older agent let through: a file under a file and a name over 255 bytes, committed
    // straight into the hub as that agent would have.
    const store = await Store.open(cluster.dataDir);
    const hub = await connectHub(cluster.dataDir);
    const tooLong = "files/" + "日".repeat(86);
    try {
      const previous = await getManifest(store, (await hub.call("snapshot", { slug: "old-head", id: first.snapshot!.id })).snapshot.manifestHash);
      const manifest = makeManifest([...previous.entries, empty("files/a.md"), empty("files/a.md/b"), empty(tooLong), empty("files/fresh.md")]);
      const deviceId = (await a.state()).enrolled().device.id;
      await hub.call("commit", { slug: "old-head", base: first.snapshot!.id, deviceId, kind: "push", manifestHash: await putManifest(store, manifest) });
    } finally {
      await hub.close();
      await store.close();
    }

    const summary = await b.sync("old-head");
    assert.ok(await exists(join(rootB, "fresh.md")));
    assert.ok(await exists(join(rootB, "a.md")));
    const named = summary.problems.filter((p) => p.reason.startsWith("the server's head holds it")).map((p) => p.path).sort();
    assert.deepEqual(named, ["files/a.md/b", tooLong].sort());
    assert.match(summary.problems.find((p) => p.path === "files/a.md/b")!.reason, /file-under-file.*cws restore old-head/);

    // B's next sync and a push of its own keep the server's entries (no delete read from them).
    await writeFile(join(rootB, "more.md"), "");
    const pushed = await b.sync("old-head");
    assert.equal(pushed.pushed.deleted, 0);
    const conn = await b.connect();
    try {
      const head = (await conn.call("head", { slug: "old-head" })).snapshot!;
      const paths = (await conn.call("fetchManifest", { slug: "old-head", snapshotId: head.id })).manifest.entries.map((e) => e.path);
      assert.ok(paths.includes("files/a.md/b") && paths.includes(tooLong) && paths.includes("files/more.md"));
    } finally {
      await conn.close();
    }
    // And through the CLI: exit 0, one warning line each, no stack trace.
    const cli = await b.cli(["sync", "old-head"]);
    assert.equal(cli.code, 0, cli.stderr);
    assert.doesNotMatch(cli.stdout + cli.stderr, /\n\s+at /);
    assert.match(cli.stdout, /warning files\/a\.md\/b: the server's head holds it/);
  });
});
