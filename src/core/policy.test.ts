import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isCwsError } from "../errors.ts";
import { Manifest, makeManifest } from "./manifest.ts";
import type { ManifestEntry } from "./manifest.ts";
import {
  pushMayHold,
  DEFAULT_POLICY,
  PolicySettings,
  PolicySettingsOverrides,
  QuarantineItemDraft,
  applyItem,
  evaluatePush,
  pushChecksNeeded,
  resolvePolicySettings,
} from "./policy.ts";
import type { MarkdownStats, PolicyDecision, PushInput } from "./policy.ts";

// ---- fixtures --------------------------------------------------------------------------

/** A stand-in content hash: 16 hex digits derived from a label (two 32-bit FNV-1a passes). */
function fakeHash(label: string): string {
  let h1 = 0x811c9dc5;
  let h2 = 0x01000193;
  for (let i = 0; i < label.length; i++) {
    h1 = Math.imul(h1 ^ label.charCodeAt(i), 0x01000193) >>> 0;
    h2 = Math.imul(h2 ^ label.charCodeAt(i), 0x811c9dc5) >>> 0;
  }
  return h1.toString(16).padStart(8, "0") + h2.toString(16).padStart(8, "0");
}

/** A file entry whose content is identified by `content` (the path itself unless given). */
function file(path: string, options: { content?: string; size?: number } = {}): ManifestEntry {
  const { content = path, size = 100 } = options;
  const hash = fakeHash(`${content}:${size}`);
  return { path, kind: "file", size, mtimeMs: 1_700_000_000_000, mode: 0o644, hash, chunks: size === 0 ? [] : [[hash, size]] };
}

function dir(path: string): ManifestEntry {
  return { path, kind: "dir", size: 0, mtimeMs: 1_700_000_000_000, mode: 0o755, hash: "", chunks: [] };
}

/** A manifest of the given entries plus a folder entry for every folder below the namespace. */
function tree(...entries: ManifestEntry[]): Manifest {
  const all = new Map(entries.map((e) => [e.path, e]));
  for (const entry of entries) {
    const parts = entry.path.split("/");
    for (let i = 2; i < parts.length; i++) {
      const folder = parts.slice(0, i).join("/");
      if (!all.has(folder)) all.set(folder, dir(folder));
    }
  }
  return makeManifest(all.values());
}

/** `count` files named files/<folder>/f<i>.txt, spread over folders of `perFolder` files. */
function files(count: number, perFolder: number, prefix = "files/d"): ManifestEntry[] {
  return Array.from({ length: count }, (_, i) => file(`${prefix}${Math.floor(i / perFolder)}/f${i}.txt`));
}

const ROLLOUT = "codex/sessions/2026/01/02/rollout-2026-01-02T10-00-00-0198c1a2-0000-7000-8000-000000000001.jsonl";
const ARCHIVED = "codex/archived_sessions/rollout-2026-01-02T10-00-00-0198c1a2-0000-7000-8000-000000000001.jsonl";

function stats(bytes: number, headings: number, nonEmptyLines = 10): MarkdownStats {
  return { bytes, headings, nonEmptyLines };
}

/** Asserts what every decision must satisfy: a valid, well-formed manifest. */
function assertWellFormed(manifest: Manifest): void {
  Manifest.parse(manifest);
  const index = new Map(manifest.entries.map((e) => [e.path, e]));
  for (const entry of manifest.entries) {
    const parts = entry.path.split("/");
    for (let i = 2; i < parts.length; i++) {
      const folder = parts.slice(0, i).join("/");
      assert.equal(index.get(folder)?.kind, "dir", `${entry.path} needs the folder ${folder}`);
    }
  }
}

function heldSummary(decision: PolicyDecision): Array<{ reason: string; paths: string[] }> {
  return decision.held.map(({ reason, paths }) => ({ reason, paths }));
}

// ---- evaluatePush: table ---------------------------------------------------------------

const hundred = files(100, 10);
const tenThousand = files(10_000, 100);
const twenty = files(20, 10);
const big = file("files/notes/plan.md", { content: "plan v1", size: 10 * 1024 });

interface Case {
  name: string;
  input: PushInput;
  held: Array<{ reason: string; paths: string[] }>;
  /** Paths whose accepted entry must equal the `before` one (held) or the `after` one (landed). */
  keeps?: string[];
  lands?: string[];
}

