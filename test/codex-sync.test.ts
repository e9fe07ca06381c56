/**
 * Codex thread portability end to end through the local transport: two devices with their own
 * fake CODEX_HOME and different superproject roots. Device A plays a Windows machine whose
 * superproject is `C:\Users\a\proj` (its rollouts are the fixtures, written in Codex's real
 * format); device B is a POSIX machine whose superproject is `/home/b/work/proj`. The roots
 * only have to exist for the `files/` side, so each binding's `codexRoot` carries the root
 * Codex records, and A's sync runs with Windows path rules (`codexPlatform: "win32"`).
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { appendFile, mkdir, mkdtemp, readFile, readdir, rename, rm, stat, symlink, utimes, writeFile } from "node:fs/promises";
import { zstdCompressSync, zstdDecompressSync } from "node:zlib";
import { spawn } from "node:child_process";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { makeCluster, type TestCluster, type TestDevice } from "./helpers/cluster.ts";
import {
  OUTSIDE_THREAD, POSIX_ROOT, POSIX_THREAD, VSCODE_THREAD, WINDOWS_ROOT, WINDOWS_THREAD, FOREIGN_INDEX_ID,
  buildRollout, rolloutFileName, writeFakeCodexHome, type FakeCodexHome, type RolloutSpec,
} from "./fixtures/codex-fixtures.ts";
import { createSuperproject, attachSuperproject } from "../src/client/commands/superprojects.ts";
import { listSuperprojectThreads, refreshThread } from "../src/client/commands/threads.ts";
import { readCodexConflicts } from "../src/client/codex/state.ts";
import type { SyncSummary } from "../src/client/sync.ts";

let cluster: TestCluster;
const cleanups: Array<() => Promise<void>> = [];
before(async () => { cluster = await makeCluster(); });
after(async () => {
  for (const cleanup of cleanups) await cleanup();
  await cluster.close();
});

const A_MINUTE_AGO = () => new Date(Date.now() - 60_000);

/**
 * A Codex home for device B: one thread of B's superproject (compressed, as Codex leaves cold
 * rollouts), one of another folder, and secrets.
 */
async function writeHomeB(): Promise<{ home: string; own: RolloutSpec; other: RolloutSpec }> {
  const home = await mkdtemp(join(tmpdir(), "cws-codex-home-b-"));
  cleanups.push(() => rm(home, { recursive: true, force: true }));
  const own: RolloutSpec = { ...POSIX_THREAD, id: "019e4000-0000-7000-8000-0000000000b1", fileTime: "2026-05-25T10-00-00", userText: "B's own thread" };
  const other: RolloutSpec = { ...POSIX_THREAD, id: "019e4000-0000-7000-8000-0000000000b2", fileTime: "2026-05-25T11-00-00", cwd: "/home/b/other", writableRoots: [], userText: "another project" };
  const dir = join(home, "sessions", "2026", "05", "25");
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, rolloutFileName(own, true)), zstdCompressSync(buildRollout(own)));
  await writeFile(join(dir, rolloutFileName(other)), buildRollout(other));
  for (const name of [rolloutFileName(own, true), rolloutFileName(other)]) await utimes(join(dir, name), new Date(own.startMs), new Date(own.startMs));
  await writeFile(join(home, "auth.json"), '{"tokens":{"refresh_token":"rt-secret-b"}}');
  await writeFile(join(home, "state_5.sqlite"), "SQLite format 3\0");
  await writeFile(join(home, "session_index.jsonl"), `{"id":"${other.id}","thread_name":"Other project","updated_at":"2026-05-25T11:00:00Z"}\n`);
  return { home, own, other };
}

interface Pair {
  a: TestDevice;
  b: TestDevice;
  fakeA: FakeCodexHome;
  homeB: Awaited<ReturnType<typeof writeHomeB>>;
  syncA: () => Promise<SyncSummary>;
  syncB: () => Promise<SyncSummary>;
}

