/**
 * The path rule of core/codex-rollout.ts on rollouts the real Codex 0.169 wrote
 * (test/fixtures/codex/<version>, recorded by `npm run record-codex-fixtures`): every value
 * that is a path equal to or under the superproject root, whatever field holds it, is stored
 * with the placeholder and comes back as the other device's root; free text is untouched; the
 * writing device gets its exact bytes back, for each recorded Codex version and for the
 * Windows spellings Codex and VS Code produce (lower-case drive, `\\?\`, `/`).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { materializeRollout, normalizeRollout, ROOT_PLACEHOLDER } from "../src/core/codex-rollout.ts";
import { recordedFile, recordedSet, recordedVersions } from "./fixtures/codex/recorded.ts";

const B_LINUX = "/srv/b/projects/proj-b";
const B_WINDOWS = "D:\\Work\\Proj B";

/** Every string value of every line, with its line number and JSON path. */
function values(text: string): Array<{ line: number; path: string; value: string }> {
  const out: Array<{ line: number; path: string; value: string }> = [];
  const walk = (v: unknown, path: string, line: number): void => {
    if (typeof v === "string") out.push({ line, path, value: v });
    else if (Array.isArray(v)) v.forEach((x, i) => walk(x, `${path}[${i}]`, line));
    else if (v !== null && typeof v === "object") for (const [k, x] of Object.entries(v)) walk(x, `${path}.${k}`, line);
  };
  text.split("\n").forEach((l, i) => {
    if (l !== "") walk(JSON.parse(l), "", i + 1);
  });
  return out;
}

const under = (value: string, root: string, sep: string): boolean => value === root || value.startsWith(root + sep);

for (const version of await recordedVersions()) {
  test(`Codex ${version}: every path value under the root is remapped, text is not, and the writer gets its bytes back`, async () => {
    const set = await recordedSet(version);
    for (const [flavour, root, style, sep, target, targetStyle, targetSep] of [
      ["linux", set.linuxRoot, "posix", "/", B_WINDOWS, "windows", "\\"],
      ["windows", set.windowsRoot, "windows", "\\", B_LINUX, "posix", "/"],
    ] as const) {
      for (const thread of set.threads) {
        const original = (await recordedFile(version, flavour, thread.path)).toString("utf8");
        const normalized = normalizeRollout(original, root, style);
        assert.equal(materializeRollout(normalized, root, style), original, `${flavour} ${thread.key}: byte-exact round trip`);
        const elsewhere = materializeRollout(normalized, target, targetStyle);
        const before = values(original);
        const after = values(elsewhere);
        assert.equal(after.length, before.length);
        const remapped = new Set<string>();
        for (let i = 0; i < before.length; i++) {
          const { line, path, value } = before[i];
          if (under(value, root, sep)) {
            const rest = value.slice(root.length).split(sep).join(targetSep);
            assert.equal(after[i].value, target + rest, `${flavour} ${thread.key} line ${line} ${path}`);
            remapped.add(path.replace(/\[\d+\]/g, "[]"));
          } else {
            assert.equal(after[i].value, value, `${flavour} ${thread.key} line ${line} ${path} is not a path under the root`);
          }
        }
        if (thread.folder === null) {
          assert.equal(normalized, original, `${thread.key} belongs to another project: nothing to remap`);
          continue;
        }
        // The fields Codex 0.169 restores a thread from are all among the remapped ones.
        for (const field of [".payload.cwd", ".payload.runtime_workspace_roots[]", ".payload.thread_settings.cwd", ".payload.thread_settings.runtime_workspace_roots[]", ".payload.state.environments.environments.local.cwd"]) {
          assert.ok(remapped.has(field), `${flavour} ${thread.key}: ${field} remapped (${[...remapped].join(", ")})`);
        }
        if (thread.key !== "plain") {
          assert.ok([...remapped].some((p) => p.includes("permission_profile")), `${flavour} ${thread.key}: permission profile paths remapped`);
          assert.ok([...remapped].some((p) => p.includes("file_system_sandbox_policy")), `${flavour} ${thread.key}: sandbox policy paths remapped`);
        }
        // Free text keeps the writer's root (the model saw it so), e.g. <environment_context>.
        assert.ok(elsewhere.includes(JSON.stringify(`<cwd>${root}`).slice(1, -1)), `${flavour} ${thread.key}: free text untouched`);
        assert.ok(!normalized.includes(JSON.stringify(root).slice(1, -1) + '"'), "no path value keeps the root");
      }
    }
  });
}

test("Windows spellings of the root (lower-case drive, \\\\?\\ prefix, / separators) round-trip and map to the other device", async () => {
  const versions = await recordedVersions();
  const version = versions[versions.length - 1];
  const set = await recordedSet(version);
  const main = set.threads.find((t) => t.key === "main")!;
  const original = (await recordedFile(version, "windows", main.path)).toString("utf8");
  const root = set.windowsRoot; // C:\Users\me\work\proj
  const spellings = ["c:\\Users\\me\\work\\proj", "\\\\?\\C:\\Users\\me\\work\\proj", "C:/Users/me/work/proj", "C:\\USERS\\ME\\WORK\\PROJ"];
  // Each path value under the root gets one of the spellings in turn.
  let n = 0;
  const respell = (v: unknown): unknown => {
    if (typeof v === "string") return under(v, root, "\\") ? spellings[n++ % spellings.length] + v.slice(root.length) : v;
    if (Array.isArray(v)) return v.map(respell);
    if (v !== null && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, respell(x)]));
    return v;
  };
  const mixed = original
    .split("\n")
    .map((l) => (l === "" ? l : JSON.stringify(respell(JSON.parse(l)))))
    .join("\n");
  assert.ok(n >= 8, `spellings applied (${n})`);
  const normalized = normalizeRollout(mixed, root, "windows");
  assert.equal(materializeRollout(normalized, root, "windows"), mixed, "the writing device gets its exact bytes back");
  const onB = materializeRollout(normalized, B_LINUX, "posix");
  for (const { value } of values(onB)) {
    assert.ok(!spellings.some((sp) => value === sp || value.startsWith(sp + "\\") || value.startsWith(sp + "/")), `no Windows spelling left as a path value: ${value}`);
  }
  assert.ok(onB.includes(JSON.stringify(B_LINUX)), "B's root is written");
  assert.ok(normalized.includes("${CWS_ROOT:c:\\\\Users"), "a hinted spelling keeps its root part for the writer");
  assert.ok(!normalized.includes(ROOT_PLACEHOLDER + "/"), "no value was the configured spelling");
});
