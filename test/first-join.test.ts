/**
 * The first sync of a device whose folder already holds files (issue 16): the plan is shown
 * grouped, nothing reaches the server before the choice, and each choice (adopt, merge with
 * each way of keeping a differing file, replace) leaves the expected trees on both devices
 * and on the server, with the expected backups. Real hub, real store, real files; the CLI
 * runs as a child process, on a pseudo-terminal (util-linux `script`) for the prompt.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdir, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { makeCluster, REPO, type TestCluster, type TestDevice } from "./helpers/cluster.ts";
import { firstJoinHook, type FirstJoinQuestion } from "../src/client/first-join.ts";
import type { FirstJoinAnswer } from "../src/core/first-join.ts";
import type { SyncOptions, SyncSummary } from "../src/client/sync.ts";
import { buildRollout, POSIX_THREAD, type RolloutSpec, rolloutFileName } from "./fixtures/codex-fixtures.ts";

let cluster: TestCluster;
before(async () => { cluster = await makeCluster(); });
after(async () => { await cluster.close(); });

/** Every file under a folder with its text (folders left out). */
async function tree(root: string): Promise<Record<string, string>> {
  const result: Record<string, string> = {};
  for (const name of await readdir(root, { recursive: true })) {
    const path = join(root, name);
    if ((await stat(path)).isFile()) result[relative(root, path)] = await readFile(path, "utf8");
  }
  return result;
}

/** Every file of the server's store and staging folders with its size: what an upload would change. */
async function storeFiles(): Promise<Record<string, number>> {
  const result: Record<string, number> = {};
  for (const folder of ["store", "staging"]) {
    const base = join(cluster.dataDir, folder);
    for (const name of await readdir(base, { recursive: true }).catch(() => [] as string[])) {
      const info = await stat(join(base, name)).catch(() => null);
      if (info?.isFile()) result[join(folder, name)] = info.size;
    }
  }
  return result;
}

/** The server head of a superproject, read by a device. */
async function serverHead(device: TestDevice, slug: string) {
  const conn = await device.connect();
  try {
    const { snapshot } = await conn.call("head", { slug });
    const manifest = snapshot === null ? null : (await conn.call("fetchManifest", { slug, snapshotId: snapshot.id })).manifest;
    return { snapshot, files: manifest?.entries.filter((e) => e.kind === "file" && e.path.startsWith("files/")).map((e) => e.path.slice("files/".length)) ?? [] };
  }
  finally {
    await conn.close();
  }
}

/** Every file of every backup set of a device's superproject, by path inside its set. */
async function backups(device: TestDevice, slug: string): Promise<Record<string, string>> {
  const root = (await device.state()).backupsDir(slug);
  const result: Record<string, string> = {};
  for (const set of await readdir(root).catch(() => [] as string[])) Object.assign(result, await tree(join(root, set)));
  return result;
}

// Each superproject's files carry its name, so their content is new to the shared store and
// an upload before the choice would show there.
const serverTree = (slug: string) => ({ "plan.md": `# Plan of ${slug}\nshared\n`, "notes.md": `# Notes of ${slug}\nfrom device A\n`, "todo.md": `# Todo of ${slug}\nonly on the server\n` });
const localTree = (slug: string) => ({ "plan.md": `# Plan of ${slug}\nshared\n`, "notes.md": `# Notes of ${slug}\nwritten on device B\n`, "private/diary.md": `# Diary of ${slug}\nonly on B\n` });
/** What merge makes of both, apart from the differing notes.md. */
const mergedTree = (slug: string) => ({ "plan.md": serverTree(slug)["plan.md"], "todo.md": serverTree(slug)["todo.md"], "private/diary.md": localTree(slug)["private/diary.md"] });

/**
 * Device A has synced plan.md, notes.md and todo.md; device B's folder holds the same
 * plan.md, its own notes.md and a private diary.md, and B attached without syncing.
 */
