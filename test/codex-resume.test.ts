/**
 * A thread left on device A resumes on device B, in B's folder, with A's name: end to end on
 * rollouts the real Codex 0.169 recorded (test/fixtures/codex), through the real
 * `codex app-server` on B (offline: its model endpoint is a closed loopback port, or a
 * loopback stand-in when B runs a turn).
 *
 * Two pairs: A playing a Windows device (root `C:\Users\me\work\proj`, the recorded Windows
 * copy) and a Linux B; and two Linux devices at different roots. B's Codex home also holds
 * many newer threads of its own, and one of the arriving threads was indexed by B's Codex
 * earlier under an older root of B's (the superproject re-attached elsewhere).
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdir, readFile, readdir, realpath, rm, writeFile, utimes, stat } from "node:fs/promises";
import { join } from "node:path";
import { zstdCompressSync } from "node:zlib";
import { makeCluster, type TestCluster, type TestDevice } from "./helpers/cluster.ts";
import { attachSuperproject, createSuperproject } from "../src/client/commands/superprojects.ts";
import { CodexAppServer, type CodexCommand } from "../src/client/codex/app-server.ts";
import { listedThreads } from "../src/client/codex/register.ts";
import { listSuperprojectThreads } from "../src/client/commands/threads.ts";
import { CODEX_JS, OFFLINE_ENV, offlineConfig, runTurn, startOffline, type RecordedThread } from "./fixtures/codex/record.ts";
import { installRecorded, recordedFile, recordedSet } from "./fixtures/codex/recorded.ts";
import { startFakeResponses } from "./fixtures/codex/fake-responses.ts";
import type { SyncSummary } from "../src/client/sync.ts";

const VERSION = "0.169.0";
const CODEX: CodexCommand = { command: process.execPath, args: [CODEX_JS] };
const OWN_THREADS = 27;

let cluster: TestCluster;
before(async () => {
  cluster = await makeCluster();
});
after(async () => {
  await cluster.close();
});

interface Listed {
  id: string;
  cwd: string;
  name: string | null;
  preview: string;
}

/** Every rollout below a Codex home: path → sha256. */
async function rolloutHashes(home: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const top of ["sessions", "archived_sessions"]) {
    let entries;
    try {
      entries = await readdir(join(home, top), { recursive: true, withFileTypes: true });
    } catch {
      continue;
    }
    for (const e of entries) {
      if (!e.isFile() || !e.name.startsWith("rollout-")) continue;
      const p = join(e.parentPath, e.name);
      out.set(p.slice(home.length), createHash("sha256").update(await readFile(p)).digest("hex"));
    }
  }
  return out;
}

function moved(s: SyncSummary): number {
  return s.pushed.files + s.pushed.deleted + s.pulled.files + s.pulled.deleted;
}

/** Codex's own threads on B: copies of a recorded rollout under new ids, all newer than the arriving ones. */
async function writeOwnThreads(home: string, rootB: string): Promise<void> {
  const set = await recordedSet(VERSION);
  const plain = set.threads.find((t) => t.key === "plain")!;
  const text = (await recordedFile(VERSION, "linux", plain.path)).toString("utf8").split(set.linuxRoot).join(rootB);
  for (let i = 0; i < OWN_THREADS; i++) {
    const id = `01b00000-0000-7000-8000-${String(i).padStart(12, "0")}`;
    const day = String(10 + (i % 15)).padStart(2, "0");
    const name = `rollout-2027-01-${day}T10-00-${String(i % 60).padStart(2, "0")}-${id}.jsonl`;
    const dir = join(home, "sessions", "2027", "01", day);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, name), text.split(plain.id).join(id));
  }
}

/** All pages of thread/list for one folder. */
async function listAll(server: CodexAppServer, cwd: string, archived = false): Promise<Listed[]> {
  const out: Listed[] = [];
  let cursor: string | null = null;
  for (;;) {
    const res: { data: Listed[]; nextCursor: string | null } = await server.request("thread/list", { cwd, archived, limit: 25, ...(cursor ? { cursor } : {}) });
    out.push(...res.data);
    cursor = res.nextCursor;
    if (cursor === null) return out;
  }
}

interface Side {
  device: TestDevice;
  home: string;
  /** The root Codex records on this device. */
  root: string;
  sync: () => Promise<SyncSummary>;
}