/** A on "Windows" with the fixture home, B on POSIX with its own home; both bound to `slug`. */
async function pair(slug: string, options: { rootB?: string } = {}): Promise<Pair> {
  const a = await cluster.device(`${slug}-a`);
  const b = await cluster.device(`${slug}-b`);
  const fakeA = await writeFakeCodexHome();
  cleanups.push(() => fakeA.cleanup());
  // The fixture's broken rollouts were just written; a person's files are older than the
  // stat cache's racy window, and this keeps "re-reads nothing" independent of test speed.
  for (const rel of fakeA.broken) await utimes(join(fakeA.home, ...rel.split("/")), A_MINUTE_AGO(), A_MINUTE_AGO()).catch(() => {});
  const homeB = await writeHomeB();
  let conn = await a.connect();
  await createSuperproject(conn, await a.state(), { slug, root: await cluster.folder(`${slug}-a`), codexHome: fakeA.home, codexRoot: WINDOWS_ROOT, codexPlatform: "win32" });
  await conn.close();
  conn = await b.connect();
  const rootB = await cluster.folder(`${slug}-b`);
  await attachSuperproject(conn, await b.state(), { slug, root: rootB, codexHome: homeB.home, codexRoot: options.rootB ?? POSIX_ROOT, codexPlatform: "posix" });
  await conn.close();
  const probe = async () => ({ pids: [], openFiles: new Set<string>() });
  return {
    a, b, fakeA, homeB,
    syncA: () => a.sync(slug, { codexPlatform: "win32", codexProbe: probe }),
    syncB: () => b.sync(slug, { codexPlatform: "posix", codexProbe: probe }),
  };
}

function threadPath(home: string, spec: RolloutSpec, archived = false): string {
  const [y, m, d] = spec.fileTime.slice(0, 10).split("-");
  return archived ? join(home, "archived_sessions", rolloutFileName(spec)) : join(home, "sessions", y, m, d, rolloutFileName(spec));
}

/** Every file below a folder, relative, sorted. */
async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) out.push(relative(dir, join(entry.parentPath, entry.name)).split("\\").join("/"));
  }
  return out.sort();
}

/**
 * Lines of a rollout with every path value mapped by `map` (the rule of core/codex-rollout.ts:
 * any string value, whatever its field; `map` leaves values outside the root alone). Lines
 * with no value to map keep their bytes.
 */
function expectRemapped(text: string, map: (value: string) => string): string {
  const walk = (v: unknown): unknown => {
    if (typeof v === "string") return map(v);
    if (Array.isArray(v)) return v.map(walk);
    if (v !== null && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)]));
    return v;
  };
  return text
    .split("\n")
    .map((line) => {
      if (line === "") return line;
      // The fixtures serialize with JSON.stringify, as Codex's serde does, so re-serializing
      // the parsed line with new values gives the exact bytes expected.
      const again = JSON.stringify(walk(JSON.parse(line)));
      return again === JSON.stringify(JSON.parse(line)) ? line : again;
    })
    .join("\n");
}

/** Maps a path inside A's Windows root (any spelling) to B's POSIX root; other paths stay. */
function windowsToB(rootB: string) {
  return (value: string): string => {
    const folded = value.replace(/^\\\\\?\\/, "").toLowerCase();
    const root = WINDOWS_ROOT.toLowerCase();
    if (folded !== root && !folded.startsWith(root + "\\")) return value;
    return rootB + value.replace(/^\\\\\?\\/, "").slice(WINDOWS_ROOT.length).replaceAll("\\", "/");
  };
}

test("a thread written on device A at C:\\Users\\a\\proj lands on B at /home/b/work/proj with only its path values rewritten", async () => {
  const { fakeA, homeB, syncA, syncB } = await pair("portable");
  const first = await syncA();
  assert.equal(first.codex.threads, 2, "A's two threads inside C:\\Users\\a\\proj are synced, no other");
  assert.equal(first.pushed.files, 3, "two rollouts and the index");
  const pulled = await syncB();
  assert.equal(pulled.pulled.files, 3);
  assert.deepEqual(pulled.conflicts, []);

  for (const spec of [WINDOWS_THREAD, VSCODE_THREAD]) {
    const fixture = fakeA.threads.find((t) => t.spec.id === spec.id)!;
    const onB = await readFile(threadPath(homeB.home, spec), "utf8");
    assert.equal(onB, expectRemapped(fixture.text, windowsToB(POSIX_ROOT)), `${spec.id}: only cwd fields differ`);
    assert.notEqual(onB, fixture.text);
    // The free text keeps A's paths: the model saw them, and they are not used for discovery.
    assert.ok(onB.includes("AGENTS.md instructions for C:\\\\Users\\\\a\\\\proj") || spec !== WINDOWS_THREAD);
    assert.equal((await stat(threadPath(homeB.home, spec))).mtimeMs, fixture.mtimeMs, "mtime kept");
  }
  const differing = (await readFile(threadPath(homeB.home, WINDOWS_THREAD), "utf8")).split("\n").filter((line, i) => line !== fakeA.threads[0].text.split("\n")[i]);
  assert.equal(differing.length, 4, "session_meta, two turn_context lines and the world_state line hold path values; nothing else changes");
  assert.ok(differing[0].includes('"cwd":"/home/b/work/proj"'));
  assert.ok(differing[1].includes('"writable_roots":["/home/b/work/proj/build","C:\\\\Users\\\\a\\\\AppData\\\\Local\\\\Temp","C:\\\\Users\\\\a\\\\proj2"]'));

  // Threads of other folders, never-sync files and foreign names stay where they are.
  assert.deepEqual(await listFiles(homeB.home), [
    "auth.json",
    "session_index.jsonl",
    `sessions/2026/05/18/${rolloutFileName(WINDOWS_THREAD)}`,
    `sessions/2026/05/21/${rolloutFileName(VSCODE_THREAD)}`,
    `sessions/2026/05/25/${rolloutFileName(homeB.own)}.zst`,
    `sessions/2026/05/25/${rolloutFileName(homeB.other)}`,
    "state_5.sqlite",
  ]);
  assert.equal(await readFile(join(homeB.home, "auth.json"), "utf8"), '{"tokens":{"refresh_token":"rt-secret-b"}}');
  const indexB = await readFile(join(homeB.home, "session_index.jsonl"), "utf8");
  assert.ok(indexB.split("\n").includes(`{"id":"${homeB.other.id}","thread_name":"Other project","updated_at":"2026-05-25T11:00:00Z"}`), "B's own line keeps its bytes");
  assert.ok(indexB.includes('"thread_name":"Grüße parser"') && indexB.includes('"thread_name":"Parser"'));
  assert.ok(!indexB.includes(FOREIGN_INDEX_ID) && !indexB.includes(POSIX_THREAD.id), "names of other projects' threads are not synced");
});