const cases: Case[] = [
  {
    name: "holds every delete of a push deleting 80 of 100 files in one item, and lands its other changes",
    input: {
      before: tree(...hundred),
      after: tree(
        ...hundred.slice(80, 85),
        file(hundred[85].path, { content: "edited" }),
        ...hundred.slice(86),
        file("files/new.txt"),
      ),
    },
    held: [{ reason: "mass-delete", paths: hundred.slice(0, 80).map((e) => e.path).sort() }],
    keeps: [hundred[0].path, "files/d0", hundred[79].path],
    lands: [hundred[85].path, "files/new.txt"],
  },
  {
    name: "lands deleting 1 of 2 files",
    input: { before: tree(file("files/a.txt"), file("files/b.txt")), after: tree(file("files/a.txt")) },
    held: [],
  },
  {
    name: "lands deleting 9 of 10 files, below the share rule's minimum of 10 deletes",
    input: { before: tree(...files(10, 2)), after: tree(...files(10, 2).slice(9)) },
    // Folders of 2 files are too small to count as emptied.
    held: [],
  },
  {
    name: "holds deleting 150 of 10,000 files by the count rule",
    input: {
      before: tree(...tenThousand),
      // Every 60th file: 150 deletes spread so that no folder is emptied.
      after: tree(...tenThousand.filter((_, i) => i % 60 !== 0 || i >= 9000)),
    },
    held: [
      {
        reason: "mass-delete",
        paths: tenThousand
          .filter((_, i) => i % 60 === 0 && i < 9000)
          .map((e) => e.path)
          .sort(),
      },
    ],
  },
  {
    name: "lands deleting exactly 100 of 10,000 files (the count rule wants more than 100)",
    input: {
      before: tree(...tenThousand),
      after: tree(...tenThousand.filter((_, i) => i % 60 !== 0 || i >= 6000)),
    },
    held: [],
  },
  {
    name: "lands a rename of a whole folder, which is not a delete",
    input: {
      before: tree(...twenty),
      after: tree(...twenty.map((e) => ({ ...e, path: e.path.replace("files/d", "files/moved/d") }))),
    },
    held: [],
  },
  {
    name: "lands a protected file moved to another folder",
    input: {
      before: tree(file("files/AGENTS.md"), file("files/x.txt")),
      after: tree({ ...file("files/AGENTS.md"), path: "files/old/AGENTS.md" }, file("files/x.txt")),
    },
    held: [],
  },
  {
    name: "holds the deletion of AGENTS.md and README.md at any depth, one item each, and lands the rest",
    input: {
      before: tree(file("files/AGENTS.md"), file("files/a/b/AGENTS.md"), file("files/a/Readme.md"), file("files/a/b/c.txt"), ...twenty),
      after: tree(file("files/a/b/c.txt", { content: "edited" }), ...twenty),
    },
    held: [
      { reason: "protected-delete", paths: ["files/AGENTS.md"] },
      { reason: "protected-delete", paths: ["files/a/Readme.md"] },
      { reason: "protected-delete", paths: ["files/a/b/AGENTS.md"] },
    ],
    keeps: ["files/AGENTS.md", "files/a/b/AGENTS.md"],
    lands: ["files/a/b/c.txt"],
  },
  {
    name: "holds the deletion of a Codex rollout",
    input: { before: tree(file(ROLLOUT), ...twenty), after: tree(...twenty) },
    held: [{ reason: "protected-delete", paths: [ROLLOUT] }],
    keeps: [ROLLOUT, "codex/sessions/2026/01/02"],
  },
  {
    name: "lands archiving a rollout, which Codex does by moving it under the same name",
    input: { before: tree(file(ROLLOUT), ...twenty), after: tree({ ...file(ROLLOUT), path: ARCHIVED }, ...twenty) },
    held: [],
  },
  {
    name: "holds a rollout copied to another file name and deleted, as a rollout keeps its name",
    input: {
      before: tree(file(ROLLOUT), ...twenty),
      after: tree({ ...file(ROLLOUT), path: "codex/sessions/2026/01/02/rollout-other.jsonl" }, ...twenty),
    },
    held: [{ reason: "protected-delete", paths: [ROLLOUT] }],
    lands: ["codex/sessions/2026/01/02/rollout-other.jsonl"],
  },
  {
    name: "holds a folder of 5 files that a push empties, folder entry included",
    input: { before: tree(...files(5, 5, "files/e"), ...twenty), after: tree(...twenty) },
    held: [{ reason: "folder-emptied", paths: files(5, 5, "files/e").map((e) => e.path).sort() }],
    keeps: ["files/e0", "files/e0/f0.txt"],
  },
  {
    name: "holds an emptied folder that keeps its folder entry",
    input: { before: tree(...files(5, 5, "files/e"), ...twenty), after: tree(dir("files/e0"), ...twenty) },
    held: [{ reason: "folder-emptied", paths: files(5, 5, "files/e").map((e) => e.path).sort() }],
  },
  {
    name: "lands emptying a folder of 2 files",
    input: { before: tree(...files(2, 2, "files/e"), ...twenty), after: tree(...twenty) },
    held: [],
  },
  {
    name: "lands a folder of 5 files emptied by moving 3 of them away",
    input: {
      before: tree(...files(5, 5, "files/e"), ...twenty),
      after: tree(...files(5, 5, "files/e").slice(0, 3).map((e) => ({ ...e, path: e.path.replace("files/e0", "files/kept") })), ...twenty),
    },
    held: [],
  },
  {
    name: "holds nested emptied folders as one item for the outermost",
    input: {
      before: tree(...files(4, 4, "files/top/a"), ...files(4, 4, "files/top/b"), ...twenty),
      after: tree(...twenty),
    },
    held: [
      {
        reason: "folder-emptied",
        paths: [...files(4, 4, "files/top/a"), ...files(4, 4, "files/top/b")].map((e) => e.path).sort(),
      },
    ],
  },
  {
    name: "holds protected deletes apart from the mass delete they belong to",
    input: { before: tree(file("files/AGENTS.md"), ...hundred.slice(1)), after: tree(...hundred.slice(80)) },
    held: [
      { reason: "mass-delete", paths: hundred.slice(1, 80).map((e) => e.path).sort() },
      { reason: "protected-delete", paths: ["files/AGENTS.md"] },
    ],
  },
  {
    name: "never holds an unchanged tiny Markdown file, even with a new mtime",
    input: {
      before: tree(file("files/tiny.md", { size: 10 })),
      after: tree({ ...file("files/tiny.md", { size: 10 }), mtimeMs: 1_800_000_000_000 }),
    },
    held: [],
  },
  {
    name: "never holds an unchanged big Markdown file",
    input: { before: tree(big), after: tree({ ...big, mtimeMs: 1_800_000_000_000 }) },
    held: [],
  },
  {
    name: "lands a tiny Markdown file shrunk to almost nothing (no stats needed)",
    input: {
      before: tree(file("files/tiny.md", { size: 300 })),
      after: tree(file("files/tiny.md", { content: "cut", size: 5 })),
    },
    held: [],
  },
  {
    name: "holds a 10 KiB Markdown file cut to 10% and keeps the old version live",
    input: {
      before: tree(big, ...twenty),
      after: tree(file(big.path, { content: "plan v2", size: 1024 }), ...twenty),
      markdown: new Map([[big.path, { before: stats(10 * 1024, 5), after: stats(1024, 5) }]]),
    },
    held: [{ reason: "markdown-drift", paths: [big.path] }],
    keeps: [big.path],
  },
  {
    name: "holds a Markdown file emptied to 0 bytes",
    input: {
      before: tree(big),
      after: tree(file(big.path, { content: "", size: 0 })),
      markdown: new Map([[big.path, { before: stats(10 * 1024, 5), after: stats(0, 0, 0) }]]),
    },
    held: [{ reason: "markdown-drift", paths: [big.path] }],
  },
  {
    name: "holds a Markdown file that loses 4 of its 6 headings at almost the same size",
    input: {
      before: tree(big),
      after: tree(file(big.path, { content: "flattened", size: 9 * 1024 })),
      markdown: new Map([[big.path, { before: stats(10 * 1024, 6), after: stats(9 * 1024, 2) }]]),
    },
    held: [{ reason: "markdown-drift", paths: [big.path] }],
  },
  {
    name: "lands a Markdown file losing both of its 2 headings (below minHeadings)",
    input: {
      before: tree(big),
      after: tree(file(big.path, { content: "flattened", size: 9 * 1024 })),
      markdown: new Map([[big.path, { before: stats(10 * 1024, 2), after: stats(9 * 1024, 0) }]]),
    },
    held: [],
  },
  {
    name: "lands a Markdown file that grows",
    input: {
      before: tree(big),
      after: tree(file(big.path, { content: "plan v2", size: 20 * 1024 })),
      markdown: new Map([[big.path, { before: stats(10 * 1024, 6), after: stats(20 * 1024, 12) }]]),
    },
    held: [],
  },
  {
    name: "treats deleting a Markdown file as a delete, not drift",
    input: { before: tree(big, ...twenty), after: tree(...twenty) },
    held: [],
  },
  {
    name: "lands a rollout that was appended to",
    input: {
      before: tree(file(ROLLOUT, { size: 1000 })),
      after: tree(file(ROLLOUT, { content: "more", size: 2000 })),
      rolloutExtends: new Map([[ROLLOUT, true]]),
    },
    held: [],
  },
  {
    name: "holds a rollout that was rewritten rather than appended to",
    input: {
      before: tree(file(ROLLOUT, { size: 1000 })),
      after: tree(file(ROLLOUT, { content: "other", size: 2000 })),
      rolloutExtends: new Map([[ROLLOUT, false]]),
    },
    held: [{ reason: "rollout-rewrite", paths: [ROLLOUT] }],
    keeps: [ROLLOUT],
  },
  {
    name: "lands a rollout compressed and archived in one push when its content is kept",
    input: {
      before: tree(file(ROLLOUT, { size: 1000 })),
      after: tree(file(`${ARCHIVED}.zst`, { content: "zstd", size: 300 })),
      rolloutExtends: new Map([[`${ARCHIVED}.zst`, true]]),
    },
    held: [],
  },
  {
    name: "holds a rollout replaced by a compressed form that does not extend it, as one item",
    input: {
      before: tree(file(ROLLOUT, { size: 1000 })),
      after: tree(file(`${ROLLOUT}.zst`, { content: "zstd", size: 300 })),
      rolloutExtends: new Map([[`${ROLLOUT}.zst`, false]]),
    },
    held: [{ reason: "rollout-rewrite", paths: [ROLLOUT, `${ROLLOUT}.zst`] }],
    keeps: [ROLLOUT, `${ROLLOUT}.zst`],
  },
  {
    name: "holds nothing when the server head is empty",
    input: { before: tree(), after: tree(...hundred, file(ROLLOUT), big) },
    held: [],
  },
  {
    name: "applies per-superproject thresholds",
    input: {
      before: tree(file("files/a.txt"), file("files/b.txt")),
      after: tree(file("files/a.txt")),
      settings: { maxDeleteCount: 0 },
    },
    held: [{ reason: "mass-delete", paths: ["files/b.txt"] }],
  },
];

