import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { compileGlob, globProblem, matchGlob } from "./glob.ts";

describe("matchGlob()", () => {
  const cases: Array<[pattern: string, path: string, matches: boolean]> = [
    ["files/AGENTS.md", "files/AGENTS.md", true],
    ["files/AGENTS.md", "files/a/AGENTS.md", false],
    ["files/**/AGENTS.md", "files/AGENTS.md", true],
    ["files/**/AGENTS.md", "files/a/b/c/AGENTS.md", true],
    ["files/**/AGENTS.md", "files/a/AGENTS.md.bak", false],
    ["files/**/AGENTS.md", "codex/AGENTS.md", false],
    ["files/**/README.md", "files/docs/readme.md", true],
    ["codex/**/rollout-*", "codex/sessions/2026/01/02/rollout-2026-01-02T10-00-00-x.jsonl", true],
    ["codex/**/rollout-*", "codex/archived_sessions/rollout-x.jsonl.zst", true],
    ["codex/**/rollout-*", "codex/session_index.jsonl", false],
    ["codex/**/rollout-*", "files/rollout-x.jsonl", false],
    ["files/templates/**", "files/templates/a/b.md", true],
    ["files/templates/**", "files/templates", true],
    ["files/templates/**", "files/templatesX/a.md", false],
    ["files/*.md", "files/a.md", true],
    ["files/*.md", "files/a/b.md", false],
    ["files/?.md", "files/a.md", true],
    ["files/?.md", "files/ab.md", false],
    ["files/a**b", "files/axxb", true],
    ["files/a**b", "files/ax/xb", false],
    ["**/x", "files/a/x", true],
    ["files/**/**/x", "files/x", true],
  ];
  for (const [pattern, path, matches] of cases) {
    it(`${matches ? "matches" : "does not match"} ${path} with ${pattern}`, () => {
      assert.equal(matchGlob(compileGlob(pattern), path), matches);
    });
  }

  it("stays fast on a long path against a pattern with many **", () => {
    const glob = compileGlob("**/a/**/b/**/c/**/d/**/e");
    const path = `files/${Array.from({ length: 2000 }, () => "a").join("/")}`;
    const start = performance.now();
    assert.equal(matchGlob(glob, path), false);
    assert.ok(performance.now() - start < 1000);
  });
});

describe("globProblem()", () => {
  it("accepts an ordinary pattern", () => assert.equal(globProblem("files/**/AGENTS.md"), undefined));
  for (const pattern of ["", "/files/x", "files//x", "files/x/"]) {
    it(`rejects ${JSON.stringify(pattern)}`, () => {
      assert.notEqual(globProblem(pattern), undefined);
      assert.throws(() => compileGlob(pattern), TypeError);
    });
  }
});
