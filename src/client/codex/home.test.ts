import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { rm } from "node:fs/promises";
import path from "node:path";
import { isCwsError } from "../../errors.ts";
import {
  FOREIGN_INDEX_ID,
  OUTSIDE_THREAD,
  PAIRED_THREAD,
  POSIX_THREAD,
  VSCODE_THREAD,
  WINDOWS_ROOT,
  WINDOWS_THREAD,
  writeFakeCodexHome,
  type FakeCodexHome,
} from "../../../test/fixtures/codex-fixtures.ts";
import { threadBelongsTo } from "../../core/codex-paths.ts";
import { readThreadMeta } from "../../core/codex-rollout.ts";
import { NEVER_SYNC, findCodexHome, isNeverSync, listThreads, readSessionIndex } from "./home.ts";

let fake: FakeCodexHome;
before(async () => {
  fake = await writeFakeCodexHome();
});
after(async () => {
  await fake.cleanup();
});

test("findCodexHome honours CODEX_HOME and the per-OS default", () => {
  assert.equal(findCodexHome({ CODEX_HOME: "/srv/codex/" }, "posix", "/home/b"), "/srv/codex/");
  assert.equal(findCodexHome({ CODEX_HOME: "  " }, "posix", "/home/b"), "/home/b/.codex");
  assert.equal(findCodexHome({}, "posix", "/home/b"), "/home/b/.codex");
  assert.equal(findCodexHome({ USERPROFILE: "C:\\Users\\a" }, "win32", "C:\\fallback"), "C:\\Users\\a\\.codex");
  assert.equal(findCodexHome({}, "win32", "C:\\Users\\a"), "C:\\Users\\a\\.codex");
  assert.equal(findCodexHome({ CODEX_HOME: "D:/codex" }, "win32", "C:\\Users\\a"), "D:\\codex");
});

test("listThreads finds plain, compressed and archived rollouts with their metadata", async () => {
  const { threads } = await listThreads(fake.home);
  const byId = new Map(threads.map((t) => [t.meta.id, t]));
  assert.deepEqual(
    [...byId.keys()].sort(),
    [WINDOWS_THREAD.id, POSIX_THREAD.id, OUTSIDE_THREAD.id, VSCODE_THREAD.id, PAIRED_THREAD.id].sort(),
  );
  for (const f of fake.threads) {
    const t = byId.get(f.spec.id);
    assert.ok(t !== undefined, f.spec.id);
    assert.equal(t.relativePath, f.relativePath);
    assert.equal(t.canonicalRelativePath, f.relativePath);
    assert.equal(t.compressed, f.compressed);
    assert.equal(t.archived, f.archived);
    assert.equal(t.mtimeMs, f.mtimeMs);
    assert.equal(t.filePath, path.join(fake.home, ...f.relativePath.split("/")));
    // The streamed metadata equals what the pure reader sees in the whole text.
    assert.deepEqual(t.meta, readThreadMeta(f.text));
  }
  const zst = byId.get(POSIX_THREAD.id);
  assert.ok(zst?.compressed && zst.size < zst.meta.byteCount);
  assert.equal(byId.get(WINDOWS_THREAD.id)?.meta.latestTurnCwd, `${WINDOWS_ROOT}\\docs`);
});

test("a plain rollout hides its .zst twin", async () => {
  const { threads } = await listThreads(fake.home);
  const paired = threads.filter((t) => t.meta.id === PAIRED_THREAD.id);
  assert.equal(paired.length, 1);
  assert.equal(paired[0].compressed, false);
  assert.equal(paired[0].shadowedRelativePath, `${paired[0].relativePath}.zst`);
  assert.ok(paired[0].meta.lineCount > 1, "the full plain file was read, not the one-line .zst");
});

test("unreadable rollouts are reported, not fatal", async () => {
  const { problems } = await listThreads(fake.home);
  assert.deepEqual(problems.map((p) => p.relativePath).sort(), [...fake.broken].sort());
  assert.match(problems.find((p) => p.relativePath === fake.broken[0])?.reason ?? "", /session_meta/);
  assert.match(problems.find((p) => p.relativePath === fake.broken[1])?.reason ?? "", /names thread/);
});

test("never-sync files are never returned", async () => {
  for (const rel of fake.neverSync) assert.equal(isNeverSync(rel), true, rel);
  const { threads, problems } = await listThreads(fake.home);
  const returned = [...threads.map((t) => t.relativePath), ...problems.map((p) => p.relativePath)];
  for (const rel of returned) {
    assert.equal(isNeverSync(rel), false, rel);
    assert.ok(!fake.neverSync.includes(rel), rel);
  }
  // The rollout-named symlink into tmp/ is reported, and its target never read.
  for (const t of threads) assert.ok(!JSON.stringify(t.meta).includes("rt-secret"));
  if (process.platform !== "win32") {
    assert.match(problems.find((p) => p.relativePath === fake.broken[2])?.reason ?? "", /symlink/);
  }
  assert.ok(NEVER_SYNC.length >= 15);
});

test("thread ownership follows the root on this device", async () => {
  const { threads } = await listThreads(fake.home);
  const owned = threads.filter((t) => threadBelongsTo(t.meta, [WINDOWS_ROOT], "win32")).map((t) => t.meta.id);
  assert.deepEqual(owned.sort(), [WINDOWS_THREAD.id, VSCODE_THREAD.id].sort());
});

test("readSessionIndex parses names tolerantly; a missing index is empty", async () => {
  const index = await readSessionIndex(fake.home);
  assert.equal(index.text, fake.sessionIndex);
  assert.equal(index.exact, true);
  assert.equal(index.badLines, 1);
  assert.deepEqual(
    index.entries.map((e) => e.id),
    [WINDOWS_THREAD.id, FOREIGN_INDEX_ID, WINDOWS_THREAD.id, POSIX_THREAD.id],
  );
  await rm(path.join(fake.home, "session_index.jsonl"));
  const empty = await readSessionIndex(fake.home);
  assert.deepEqual(empty, { text: "", exact: true, entries: [], badLines: 0, mtimeMs: null });
});

test("listThreads refuses a missing Codex home with a clear error", async () => {
  await assert.rejects(listThreads(path.join(fake.home, "nope")), (e) => isCwsError(e, "NOT_FOUND"));
});