async function scenario(slug: string, options: { ideas?: boolean; codex?: { a: CodexThreadHome; b: CodexThreadHome } } = {}) {
  const { a, b, rootA, rootB } = await cluster.pair(slug);
  if (options.codex) {
    // Each device's Codex home and the root its threads record, set as attach --codex-home would.
    for (const [device, side] of [[a, options.codex.a], [b, options.codex.b]] as const) {
      await (await device.state()).update((st) => { st.superprojects[slug] = { ...st.superprojects[slug]!, codexHome: side.home, codexRoot: side.root }; });
    }
  }
  // With `ideas`, a second file both hold differently (for answers per file).
  const ideas = options.ideas ? IDEAS : { a: {}, b: {} };
  for (const [path, text] of Object.entries({ ...serverTree(slug), ...ideas.a })) await writeFile(join(rootA, path), text);
  const first = await a.sync(slug, CODEX_POSIX);
  assert.equal(first.pushed.files, (options.ideas ? 4 : 3) + (options.codex ? 1 : 0));
  await mkdir(join(rootB, "private"));
  for (const [path, text] of Object.entries({ ...localTree(slug), ...ideas.b })) await writeFile(join(rootB, path), text);
  return { a, b, rootA, rootB, head: first.snapshot! };
}

/** Codex sync options for a POSIX device, with no Codex process running. */
const CODEX_POSIX: Partial<SyncOptions> = { codexPlatform: "posix", codexProbe: async () => ({ pids: [], openFiles: new Set<string>() }) };

interface CodexThreadHome {
  home: string;
  root: string;
  thread: RolloutSpec;
}

/** A Codex home holding one thread recorded in `root`. */
async function codexHome(name: string, id: string): Promise<CodexThreadHome> {
  const home = await cluster.folder(`codex-${name}`);
  const root = `/home/${name}/proj`;
  const thread: RolloutSpec = { ...POSIX_THREAD, id, cwd: root, writableRoots: [root], userText: `a thread of ${name}` };
  const dir = join(home, "sessions", "2026", "05", "19");
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, rolloutFileName(thread)), buildRollout(thread));
  return { home, root, thread };
}

const IDEAS = { a: { "ideas.md": "# Ideas\nA\n" }, b: { "ideas.md": "# Ideas\nB\n" } };

/** Checks B's tree, then syncs A and checks that A ends with the same. */
async function assertBothDevices(s: Awaited<ReturnType<typeof scenario>>, slug: string, expected: Record<string, string>): Promise<void> {
  assert.deepEqual(await tree(s.rootB), expected);
  await s.a.sync(slug);
  assert.deepEqual(await tree(s.rootA), expected);
}

/**
 * Runs B's first sync in-process with an answer, checking at the moment of the question that
 * the server is exactly as it was (same head, not one byte more in its store or staging).
 */
async function joinWith(s: Awaited<ReturnType<typeof scenario>>, slug: string, answer: FirstJoinAnswer, options: Partial<SyncOptions> = {}): Promise<{ summary: SyncSummary; question: FirstJoinQuestion }> {
  const before = await storeFiles();
  let asked: FirstJoinQuestion | undefined;
  const summary = await s.b.sync(slug, {
    ...options,
    firstJoin: firstJoinHook({
      slug,
      deviceName: `${slug}-b`,
      ask: async (question) => {
        asked = question;
        assert.deepEqual(await storeFiles(), before, "nothing reached the server's store before the choice");
        assert.equal((await serverHead(s.a, slug)).snapshot?.id, s.head.id, "the head did not move before the choice");
        return answer;
      },
    }),
  });
  assert.ok(asked !== undefined, "the first sync asked");
  return { summary, question: asked };
}


