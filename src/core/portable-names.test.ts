import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CwsError } from "../errors.ts";
import { makeManifest, type ManifestEntry } from "./manifest.ts";
import { checkTravellingTree, holdUntravelable, nameTravelProblem, travelProblems, type TravelRule } from "./portable-names.ts";

function file(path: string, hash = "0123456789abcdef"): ManifestEntry {
  return { path, kind: "file", size: 1, mtimeMs: 1, mode: 0o644, hash, chunks: [[hash, 1]] };
}
function dir(path: string): ManifestEntry {
  return { path, kind: "dir", size: 0, mtimeMs: 1, mode: 0o755, hash: "", chunks: [] };
}

describe("nameTravelProblem()", () => {
  const travels = [
    "files/notes.md",
    "files/a/b/c.txt",
    "codex/sessions/2025/01/02/rollout-2025-01-02T10-00-00-0199.jsonl",
    "files/" + "x".repeat(255),
    "files/" + "é".repeat(127), // 254 bytes
    "files/" + "日".repeat(85), // 255 bytes
    "files/" + "😀".repeat(63), // 252 bytes, 126 units
    "files/con-tents.md",
    "files/COM10",
    "files/.hidden",
  ];
  for (const path of travels) {
    it(`lets ${JSON.stringify(path.slice(0, 30))} (${path.length} units) travel`, () => assert.equal(nameTravelProblem(path), null));
  }

  const stays: { path: string; rule: TravelRule }[] = [
    { path: "files", rule: "namespace-entry" },
    { path: "codex", rule: "namespace-entry" },
    { path: "files/" + "x".repeat(256), rule: "name-too-long" },
    { path: "files/" + "日".repeat(86), rule: "name-too-long" }, // 258 bytes, 86 units: fits NTFS, not ext4
    { path: "files/" + "é".repeat(128), rule: "name-too-long" }, // 256 bytes
    { path: "files/" + "😀".repeat(64), rule: "name-too-long" }, // 256 bytes
    { path: "files/a/" + "y".repeat(300) + "/b.md", rule: "name-too-long" },
    { path: "files/Q:A notes.md", rule: "windows-name" },
    { path: "files/a<b", rule: "windows-name" },
    { path: "files/a>b", rule: "windows-name" },
    { path: 'files/say "hi"', rule: "windows-name" },
    { path: "files/a|b", rule: "windows-name" },
    { path: "files/why?", rule: "windows-name" },
    { path: "files/*.md", rule: "windows-name" },
    { path: "files/trailing.", rule: "windows-name" },
    { path: "files/trailing ", rule: "windows-name" },
    { path: "files/dir./x.md", rule: "windows-name" },
    { path: "files/CON", rule: "windows-name" },
    { path: "files/nul.txt", rule: "windows-name" },
    { path: "files/com1.tar.gz", rule: "windows-name" },
    { path: "files/LPT9", rule: "windows-name" },
    { path: "files/aux/readme.md", rule: "windows-name" },
    { path: "files/a\u0001b", rule: "windows-name" },
  ];
  for (const { path, rule } of stays) {
    it(`keeps ${JSON.stringify(path.slice(0, 30))} from travelling (${rule})`, () => {
      assert.equal(nameTravelProblem(path)?.rule, rule);
    });
  }
});