async function setUp(slug: string, windowsA: boolean) {
  const set = await recordedSet(VERSION);
  const a = await cluster.device(`${slug}-a`);
  const b = await cluster.device(`${slug}-b`);
  // Inside the cluster's folder, so closing the cluster removes them.
  const homeA = await cluster.folder(`${slug}-codex-home-a`);
  const homeB = await cluster.folder(`${slug}-codex-home-b`);
  const folderA = await realpath(await cluster.folder(`${slug}-a`));
  const rootB = await realpath(await cluster.folder(`${slug}-b/work/proj-b`));
  await mkdir(join(rootB, "api"), { recursive: true });
  const rootA = windowsA ? set.windowsRoot : folderA;
  if (windowsA) await installRecorded(VERSION, homeA, { flavour: "windows" });
  else {
    await mkdir(join(folderA, "api"), { recursive: true });
    await installRecorded(VERSION, homeA, { flavour: "linux", root: folderA, other: await realpath(await cluster.folder(`${slug}-other`)) });
    // A cold thread Codex compressed: A holds it as .jsonl.zst only.
    const plain = set.threads.find((t) => t.key === "plain")!;
    const file = join(homeA, plain.path);
    const { mtime } = await stat(file);
    await writeFile(`${file}.zst`, zstdCompressSync(await readFile(file)));
    await utimes(`${file}.zst`, mtime, mtime);
    await rm(file);
  }
  await writeFile(join(homeB, "config.toml"), offlineConfig("http://127.0.0.1:9/v1"));
  // The devices' Codex configs differ, as they do between people's machines: every resume
  // that does not restate a thread's settings records the device's own.
  if (!windowsA) await writeFile(join(homeA, "config.toml"), offlineConfig("http://127.0.0.1:9/v1") + 'sandbox_mode = "workspace-write"\n');
  await writeOwnThreads(homeB, rootB);

  // B's Codex indexed the "plain" thread earlier under an older root of B's.
  const oldRootB = await realpath(await cluster.folder(`${slug}-b/old/proj`));
  await installRecorded(VERSION, homeB, { flavour: "linux", root: oldRootB, keys: ["plain"] });
  const plainId = set.threads.find((t) => t.key === "plain")!.id;
  const early = await CodexAppServer.start({ codex: CODEX, codexHome: homeB, env: OFFLINE_ENV });
  try {
    await early.request("thread/list", { modelProviders: [] });
    const read: { thread: Listed } = await early.request("thread/read", { threadId: plainId });
    assert.equal(read.thread.cwd, oldRootB, "precondition: B's Codex has the thread under the older root");
  } finally {
    await early.close();
  }

  let conn = await a.connect();
  await createSuperproject(conn, await a.state(), { slug, root: folderA, codexHome: homeA, ...(windowsA ? { codexRoot: set.windowsRoot, codexPlatform: "win32" as const } : {}) });
  await conn.close();
  conn = await b.connect();
  await attachSuperproject(conn, await b.state(), { slug, root: rootB, codexHome: homeB });
  await conn.close();
  // A playing Windows has no Codex that could run here; a Linux A registers with its own Codex.
  const A: Side = { device: a, home: homeA, root: rootA, sync: () => a.sync(slug, { codexPlatform: windowsA ? "win32" : "posix", codexCommand: windowsA ? null : CODEX }) };
  const B: Side = { device: b, home: homeB, root: rootB, sync: () => b.sync(slug, { codexCommand: CODEX }) };
  return { set, A, B, oldRootB };
}

function threadOf(set: { threads: RecordedThread[] }, key: RecordedThread["key"]): RecordedThread {
  return set.threads.find((t) => t.key === key)!;
}

/** Every string value of a JSON line, in order. */
function strings(line: string): string[] {
  const out: string[] = [];
  const walk = (v: unknown): void => {
    if (typeof v === "string") out.push(v);
    else if (Array.isArray(v)) v.forEach(walk);
    else if (v !== null && typeof v === "object") Object.values(v).forEach(walk);
  };
  walk(JSON.parse(line));
  return out;
}

