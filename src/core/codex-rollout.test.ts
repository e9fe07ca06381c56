import assert from "node:assert/strict";
import { test } from "node:test";
import { isCwsError } from "../errors.ts";
import {
  POSIX_ROOT,
  POSIX_THREAD,
  VSCODE_THREAD,
  WINDOWS_ROOT,
  WINDOWS_THREAD,
  buildRollout,
} from "../../test/fixtures/codex-fixtures.ts";
import {
  ROOT_PLACEHOLDER,
  ThreadMetaReader,
  classifyRolloutUpdate,
  materializeRollout,
  normalizeRollout,
  normalizeRolloutExtension,
  readThreadMeta,
} from "./codex-rollout.ts";

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const lines = (s: string): string[] => s.split("\n");
/** A path as it appears inside a JSON string token (backslashes escaped). */
const j = (s: string): string => JSON.stringify(s);

function payloadOf(line: string): Record<string, unknown> {
  return (JSON.parse(line) as { payload: Record<string, unknown> }).payload;
}

/** Every string of a parsed value with its JSON path, in order. */
function stringsOf(value: unknown, path = ""): Array<[string, string]> {
  if (typeof value === "string") return [[path, value]];
  if (Array.isArray(value)) return value.flatMap((v, i) => stringsOf(v, `${path}[${i}]`));
  if (value !== null && typeof value === "object") return Object.entries(value).flatMap(([k, v]) => stringsOf(v, `${path}.${k}`));
  return [];
}

test("a Windows rollout materialized on a POSIX device changes exactly the path values under the root", () => {
  const original = buildRollout(WINDOWS_THREAD);
  const normalized = normalizeRollout(original, WINDOWS_ROOT, "windows");
  const onPosix = materializeRollout(normalized, POSIX_ROOT, "posix");
  const a = lines(original);
  const b = lines(onPosix);
  assert.equal(b.length, a.length);
  let rewritten = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i]) continue;
    const before = stringsOf(JSON.parse(a[i]));
    const after = stringsOf(JSON.parse(b[i]));
    assert.deepEqual(after.map(([p]) => p), before.map(([p]) => p), `line ${i + 1} keeps its shape`);
    for (let k = 0; k < before.length; k++) {
      const [path, value] = before[k];
      const under = value === WINDOWS_ROOT || value.startsWith(WINDOWS_ROOT + "\\");
      const expected = under ? POSIX_ROOT + value.slice(WINDOWS_ROOT.length).replaceAll("\\", "/") : value;
      assert.equal(after[k][1], expected, `line ${i + 1} ${path}`);
      if (under) rewritten++;
    }
  }
  assert.ok(rewritten >= 4, `the cwd fields and writable roots are rewritten (${rewritten})`);
});

test("the normalized form holds the placeholder with / separators", () => {
  const normalized = normalizeRollout(buildRollout(WINDOWS_THREAD), WINDOWS_ROOT, "windows");
  const [meta, , turn1] = lines(normalized);
  assert.equal(payloadOf(meta).cwd, ROOT_PLACEHOLDER);
  assert.deepEqual((payloadOf(turn1).sandbox_policy as { writable_roots: string[] }).writable_roots, [
    "${CWS_ROOT}/build",
    "C:\\Users\\a\\AppData\\Local\\Temp",
    "C:\\Users\\a\\proj2",
  ]);
  assert.ok(normalized.includes(`"cwd":"\${CWS_ROOT}/docs"`));
});

test("materializing on the writing device gives back the exact original bytes", () => {
  for (const [spec, root, style] of [
    [WINDOWS_THREAD, WINDOWS_ROOT, "windows"],
    [VSCODE_THREAD, WINDOWS_ROOT, "windows"],
    [POSIX_THREAD, POSIX_ROOT, "posix"],
  ] as const) {
    const original = buildRollout(spec);
    const normalized = normalizeRollout(original, root, style);
    assert.notEqual(normalized, original);
    assert.equal(materializeRollout(normalized, root, style), original);
    // The byte form behaves the same and returns bytes.
    const bytes = normalizeRollout(enc(original), root, style);
    assert.deepEqual(bytes, enc(normalized));
    assert.deepEqual(materializeRollout(bytes, root, style), enc(original));
  }
});

test("a POSIX device that re-normalizes what it materialized reproduces the normalized text", () => {
  const normalized = normalizeRollout(buildRollout(WINDOWS_THREAD), WINDOWS_ROOT, "windows");
  const onPosix = materializeRollout(normalized, POSIX_ROOT, "posix");
  assert.equal(normalizeRollout(onPosix, POSIX_ROOT, "posix"), normalized);
  const onOtherWindows = materializeRollout(normalized, "D:\\work\\proj", "windows");
  assert.ok(onOtherWindows.includes(`"cwd":${j("D:\\work\\proj\\docs")}`));
  assert.equal(normalizeRollout(onOtherWindows, "D:\\work\\proj", "windows"), normalized);
});

