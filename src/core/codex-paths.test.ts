import assert from "node:assert/strict";
import { test } from "node:test";
import { isCwsError } from "../errors.ts";
import {
  NEVER_SYNC,
  assertSyncable,
  checkRolloutName,
  cwdBelongsToRoot,
  isNeverSync,
  parseRolloutName,
  parseRolloutRelativePath,
  rolloutRelativePath,
  threadBelongsTo,
  type PathPlatform,
} from "./codex-paths.ts";

const ID = "019e2a4b-7c1d-7e3f-9a0b-1c2d3e4f5a6b";
const NAME = `rollout-2026-05-18T07-58-47-${ID}.jsonl`;

test("cwdBelongsToRoot follows Windows and POSIX matching rules", () => {
  const table: [cwd: string, root: string, platform: PathPlatform, expected: boolean][] = [
    ["C:\\Users\\a\\proj", "C:\\Users\\a\\proj", "win32", true],
    ["C:\\Users\\a\\proj\\src\\lib", "C:\\Users\\a\\proj", "win32", true],
    ["c:\\users\\A\\PROJ\\src", "C:\\Users\\a\\proj", "win32", true],
    ["\\\\?\\C:\\Users\\a\\proj\\src", "C:\\Users\\a\\proj", "win32", true],
    ["C:\\Users\\a\\proj", "\\\\?\\c:\\users\\a\\proj\\", "win32", true],
    ["C:/Users/a/proj/src", "C:\\Users\\a\\proj", "win32", true],
    ["C:\\Users\\a\\proj\\", "C:\\Users\\a\\proj", "win32", true],
    ["C:\\Users\\a\\proj\\\\src", "C:\\Users\\a\\proj\\\\", "win32", true],
    ["C:\\Users\\a\\proj2", "C:\\Users\\a\\proj", "win32", false],
    ["C:\\Users\\a\\proj2\\src", "C:\\Users\\a\\proj", "win32", false],
    ["C:\\Users\\a", "C:\\Users\\a\\proj", "win32", false],
    ["D:\\Users\\a\\proj", "C:\\Users\\a\\proj", "win32", false],
    ["\\\\server\\share\\proj\\x", "\\\\server\\share\\proj", "win32", true],
    ["\\\\?\\UNC\\server\\share\\proj\\x", "\\\\server\\share\\proj", "win32", true],
    ["Users\\a\\proj", "Users\\a\\proj", "win32", false],
    ["/home/b/work/proj", "/home/b/work/proj", "posix", true],
    ["/home/b/work/proj/sub/dir", "/home/b/work/proj/", "posix", true],
    ["/home/b/work/proj//sub", "/home/b/work/proj", "posix", true],
    ["/home/b/work/proj2", "/home/b/work/proj", "posix", false],
    ["/home/b/work/Proj", "/home/b/work/proj", "posix", false],
    ["/home/b/work", "/home/b/work/proj", "posix", false],
    ["C:\\Users\\a\\proj", "/home/b/work/proj", "posix", false],
    ["relative/proj", "relative/proj", "posix", false],
  ];
  for (const [cwd, root, platform, expected] of table) {
    assert.equal(cwdBelongsToRoot(cwd, root, platform), expected, `${cwd} in ${root} (${platform})`);
  }
});

test("threadBelongsTo accepts the creation cwd or the latest turn cwd", () => {
  const roots = ["C:\\Users\\a\\proj", "D:\\other"];
  assert.equal(threadBelongsTo({ cwd: "C:\\Users\\a\\proj\\x", latestTurnCwd: null }, roots, "win32"), true);
  assert.equal(threadBelongsTo({ cwd: "C:\\elsewhere", latestTurnCwd: "d:\\OTHER\\y" }, roots, "win32"), true);
  assert.equal(threadBelongsTo({ cwd: "C:\\Users\\a\\proj2", latestTurnCwd: "C:\\elsewhere" }, roots, "win32"), false);
  assert.equal(threadBelongsTo({ cwd: null, latestTurnCwd: null }, roots, "win32"), false);
  assert.equal(threadBelongsTo({ cwd: "C:\\Users\\a\\proj", latestTurnCwd: null }, [], "win32"), false);
});

test("rolloutRelativePath places live rollouts in date folders and archived ones flat", () => {
  assert.equal(rolloutRelativePath(NAME, false), `sessions/2026/05/18/${NAME}`);
  assert.equal(rolloutRelativePath(`${NAME}.zst`, false), `sessions/2026/05/18/${NAME}.zst`);
  assert.equal(rolloutRelativePath(NAME, true), `archived_sessions/${NAME}`);
});

