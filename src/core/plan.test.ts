import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CwsError } from "../errors.ts";
import { Manifest, type ManifestEntry, makeManifest } from "./manifest.ts";
import { orderForApply, type PlanAction, planChangedPaths, planEveryPath, planSync, type SyncPlan } from "./plan.ts";
import { prng } from "../../test/helpers/prng.ts";

// ---- a tiny notation for manifests ------------------------------------------------------
//
//   "a=v1"     the file files/a whose content is "v1"
//   "a=v1@7"   the same, with mtimeMs 7
//   "a=v1#600" the same, with mode 0o600
//   "d/"       the folder files/d
//
// Every path gets the "files/" namespace, so tables stay short.

/** A stable 16-hex-digit stand-in for xxh64 of a content tag (FNV-1a, 64 bits). */
function fakeHash(content: string): string {
  let h = 0xcbf29ce484222325n;
  for (const ch of content) h = ((h ^ BigInt(ch.codePointAt(0) ?? 0)) * 0x100000001b3n) & 0xffffffffffffffffn;
  return h.toString(16).padStart(16, "0");
}

function file(path: string, content: string, mtimeMs = 1000, mode = 0o644): ManifestEntry {
  const size = content.length;
  const hash = fakeHash(content);
  return { path, kind: "file", size, mtimeMs, mode, hash, chunks: size === 0 ? [] : [[hash, size]] };
}

function dir(path: string, mtimeMs = 1000): ManifestEntry {
  return { path, kind: "dir", size: 0, mtimeMs, mode: 0o755, hash: "", chunks: [] };
}