test("other spellings of the root keep a hint and round-trip exactly", () => {
  const original = buildRollout(VSCODE_THREAD); // c:\Users\a\proj\api, \\?\C:\…, c:\users\A\PROJ\…
  const normalized = normalizeRollout(original, WINDOWS_ROOT, "windows");
  const [meta, , turn] = lines(normalized);
  assert.equal(payloadOf(meta).cwd, "${CWS_ROOT:c:\\Users\\a\\proj}/api");
  assert.equal(payloadOf(turn).cwd, "${CWS_ROOT:\\\\?\\C:\\Users\\a\\proj}/api");
  assert.deepEqual((payloadOf(turn).sandbox_policy as { writable_roots: string[] }).writable_roots, [
    "${CWS_ROOT:c:\\users\\A\\PROJ}/api/out",
  ]);
  assert.equal(materializeRollout(normalized, WINDOWS_ROOT, "windows"), original);
  // Another device ignores the hint and writes its own root.
  const onPosix = materializeRollout(normalized, POSIX_ROOT, "posix");
  assert.equal(payloadOf(lines(onPosix)[0]).cwd, `${POSIX_ROOT}/api`);
  assert.equal(payloadOf(lines(onPosix)[2]).cwd, `${POSIX_ROOT}/api`);
  const onD = materializeRollout(normalized, "D:\\work\\proj", "windows");
  assert.equal(payloadOf(lines(onD)[0]).cwd, "D:\\work\\proj\\api");
});

test("the configured root may carry a trailing separator or forward slashes", () => {
  const original = buildRollout(WINDOWS_THREAD);
  const a = normalizeRollout(original, WINDOWS_ROOT + "\\", "windows");
  const b = normalizeRollout(original, "C:/Users/a/proj/", "windows");
  assert.equal(a, normalizeRollout(original, WINDOWS_ROOT, "windows"));
  assert.equal(b, a);
  assert.equal(materializeRollout(a, "C:/Users/a/proj/", "windows"), original);
  const posix = materializeRollout(a, POSIX_ROOT + "/", "posix");
  assert.ok(posix.includes(`"cwd":${j(POSIX_ROOT)},`));
});

function metaLine(cwd: string, extra = ""): string {
  return `{"timestamp":"2026-05-18T07:58:47.727Z","type":"session_meta","payload":{"id":"x","cwd":${j(cwd)}${extra}}}`;
}

test("values that could not round-trip are left untouched", () => {
  const cases = [
    // A `/` in a Windows suffix would come back as `\`.
    metaLine("C:\\Users\\a\\proj/sub"),
    // A `\` in a POSIX name would become a separator on Windows.
    metaLine("/home/b/work/proj/a\\b"),
    // A serde-foreign escape of the backslash would be re-encoded differently.
    `{"timestamp":"t","type":"session_meta","payload":{"id":"x","cwd":"C:\\u005cUsers\\u005ca\\u005cproj"}}`,
    // Outside the root.
    metaLine("C:\\Users\\a\\proj2"),
    metaLine("C:\\Users\\a"),
  ];
  for (const [i, line] of cases.entries()) {
    const root = i === 1 ? POSIX_ROOT : WINDOWS_ROOT;
    const style = i === 1 ? "posix" : "windows";
    assert.equal(normalizeRollout(line + "\n", root, style), line + "\n", line);
  }
});

test("a rewritten line keeps every other byte, including foreign escapes, spacing and CRLF", () => {
  const line =
    `{ "timestamp" : "2026-05-18T07:58:47.727Z", "payload": {"note":"caf\\u00e9 \\/ \\ud83d\\ude80 d\u00e9j\u00e0",` +
    ` "cwd" : ${j(WINDOWS_ROOT + "\\src")} , "nested":{"cwd":${j(WINDOWS_ROOT)}}}, "type":"session_meta" }`;
  const text = `${line}\r\n{"type":"turn_context","payload":{"cwd":${j(WINDOWS_ROOT)}}}`; // no final newline
  const normalized = normalizeRollout(text, WINDOWS_ROOT, "windows");
  const expected = text
    .replace(` "cwd" : ${j(WINDOWS_ROOT + "\\src")}`, ` "cwd" : "\${CWS_ROOT}/src"`)
    .replace(`"nested":{"cwd":${j(WINDOWS_ROOT)}}`, `"nested":{"cwd":"\${CWS_ROOT}"}`)
    .replace(`"payload":{"cwd":${j(WINDOWS_ROOT)}}}`, `"payload":{"cwd":"\${CWS_ROOT}"}}`);
  assert.equal(normalized, expected);
  assert.equal(materializeRollout(normalized, WINDOWS_ROOT, "windows"), text);
});

