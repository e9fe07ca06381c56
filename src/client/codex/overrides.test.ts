import assert from "node:assert/strict";
import { before, test } from "node:test";
import { initHash } from "../../core/hash.ts";
import { materializeRollout, normalizeRollout } from "../../core/codex-rollout.ts";
import { POSIX_ROOT, VSCODE_THREAD, WINDOWS_ROOT, WINDOWS_THREAD, buildRollout } from "../../../test/fixtures/codex-fixtures.ts";
import { completeLength, computeOverrides, normalizeWithOverrides } from "./overrides.ts";

before(async () => {
  await initHash();
});

const bytes = (text: string) => Buffer.from(text);
const tail = '{"timestamp":"2026-06-01T08:00:00.000Z","type":"turn_context","payload":{"cwd":"/home/b/work/proj/x","sandbox_policy":{"writable_roots":[]}}}\n';

test("a thread materialized with another root normalizes back to the server's bytes, appends included", () => {
  // VS Code recorded `c:\…` while the root is configured as `C:\…`: the server keeps a hint.
  const server = normalizeRollout(bytes(buildRollout(VSCODE_THREAD)), WINDOWS_ROOT, "windows");
  assert.ok(Buffer.from(server).includes("${CWS_ROOT:c:\\\\Users\\\\a\\\\proj}"), "the fixture exercises a hinted root");
  const onB = materializeRollout(server, POSIX_ROOT, "posix");
  assert.notDeepEqual(normalizeRollout(onB, POSIX_ROOT, "posix"), server, "B alone cannot reproduce the hint");

  const overrides = computeOverrides(server, onB, POSIX_ROOT, "posix");
  const hinted = Buffer.from(server).toString("utf8").split("\n").filter((l) => l.includes("${CWS_ROOT:")).length;
  assert.ok(hinted >= 2);
  assert.equal(overrides.length, hinted, "one override per line holding a hinted root (session_meta, turn_context, …)");
  assert.deepEqual(Buffer.from(normalizeWithOverrides(onB, POSIX_ROOT, "posix", overrides).normalized), Buffer.from(server));

  const appended = Buffer.concat([Buffer.from(onB), bytes(tail)]);
  const result = normalizeWithOverrides(appended, POSIX_ROOT, "posix", overrides);
  assert.deepEqual(Buffer.from(result.normalized), Buffer.concat([Buffer.from(server), Buffer.from(normalizeRollout(bytes(tail), POSIX_ROOT, "posix"))]));
  assert.equal(result.used.length, hinted);
});

test("an override applies only while its line is unchanged", () => {
  const server = normalizeRollout(bytes(buildRollout(VSCODE_THREAD)), WINDOWS_ROOT, "windows");
  const onB = Buffer.from(materializeRollout(server, POSIX_ROOT, "posix"));
  const overrides = computeOverrides(server, onB, POSIX_ROOT, "posix");
  const edited = Buffer.from(onB.toString("utf8").replace('"originator":"codex_vscode"', '"originator":"codex_vscodX"'));
  const { normalized, used } = normalizeWithOverrides(edited, POSIX_ROOT, "posix", overrides);
  assert.equal(used.length, overrides.length - 1, "the edited session_meta line is normalized as it is now");
  assert.ok(Buffer.from(normalized).toString("utf8").split("\n")[0].includes('"cwd":"${CWS_ROOT}/api"'));
});

test("a thread whose root spelling every device shares needs no override", () => {
  const server = normalizeRollout(bytes(buildRollout(WINDOWS_THREAD)), WINDOWS_ROOT, "windows");
  const onB = materializeRollout(server, POSIX_ROOT, "posix");
  assert.deepEqual(computeOverrides(server, onB, POSIX_ROOT, "posix"), []);
  assert.equal(completeLength(bytes("a\nb")), 2);
  assert.equal(completeLength(bytes("no newline")), 0);
});