function entry(spec: string): ManifestEntry {
  if (spec.endsWith("/")) return dir(`files/${spec.slice(0, -1)}`);
  const match = /^([^=]+)=([^@#]*)(?:@(\d+))?(?:#([0-7]+))?$/.exec(spec);
  assert.ok(match, `bad spec ${spec}`);
  const [, path, content, mtime, mode] = match;
  return file(`files/${path}`, content, mtime === undefined ? 1000 : Number(mtime), mode === undefined ? 0o644 : parseInt(mode, 8));
}

function m(...specs: string[]): Manifest {
  return makeManifest(specs.map(entry));
}

/** An action as a short string: "a" for an entry, "-a" for a deletion, paths without "files/". */
function short(action: PlanAction): string {
  const p = action.path.replace(/^files\//, "");
  if (action.type === "conflict") return p;
  return action.entry === null ? `-${p}` : p;
}

/** Asserts the structural invariants every plan must keep. */
function assertWellFormed(plan: SyncPlan, server: Manifest): void {
  Manifest.parse(plan.merged);
  const byPath = new Map(plan.merged.entries.map((e) => [e.path, e]));
  for (const e of plan.merged.entries) {
    const parts = e.path.split("/");
    for (let i = 1; i < parts.length; i++) {
      assert.notEqual(byPath.get(parts.slice(0, i).join("/"))?.kind, "file", `${e.path} sits below a file in merged`);
    }
  }
  assert.deepEqual(plan.merged, applyActions(server, plan.push), "merged must be S with the pushes applied");
  const seen = new Set<string>();
  for (const action of [...plan.push, ...plan.pull, ...plan.conflicts]) {
    assert.ok(!seen.has(action.path), `${action.path} has two actions`);
    seen.add(action.path);
  }
}

/** Applies push or pull actions (conflicts as their server version) to a manifest. */
function applyActions(target: Manifest, actions: readonly PlanAction[]): Manifest {
  const entries = new Map(target.entries.map((e) => [e.path, e]));
  for (const action of actions) {
    const next = action.type === "conflict" ? action.server : action.entry;
    if (next === null) entries.delete(action.path);
    else entries.set(action.path, next);
  }
  return makeManifest(entries.values());
}

// ---- the table ---------------------------------------------------------------------------

interface Case {
  name: string;
  local: string[];
  server: string[];
  base: string[];
  push?: string[];
  pull?: string[];
  conflicts?: string[];
  /** The paths of the merged manifest, when the case wants to pin them. */
  merged?: string[];
  unchanged?: number;
  /** Paths the local scan could not read (without "files/"). */
  unknown?: string[];
  kept?: string[];
}

const cases: Case[] = [
  { name: "does nothing for three empty manifests", local: [], server: [], base: [], merged: [], unchanged: 0 },
  { name: "does nothing when nothing changed", local: ["a=1", "d/", "d/x=2"], server: ["a=1", "d/", "d/x=2"], base: ["a=1", "d/", "d/x=2"], unchanged: 3 },

  // One side changed.
  { name: "pushes a local addition", local: ["a=1"], server: [], base: [], push: ["a"], merged: ["a"] },
  { name: "pushes a local modification", local: ["a=2"], server: ["a=1"], base: ["a=1"], push: ["a"] },
  { name: "pushes a local deletion", local: [], server: ["a=1"], base: ["a=1"], push: ["-a"], merged: [] },
  { name: "pulls a server addition", local: [], server: ["a=1"], base: [], pull: ["a"], merged: ["a"] },
  { name: "pulls a server modification", local: ["a=1"], server: ["a=2"], base: ["a=1"], pull: ["a"] },
  { name: "pulls a server deletion", local: ["a=1"], server: [], base: ["a=1"], pull: ["-a"], merged: [] },
  { name: "pushes a new empty folder", local: ["d/"], server: [], base: [], push: ["d"] },
  { name: "pushes a folder deletion with its children", local: [], server: ["d/", "d/x=1", "d/e/", "d/e/y=2"], base: ["d/", "d/x=1", "d/e/", "d/e/y=2"], push: ["-d", "-d/e", "-d/e/y", "-d/x"], merged: [] },
  { name: "pulls a folder deletion with its children", local: ["d/", "d/x=1"], server: [], base: ["d/", "d/x=1"], pull: ["-d", "-d/x"] },
  { name: "pushes local and pulls server changes to different paths", local: ["a=2", "b=1"], server: ["a=1", "b=1", "c=3"], base: ["a=1", "b=1"], push: ["a"], pull: ["c"], merged: ["a", "b", "c"], unchanged: 1 },

  // Both sides changed.
  { name: "does nothing when both add the same file", local: ["a=1"], server: ["a=1"], base: [], unchanged: 1 },
  { name: "conflicts when both add different files", local: ["a=1"], server: ["a=2"], base: [], conflicts: ["a"] },
  { name: "does nothing when both make the same change", local: ["a=2"], server: ["a=2"], base: ["a=1"], unchanged: 1 },
  { name: "conflicts when both change a file differently", local: ["a=2"], server: ["a=3"], base: ["a=1"], conflicts: ["a"], merged: ["a"] },
  { name: "does nothing when both delete a file", local: [], server: [], base: ["a=1"], unchanged: 0 },
  { name: "conflicts on a local delete and a server modification", local: [], server: ["a=2"], base: ["a=1"], conflicts: ["a"], merged: ["a"] },
  { name: "conflicts on a server delete and a local modification", local: ["a=2"], server: [], base: ["a=1"], conflicts: ["a"], merged: [] },
  { name: "does nothing when both add the same folder", local: ["d/"], server: ["d/"], base: [], unchanged: 1 },

  // Metadata alone is not a change.
  { name: "ignores an mtime-only change on both sides", local: ["a=1@5"], server: ["a=1@9"], base: ["a=1@1"], unchanged: 1 },
  { name: "ignores a local mtime-only change", local: ["a=1@5"], server: ["a=1@1"], base: ["a=1@1"], unchanged: 1 },
  { name: "ignores a mode-only change", local: ["a=1#600"], server: ["a=1"], base: ["a=1"], unchanged: 1 },
  { name: "pulls a server change over a local mtime-only change", local: ["a=1@5"], server: ["a=2"], base: ["a=1@1"], pull: ["a"] },

  // Files becoming folders and back.
  { name: "pushes a local file that became a folder", local: ["a/", "a/x=2"], server: ["a=1"], base: ["a=1"], push: ["a", "a/x"], merged: ["a", "a/x"] },
  { name: "pushes a local folder that became a file", local: ["a=2"], server: ["a/", "a/x=1"], base: ["a/", "a/x=1"], push: ["a", "-a/x"], merged: ["a"] },
  { name: "pulls a server file that became a folder", local: ["a=1"], server: ["a/", "a/x=2"], base: ["a=1"], pull: ["a", "a/x"] },
  { name: "pulls a server folder that became a file", local: ["a/", "a/x=1"], server: ["a=2"], base: ["a/", "a/x=1"], pull: ["a", "-a/x"] },
  { name: "conflicts when both turn a file into different things", local: ["a/", "a/x=2"], server: ["a=3"], base: ["a=1"], conflicts: ["a", "a/x"], merged: ["a"] },
  { name: "conflicts when the server made a file where this device made a folder", local: ["d/", "d/x=1"], server: ["d=2"], base: [], conflicts: ["d", "d/x"], merged: ["d"] },
  { name: "pulls into a server folder that replaced a local file", local: ["d=1"], server: ["d/", "d/x=2"], base: [], conflicts: ["d"], pull: ["d/x"], merged: ["d", "d/x"] },

  // A change below a folder blocks the folder's removal on the other side.
  { name: "conflicts on a local folder delete over a server change inside", local: [], server: ["d/", "d/x=2"], base: ["d/", "d/x=1"], conflicts: ["d", "d/x"], merged: ["d", "d/x"] },
  { name: "conflicts on a server folder delete over a local change inside", local: ["d/", "d/x=2"], server: [], base: ["d/", "d/x=1"], conflicts: ["d", "d/x"], merged: [] },
  { name: "conflicts on a local folder-to-file over a server change inside", local: ["d=9"], server: ["d/", "d/x=2"], base: ["d/", "d/x=1"], conflicts: ["d", "d/x"], merged: ["d", "d/x"] },
  { name: "conflicts on a server folder-to-file over a local change inside", local: ["d/", "d/x=2"], server: ["d=9"], base: ["d/", "d/x=1"], conflicts: ["d", "d/x"], merged: ["d"] },
  { name: "keeps a folder this device deleted when the server added to it", local: [], server: ["d/", "d/x=1", "d/y=2"], base: ["d/", "d/x=1"], push: ["-d/x"], pull: ["d/y"], conflicts: ["d"], merged: ["d", "d/y"] },
  { name: "holds back a local addition to a folder the server deleted", local: ["d/", "d/x=1", "d/y=2"], server: [], base: ["d/", "d/x=1"], pull: ["-d/x"], conflicts: ["d", "d/y"], merged: [] },
  { name: "blocks every folder up to a deep conflict", local: [], server: ["d/", "d/e/", "d/e/x=2", "d/f=1"], base: ["d/", "d/e/", "d/e/x=1", "d/f=1"], push: ["-d/f"], conflicts: ["d", "d/e", "d/e/x"], merged: ["d", "d/e", "d/e/x"] },

  // First sync: the base is empty.
  { name: "does nothing on a first sync where both hold the same file", local: ["a=1@5"], server: ["a=1@9"], base: [], unchanged: 1 },
  { name: "conflicts on a first sync where the file differs", local: ["a=1"], server: ["a=2"], base: [], conflicts: ["a"] },
  { name: "pushes everything on a first sync to an empty server", local: ["a=1", "d/", "d/x=2"], server: [], base: [], push: ["a", "d", "d/x"] },
  { name: "pulls everything on a first sync onto an empty device", local: [], server: ["a=1", "d/", "d/x=2"], base: [], pull: ["a", "d", "d/x"] },

  // Manifests that leave folders implicit.
  { name: "treats an implicit folder as equal to an explicit one", local: ["d/", "d/x=1"], server: ["d/x=1"], base: ["d/x=1"], unchanged: 2 },
  { name: "pushes a synthesized folder over a server file", local: ["d/x=2"], server: ["d=1"], base: ["d=1"], push: ["d", "d/x"], merged: ["d", "d/x"] },

  // Unknown is not absent: what the scan could not read is neither pushed, deleted nor pulled over.
  { name: "does not push a delete for an unreadable file", local: ["b=1"], server: ["a=1", "b=1"], base: ["a=1", "b=1"], unknown: ["a"], merged: ["a", "b"], unchanged: 2 },
  { name: "does not pull over an unreadable file the server changed", local: [], server: ["a=2"], base: ["a=1"], unknown: ["a"], kept: ["a"], merged: ["a"] },
  { name: "does not pull a server delete of an unreadable file", local: [], server: [], base: ["a=1"], unknown: ["a"], kept: ["a"], merged: [] },
  { name: "does not pull a server file over an unreadable new file", local: [], server: ["a=2"], base: [], unknown: ["a"], kept: ["a"] },
  { name: "does nothing for an unreadable new file the server lacks", local: [], server: [], base: [], unknown: ["a"], merged: [] },
  { name: "still syncs everything else around an unreadable file", local: ["b=2", "c=1"], server: ["a=1", "b=1", "d=1"], base: ["a=1", "b=1"], unknown: ["a"], push: ["b", "c"], pull: ["d"], merged: ["a", "b", "c", "d"] },
  { name: "keeps everything below a folder that vanished during the scan", local: [], server: ["d/", "d/x=1", "d/e/", "d/e/y=1"], base: ["d/", "d/x=1", "d/e/", "d/e/y=1"], unknown: ["d"], merged: ["d", "d/e", "d/e/y", "d/x"], unchanged: 4 },
  { name: "keeps a local folder the server deleted while a file in it is unreadable", local: ["d/", "d/y=1"], server: [], base: ["d/", "d/x=1", "d/y=1"], unknown: ["d/x"], pull: ["-d/y"], kept: ["d", "d/x"], merged: [] },
  { name: "keeps a local folder the server turned into a file while a file in it is unreadable", local: ["d/"], server: ["d=9"], base: ["d/", "d/x=1"], unknown: ["d/x"], kept: ["d", "d/x"], merged: ["d"] },
  { name: "holds back a local addition to a kept folder the server deleted", local: ["d/", "d/n=1"], server: [], base: ["d/", "d/x=1"], unknown: ["d/x"], conflicts: ["d/n"], kept: ["d", "d/x"], merged: [] },
];

describe("planSync()", () => {
  for (const c of cases) {
    it(c.name, () => {
      const local = m(...c.local);
      const server = m(...c.server);
      const plan = planSync(local, server, m(...c.base), { unknown: (c.unknown ?? []).map((p) => `files/${p}`) });
      assert.deepEqual(plan.push.map(short), c.push ?? [], "push");
      assert.deepEqual(plan.kept.map((p) => p.replace(/^files\//, "")), c.kept ?? [], "kept");
      assert.deepEqual(plan.pull.map(short), c.pull ?? [], "pull");
      assert.deepEqual(plan.conflicts.map(short), c.conflicts ?? [], "conflicts");
      if (c.merged !== undefined) {
        assert.deepEqual(plan.merged.entries.map((e) => e.path.replace(/^files\//, "")), c.merged, "merged");
      }
      if (c.unchanged !== undefined) assert.equal(plan.unchanged, c.unchanged, "unchanged");
      assertWellFormed(plan, server);
    });
  }

  it("keeps the local entry, mtime included, when it pushes a file", () => {
    const plan = planSync(m("a=2@77"), m("a=1@5"), m("a=1@5"));
    assert.deepEqual(plan.merged.entries, [file("files/a", "2", 77)]);
    assert.deepEqual(plan.push, [{ type: "push", path: "files/a", entry: file("files/a", "2", 77) }]);
  });

  it("keeps the server entry when only the mtime differs", () => {
    const plan = planSync(m("a=1@77"), m("a=1@5"), m("a=1@5"));
    assert.deepEqual(plan.merged, m("a=1@5"));
  });

  it("records all three versions in a conflict", () => {
    const plan = planSync(m("a=2"), m("a=3"), m("a=1"));
    assert.deepEqual(plan.conflicts, [
      { type: "conflict", path: "files/a", local: file("files/a", "2"), server: file("files/a", "3"), base: file("files/a", "1") },
    ]);
    assert.deepEqual(plan.merged, m("a=3"));
  });

  it("refuses a manifest with an entry below a file", () => {
    const bad: Manifest = { format: 1, entries: [file("files/a", "1"), file("files/a/b", "2")] };
    assert.throws(
      () => planSync(bad, m(), m()),
      (error: unknown) => error instanceof CwsError && error.code === "INVALID_ARGUMENT" && /local scan/.test(error.message),
    );
    assert.throws(() => planSync(m(), bad, m()), /server head/);
  });

  it("refuses a manifest that repeats a path", () => {
    const bad: Manifest = { format: 1, entries: [file("files/a", "1"), file("files/a", "2")] };
    assert.throws(() => planSync(m(), m(), bad), (error: unknown) => error instanceof CwsError && /base lists "files\/a" twice/.test(error.message));
  });

  it("plans nothing, and merges to the server manifest itself, when all three agree", () => {
    const server = m("a=1@5", "d/", "d/x=2");
    const plan = planSync(m("a=1@9", "d/", "d/x=2#600"), server, m("a=1", "d/", "d/x=2"));
    assert.deepEqual(plan, { push: [], pull: [], conflicts: [], merged: server, unchanged: 3, kept: [] });
    assert.equal(plan.merged, server);
  });

  it("finds an entry below a file past many names that extend the file's", () => {
    const siblings = Array.from({ length: 40 }, (_, i) => file(`files/a-${String(i).padStart(2, "0")}`, "s"));
    const bad: Manifest = { format: 1, entries: [file("files/a", "1"), ...siblings, file("files/a/x", "2"), file("files/b", "3")] };
    assert.throws(() => planSync(bad, m(), m()), /"files\/a\/x" is below the file "files\/a"/);
    const fine: Manifest = { format: 1, entries: [file("files/a", "1"), ...siblings, file("files/b", "3")] };
    assert.equal(planSync(fine, m(), m()).push.length, 42);
  });

  it("still refuses ill-formed manifests when all three agree", () => {
    const below: Manifest = { format: 1, entries: [file("files/a", "1"), dir("files/a/b"), file("files/a/b/c", "2")] };
    assert.throws(() => planSync(below, below, below), (error: unknown) => error instanceof CwsError && /"files\/a\/b" is below the file "files\/a"/.test(error.message));
    const twice: Manifest = { format: 1, entries: [file("files/a", "1"), file("files/a", "1")] };
    assert.throws(() => planSync(twice, twice, twice), /lists "files\/a" twice/);
  });
});

describe("orderForApply()", () => {
  it("deletes deepest-first, then creates folders shallowest-first, then writes files", () => {
    const pull = (path: string, e: ManifestEntry | null): PlanAction => ({ type: "pull", path, entry: e });
    const actions: PlanAction[] = [
      pull("files/z", file("files/z", "1")),
      pull("files/d", null),
      pull("files/n/m/o", dir("files/n/m/o")),
      pull("files/d/e/f", null),
      pull("files/n", dir("files/n")),
      pull("files/a", file("files/a", "2")),
      pull("files/d/e", null),
      pull("files/n/m", dir("files/n/m")),
      { type: "conflict", path: "files/c", local: file("files/c", "1"), server: null, base: null },
    ];
    assert.deepEqual(
      orderForApply(actions).map((a) => a.path),
      ["files/d/e/f", "files/d/e", "files/c", "files/d", "files/n", "files/n/m", "files/n/m/o", "files/a", "files/z"],
    );
  });

  it("empties a folder before a file replaces it, and makes a folder before files go in", () => {
    const plan = planSync(m("a/", "a/x=1", "b=1"), m("a=2", "b/", "b/y=3"), m("a/", "a/x=1", "b=1"));
    assert.deepEqual(orderForApply(plan.pull).map(short), ["-a/x", "b", "a", "b/y"]);
  });
});

// ---- properties over random trees -------------------------------------------------------


const NAMES = ["a", "b", "c"];
const CONTENTS = ["1", "2", "3"];
const MAX_DEPTH = 3;

/**
 * A random explicit tree below `files/`. Each node keeps what `base` has there with probability
 * `keep` (the base's folder contents are then visited the same way); otherwise it becomes absent,
 * a random file or a folder.
 */
function randomTree(random: () => number, base: Map<string, ManifestEntry>, keep: number): Map<string, ManifestEntry> {
  const out = new Map<string, ManifestEntry>();
  const visit = (prefix: string, depth: number) => {
    for (const name of NAMES) {
      const p = `${prefix}/${name}`;
      const old = base.get(p);
      let next: ManifestEntry | undefined;
      if (random() < keep) {
        // Sometimes touch only the mtime, which must never count as a change.
        next = old?.kind === "file" && random() < 0.2 ? { ...old, mtimeMs: old.mtimeMs + 1 } : old;
      } else {
        const roll = random();
        next = roll < 0.35 ? undefined : roll < 0.75 || depth === MAX_DEPTH ? file(p, CONTENTS[Math.floor(random() * 3)]) : dir(p);
      }
      if (next === undefined) continue;
      out.set(p, next);
      if (next.kind === "dir") visit(p, depth + 1);
    }
  };
  visit("files", 1);
  return out;
}

/** Drops some folder entries that have children, leaving those folders implicit. */
function dropSomeDirs(random: () => number, tree: Map<string, ManifestEntry>): Map<string, ManifestEntry> {
  const parents = new Set([...tree.keys()].map((p) => p.slice(0, p.lastIndexOf("/"))));
  return new Map([...tree].filter(([p, e]) => !(e.kind === "dir" && parents.has(p) && random() < 0.5)));
}

/** Content of every path a tree holds, implicit folders included, as comparable strings. */
function contentView(manifest: Manifest, filesOnly = false): Map<string, string> {
  const view = new Map<string, string>();
  for (const e of manifest.entries) {
    if (e.kind === "file") view.set(e.path, `file:${e.size}:${e.hash}`);
    else if (!filesOnly) view.set(e.path, "dir");
    if (filesOnly) continue;
    const parts = e.path.split("/");
    for (let i = 2; i < parts.length; i++) view.set(parts.slice(0, i).join("/"), "dir");
  }
  return view;
}

/** Applies ordered actions to a simulated disk that refuses anything a real file system would. */
function applyToDisk(start: Manifest, ordered: readonly PlanAction[]): Manifest {
  const disk = new Map(start.entries.map((e) => [e.path, e]));
  const parentOf = (p: string) => p.slice(0, p.lastIndexOf("/"));
  const hasChildren = (p: string) => [...disk.keys()].some((k) => k.startsWith(`${p}/`));
  const parentReady = (p: string) => parentOf(p) === "files" || disk.get(parentOf(p))?.kind === "dir";
  for (const action of ordered) {
    const next = action.type === "conflict" ? action.server : action.entry;
    const current = disk.get(action.path);
    if (next === null) {
      assert.ok(current !== undefined, `deleting missing ${action.path}`);
      assert.ok(!hasChildren(action.path), `deleting non-empty folder ${action.path}`);
      disk.delete(action.path);
      continue;
    }
    assert.ok(parentReady(action.path), `writing ${action.path} before its folder exists`);
    if (next.kind === "file" && current?.kind === "dir") {
      assert.ok(!hasChildren(action.path), `replacing non-empty folder ${action.path} by a file`);
    }
    disk.set(action.path, next);
  }
  return makeManifest(disk.values());
}

describe("planSync() over random trees", () => {
  const RUNS = 600;

  it("keeps its invariants on explicit and implicit trees", () => {
    for (let seed = 1; seed <= RUNS; seed++) {
      const random = prng(seed);
      const implicit = seed % 3 === 0;
      const firstSync = seed % 7 === 0;
      const baseTree = firstSync ? new Map<string, ManifestEntry>() : randomTree(random, new Map(), 0);
      const localTree = randomTree(random, baseTree, 0.75);
      const serverTree = randomTree(random, baseTree, 0.75);
      const shape = (tree: Map<string, ManifestEntry>) => makeManifest((implicit ? dropSomeDirs(random, tree) : tree).values());
      const [local, server, base] = [shape(localTree), shape(serverTree), shape(baseTree)];
      const context = `seed ${seed}${implicit ? " (implicit folders)" : ""}`;

      const plan = planSync(local, server, base);
      assert.doesNotThrow(() => assertWellFormed(plan, server), context);

      // Actions carry the side's own entry (or a synthesized folder where the side has the
      // folder only implicitly), and no change is lost unnoticed: a pull only replaces what this
      // device left as in the base, a push only replaces what the server left as in the base.
      const index = (m: Manifest) => new Map(m.entries.map((e) => [e.path, e]));
      const [L, S, B] = [index(local), index(server), index(base)];
      const sameAsBase = (side: Map<string, ManifestEntry>, p: string) => {
        const [e, b] = [side.get(p), B.get(p)];
        if (e === undefined || b === undefined) return e === b || (e ?? b)?.kind === "dir";
        return e.kind === b.kind && e.hash === b.hash && e.size === b.size;
      };
      for (const a of plan.pull) {
        assert.ok(a.type === "pull" && (a.entry === null || a.entry === S.get(a.path) || !S.has(a.path)), context);
        assert.ok(sameAsBase(L, a.path), `${context}: pull over a local change at ${a.path}`);
      }
      for (const a of plan.push) {
        assert.ok(a.type === "push" && (a.entry === null || a.entry === L.get(a.path) || !L.has(a.path)), context);
        assert.ok(sameAsBase(S, a.path), `${context}: push over a server change at ${a.path}`);
      }

      // Both sides converge: the device, after pulls and conflicts (server version), holds merged.
      const deviceAfter = applyActions(local, [...plan.pull, ...plan.conflicts]);
      assert.deepEqual(contentView(deviceAfter, implicit), contentView(plan.merged, implicit), `${context}: device and head differ`);

      if (!implicit) {
        // The ordered pulls and conflicts can be applied to a real disk one by one.
        const onDisk = applyToDisk(local, orderForApply([...plan.pull, ...plan.conflicts]));
        assert.deepEqual(contentView(onDisk), contentView(plan.merged), `${context}: disk after apply differs`);
      }
    }
  });

  it("does nothing when local and server agree", () => {
    for (let seed = 1; seed <= RUNS; seed++) {
      const random = prng(seed);
      const base = makeManifest(randomTree(random, new Map(), 0).values());
      const tree = randomTree(random, new Map(base.entries.map((e) => [e.path, e])), 0.6);
      const plan = planSync(makeManifest(tree.values()), makeManifest(tree.values()), base);
      assert.deepEqual([plan.push, plan.pull, plan.conflicts], [[], [], []], `seed ${seed}`);
      assert.deepEqual(plan.merged, makeManifest(tree.values()), `seed ${seed}`);
    }
  });

  it("pushes exactly the difference when the server is still at the base", () => {
    for (let seed = 1; seed <= RUNS; seed++) {
      const random = prng(seed);
      const baseTree = randomTree(random, new Map(), 0);
      const local = makeManifest(randomTree(random, baseTree, 0.7).values());
      const base = makeManifest(baseTree.values());
      const plan = planSync(local, base, base);
      const L = new Map(local.entries.map((e) => [e.path, e]));
      const diff = [...new Set([...L.keys(), ...baseTree.keys()])]
        .filter((p) => {
          const [l, b] = [L.get(p), baseTree.get(p)];
          return l === undefined || b === undefined ? l !== b : l.kind !== b.kind || l.hash !== b.hash || l.size !== b.size;
        })
        .sort();
      assert.deepEqual(plan.push.map((a) => a.path), diff, `seed ${seed}`);
      assert.deepEqual([plan.pull, plan.conflicts], [[], []], `seed ${seed}`);
      assert.deepEqual(contentView(plan.merged), contentView(local), `seed ${seed}`);
    }
  });

  it("never pushes, pulls or conflicts on an unknown path, and still plans a valid tree", () => {
    for (let seed = 1; seed <= RUNS; seed++) {
      const random = prng(seed);
      const baseTree = randomTree(random, new Map(), 0);
      const localTree = randomTree(random, baseTree, 0.75);
      const serverTree = randomTree(random, baseTree, 0.75);
      const [local, server, base] = [localTree, serverTree, baseTree].map((t) => makeManifest(t.values()));
      // Some paths the scan saw are unreadable (or vanished while it read them): it left them out.
      const candidates = [...localTree.keys()].sort();
      const unknown = candidates.filter(() => random() < 0.15);
      const isUnknown = (p: string) => unknown.some((u) => p === u || p.startsWith(`${u}/`));
      const scanned = makeManifest(local.entries.filter((e) => !isUnknown(e.path)));
      const context = `seed ${seed}, unknown ${unknown.join(" ")}`;
      const plan = planSync(scanned, server, base, { unknown });
      assert.doesNotThrow(() => assertWellFormed(plan, server), context);
      for (const a of [...plan.push, ...plan.pull, ...plan.conflicts]) assert.ok(!isUnknown(a.path), `${context}: ${a.type} of unknown ${a.path}`);
      // No delete of anything the base had under an unknown path, unless the server already deleted it.
      const merged = new Set(plan.merged.entries.map((e) => e.path));
      for (const p of baseTree.keys()) {
        if (isUnknown(p) && serverTree.has(p)) assert.ok(merged.has(p), `${context}: ${p} left the head`);
      }
      for (const p of plan.kept) assert.ok(!plan.pull.some((a) => a.path === p), context);
    }
  });
});

describe("planSync() narrowed to the changed paths", () => {
  // planSync plans a sync with few changes over the changed paths, their listed ancestors and
  // everything listed below them (planChangedPaths); it must decide exactly what the plan over
  // every path decides, implicit folders and names that sort around "/" included.
  const outcome = (plan: () => SyncPlan | null) => {
    try {
      return plan();
    } catch (error) {
      return { error: `${(error as { code?: string }).code}: ${(error as Error).message}` };
    }
  };
  /** Unchanged entries around the random part, as in a real 1% change, some sorting around "/". */
  const withFiller = (tree: Map<string, ManifestEntry>) => {
    const copy = new Map(tree);
    for (const name of ["a-1", "a.b", "b0", "zz"]) copy.set(`files/${name}`, file(`files/${name}`, "1"));
    copy.set("files/zy", dir("files/zy"));
    for (let n = 0; n < 40; n++) copy.set(`files/zy/${n}`, file(`files/zy/${n}`, String(n % 3)));
    return copy;
  };

  it("gives the same plan, merged manifest and counts as the plan over every path", () => {
    let narrowed = 0;
    for (let seed = 1; seed <= 3000; seed++) {
      const random = prng(seed);
      const implicit = seed % 2 === 0;
      const baseTree = randomTree(random, new Map(), 0);
      const localTree = randomTree(random, baseTree, 0.9);
      const serverTree = randomTree(random, baseTree, 0.9);
      const shape = (tree: Map<string, ManifestEntry>) => makeManifest((implicit ? dropSomeDirs(random, withFiller(tree)) : withFiller(tree)).values());
      const [local, server, base] = [shape(localTree), shape(serverTree), shape(baseTree)];
      const expected = outcome(() => planEveryPath(local, server, base));
      assert.deepEqual(outcome(() => planSync(local, server, base)), expected, `seed ${seed}`);
      const direct = outcome(() => planChangedPaths(local, server, base));
      if (direct !== null && !("error" in direct)) {
        assert.deepEqual(direct, expected, `seed ${seed}, narrowed`);
        if (direct.push.length + direct.pull.length + direct.conflicts.length > 0) narrowed++;
      }
    }
    assert.ok(narrowed > 1000, `most random cases were planned narrowed, with something to do (${narrowed})`);
  });

  it("plans the same with a frozen base that is also the server's (a kept session's), checked once and then remembered", () => {
    for (let seed = 1; seed <= 500; seed++) {
      const random = prng(seed);
      const baseTree = randomTree(random, new Map(), 0);
      const local = makeManifest(randomTree(random, baseTree, 0.9).values());
      const base = makeManifest(baseTree.values());
      const frozen: Manifest = { format: base.format, entries: Object.freeze([...base.entries]) as ManifestEntry[] };
      const expected = outcome(() => planEveryPath(local, base, base));
      // Twice: the second plan finds the frozen array remembered as consistent.
      for (let round = 0; round < 2; round++) assert.deepEqual(outcome(() => planSync(local, frozen, frozen)), expected, `seed ${seed}, round ${round}`);
    }
  });

  it("plans a 1% change at 50,000 paths the same way", () => {
    const entries: ManifestEntry[] = [];
    for (let d = 0; d < 500; d++) {
      entries.push(dir(`files/d${d}`));
      for (let f = 0; f < 100; f++) entries.push(file(`files/d${d}/f${f}.md`, String(d * 100 + f)));
    }
    const base = makeManifest(entries);
    const changed = new Map(base.entries.map((e) => [e.path, e]));
    for (let n = 0; n < 500; n++) changed.set(`files/d${n}/f${n % 100}.md`, file(`files/d${n}/f${n % 100}.md`, `changed ${n}`));
    const local = makeManifest(changed.values());
    const narrowed = planChangedPaths(local, base, base);
    assert.ok(narrowed !== null, "narrowed");
    assert.deepEqual(narrowed, planEveryPath(local, base, base));
    assert.equal(narrowed.push.length, 500);
  });
});