test("path values of unknown line types are remapped by the same rule; text, non-JSON and non-UTF-8 lines pass through", () => {
  const unknown = `{"timestamp":"t","type":"advertised_mcp_tools","payload":{"cwd":${j(WINDOWS_ROOT)}}}`;
  const broken = `{"timestamp":"t","type":"session_meta","payload":{"cwd":${j(WINDOWS_ROOT)}`; // torn write
  const text1 = `{"type":"event_msg","payload":{"type":"agent_message","message":${j(`see ${WINDOWS_ROOT}\\src and "turn_context"`)}}}`;
  const text = [unknown, broken, text1, "not json at all", ""].join("\n");
  const normalized = normalizeRollout(text, WINDOWS_ROOT, "windows");
  assert.equal(normalized, [unknown.replace(j(WINDOWS_ROOT), '"${CWS_ROOT}"'), broken, text1, "not json at all", ""].join("\n"));
  assert.equal(materializeRollout(normalized, WINDOWS_ROOT, "windows"), text);

  const good = metaLine(WINDOWS_ROOT);
  const bytes = new Uint8Array([...enc(good + "\n"), 0x7b, 0x22, 0xff, 0xfe, ...enc('"turn_context"'), 0x0a]);
  const normalizedBytes = normalizeRollout(bytes, WINDOWS_ROOT, "windows");
  assert.deepEqual(normalizedBytes.subarray(normalizedBytes.length - 19), bytes.subarray(bytes.length - 19));
  assert.deepEqual(materializeRollout(normalizedBytes, WINDOWS_ROOT, "windows"), bytes);
});

test("normalizing twice or with a bad root is refused", () => {
  const normalized = normalizeRollout(buildRollout(WINDOWS_THREAD), WINDOWS_ROOT, "windows");
  assert.throws(() => normalizeRollout(normalized, WINDOWS_ROOT, "windows"), (e) => isCwsError(e, "INVALID_ARGUMENT"));
  for (const [root, style] of [
    ["C:\\", "windows"],
    ["/", "posix"],
    ["proj", "posix"],
    ["/home/b/proj", "windows"],
  ] as const) {
    assert.throws(() => normalizeRollout("", root, style), (e) => isCwsError(e, "INVALID_ARGUMENT"), root);
  }
});

test("classifyRolloutUpdate tells same, extension and divergent apart", () => {
  const a = '{"a":1}\n{"b":2}\n';
  const cases: [string, string, string][] = [
    [a, a, "same"],
    [a, a + '{"c":3}\n', "extension"],
    ['{"a":1}\n{"b"', '{"a":1}\n{"b":2}\n', "extension"], // old ended mid-line
    ["", a, "extension"],
    [a, '{"a":1}\n{"b":3}\n', "divergent"],
    [a, '{"a":1}\n', "divergent"],
    [a, '{"a":1}\n{"B":2}\n{"c":3}\n', "divergent"],
    [a + '{"c":3}\n', a + '{"d":4}\n', "divergent"],
  ];
  for (const [oldText, newText, expected] of cases) {
    assert.equal(classifyRolloutUpdate(oldText, newText), expected, `${oldText} -> ${newText}`);
    assert.equal(classifyRolloutUpdate(enc(oldText), enc(newText)), expected);
  }
});

test("normalizeRolloutExtension keeps another device's hinted lines while normalizing appends", () => {
  const onA = buildRollout(VSCODE_THREAD);
  const server = normalizeRollout(onA, WINDOWS_ROOT, "windows");
  const onB = materializeRollout(server, POSIX_ROOT, "posix");
  const appended = `{"timestamp":"t","type":"turn_context","payload":{"cwd":${j(POSIX_ROOT + "/api")},"sandbox_policy":{"type":"workspace-write","writable_roots":[]}}}\n`;
  const localB = onB + appended;

  const next = normalizeRolloutExtension(server, localB, POSIX_ROOT, "posix");
  assert.ok(next !== null);
  assert.equal(next, server + `{"timestamp":"t","type":"turn_context","payload":{"cwd":"\${CWS_ROOT}/api","sandbox_policy":{"type":"workspace-write","writable_roots":[]}}}\n`);
  assert.equal(classifyRolloutUpdate(server, next), "extension");
  // A plain re-normalization would have rewritten A's hinted lines: a false conflict.
  assert.equal(classifyRolloutUpdate(server, normalizeRollout(localB, POSIX_ROOT, "posix")), "divergent");
  // Back on A, its own bytes are still the prefix.
  assert.equal(classifyRolloutUpdate(onA, materializeRollout(next, WINDOWS_ROOT, "windows")), "extension");
  // Bytes in, bytes out.
  assert.deepEqual(normalizeRolloutExtension(enc(server), enc(localB), POSIX_ROOT, "posix"), enc(next));
  // A local copy that does not extend the server's is a conflict.
  assert.equal(normalizeRolloutExtension(server, onB.replace("Grüße", "Gruesse"), POSIX_ROOT, "posix"), null);
});

