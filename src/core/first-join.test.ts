import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { makeManifest, type Manifest, type ManifestEntry } from "./manifest.ts";
import { type FirstJoinAnswer, firstJoinNeedsChoice, groupFirstJoin, keepBothName, resolveFirstJoin } from "./first-join.ts";
import { type PlanAction, planSync } from "./plan.ts";

// The notation of plan.test.ts: "a=v1" is the file files/a with content "v1", "d/" the folder
// files/d, and "codex/…" entries keep their namespace.

function fakeHash(content: string): string {
  let h = 0xcbf29ce484222325n;
  for (const ch of content) h = ((h ^ BigInt(ch.codePointAt(0) ?? 0)) * 0x100000001b3n) & 0xffffffffffffffffn;
  return h.toString(16).padStart(16, "0");
}

function entry(spec: string): ManifestEntry {
  const full = spec.startsWith("codex/") ? spec : `files/${spec}`;
  if (full.endsWith("/")) return { path: full.slice(0, -1), kind: "dir", size: 0, mtimeMs: 1000, mode: 0o755, hash: "", chunks: [] };
  const [path, content] = full.split("=") as [string, string];
  const hash = fakeHash(content);
  return { path, kind: "file", size: content.length, mtimeMs: 1000, mode: 0o644, hash, chunks: content.length === 0 ? [] : [[hash, content.length]] };
}

function m(...specs: string[]): Manifest {
  return makeManifest(specs.map(entry));
}

/** Actions as short strings ("a", "-a" for a deletion, no "files/"), sorted for comparison. */
function short(actions: readonly PlanAction[]): string[] {
  return actions.map((a) => {
    const p = a.path.replace(/^files\//, "");
    return a.type !== "conflict" && a.entry === null ? `-${p}` : p;
  }).sort((a, b) => a.replace(/^-/, "").localeCompare(b.replace(/^-/, "")));
}

// The folder of the acceptance tests: one identical file, one only here, one only on the
// server, one on both with different content, and a Codex thread on each side.
const LOCAL = m("plan.md=same", "diary.md=private", "notes.md=mine", "codex/sessions/r-1.jsonl=t1");
const SERVER = m("plan.md=same", "todo.md=theirs", "notes.md=server", "codex/sessions/r-2.jsonl=t2");
const EMPTY = m();

describe("groupFirstJoin", () => {
  it("puts each file in one group and counts Codex entries apart", () => {
    assert.deepEqual(groupFirstJoin(LOCAL, SERVER), {
      identical: ["plan.md"],
      localOnly: ["diary.md"],
      serverOnly: ["todo.md"],
      differing: ["notes.md"],
      codex: { localOnly: 1, serverOnly: 1, differing: 0, identical: 0 },
    });
  });

  it("lists files, not folders, and a file against a folder as differing", () => {
    const groups = groupFirstJoin(m("d/", "d/a=1", "x=1", "only/", "only/b=2"), m("d/", "d/a=1", "x/", "x/c=3"));
    assert.deepEqual([groups.identical, groups.localOnly, groups.serverOnly, groups.differing], [["d/a"], ["only/b"], ["x/c"], ["x"]]);
  });

  const cases: Array<{ name: string; local: Manifest; server: Manifest; ask: boolean }> = [
    { name: "an empty folder joining a full server", local: EMPTY, server: SERVER, ask: false },
    { name: "a folder holding only copies of server files", local: m("plan.md=same"), server: SERVER, ask: false },
    { name: "a full folder joining an empty server", local: LOCAL, server: EMPTY, ask: false },
    { name: "a server holding only Codex threads", local: LOCAL, server: m("codex/sessions/r-2.jsonl=t2"), ask: false },
    { name: "a local-only file beside server files", local: m("plan.md=same", "diary.md=x"), server: SERVER, ask: true },
    { name: "a file both hold differently", local: m("notes.md=mine"), server: SERVER, ask: true },
    { name: "only Codex threads differ", local: m("plan.md=same", "codex/sessions/r-1.jsonl=t1"), server: m("plan.md=same"), ask: false },
  ];
  for (const { name, local, server, ask } of cases) {
    it(`${ask ? "asks" : "does not ask"} for ${name}`, () => assert.equal(firstJoinNeedsChoice(groupFirstJoin(local, server)), ask));
  }
});

describe("resolveFirstJoin, planned with planSync", () => {
  const cases: Array<{ name: string; answer: FirstJoinAnswer; push: string[]; pull: string[]; conflicts: string[]; renames: string[] }> = [
    {
      name: "adopt pulls every server difference and removes local-only files",
      answer: { choice: "adopt" },
      push: ["codex/sessions/r-1.jsonl"],
      pull: ["codex/sessions/r-2.jsonl", "-diary.md", "notes.md", "todo.md"],
      conflicts: [],
      renames: [],
    },
    {
      name: "replace pushes every local difference and deletes server-only files",
      answer: { choice: "replace" },
      push: ["codex/sessions/r-1.jsonl", "diary.md", "notes.md", "-todo.md"],
      pull: ["codex/sessions/r-2.jsonl"],
      conflicts: [],
      renames: [],
    },
    {
      name: "merge keeping the server's version pulls it over the local one",
      answer: { choice: "merge", prefer: "server" },
      push: ["codex/sessions/r-1.jsonl", "diary.md"],
      pull: ["codex/sessions/r-2.jsonl", "notes.md", "todo.md"],
      conflicts: [],
      renames: [],
    },
    {
      name: "merge keeping this device's version pushes it",
      answer: { choice: "merge", prefer: "local" },
      push: ["codex/sessions/r-1.jsonl", "diary.md", "notes.md"],
      pull: ["codex/sessions/r-2.jsonl", "todo.md"],
      conflicts: [],
      renames: [],
    },
    {
      name: "merge keeping both renames the local copy, pushes it, and pulls the server's",
      answer: { choice: "merge", prefer: "both" },
      push: ["codex/sessions/r-1.jsonl", "diary.md", "notes (laptop).md"],
      pull: ["codex/sessions/r-2.jsonl", "notes.md", "todo.md"],
      conflicts: [],
      renames: ["notes.md -> notes (laptop).md"],
    },
    {
      name: "a per-file answer overrides the merge default",
      answer: { choice: "merge", prefer: "both", perFile: { "notes.md": "local" } },
      push: ["codex/sessions/r-1.jsonl", "diary.md", "notes.md"],
      pull: ["codex/sessions/r-2.jsonl", "todo.md"],
      conflicts: [],
      renames: [],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const resolved = resolveFirstJoin(LOCAL, SERVER, EMPTY, c.answer, "laptop");
      const plan = planSync(resolved.local, SERVER, resolved.base);
      assert.deepEqual(short(plan.push), c.push);
      assert.deepEqual(short(plan.pull), c.pull);
      assert.deepEqual(short(plan.conflicts), c.conflicts);
      assert.deepEqual(resolved.renames.map((r) => `${r.from} -> ${r.to}`), c.renames);
      assert.equal(resolved.replace, c.answer.choice === "replace");
    });
  }

  it("keeps the base's Codex part whatever the choice", () => {
    const base = m("codex/sessions/r-2.jsonl=t2");
    for (const choice of ["adopt", "replace"] as const) {
      const resolved = resolveFirstJoin(LOCAL, SERVER, base, { choice }, "laptop");
      assert.deepEqual(resolved.base.entries.filter((e) => e.path.startsWith("codex/")), base.entries);
    }
  });

  it("adopt removes a local-only folder with what is in it, without conflicts", () => {
    const local = m("plan.md=same", "private/", "private/a=1", "private/b=2");
    const resolved = resolveFirstJoin(local, SERVER, EMPTY, { choice: "adopt" }, "laptop");
    const plan = planSync(resolved.local, SERVER, resolved.base);
    assert.deepEqual(short(plan.pull), ["codex/sessions/r-2.jsonl", "notes.md", "-private", "-private/a", "-private/b", "todo.md"]);
    assert.deepEqual(plan.conflicts, []);
  });

  it("keep both leaves a file-against-folder path a plain conflict", () => {
    const local = m("x=1");
    const server = m("x/", "x/c=3");
    const resolved = resolveFirstJoin(local, server, EMPTY, { choice: "merge", prefer: "both" }, "laptop");
    assert.deepEqual(resolved.renames, []);
    assert.deepEqual(short(planSync(resolved.local, server, resolved.base).conflicts), ["x"]);
  });
});