async function scenario(slug: string, windowsA: boolean): Promise<void> {
  const { set, A, B } = await setUp(slug, windowsA);
  const project = set.threads.filter((t) => t.folder !== null);
  const main = threadOf(set, "main");
  const sub = threadOf(set, "sub");
  const archived = threadOf(set, "archived");
  const plain = threadOf(set, "plain");
  const other = threadOf(set, "other");

  const pushed = await A.sync();
  assert.equal(pushed.codex.threads, project.length, "A syncs the project's threads, not the other project's");
  const first = await B.sync();
  assert.deepEqual(first.conflicts, []);
  assert.ok(first.codex.registered !== null, `B's sync asked Codex: ${first.codex.warnings.join("; ")}`);
  for (const view of first.codex.registered!) {
    const t = set.threads.find((x) => x.id === view.id);
    if (t === undefined) continue; // B's own threads went the other way
    assert.ok(view.listed, `cws reports ${t.key} listed by Codex on B: ${JSON.stringify(view)}`);
    assert.equal(view.name, t.name, `${t.key} has A's name`);
  }

  // `cws threads` shows per thread what Codex here lists; without Codex it says so once.
  const conn = await B.device.connect();
  try {
    const listing = await listSuperprojectThreads({ state: await B.device.state(), conn, slug, codexCommand: CODEX });
    assert.equal(listing.codexCheck, "asked");
    for (const t of project) {
      const row = listing.threads.find((r) => r.id === t.id);
      assert.deepEqual(row?.codex, { listed: true, cwd: t.folder ? join(B.root, t.folder) : B.root, name: t.name }, `cws threads: ${t.key}`);
    }
    const without = await listSuperprojectThreads({ state: await B.device.state(), conn, slug, env: { PATH: "/nonexistent" } });
    assert.equal(without.codexCheck, "not installed");
    assert.ok(without.threads.every((r) => r.codex === null));
  } finally {
    await conn.close();
  }

  const server = await CodexAppServer.start({ codex: CODEX, codexHome: B.home, env: OFFLINE_ENV });
  try {
    const atRoot = await listAll(server, B.root);
    assert.ok(atRoot.length > 25, "B's own threads fill more than a page");
    const byId = new Map(atRoot.map((t) => [t.id, t]));
    for (const t of [main, plain]) {
      assert.ok(byId.has(t.id), `${t.key} listed under ${B.root}`);
      assert.equal(byId.get(t.id)!.name, t.name, `${t.key} listed with A's name`);
      assert.equal(byId.get(t.id)!.cwd, B.root);
    }
    for (const t of [sub, archived, other]) assert.ok(!byId.has(t.id), `${t.key} not listed at the root`);
    const inApi = await listAll(server, join(B.root, "api"));
    assert.deepEqual(inApi.map((t) => [t.id, t.name]), [[sub.id, sub.name]], "the sub-folder thread only under the sub-folder");
    const archivedHere = await listAll(server, B.root, true);
    assert.deepEqual(archivedHere.map((t) => [t.id, t.name]), [[archived.id, archived.name]], "the archived thread only with archived: true");
    const found = await listedThreads(server, [B.root, join(B.root, "api")], false, new Set([other.id]));
    assert.equal(found.size, 0, "no thread of another project");

    for (const t of [main, plain]) {
      const read: { thread: Listed & { turns: unknown[] } } = await server.request("thread/read", { threadId: t.id, includeTurns: true });
      assert.equal(read.thread.cwd, B.root, `thread/read of ${t.key} shows B's root right after the sync`);
      assert.equal(read.thread.turns.length, t.turns, `thread/read of ${t.key} shows all turns`);
    }
    const mainB = join(B.home, main.path);
    const sizeBefore = (await stat(mainB)).size;
    const resumed: { cwd: string; thread: { environments: Array<{ cwd: string; runtimeWorkspaceRoots: string[] }> } } = await server.request("thread/resume", { threadId: main.id });
    assert.equal(resumed.cwd, B.root, "resume without cwd continues in B's folder");
    assert.deepEqual(resumed.thread.environments.map((e) => [e.cwd, e.runtimeWorkspaceRoots]), [[B.root, [B.root]]], "with B's root as workspace root");
    await server.request("thread/unsubscribe", { threadId: main.id });
    // The user resumes (here a second time, in B's folder) with B's config (a read-only
    // sandbox): Codex appends a thread_settings_applied line with B's paths and settings, an
    // ordinary append that must not start a ping-pong.
    await server.request("thread/resume", { threadId: main.id, cwd: B.root, excludeTurns: true });
    await server.request("thread/unsubscribe", { threadId: main.id });
    const appended = (await readFile(mainB)).subarray(sizeBefore).toString("utf8");
    assert.match(appended, /"thread_settings_applied"/, "Codex recorded B's settings");
    assert.ok(strings(appended.trim()).includes(B.root), "with B's root");
  } finally {
    await server.close();
  }
  await utimes(join(B.home, main.path), new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));

  // No ping-pong: once A has B's own threads and B's registered names, syncs without new
  // turns leave every rollout as it is on both devices and move nothing.
  await A.sync();
  await B.sync();
  await A.sync();
  const hashesA = await rolloutHashes(A.home);
  const hashesB = await rolloutHashes(B.home);
  let last: SyncSummary[] = [];
  for (let round = 0; round < 2; round++) last = [await A.sync(), await B.sync()];
  assert.deepEqual(await rolloutHashes(A.home), hashesA, "A's rollouts unchanged");
  assert.deepEqual(await rolloutHashes(B.home), hashesB, "B's rollouts unchanged");
  assert.deepEqual(last.map(moved), [0, 0], "the last round moves nothing");

  // B continues the thread with a real turn; A gets its own bytes plus B's lines with A's root.
  const mainA = join(A.home, main.path);
  const beforeA = await readFile(mainA);
  const mainB = join(B.home, main.path);
  const beforeB = await readFile(mainB);
  const fake = await startFakeResponses(() => "Continued on B.");
  await writeFile(join(B.home, "config.toml"), offlineConfig(fake.baseUrl));
  try {
    const { server: codexB, completed } = await startOffline(B.home);
    try {
      await codexB.request("thread/resume", { threadId: main.id });
      await runTurn(codexB, completed, main.id, "Continue on device B");
    } finally {
      await codexB.close();
    }
  } finally {
    await fake.close();
  }
  const afterB = await readFile(mainB);
  assert.ok(afterB.subarray(0, beforeB.length).equals(beforeB), "Codex appended to the thread on B");
  const linesB = afterB.subarray(beforeB.length).toString("utf8").split("\n").filter((l) => l !== "");
  assert.ok(linesB.some((l) => strings(l).includes(B.root)), "B's lines hold B's root");

  // Codex's own writes are mtime-recent; the sink waits a moment before it trusts a file.
  const old = new Date(Date.now() - 60_000);
  await utimes(mainB, old, old);
  const up = await B.sync();
  assert.equal(up.pushed.files >= 1, true, "B pushes the extended thread");
  const down = await A.sync();
  assert.deepEqual(down.conflicts, []);
  const afterA = await readFile(mainA);
  assert.ok(afterA.subarray(0, beforeA.length).equals(beforeA), "A's original bytes are kept");
  const linesA = afterA.subarray(beforeA.length).toString("utf8").split("\n").filter((l) => l !== "");
  assert.equal(linesA.length, linesB.length, "A gets exactly B's lines");
  const sep = windowsA ? "\\" : "/";
  for (let i = 0; i < linesB.length; i++) {
    const sb = strings(linesB[i]);
    const sa = strings(linesA[i]);
    assert.equal(sa.length, sb.length);
    for (let k = 0; k < sb.length; k++) {
      const v = sb[k];
      if (v === B.root || v.startsWith(B.root + "/")) {
        assert.equal(sa[k], A.root + v.slice(B.root.length).replaceAll("/", sep), `line ${i}: A's root in the path field`);
      } else assert.equal(sa[k], v, `line ${i}: not a path under the root, unchanged`);
    }
    if (!sb.some((v) => v === B.root || v.startsWith(B.root + "/"))) assert.equal(linesA[i], linesB[i], "lines without paths are byte-identical");
  }
  const third = [await B.sync(), await A.sync(), await B.sync()];
  assert.deepEqual(third.map(moved), [0, 0, 0], "a third sync moves nothing");
}

test("Windows A → Linux B: the recorded 0.169 threads list, read and resume in B's folder with A's names; no ping-pong; B's turn comes back to A with A's root", async () => {
  await scenario("cxwin", true);
});

test("Linux A → Linux B at another root: the same, with a .jsonl.zst thread", async () => {
  await scenario("cxlin", false);
});