test("normalizeRolloutExtension re-normalizes a partial last line with its completion", () => {
  const full = buildRollout(WINDOWS_THREAD);
  const cut = full.lastIndexOf('"cwd"'); // inside the second turn_context line
  const partialServer = normalizeRollout(full.slice(0, cut), WINDOWS_ROOT, "windows");
  const next = normalizeRolloutExtension(partialServer, full, WINDOWS_ROOT, "windows");
  assert.equal(next, normalizeRollout(full, WINDOWS_ROOT, "windows"));
});

test("readThreadMeta reads ids, cwds, preview and counts", () => {
  const text = buildRollout(WINDOWS_THREAD);
  const meta = readThreadMeta(text);
  assert.deepEqual(meta, {
    id: WINDOWS_THREAD.id,
    cwd: WINDOWS_ROOT,
    timestamp: "2026-05-18T05:58:47.727Z",
    modelProvider: "openai",
    originator: "codex_vscode",
    cliVersion: "0.131.0",
    gitRepositoryUrl: "git@github.com:example/proj.git",
    gitSha: "3f2c1a9e8d7b6c5a4f3e2d1c0b9a8f7e6d5c4b3a",
    gitBranch: "main",
    latestTurnCwd: `${WINDOWS_ROOT}\\docs`,
    sandboxMode: "workspace-write",
    permissionProfile: null,
    approvalPolicy: "on-request",
    preview: "Fix the Grüße-Parser: ünïcödé, 日本語, emoji 🚀 and a \"quoted\" path",
    threadName: "Grüße parser",
    lineCount: text.split("\n").length - 1,
    byteCount: enc(text).length,
    unparsedLines: 0,
  });
});

test("readThreadMeta takes a 0.169 thread's cwd and settings from its latest thread_settings_applied", async () => {
  const { recordedFile, recordedSet } = await import("../../test/fixtures/codex/recorded.ts");
  const set = await recordedSet("0.169.0");
  for (const t of set.threads) {
    const meta = readThreadMeta(await recordedFile("0.169.0", "linux", t.path));
    const folder = t.folder === null ? set.linuxRoot.replace(/proj$/, "other") : t.folder === "" ? set.linuxRoot : `${set.linuxRoot}/${t.folder}`;
    assert.equal(meta.latestTurnCwd, folder, t.key);
    assert.equal(meta.approvalPolicy, "never", t.key);
    assert.equal(meta.sandboxMode, t.key === "plain" ? "read-only" : "workspace-write", t.key);
    assert.ok(meta.preview !== null && meta.preview.length > 0, `${t.key}: the first user message is the preview`);
  }
});

test("ThreadMetaReader gives the same answer for any chunking", () => {
  const bytes = enc(buildRollout(POSIX_THREAD) + "garbage line\n" + '{"type":"event_msg"'); // torn last line
  const whole = readThreadMeta(bytes);
  assert.equal(whole.lineCount, 14); // 12 Codex lines, the garbage line and the torn one
  assert.equal(whole.unparsedLines, 2);
  assert.equal(whole.latestTurnCwd, `${POSIX_ROOT}/sub/dir`);
  for (const size of [1, 3, 7, 64, 4096]) {
    const reader = new ThreadMetaReader();
    for (let i = 0; i < bytes.length; i += size) reader.push(bytes.subarray(i, i + size));
    assert.deepEqual(reader.finish(), whole, `chunk size ${size}`);
  }
});

test("readThreadMeta refuses a rollout without session_meta", () => {
  assert.throws(
    () => readThreadMeta('{"timestamp":"t","type":"event_msg","payload":{"type":"user_message","message":"hi"}}\n'),
    (e) => isCwsError(e, "INVALID_ARGUMENT") && /session_meta/.test(e.message),
  );
  assert.throws(() => readThreadMeta(""), (e) => isCwsError(e, "INVALID_ARGUMENT"));
});
