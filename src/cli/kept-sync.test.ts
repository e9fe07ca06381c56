import { test } from "node:test";
import assert from "node:assert/strict";
import { plainSync } from "./kept-sync.ts";
import { keepSessionSeconds, syncEnvironment } from "../client/kept-session-wire.ts";

test("plainSync() takes only the plain forms of sync and update-from-server, and leaves the rest to the full program", () => {
  assert.deepEqual(plainSync(["sync", "notes"]), { mode: "sync", slug: "notes", json: false, dryRun: false });
  assert.deepEqual(plainSync(["sync", "--json", "notes", "--dry-run"]), { mode: "sync", slug: "notes", json: true, dryRun: true });
  assert.deepEqual(plainSync(["sync", "--superproject", "notes"]), { mode: "sync", slug: "notes", json: false, dryRun: false });
  assert.deepEqual(plainSync(["update-from-server", "notes", "--yes"]), { mode: "pull", slug: "notes", json: false, dryRun: false });
  for (const args of [
    ["sync"], // no slug: the program's error
    ["sync", "notes", "--adopt"], // first-join flags: the program asks or refuses
    ["sync", "notes", "--help"],
    ["sync", "notes", "other"], // two slugs
    ["sync", "notes", "--superproject", "other"],
    ["sync", "notes", "--yes"], // not a flag of sync
    ["sync", "notes", "--json", "--json"],
    ["status"],
    ["override-current-state", "notes"],
  ]) assert.equal(plainSync(args), null, args.join(" "));
});

test("keepSessionSeconds() reads CWS_KEEP_SESSION: 0 turns kept sessions off, nonsense means the default", () => {
  assert.equal(keepSessionSeconds({}), 600);
  assert.equal(keepSessionSeconds({ CWS_KEEP_SESSION: "0" }), 0);
  assert.equal(keepSessionSeconds({ CWS_KEEP_SESSION: "30" }), 30);
  assert.equal(keepSessionSeconds({ CWS_KEEP_SESSION: "ten" }), 600);
  assert.equal(keepSessionSeconds({ CWS_KEEP_SESSION: "-1" }), 600);
  assert.equal(keepSessionSeconds({ CWS_KEEP_SESSION: "999999" }), 86_400);
});

test("syncEnvironment() holds what a sync reads and not the kept session's own knobs", () => {
  const env = syncEnvironment({ CODEX_HOME: "/c", PATH: "/bin", CWS_PUSH_WORKERS: "2", CWS_KEEP_SESSION: "5", CWS_FAULT: "x", TERM: "xterm" });
  assert.deepEqual(Object.keys(env).sort(), ["(umask)", "CODEX_HOME", "CWS_PUSH_WORKERS", "PATH"]);
});