/** The input of the table case whose name starts with `prefix`. */
function caseInput(prefix: string): PushInput {
  const found = cases.find((c) => c.name.startsWith(prefix));
  if (found === undefined) throw new Error(`No case named ${prefix}`);
  return found.input;
}

describe("evaluatePush()", () => {
  for (const { name, input, held, keeps = [], lands = [] } of cases) {
    it(name, () => {
      const decision = evaluatePush(input);
      assert.deepEqual(heldSummary(decision), held);
      assertWellFormed(decision.accepted);
      for (const item of decision.held) QuarantineItemDraft.parse(item);
      const accepted = new Map(decision.accepted.entries.map((e) => [e.path, e]));
      const before = new Map(input.before.entries.map((e) => [e.path, e]));
      const after = new Map(input.after.entries.map((e) => [e.path, e]));
      for (const path of keeps) assert.deepEqual(accepted.get(path), before.get(path), `${path} keeps its old entry`);
      for (const path of lands) assert.deepEqual(accepted.get(path), after.get(path), `${path} lands`);
      // Nothing held means the push lands as proposed.
      if (held.length === 0) assert.deepEqual(decision.accepted, input.after);
      // Every held item applied in turn yields exactly what the device proposed.
      const all = decision.held.reduce((head, item) => applyItem(head, item), decision.accepted);
      assert.deepEqual(all, input.after);
    });
  }

  it("summarizes a mass delete with its numbers", () => {
    const decision = evaluatePush(caseInput("holds every delete of a push deleting 80"));
    assert.equal(decision.held[0].summary, "deletes 80 of 100 files (80% > 50%)");
    assert.equal(decision.held[0].metrics.deletedFiles, 80);
    assert.equal(decision.held[0].metrics.beforeFiles, 100);
    assert.match(evaluatePush(caseInput("holds deleting 150")).held[0].summary, /^deletes 150 of 10000 files \(more than 100 at once\)$/);
  });

  it("records the proposed entries of a held item, folder deletions included", () => {
    const [item] = evaluatePush(caseInput("holds a folder of 5 files")).held;
    assert.equal(item.proposed["files/e0/f0.txt"], null);
    assert.equal(item.proposed["files/e0"], null);
  });

  it("holds a delete under a folder that the push turned into a file, and keeps the folder", () => {
    const before = tree(file("files/a/AGENTS.md"), ...twenty);
    const after = tree(file("files/a"), ...twenty);
    const decision = evaluatePush({ before, after });
    assert.deepEqual(heldSummary(decision), [{ reason: "protected-delete", paths: ["files/a/AGENTS.md"] }]);
    assert.deepEqual(decision.held[0].proposed, { "files/a": file("files/a"), "files/a/AGENTS.md": null });
    assertWellFormed(decision.accepted);
    assert.equal(decision.accepted.entries.find((e) => e.path === "files/a")?.kind, "dir");
    assert.deepEqual(applyItem(decision.accepted, decision.held[0]), after);
  });

  it("holds a protected file that the push turned into a folder, with the folder's new content", () => {
    const before = tree(file("files/README.md"), ...twenty);
    const after = tree(file("files/README.md/inside.txt"), ...twenty);
    const decision = evaluatePush({ before, after });
    assert.deepEqual(Object.keys(decision.held[0].proposed), ["files/README.md", "files/README.md/inside.txt"]);
    assertWellFormed(decision.accepted);
    assert.deepEqual(
      decision.accepted.entries.find((e) => e.path === "files/README.md"),
      before.entries.find((e) => e.path === "files/README.md"),
    );
    assert.deepEqual(applyItem(decision.accepted, decision.held[0]), after);
  });

  it("throws when Markdown stats the drift rule needs are missing", () => {
    const input = { ...caseInput("holds a 10 KiB Markdown"), markdown: new Map() };
    assert.throws(() => evaluatePush(input), { name: "TypeError", message: /files\/notes\/plan\.md/ });
  });

  it("throws when a rollout check is not answered", () => {
    const input = { ...caseInput("holds a rollout that was rewritten"), rolloutExtends: new Map() };
    assert.throws(() => evaluatePush(input), { name: "TypeError", message: /rolloutExtends/ });
  });

  it("refuses invalid settings with INVALID_ARGUMENT", () => {
    assert.throws(
      () => evaluatePush({ before: tree(), after: tree(), settings: { maxDeleteShare: -0.1 } }),
      (error: unknown) => isCwsError(error, "INVALID_ARGUMENT") && /maxDeleteShare/.test(error.message),
    );
  });
});