test("auth.json, SQLite files and other projects' threads never reach the server", async () => {
  const { a, syncA, syncB } = await pair("private");
  await syncA();
  await syncB();
  const conn = await a.connect();
  const { snapshot } = await conn.call("head", { slug: "private" });
  const { manifest } = await conn.call("fetchManifest", { slug: "private", snapshotId: snapshot!.id });
  await conn.close();
  const paths = manifest.entries.map((e) => e.path);
  assert.deepEqual(paths.filter((p) => p.startsWith("codex/")), [
    "codex/session_index.jsonl",
    `codex/sessions/2026/05/18/${rolloutFileName(WINDOWS_THREAD)}`,
    `codex/sessions/2026/05/21/${rolloutFileName(VSCODE_THREAD)}`,
    // B's thread in /home/b/work/proj/sub/dir is the superproject's too; B's other folder is not.
    `codex/sessions/2026/05/25/rollout-2026-05-25T10-00-00-019e4000-0000-7000-8000-0000000000b1.jsonl`,
  ]);
  for (const p of paths) assert.doesNotMatch(p, /auth|sqlite|credentials|shell_snapshots|\.zst$|archived/, p);
  assert.ok(!paths.some((p) => p.includes(OUTSIDE_THREAD.id)));
});

test("archiving a thread on A (a rename into archived_sessions) archives it on B", async () => {
  const { fakeA, homeB, syncA, syncB } = await pair("archive");
  await syncA();
  await syncB();
  await mkdir(join(fakeA.home, "archived_sessions"), { recursive: true });
  await rename(threadPath(fakeA.home, WINDOWS_THREAD), threadPath(fakeA.home, WINDOWS_THREAD, true));
  const archived = await syncA();
  assert.deepEqual(archived.quarantine.held, [], "moving a rollout between folders is a rename, not a delete");
  const onB = await syncB();
  assert.equal(onB.pulled.files, 1);
  assert.equal(onB.pulled.deleted, 1);
  await assert.rejects(stat(threadPath(homeB.home, WINDOWS_THREAD)));
  assert.equal((await readFile(threadPath(homeB.home, WINDOWS_THREAD, true), "utf8")).split("\n")[0].includes('"cwd":"/home/b/work/proj"'), true);
  assert.ok(onB.backupDir !== null, "the live copy B had was backed up before it was removed");
});