test("adopt: the question shows the plan grouped; B takes the server's state; its own files are backed up, nothing of B reaches the server", async () => {
  const slug = "fj-adopt";
  const s = await scenario(slug);
  const { summary, question } = await joinWith(s, slug, { choice: "adopt" });
  // The plan the question shows, grouped.
  assert.deepEqual(
    { identical: question.groups.identical, localOnly: question.groups.localOnly, serverOnly: question.groups.serverOnly, differing: question.groups.differing },
    { identical: ["plan.md"], localOnly: ["private/diary.md"], serverOnly: ["todo.md"], differing: ["notes.md"] },
  );
  assert.equal(question.head.id, s.head.id);
  assert.deepEqual(question.keepBothNames, { "notes.md": `notes (${slug}-b).md` });
  assert.equal(summary.pushed.files, 0);
  assert.deepEqual(summary.conflicts, []);
  assert.deepEqual(await tree(s.rootB), serverTree(slug));
  assert.deepEqual(await backups(s.b, slug), { "notes.md": localTree(slug)["notes.md"], "private/diary.md": localTree(slug)["private/diary.md"] });
  const server = await serverHead(s.a, slug);
  assert.equal(server.snapshot?.id, s.head.id, "adopt commits nothing");
  assert.deepEqual((await s.a.sync(slug)).pulled.files, 0);
  assert.deepEqual(await tree(s.rootA), serverTree(slug));
  // B agrees with the server now: its next sync has nothing to do.
  const again = await s.b.sync(slug);
  assert.equal(again.pushed.files + again.pulled.files + again.conflicts.length, 0);
});

const mergeCases: Array<{ prefer: "server" | "local" | "both"; both: (slug: string) => Record<string, string>; backupB: (slug: string) => Record<string, string>; backupA: (slug: string) => Record<string, string> }> = [
  { prefer: "server", both: (slug) => ({ ...mergedTree(slug), "notes.md": serverTree(slug)["notes.md"] }), backupB: (slug) => ({ "notes.md": localTree(slug)["notes.md"] }), backupA: () => ({}) },
  { prefer: "local", both: (slug) => ({ ...mergedTree(slug), "notes.md": localTree(slug)["notes.md"] }), backupB: () => ({}), backupA: (slug) => ({ "notes.md": serverTree(slug)["notes.md"] }) },
  { prefer: "both", both: (slug) => ({ ...mergedTree(slug), "notes.md": serverTree(slug)["notes.md"], [`notes (${slug}-b).md`]: localTree(slug)["notes.md"] }), backupB: () => ({}), backupA: () => ({}) },
];
for (const c of mergeCases) {
  test(`merge keeping ${c.prefer === "both" ? "both versions" : `the ${c.prefer} version`} of differing files: both devices and the server end with the same tree`, async () => {
    const slug = `fj-merge-${c.prefer}`;
    const s = await scenario(slug);
    const expected = c.both(slug);
    const { summary } = await joinWith(s, slug, { choice: "merge", prefer: c.prefer });
    assert.deepEqual(summary.conflicts, []);
    assert.deepEqual(await backups(s.b, slug), c.backupB(slug));
    const server = await serverHead(s.a, slug);
    assert.deepEqual(server.files.sort(), Object.keys(expected).sort());
    assert.equal(server.snapshot?.kind, "push");
    await assertBothDevices(s, slug, expected);
    assert.deepEqual(await backups(s.a, slug), c.backupA(slug));
  });
}

test("replace: the server takes B's folder, keeps its old state as a checkpoint, and A follows", async () => {
  const slug = "fj-replace";
  const s = await scenario(slug);
  const { summary } = await joinWith(s, slug, { choice: "replace" });
  assert.deepEqual(summary.conflicts, []);
  assert.deepEqual(await tree(s.rootB), localTree(slug), "B's folder is left as it was");
  assert.deepEqual(await backups(s.b, slug), {});
  const server = await serverHead(s.a, slug);
  assert.deepEqual(server.files.sort(), Object.keys(localTree(slug)).sort());
  assert.equal(server.snapshot?.kind, "override");
  assert.equal(server.snapshot?.parent, s.head.id, "the old head is the new one's parent checkpoint");
  const conn = await s.a.connect();
  try {
    const old = await conn.call("fetchManifest", { slug, snapshotId: s.head.id });
    assert.deepEqual(old.manifest.entries.filter((e) => e.kind === "file").map((e) => e.path).sort(), ["files/notes.md", "files/plan.md", "files/todo.md"]);
  } finally {
    await conn.close();
  }
  await s.a.sync(slug);
  assert.deepEqual(await tree(s.rootA), localTree(slug));
  assert.deepEqual(await backups(s.a, slug), { "notes.md": serverTree(slug)["notes.md"], "todo.md": serverTree(slug)["todo.md"] });
});