describe("travelProblems()", () => {
  it("finds a file under a file, and everything below it, naming the lower entry", () => {
    const tree = makeManifest([file("files/a.md"), dir("files/a.md/b"), file("files/a.md/b/c"), file("files/a.md-x"), file("files/ok")]);
    assert.deepEqual(travelProblems(tree.entries).map((p) => [p.path, p.rule]), [
      ["files/a.md/b", "file-under-file"],
      ["files/a.md/b/c", "file-under-file"],
    ]);
  });

  it("finds a file under a file past many names that extend the file's name", () => {
    const siblings = Array.from({ length: 40 }, (_, i) => file(`files/a-${String(i).padStart(2, "0")}`));
    const tree = makeManifest([file("files/a"), ...siblings, file("files/a/x"), file("files/a0")]);
    assert.deepEqual(travelProblems(tree.entries).map((p) => p.path), ["files/a/x"]);
  });

  it("judges only the changed paths, but against the whole tree", () => {
    const tree = makeManifest([file("files/a.md"), file("files/a.md/b"), file("files/old:name"), file("files/x"), file("files/x/y")]);
    // A new entry under an old file, and a new file above an old entry, are both found.
    assert.deepEqual(travelProblems(tree.entries, new Set(["files/a.md/b"])).map((p) => p.path), ["files/a.md/b"]);
    assert.deepEqual(travelProblems(tree.entries, new Set(["files/x"])).map((p) => p.path), ["files/x/y"]);
    // An unchanged bad entry of an older head is left to the restore that removes it.
    assert.deepEqual(travelProblems(tree.entries, new Set(["files/other"])), []);
  });

  it("checkTravellingTree() refuses with INVALID_PATH naming the path and the rule", () => {
    const tree = makeManifest([file("files/ok.md"), file("files/a:b"), file("files/CON")]);
    assert.throws(() => checkTravellingTree(tree), (error: unknown) => {
      assert.ok(error instanceof CwsError);
      assert.equal(error.code, "INVALID_PATH");
      assert.equal(error.data?.path, "files/CON");
      assert.equal(error.data?.rule, "windows-name");
      assert.equal(error.data?.count, 2);
      assert.match(error.message, /"files\/CON".*windows-name.*and 1 more.*Rename it/);
      return true;
    });
    assert.doesNotThrow(() => checkTravellingTree(makeManifest([file("files/ok.md")])));
  });
});

describe("holdUntravelable()", () => {
  it("keeps a local entry that cannot travel out of the plan without reading it as a delete", () => {
    // The base and server already hold "files/a:b" (an older version let it through) and the
    // device still has it: all three views agree, so nothing is pushed, pulled or deleted.
    const base = makeManifest([file("files/a:b"), file("files/keep")]);
    const server = makeManifest([file("files/a:b"), file("files/keep")]);
    const local = makeManifest([file("files/keep"), file("files/new?.md", "1111111111111111")]);
    const held = holdUntravelable(local, server, base);
    assert.deepEqual(held.held.local.map((p) => p.path), ["files/new?.md"]);
    assert.deepEqual(held.held.server.map((p) => p.path), ["files/a:b"]);
    for (const view of [held.local, held.server, held.base]) {
      assert.deepEqual(view.entries.map((e) => e.path), ["files/keep"]);
    }
    // The merged tree gets the server's entry back, so a commit leaves it as it is.
    assert.deepEqual(held.restore(held.local).entries.map((e) => e.path), ["files/a:b", "files/keep"]);
  });

  it("judges a frozen server manifest (a kept session's base) as an unfrozen one, every time", () => {
    const entries = [file("files/a:b"), file("files/keep"), file("files/keep/below")];
    const frozen = { format: 1 as const, entries: Object.freeze([...entries]) as typeof entries };
    const local = makeManifest([file("files/keep"), file("files/other")]);
    const expected = holdUntravelable(local, makeManifest(entries), makeManifest(entries)).held.server;
    assert.deepEqual(expected.map((p) => [p.path, p.rule]), [["files/a:b", "windows-name"], ["files/keep/below", "file-under-file"]]);
    for (let round = 0; round < 2; round++) {
      // The local side differs each time; the server's problems do not depend on it.
      const other = round === 0 ? local : makeManifest([file("files/a:b"), file("files/keep")]);
      assert.deepEqual(holdUntravelable(other, frozen, frozen).held.server, expected, `round ${round}`);
    }
  });

  it("returns the same manifests when every name travels", () => {
    const m = makeManifest([file("files/a")]);
    const held = holdUntravelable(m, m, m);
    assert.equal(held.local, m);
    assert.deepEqual(held.held, { local: [], server: [] });
  });
});