test("rollout names are validated strictly", () => {
  const bad = [
    `rollout-2026-05-18T07-58-47-${ID}.json`,
    `rollout-2026-05-18T07:58:47-${ID}.jsonl`,
    `rollout-2026-02-30T07-58-47-${ID}.jsonl`,
    `rollout-2026-13-01T07-58-47-${ID}.jsonl`,
    `rollout-2026-05-18T24-00-00-${ID}.jsonl`,
    `rollout-2026-05-18T07-58-47-${ID}_019e0000-0000-7000-8000-000000000000.jsonl`,
    `rollout-2026-05-18T07-58-47-not-a-uuid.jsonl`,
    `../rollout-2026-05-18T07-58-47-${ID}.jsonl`,
    `x${NAME}`,
  ];
  for (const name of bad) {
    assert.equal(parseRolloutName(name), null, name);
    assert.throws(() => rolloutRelativePath(name, false), (e) => isCwsError(e, "INVALID_PATH"), name);
  }
  const parsed = parseRolloutName(`${NAME}.zst`);
  assert.deepEqual(
    { id: parsed?.id, compressed: parsed?.compressed, day: parsed?.day, hour: parsed?.hour },
    { id: ID, compressed: true, day: "18", hour: "07" },
  );
});

test("checkRolloutName requires the name's UUID to equal the session_meta id", () => {
  assert.equal(checkRolloutName(NAME, ID).id, ID);
  assert.throws(
    () => checkRolloutName(NAME, "019e2a4b-7c1d-7e3f-9a0b-000000000000"),
    (e) => isCwsError(e, "INVALID_ARGUMENT") && /session_meta/.test(e.message),
  );
  assert.throws(() => checkRolloutName("rollout.jsonl", ID), (e) => isCwsError(e, "INVALID_PATH"));
});

test("parseRolloutRelativePath accepts only canonical placements", () => {
  assert.equal(parseRolloutRelativePath(`sessions/2026/05/18/${NAME}`).archived, false);
  assert.equal(parseRolloutRelativePath(`archived_sessions/${NAME}.zst`).archived, true);
  for (const rel of [
    `sessions/2026/05/19/${NAME}`,
    `sessions/2026/5/18/${NAME}`,
    `archived_sessions/2026/05/18/${NAME}`,
    `sessions/2026/05/18/../../../../auth.json`,
    `/sessions/2026/05/18/${NAME}`,
    NAME,
  ]) {
    assert.throws(() => parseRolloutRelativePath(rel), (e) => isCwsError(e, "INVALID_PATH"), rel);
  }
});

test("isNeverSync refuses credentials, databases, caches and machine state", () => {
  const never = [
    "auth.json",
    "Auth.JSON",
    ".credentials.json",
    "state_5.sqlite",
    "state_5.sqlite-wal",
    "state_5.sqlite-shm",
    "logs_2.sqlite",
    "goals_1.sqlite",
    "sqlite/codex-dev.db",
    "shell_snapshots/019e.abc.sh",
    "log/codex-tui.log",
    "logs_1",
    ".codex-global-state.json",
    "cap_sid",
    ".sandbox/x",
    ".sandbox-secrets/y",
    "models_cache.json",
    "version.json",
    "installation_id",
    "tmp/a",
    ".tmp/rollout-compression.lock",
    "plugins/cache/m/p/1/SKILL.md",
    "worktrees/w/file",
    "app-server-daemon/pid",
    "sessions/2026/05/18/state_5.sqlite",
    "skills/x/auth.json",
    "shell_snapshots\\x.sh",
  ];
  for (const p of never) {
    assert.equal(isNeverSync(p), true, p);
    assert.throws(() => assertSyncable(p), (e) => isCwsError(e, "INVALID_PATH"), p);
  }
  const fine = [
    `sessions/2026/05/18/${NAME}`,
    `archived_sessions/${NAME}.zst`,
    "session_index.jsonl",
    "history.jsonl",
    "AGENTS.md",
    "skills/log/SKILL.md",
    "plugins/config.toml",
    "prompts/version.json",
  ];
  for (const p of fine) assert.equal(isNeverSync(p), false, p);
  assert.ok(NEVER_SYNC.includes("auth.json"));
});