test("a first sync into an empty folder, or onto an empty server, asks nothing", async () => {
  const { a, b, rootA, rootB } = await cluster.pair("fj-noask");
  let asked = 0;
  const hook = (device: TestDevice) => firstJoinHook({ slug: "fj-noask", deviceName: device.name, ask: async () => { asked++; return { choice: "adopt" }; } });
  await writeFile(join(rootA, "a.md"), "A\n");
  await a.sync("fj-noask", { firstJoin: hook(a) });
  await b.sync("fj-noask", { firstJoin: hook(b) });
  assert.equal(asked, 0);
  assert.deepEqual(await tree(rootB), { "a.md": "A\n" });
});

test("without a terminal or a choice, sync, update-from-server and turn-on-sync show the plan, name the flags, exit non-zero and upload nothing; dry runs show it too", async () => {
  const slug = "fj-cli-refuse";
  const s = await scenario(slug);
  const before = await storeFiles();
  const run = await s.b.cli(["sync", slug]);
  assert.equal(run.code, 1, run.stderr);
  assert.match(run.stdout, /only here — would be uploaded \(1\):\n {4}private\/diary\.md/);
  assert.match(run.stdout, /only on the server — would be downloaded \(1\):\n {4}todo\.md/);
  assert.match(run.stdout, /on both, with different content \(1\):\n {4}notes\.md/);
  assert.match(run.stdout, /identical on both \(1\):\n {4}plan\.md/);
  assert.match(run.stderr, /--adopt .*--merge \[--prefer server\|local\|both\].*--replace/);
  assert.deepEqual(await storeFiles(), before);
  assert.deepEqual(await tree(s.rootB), localTree(slug));
  assert.equal((await s.b.state()).binding(slug).base, null);

  const json = await s.b.cli(["sync", slug, "--json"]);
  assert.equal(json.code, 1);
  const parsed = JSON.parse(json.stdout) as { ok: boolean; error: { code: string; data: { firstJoin: { localOnly: string[]; differing: string[] } } } };
  assert.equal(parsed.ok, false);
  assert.equal(parsed.error.code, "CONFLICT");
  assert.deepEqual(parsed.error.data.firstJoin.localOnly, ["private/diary.md"]);
  assert.deepEqual(parsed.error.data.firstJoin.differing, ["notes.md"]);
  assert.deepEqual(await storeFiles(), before);

  // update-from-server and turn-on-sync ask the same question first.
  for (const command of ["update-from-server", "turn-on-sync"]) {
    const other = await s.b.cli([command, slug]);
    assert.equal(other.code, 1, `${command}: ${other.stderr}`);
    assert.match(other.stdout, /on both, with different content \(1\)/, command);
    assert.match(other.stderr, /--adopt/, command);
  }
  // Dry runs show the plan too (exit 0), and with a choice say what would happen.
  const plain = await s.b.cli(["sync", slug, "--dry-run"]);
  assert.equal(plain.code, 0, plain.stderr);
  assert.match(plain.stdout, /Dry run: nothing will be uploaded or changed\./);
  assert.match(plain.stdout, /A real sync asks this question/);
  const adopt = await s.b.cli(["sync", slug, "--dry-run", "--adopt"]);
  assert.equal(adopt.code, 0, adopt.stderr);
  assert.match(adopt.stdout, /would push 0 files and 0 deletions\n {2}would pull 2 files and 2 deletions/);
  const merge = await s.b.cli(["sync", slug, "--dry-run", "--merge", "--prefer", "server"]);
  assert.match(merge.stdout, /would push 1 files and 0 deletions\n {2}would pull 2 files and 0 deletions/);
  assert.deepEqual(await storeFiles(), before);
  assert.deepEqual(await tree(s.rootB), localTree(slug));
  const conn = await s.a.connect();
  try {
    assert.equal((await conn.call("leaseStatus", {})).active, false, "turn-on-sync took no lease before the choice");
  } finally {
    await conn.close();
  }
});