test("appends on B after the move are an extension, and A gets back its exact bytes plus B's lines", async () => {
  const { fakeA, homeB, syncA, syncB } = await pair("roundtrip");
  await syncA();
  await syncB();
  // Codex resumes both threads on B and appends a turn in B's folder.
  const appended = new Map<string, string>();
  for (const spec of [WINDOWS_THREAD, VSCODE_THREAD]) {
    const file = threadPath(homeB.home, spec);
    const turn =
      JSON.stringify({ timestamp: "2026-06-01T08:00:00.000Z", type: "turn_context", payload: { turn_id: "turn-b", cwd: `${POSIX_ROOT}/docs`, sandbox_policy: { type: "workspace-write", writable_roots: [POSIX_ROOT] } } }) + "\n" +
      JSON.stringify({ timestamp: "2026-06-01T08:00:01.000Z", type: "event_msg", payload: { type: "user_message", message: `continued on B (${spec.id})` } }) + "\n";
    appended.set(spec.id, turn);
    await appendFile(file, turn);
    await utimes(file, A_MINUTE_AGO(), A_MINUTE_AGO());
  }
  const pushed = await syncB();
  assert.deepEqual(pushed.conflicts, []);
  assert.equal(pushed.pushed.files, 2, "both appended threads are pushed as normal updates");
  assert.deepEqual(pushed.quarantine.held, [], "an append is not a rewrite");

  const back = await syncA();
  assert.deepEqual(back.conflicts, []);
  assert.equal(back.pulled.files, 3, "the two threads, and B's own thread of the superproject");
  for (const spec of [WINDOWS_THREAD, VSCODE_THREAD]) {
    const fixture = fakeA.threads.find((t) => t.spec.id === spec.id)!;
    const onA = await readFile(threadPath(fakeA.home, spec), "utf8");
    // Every byte A wrote comes back as it was, including VS Code's lower-case `c:` and `\\?\`.
    assert.equal(onA.slice(0, fixture.text.length), fixture.text);
    assert.equal(onA.slice(fixture.text.length), appended.get(spec.id)!.replace(`"cwd":"${POSIX_ROOT}/docs"`, '"cwd":"C:\\\\Users\\\\a\\\\proj\\\\docs"').replace(`"writable_roots":["${POSIX_ROOT}"]`, '"writable_roots":["C:\\\\Users\\\\a\\\\proj"]'));
  }
  // B's own thread is a .zst on B: A appends to it, and B's copy stays compressed.
  const ownOnA = threadPath(fakeA.home, homeB.own);
  const ownLine = JSON.stringify({ timestamp: "2026-06-01T09:00:00.000Z", type: "event_msg", payload: { type: "agent_message", message: "A was here" } }) + "\n";
  await appendFile(ownOnA, ownLine);
  await utimes(ownOnA, A_MINUTE_AGO(), A_MINUTE_AGO());
  assert.equal((await syncA()).pushed.files, 1);
  assert.equal((await syncB()).pulled.files, 1);
  const ownOnB = `${threadPath(homeB.home, homeB.own)}.zst`;
  assert.equal(zstdDecompressSync(await readFile(ownOnB)).toString("utf8"), buildRollout(homeB.own) + ownLine);
  await assert.rejects(stat(threadPath(homeB.home, homeB.own)), "no plain twin was created");
  // A third round changes nothing anywhere.
  for (const sync of [syncB, syncA]) {
    const again = await sync();
    assert.equal(again.pushed.files + again.pulled.files + again.conflicts.length, 0);
    assert.equal(again.codex.readFiles, 0, "unchanged threads are not read again");
  }
});

test("divergent appends are a conflict: the server's version is live and the local one is kept", async () => {
  const { b, fakeA, homeB, syncA, syncB } = await pair("diverge");
  await syncA();
  await syncB();
  const onA = threadPath(fakeA.home, WINDOWS_THREAD);
  const onB = threadPath(homeB.home, WINDOWS_THREAD);
  const line = (who: string) => JSON.stringify({ timestamp: "2026-06-02T08:00:00.000Z", type: "event_msg", payload: { type: "agent_message", message: `written on ${who}` } }) + "\n";
  await appendFile(onA, line("A"));
  await appendFile(onB, line("B"));
  for (const file of [onA, onB]) await utimes(file, A_MINUTE_AGO(), A_MINUTE_AGO());
  const bBefore = await readFile(onB, "utf8");
  await syncA();
  const result = await syncB();
  const path = `codex/sessions/2026/05/18/${rolloutFileName(WINDOWS_THREAD)}`;
  assert.deepEqual(result.conflicts.map((c) => c.path), [path]);
  const live = await readFile(onB, "utf8");
  assert.ok(live.endsWith(line("A")), "the server's (A's) version is live on B");
  assert.equal(await readFile(result.conflicts[0].backup!, "utf8"), bBefore, "B's version is kept byte for byte");
  const recorded = await readCodexConflicts((await b.state()).home, "diverge");
  assert.deepEqual(recorded.map((c) => [c.id, c.backup]), [[WINDOWS_THREAD.id, result.conflicts[0].backup]]);
  // `cws threads` and `cws status` show it.
  const conn = await b.connect();
  const listing = await listSuperprojectThreads({ state: await b.state(), conn, slug: "diverge", platform: "posix" }).finally(() => conn.close());
  assert.equal(listing.conflicts.length, 1);
  const status = await b.cli(["status", "--json"]);
  assert.equal(status.code, 0, status.stderr);
  const row = (JSON.parse(status.stdout) as { superprojects: Array<{ slug: string; codexConflicts: unknown[] }> }).superprojects.find((s) => s.slug === "diverge");
  assert.equal(row?.codexConflicts.length, 1);
  // The next sync is quiet: the conflict was settled in favour of the server.
  const again = await syncB();
  assert.deepEqual(again.conflicts, []);
  assert.equal(again.pushed.files + again.pulled.files, 0);
});