describe("pushChecksNeeded()", () => {
  it("lists the changed Markdown files only", () => {
    const before = tree(big, file("files/same.md"), file("files/gone.md"), file("files/x.txt"));
    const after = tree(file(big.path, { content: "v2" }), file("files/same.md"), file("files/x.txt", { content: "v2" }));
    assert.deepEqual(pushChecksNeeded(before, after).markdown, [big.path]);
  });

  it("lists in-place rollout changes and compression transitions", () => {
    const other = ROLLOUT.replace("000000000001", "000000000002");
    const before = tree(file(ROLLOUT), file(other));
    const after = tree(file(ROLLOUT, { content: "appended" }), file(`${other}.zst`, { content: "zstd" }));
    assert.deepEqual(pushChecksNeeded(before, after).rollouts, [
      { path: ROLLOUT, previousPath: ROLLOUT },
      { path: `${other}.zst`, previousPath: other },
    ]);
  });
});

describe("applyItem()", () => {
  it("deletes the files of an accepted mass-delete item", () => {
    const { accepted, held } = evaluatePush(caseInput("holds every delete of a push deleting 80"));
    const head = applyItem(accepted, held[0]);
    const paths = new Set(head.entries.map((e) => e.path));
    for (const path of held[0].paths) assert.equal(paths.has(path), false, `${path} is deleted`);
    assert.equal(paths.has("files/d0"), false, "the emptied folder is deleted too");
    assert.deepEqual(head, caseInput("holds every delete of a push deleting 80").after);
  });

  it("keeps a shared folder until the last item deleting inside it is accepted", () => {
    const before = tree(file("files/a/AGENTS.md"), ...files(4, 4, "files/a/f"), ...twenty);
    const after = tree(...twenty);
    const { accepted, held } = evaluatePush({ before, after });
    assert.deepEqual(
      held.map((item) => item.reason),
      ["protected-delete", "folder-emptied"],
    );
    for (const order of [held, [...held].reverse()]) {
      const first = applyItem(accepted, order[0]);
      assertWellFormed(first);
      assert.equal(
        first.entries.some((e) => e.path === "files/a"),
        true,
        "the folder stays while the other item holds files in it",
      );
      assert.deepEqual(applyItem(first, order[1]), after);
    }
  });

  it("refuses with CONFLICT when a held path was changed by a later push", () => {
    const { accepted, held } = evaluatePush(caseInput("holds a 10 KiB Markdown"));
    const later = makeManifest(
      accepted.entries.map((e) => (e.path === big.path ? file(big.path, { content: "edited later", size: 11 * 1024 }) : e)),
    );
    assert.throws(
      () => applyItem(later, held[0]),
      (error: unknown) => isCwsError(error, "CONFLICT") && error.message.includes(big.path),
    );
    // Accepting an item whose change is already in the head is harmless.
    const applied = applyItem(accepted, held[0]);
    assert.deepEqual(applyItem(applied, held[0]), applied);
  });

  it("refuses with CONFLICT when the head changed so that a proposed entry would sit under a file", () => {
    const item = { proposed: { "files/a/b.txt": file("files/a/b.txt") } };
    assert.throws(
      () => applyItem(tree(file("files/a")), item),
      (error: unknown) => isCwsError(error, "CONFLICT"),
    );
  });

  it("refuses with CONFLICT when a proposed file would replace a folder that now has content", () => {
    const item = { proposed: { "files/a": file("files/a") } };
    assert.throws(
      () => applyItem(tree(file("files/a/new.txt")), item),
      (error: unknown) => isCwsError(error, "CONFLICT"),
    );
  });
});