test("`attach-superproject --sync --merge` attaches and joins in one command", async () => {
  const slug = "fj-attach";
  const a = await cluster.device(`${slug}-a`);
  const b = await cluster.device(`${slug}-b`);
  const rootA = await cluster.folder(`${slug}-a`);
  const rootB = await cluster.folder(`${slug}-b`);
  assert.equal((await a.cli(["create-superproject", slug, "--root", rootA])).code, 0);
  for (const [path, text] of Object.entries(serverTree(slug))) await writeFile(join(rootA, path), text);
  await a.sync(slug);
  await mkdir(join(rootB, "private"));
  for (const [path, text] of Object.entries(localTree(slug))) await writeFile(join(rootB, path), text);
  const refused = await b.cli(["attach-superproject", slug, "--root", rootB, "--sync"]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /--merge/);
  const run = await b.cli(["sync", slug, "--merge", "--prefer", "both"]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /Chosen by --merge \(differing files: keep both\)/);
  assert.match(run.stdout, new RegExp(`kept both versions of notes\\.md: the server's is at ${rootB}/notes\\.md, this device's at ${rootB}/notes \\(${slug}-b\\)\\.md`));
  assert.deepEqual(await tree(rootB), { ...mergedTree(slug), "notes.md": serverTree(slug)["notes.md"], [`notes (${slug}-b).md`]: localTree(slug)["notes.md"] });

  // A third device attaches with --sync --adopt in one command.
  const c = await cluster.device(`${slug}-c`);
  const rootC = await cluster.folder(`${slug}-c`);
  await writeFile(join(rootC, "stray.md"), "left over\n");
  const attach = await c.cli(["attach-superproject", slug, "--root", rootC, "--sync", "--adopt"]);
  assert.equal(attach.code, 0, attach.stderr);
  assert.deepEqual(await tree(rootC), await tree(rootB));
  assert.deepEqual(await backups(c, slug), { "stray.md": "left over\n" });
});

/**
 * Runs the CLI on a pseudo-terminal (util-linux `script`), answering each prompt that
 * appears (the `nth` time, default the first) with the next answer; `atPrompt` runs before the
 * first answer.
 */