test("a thread Codex holds open is not replaced; it lands with the first sync after Codex let go", { skip: process.platform !== "linux" }, async () => {
  const { a, b, homeB, syncA } = await pair("busy");
  await syncA();
  await b.sync("busy");
  const onB = threadPath(homeB.home, WINDOWS_THREAD);
  // A process named `codex` (a symlink to node) holds B's copy open for appending, like Codex.
  const bin = await mkdtemp(join(tmpdir(), "cws-fake-codex-"));
  cleanups.push(() => rm(bin, { recursive: true, force: true }));
  await symlink(process.execPath, join(bin, "codex"));
  const holder = spawn(join(bin, "codex"), ["-e", `const fs=require("fs");fs.openSync(${JSON.stringify(onB)},"a");console.log("open");setInterval(()=>{},1000)`], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise<void>((resolve) => holder.stdout.once("data", () => resolve()));
  try {
    const fileA = threadPath((await a.state()).data.superprojects.busy.codexHome!, WINDOWS_THREAD);
    await appendFile(fileA, JSON.stringify({ timestamp: "2026-06-03T08:00:00.000Z", type: "event_msg", payload: { type: "agent_message", message: "more from A" } }) + "\n");
    await utimes(fileA, A_MINUTE_AGO(), A_MINUTE_AGO());
    await syncA();
    const before = await readFile(onB, "utf8");
    const skipped = await b.sync("busy"); // the real probe
    assert.equal(await readFile(onB, "utf8"), before, "the open rollout was not touched");
    assert.match(skipped.pulled.skipped.map((s) => s.reason).join("\n"), /has this thread open/);
    assert.match(skipped.codex.warnings.join("\n"), /Codex is running/);
  } finally {
    holder.kill();
    await new Promise((resolve) => holder.once("exit", resolve));
  }
  const after = await b.sync("busy");
  assert.equal(after.pulled.files, 1);
  assert.deepEqual(after.conflicts, []);
  assert.ok((await readFile(onB, "utf8")).includes("more from A"));
});

test("refresh-thread re-materializes one thread from the server, byte-exact on the device that wrote it", async () => {
  const { a, fakeA, syncA } = await pair("refresh");
  await syncA();
  const file = threadPath(fakeA.home, VSCODE_THREAD);
  const original = await readFile(file);
  await writeFile(file, "damaged\n");
  const state = await a.state();
  const conn = await a.connect();
  try {
    const result = await refreshThread({ state, conn, slug: "refresh", thread: VSCODE_THREAD.id, platform: "win32" });
    assert.ok(result.backup !== null && (await readFile(result.backup, "utf8")) === "damaged\n", "the local copy was backed up first");
    assert.deepEqual(await readFile(file), original);
    assert.equal((await stat(file)).mtimeMs, fakeA.threads.find((t) => t.spec.id === VSCODE_THREAD.id)!.mtimeMs);
    const listing = await listSuperprojectThreads({ state, conn, slug: "refresh", platform: "win32" });
    const row = listing.threads.find((t) => t.id === WINDOWS_THREAD.id);
    assert.equal(row?.where, "both");
    assert.equal(row?.name, "Grüße parser");
  } finally {
    await conn.close();
  }
});

test("with Codex sync off for a binding, no thread is pushed and none is written", async () => {
  const { a, b, homeB, syncA } = await pair("off");
  await syncA();
  const state = await b.state();
  await state.update((s) => { s.superprojects.off.codexHome = null; });
  const before = await listFiles(homeB.home);
  const result = await b.sync("off");
  assert.equal(result.codex.home, null);
  assert.equal(result.pulled.files + result.pushed.files + result.pushed.deleted, 0);
  assert.deepEqual(await listFiles(homeB.home), before);
  // Turned on again, B gets the threads it missed, and pushes nothing it did not have.
  await state.update((s) => { s.superprojects.off.codexHome = homeB.home; });
  const on = await b.sync("off");
  assert.equal(on.pulled.files, 3);
  assert.equal(on.pushed.deleted, 0);
  void a;
});