describe("PolicySettings", () => {
  const invalid: Array<[string, unknown]> = [
    ["a negative share", { maxDeleteShare: -0.5 }],
    ["a share above 1", { maxDeleteShare: 1.5 }],
    ["a fractional count", { maxDeleteCount: 2.5 }],
    ["a negative count", { maxDeleteCount: -1 }],
    ["a shrink ratio of 1 (every change would be drift)", { shrinkRatio: 1 }],
    ["a heading loss share of 0", { headingLossShare: 0 }],
    ["an unknown setting (a typo)", { maxDeleteShar: 0.5 }],
    ["a glob with an empty segment", { protectedGlobs: ["files//AGENTS.md"] }],
    ["an absolute glob", { protectedGlobs: ["/files/AGENTS.md"] }],
    ["a string for a number", { minHeadings: "3" }],
    ["infinity", { maxDeleteCount: Number.POSITIVE_INFINITY }],
  ];
  for (const [name, overrides] of invalid) {
    it(`rejects ${name}`, () => {
      assert.equal(PolicySettingsOverrides.safeParse(overrides).success, false);
      assert.throws(
        () => resolvePolicySettings(overrides),
        (error: unknown) => isCwsError(error, "INVALID_ARGUMENT"),
      );
    });
  }

  it("accepts the defaults and fills in what an override leaves out", () => {
    assert.deepEqual(PolicySettings.parse(DEFAULT_POLICY), DEFAULT_POLICY);
    const settings = resolvePolicySettings({ maxDeleteCount: 500, shrinkRatio: undefined });
    assert.equal(settings.maxDeleteCount, 500);
    assert.equal(settings.shrinkRatio, DEFAULT_POLICY.shrinkRatio);
  });
});

describe("pushes onto a tree without files", () => {
  it("hold nothing, whatever they add, as pushMayHold(0) tells the hub", () => {
    assert.equal(pushMayHold(0), false);
    assert.equal(pushMayHold(1), true);
    const entry = (path: string, kind: "file" | "dir" = "file"): ManifestEntry =>
      kind === "dir" ? { path, kind, size: 0, mtimeMs: 1, mode: 0o755, hash: "", chunks: [] } : { path, kind, size: 1, mtimeMs: 1, mode: 0o644, hash: "0123456789abcdef", chunks: [["0123456789abcdef", 1]] };
    const before = makeManifest([entry("files/a", "dir"), entry("files/b", "dir")]);
    const after = makeManifest([
      entry("files/a", "dir"),
      ...Array.from({ length: 200 }, (_, i) => entry(`files/a/n-${i}.md`)),
      entry("codex/sessions/rollout-1.jsonl"),
      entry("files/b.md"),
    ]);
    const strict = { protectedGlobs: ["**"], maxDeleteCount: 0, maxDeleteShare: 0, minFolderFiles: 1 };
    const decision = evaluatePush({ before, after, settings: strict });
    assert.deepEqual(decision.held, []);
    assert.deepEqual(decision.accepted, after);
  });
});