function onTerminal(device: TestDevice, args: string[], answers: Array<{ when: RegExp; send: string; nth?: number }>, atPrompt: () => Promise<void>): Promise<{ code: number | null; output: string }> {
  const command = [process.execPath, join(REPO, "src", "cli", "cws.ts"), ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(" ");
  const child = spawn("script", ["-qfec", command, "/dev/null"], { env: { ...process.env, CWS_HOME: device.home, COLUMNS: "200" }, stdio: ["pipe", "pipe", "pipe"] });
  let output = "";
  let next = 0;
  let busy = false;
  const feed = async () => {
    if (busy || next >= answers.length) return;
    const answer = answers[next]!;
    const seen = output.split(answer.when).length - 1;
    if (seen < (answer.nth ?? 1)) return;
    busy = true;
    if (next === 0) await atPrompt();
    child.stdin.write(`${answer.send}\r`);
    next++;
    busy = false;
    void feed();
  };
  child.stdout.on("data", (piece) => {
    output += piece;
    void feed();
  });
  child.stderr.on("data", (piece) => { output += piece; });
  return new Promise((resolve) => child.on("close", (code) => {
    child.stdin.end();
    resolve({ code, output: output.replace(/\r\n/g, "\n") });
  }));
}

test("on a terminal, `cws sync` asks, and answers per file; nothing is uploaded before the answers", async () => {
  const slug = "fj-tty";
  const s = await scenario(slug, { ideas: true });
  const before = await storeFiles();
  const run = await onTerminal(s.b, ["sync", slug], [
    { when: /Choice \[a\/m\/r\/q\]: /, send: "m" },
    { when: /Keep \[s\/l\/b\/e\] \(b\): /, send: "e" },
    { when: /ideas\.md — keep/, send: "l" },
    { when: /notes\.md — keep/, send: "" },
  ], async () => {
    assert.deepEqual(await storeFiles(), before, "nothing reached the server before the answer");
    assert.equal((await serverHead(s.a, slug)).snapshot?.id, s.head.id);
  });
  assert.equal(run.code, 0, run.output);
  assert.match(run.output, /How should this folder join fj-tty\?/);
  await assertBothDevices(s, slug, { ...mergedTree(slug), ...IDEAS.b, "notes.md": serverTree(slug)["notes.md"], [`notes (${slug}-b).md`]: localTree(slug)["notes.md"] });
});

test("on a terminal, quitting at the question (q or Ctrl+C) changes nothing", async () => {
  const slug = "fj-tty-quit";
  const s = await scenario(slug);
  const before = await storeFiles();
  for (const [key, said] of [["q", /Nothing was uploaded or changed/], ["\u0003", /Cancelled at the question; nothing was changed/]] as const) {
    const run = await onTerminal(s.b, ["sync", slug], [{ when: /Choice \[a\/m\/r\/q\]: /, send: key }], async () => {});
    assert.equal(run.code, 130, run.output);
    assert.match(run.output, said);
  }
  assert.deepEqual(await storeFiles(), before);
  assert.deepEqual(await tree(s.rootB), localTree(slug));
  assert.equal((await s.b.state()).binding(slug).base, null);
});

test("conflict messages name real paths, and a dry run says what it would do", async () => {
  const slug = "fj-messages";
  const { a, b, rootA, rootB } = await cluster.pair(slug);
  await writeFile(join(rootA, "notes.md"), "v1\n");
  await writeFile(join(rootA, "gone.md"), "v1\n");
  await a.sync(slug);
  await b.sync(slug);
  await writeFile(join(rootA, "notes.md"), "v2 from A\n");
  await writeFile(join(rootA, "gone.md"), "v2 from A\n");
  await a.sync(slug);
  await writeFile(join(rootB, "notes.md"), "v2 from B\n");
  await rm(join(rootB, "gone.md"));

  const dry = await b.cli(["sync", slug, "--dry-run"]);
  assert.equal(dry.code, 0, dry.stderr);
  assert.ok(dry.stdout.includes(`CONFLICT notes.md: changed here and on the server; would back up ${join(rootB, "notes.md")} and put the server's version in its place (see \`cws backups list ${slug}\` afterwards)`), dry.stdout);
  assert.ok(dry.stdout.includes(`CONFLICT gone.md: deleted here but changed on the server; would restore the server's version at ${join(rootB, "gone.md")}`), dry.stdout);
  assert.match(dry.stdout, /would push 0 files and 0 deletions\n {2}would pull 0 files and 0 deletions/);
  assert.doesNotMatch(dry.stdout, /files\/|did not exist|\(would push\)|pulled/);

  const run = await b.cli(["sync", slug]);
  assert.equal(run.code, 0, run.stderr);
  const backup = /yours is backed up at (.+), and the server's version is now at (.+)$/m.exec(run.stdout);
  assert.ok(backup, run.stdout);
  assert.equal(backup[2], join(rootB, "notes.md"));
  assert.equal(await readFile(backup[1]!, "utf8"), "v2 from B\n");
  assert.equal(await readFile(join(rootB, "notes.md"), "utf8"), "v2 from A\n");
  assert.ok(run.stdout.includes(`CONFLICT gone.md: deleted here but changed on the server; the server's version is restored at ${join(rootB, "gone.md")}`), run.stdout);
});

for (const choice of ["adopt", "replace"] as const) {
  test(`Codex threads are merged on a first join even when the choice is ${choice}`, async () => {
    const slug = `fj-codex-${choice}`;
    const codex = {
      a: await codexHome(`${slug}-a`, choice === "adopt" ? "019e5000-0000-7000-8000-0000000000a1" : "019e5000-0000-7000-8000-0000000000a2"),
      b: await codexHome(`${slug}-b`, choice === "adopt" ? "019e5000-0000-7000-8000-0000000000b1" : "019e5000-0000-7000-8000-0000000000b2"),
    };
    const s = await scenario(slug, { codex });
    const { question } = await joinWith(s, slug, { choice }, CODEX_POSIX);
    assert.equal(question.groups.codex.localOnly, 1);
    assert.equal(question.groups.codex.serverOnly, 1);
    await s.a.sync(slug, CODEX_POSIX);
    // Both threads are on the server and on both devices, each in its device's own root.
    const conn = await s.a.connect();
    try {
      const { snapshot } = await conn.call("head", { slug });
      const { manifest } = await conn.call("fetchManifest", { slug, snapshotId: snapshot!.id });
      const rollouts = manifest.entries.filter((e) => e.path.startsWith("codex/") && e.path.includes("rollout-")).map((e) => e.path);
      for (const side of [codex.a, codex.b]) assert.ok(rollouts.some((p) => p.includes(side.thread.id)), `${side.thread.id} on the server: ${rollouts.join(", ")}`);
    } finally {
      await conn.close();
    }
    for (const [home, thread] of [[codex.a.home, codex.b.thread], [codex.b.home, codex.a.thread]] as const) {
      const text = await readFile(join(home, "sessions", "2026", "05", "19", rolloutFileName(thread)), "utf8");
      assert.match(text, new RegExp(`"cwd":"${home === codex.a.home ? codex.a.root : codex.b.root}"`));
    }
    assert.deepEqual(await tree(s.rootB), choice === "adopt" ? serverTree(slug) : localTree(slug));
  });
}

test("update-from-server --merge downloads the server's files and keeps this device's locally until the next sync", async () => {
  const slug = "fj-update";
  const s = await scenario(slug);
  const run = await s.b.cli(["update-from-server", slug, "--merge", "--prefer", "local"]);
  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual(await tree(s.rootB), { ...mergedTree(slug), "notes.md": localTree(slug)["notes.md"] });
  assert.equal((await serverHead(s.a, slug)).snapshot?.id, s.head.id, "update-from-server uploads nothing");
  // The binding now has a base; the next plain sync pushes what merge kept here, without asking.
  const next = await s.b.cli(["sync", slug]);
  assert.equal(next.code, 0, next.stderr);
  assert.doesNotMatch(next.stdout, /first sync/);
  await assertBothDevices(s, slug, { ...mergedTree(slug), "notes.md": localTree(slug)["notes.md"] });
  // A choice flag on a binding that already synced changes nothing, and says so.
  const again = await s.b.cli(["sync", slug, "--adopt"]);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /note: --adopt was not needed/);
  assert.deepEqual(await tree(s.rootB), { ...mergedTree(slug), "notes.md": localTree(slug)["notes.md"] });
});