describe("keepBothName", () => {
  const cases: Array<{ path: string; device: string; taken: string[]; name: string }> = [
    { path: "files/notes.md", device: "laptop", taken: [], name: "files/notes (laptop).md" },
    { path: "files/a/b/notes.md", device: "laptop", taken: [], name: "files/a/b/notes (laptop).md" },
    { path: "files/Makefile", device: "laptop", taken: [], name: "files/Makefile (laptop)" },
    { path: "files/.env", device: "laptop", taken: [], name: "files/.env (laptop)" },
    { path: "files/archive.tar.gz", device: "laptop", taken: [], name: "files/archive.tar (laptop).gz" },
    { path: "files/notes.md", device: "Ana's PC: <work>", taken: [], name: "files/notes (Ana-s-PC-work).md" },
    { path: "files/notes.md", device: "???", taken: [], name: "files/notes (this device).md" },
    { path: "files/notes.md", device: "laptop", taken: ["files/notes (laptop).md"], name: "files/notes (laptop 2).md" },
    { path: "files/notes.md", device: "laptop", taken: ["files/notes (laptop).md", "files/notes (laptop 2).md"], name: "files/notes (laptop 3).md" },
  ];
  for (const c of cases) {
    it(`${c.path} on ${JSON.stringify(c.device)}${c.taken.length ? ` with ${c.taken.length} taken` : ""} becomes ${c.name}`, () => {
      assert.equal(keepBothName(c.path, c.device, new Set(c.taken.map((t) => t.toLowerCase()))), c.name);
    });
  }

  it("shortens a long name so the copy's name stays within 255 bytes", () => {
    const stem = "é".repeat(126); // 252 bytes in UTF-8
    const name = keepBothName(`files/d/${stem}.md`, "laptop", new Set());
    const component = name.slice("files/d/".length);
    assert.ok(new TextEncoder().encode(component).length <= 255, component);
    assert.ok(component.endsWith(" (laptop).md"));
  });

  it("never takes a name another file holds in different letter case", () => {
    const resolved = resolveFirstJoin(m("notes.md=mine", "NOTES (laptop).md=x"), m("notes.md=server"), EMPTY, { choice: "merge", prefer: "both" }, "laptop");
    assert.deepEqual(resolved.renames, [{ from: "notes.md", to: "notes (laptop 2).md" }]);
  });
});