test("turn-on-sync --adopt joins first, then live-syncs from the agreed state", async () => {
  const slug = "fj-live";
  const s = await scenario(slug);
  const child = spawn(process.execPath, [join(REPO, "src", "cli", "cws.ts"), "turn-on-sync", slug, "--adopt", "--json", "--quiet-ms", "30", "--heartbeat-ms", "200"], {
    env: { ...process.env, CWS_HOME: s.b.home },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stderr.on("data", (piece) => { stderr += piece; });
  const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  const started = new Promise<void>((resolve) => child.stdout.on("data", (piece) => {
    stdout += piece;
    if (stdout.includes('"type":"synced"')) resolve();
  }));
  await Promise.race([started, exited.then(() => { throw new Error(`turn-on-sync exited early: ${stderr}`); })]);
  const first = JSON.parse(stdout.split("\n")[0]!) as { type: string; firstJoin: { answer: { choice: string } } };
  assert.equal(first.type, "first-sync");
  assert.equal(first.firstJoin.answer.choice, "adopt");
  assert.deepEqual(await tree(s.rootB), serverTree(slug));
  assert.deepEqual(await backups(s.b, slug), { "notes.md": localTree(slug)["notes.md"], "private/diary.md": localTree(slug)["private/diary.md"] });
  child.kill("SIGINT");
  assert.equal(await exited, 0, stderr);
});

test("inside `cws shell` the answers go to the question, not to the shell as commands", async () => {
  const slug = "fj-shell";
  const s = await scenario(slug);
  const run = await onTerminal(s.b, ["shell"], [
    { when: /cws> /, send: `sync ${slug}` },
    { when: /Choice \[a\/m\/r\/q\]: /, send: "m" },
    { when: /Keep \[s\/l\/b\/e\] \(b\): /, send: "s" },
    { when: /cws> /, send: "exit", nth: 2 },
  ], async () => {});
  assert.equal(run.code, 0, run.output);
  assert.doesNotMatch(run.output, /unknown command/);
  await assertBothDevices(s, slug, { ...mergedTree(slug), "notes.md": serverTree(slug)["notes.md"] });
});
