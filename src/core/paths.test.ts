import assert from "node:assert/strict";
import path from "node:path";
import { describe, it } from "node:test";
import { CwsError } from "../errors.ts";
import { MAX_PATH_LENGTH } from "./manifest.ts";
import {
  checkManifestPath,
  checkRelativePath,
  findCaseCollisions,
  isInsideRoot,
  type PathRule,
  resolveInside,
  windowsNameProblem,
} from "./paths.ts";

/** Asserts that `fn` throws INVALID_PATH for `rule`, with the path named in the message. */
function assertRefused(fn: () => unknown, rule: string, named: string): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof CwsError, `expected a CwsError, got ${String(error)}`);
    assert.equal(error.code, "INVALID_PATH");
    assert.equal(error.data?.rule, rule, `wrong rule in: ${error.message}`);
    assert.ok(error.message.includes(named), `message does not name the path: ${error.message}`);
    return true;
  });
}

describe("checkRelativePath() and checkManifestPath()", () => {
  const valid: string[] = [
    "files",
    "codex",
    "files/notes.md",
    "files/a/b/c.txt",
    "codex/sessions/2025/01/02/rollout-1.jsonl",
    "files/.hidden",
    "files/..dots..",
    "files/a.b/...",
    "files/name with spaces",
    "files/café.md", // NFC é (U+00E9)
    "files/日本語/ノート.md",
    "files/emoji-😀.md",
    "files/a:b", // legal on POSIX; windowsNameProblem reports it for Windows
    "files/" + "x".repeat(MAX_PATH_LENGTH - "files/".length),
  ];
  for (const p of valid) {
    it(`accepts ${JSON.stringify(p.length > 40 ? `${p.slice(0, 40)}…` : p)}`, () => {
      assert.equal(checkRelativePath(p), p);
      assert.equal(checkManifestPath(p), p);
    });
  }

  // Each row breaks exactly one rule (or the first one checked), and must fail for that rule.
  const invalid: { path: string; rule: PathRule; named?: string }[] = [
    { path: "", rule: "empty", named: "empty path" },
    { path: "/x", rule: "absolute" },
    { path: "/files/a", rule: "absolute" },
    { path: "\\\\server\\share", rule: "absolute" },
    { path: "\\x", rule: "absolute" },
    { path: "files\\a", rule: "backslash" },
    { path: "files/a\\..\\..\\etc", rule: "backslash" },
    { path: "files/../etc/passwd", rule: "dot-segment" },
    { path: "files/..", rule: "dot-segment" },
    { path: "..", rule: "dot-segment" },
    { path: "files/./a", rule: "dot-segment" },
    { path: ".", rule: "dot-segment" },
    { path: "files//a", rule: "empty-segment" },
    { path: "files/a/", rule: "empty-segment" },
    { path: "files/a\u0000b", rule: "control-character", named: "\\u0000" },
    { path: "files/a\nb", rule: "control-character", named: "\\n" },
    { path: "files/a\tb", rule: "control-character", named: "\\t" },
    { path: "files/\u001f", rule: "control-character", named: "\\u001f" },
    { path: "files/cafe\u0301.md", rule: "not-nfc" }, // NFD é
    { path: "files/\u212b", rule: "not-nfc" }, // ANGSTROM SIGN normalizes to Å
    { path: "files/\ud800x", rule: "malformed-unicode", named: "\\ud800" },
    { path: "files/" + "x".repeat(MAX_PATH_LENGTH), rule: "too-long", named: "files/xxx" },
  ];
  for (const row of invalid) {
    const named = row.named ?? JSON.stringify(row.path);
    it(`refuses ${JSON.stringify(row.path.slice(0, 40))} as ${row.rule}`, () => {
      assertRefused(() => checkRelativePath(row.path), row.rule, named);
      assertRefused(() => checkManifestPath(row.path), row.rule, named);
    });
  }

  // Finding 3 of issue 11: a drive letter is absolute only on Windows. On Linux `Q:A notes.md`
  // is an ordinary name that a scan may find, and it must not fail the whole sync.
  const driveLetters = ["C:\\x", "C:x", "c:/x", "Q:A notes.md"];
  for (const p of driveLetters) {
    it(`refuses ${JSON.stringify(p)} as absolute on Windows only`, () => {
      assertRefused(() => checkRelativePath(p, { windows: true }), "absolute", JSON.stringify(p));
      if (!p.includes("\\")) assert.equal(checkRelativePath(p), p);
    });
  }
  it("joins a name with a drive-letter look onto a POSIX root", () => {
    assert.equal(resolveInside("/data/root", "Q:A notes.md", path.posix), "/data/root/Q:A notes.md");
  });

  const outsideNamespaces = ["notes.md", "Files/a", "files2/a", "codexx", "other/files/a"];
  for (const p of outsideNamespaces) {
    it(`checkManifestPath() refuses ${JSON.stringify(p)} outside the namespaces`, () => {
      assert.equal(checkRelativePath(p), p);
      assertRefused(() => checkManifestPath(p), "namespace", JSON.stringify(p));
    });
  }

  it("quotes a very long path only in part", () => {
    const long = "files/" + "y".repeat(MAX_PATH_LENGTH);
    assert.throws(
      () => checkRelativePath(long),
      (error: CwsError) => error.message.length < 600 && String(error.data?.path).length < 300,
    );
  });
});

describe("windowsNameProblem()", () => {
  const problems: { path: string; mentions: string }[] = [
    { path: "files/CON", mentions: "reserved" },
    { path: "files/con", mentions: "reserved" },
    { path: "files/Con.txt", mentions: "reserved" },
    { path: "files/nul.tar.gz", mentions: "reserved" },
    { path: "files/CON .md", mentions: "reserved" },
    { path: "files/PRN", mentions: "reserved" },
    { path: "files/aux/readme.md", mentions: "reserved" },
    { path: "files/COM1", mentions: "reserved" },
    { path: "files/com9.log", mentions: "reserved" },
    { path: "files/LPT5", mentions: "reserved" },
    { path: "files/COM¹", mentions: "reserved" },
    { path: "files/lpt³.txt", mentions: "reserved" },
    { path: "files/COM1  .txt", mentions: "reserved" },
    { path: "files/nul\u3000.md", mentions: "reserved" },
    { path: "files/a<b", mentions: '"<"' },
    { path: "files/a>b", mentions: '">"' },
    { path: "files/a:b", mentions: '":"' },
    { path: 'files/a"b', mentions: "\\\"" },
    { path: "files/a|b", mentions: '"|"' },
    { path: "files/a?b", mentions: '"?"' },
    { path: "files/a*b", mentions: '"*"' },
    { path: "files/name.", mentions: "trailing dot or space" },
    { path: "files/name ", mentions: "trailing dot or space" },
    { path: "files/dir./a.md", mentions: "trailing dot or space" },
    { path: "files/" + "n".repeat(256), mentions: "256 characters" },
  ];
  for (const { path: p, mentions } of problems) {
    it(`reports ${JSON.stringify(p.slice(0, 40))}`, () => {
      const problem = windowsNameProblem(p);
      assert.ok(problem !== null, "expected a problem");
      assert.ok(problem.includes(mentions), problem);
    });
  }

  const fine = [
    "files/notes.md",
    "files/CONSOLE.md",
    "files/icon.png",
    "files/COM10",
    "files/COM0",
    "files/LPT",
    "files/nul-device.md",
    "files/a.con",
    "files/CO.md",
    "files/COM1x.md",
    "files/AUX_notes.md",
    "files/.gitignore",
    "files/" + "n".repeat(255),
    "codex/sessions/2025/01/02/rollout-2025-01-02T10-00-00-abc.jsonl",
  ];
  for (const p of fine) {
    it(`accepts ${JSON.stringify(p.slice(0, 40))}`, () => assert.equal(windowsNameProblem(p), null));
  }

  it("agrees with a segment-by-segment check on random names", () => {
    // The straightforward rule set, for comparison with the fast path of windowsNameProblem.
    const reference = (relative: string): boolean =>
      relative.split("/").some((segment) => {
        const stem = segment.split(".", 1)[0].trimEnd().toUpperCase();
        return segment.length > 255 || /[<>:"|?*\u0000-\u001f]/.test(segment) || segment.endsWith(".") || segment.endsWith(" ") ||
          /^(?:CON|PRN|AUX|NUL|COM[1-9¹²³]|LPT[1-9¹²³])$/.test(stem);
      });
    const pieces = ["con", "CON", "Com1", "lpt³", "nul", "aux", "prn", "x", "notes", ".", " ", "\u3000", "\t", ":", "/", "a.b", "com", "1", "ı", "ſ", "é"];
    let seed = 7;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    for (let i = 0; i < 20000; i++) {
      let name = "files/";
      const count = 1 + Math.floor(next() * 6);
      for (let j = 0; j < count; j++) name += pieces[Math.floor(next() * pieces.length)];
      assert.equal(windowsNameProblem(name) !== null, reference(name), JSON.stringify(name));
    }
  });
});

describe("findCaseCollisions()", () => {
  const cases: { name: string; paths: string[]; groups: string[][] }[] = [
    { name: "finds nothing in distinct paths", paths: ["files/a", "files/b", "files/a/b"], groups: [] },
    { name: "ignores identical paths given twice", paths: ["files/a", "files/a"], groups: [] },
    { name: "reports two files differing in case", paths: ["files/Readme.md", "files/README.md"], groups: [["files/README.md", "files/Readme.md"]] },
    { name: "reports three spellings as one group", paths: ["files/ab", "files/Ab", "files/b", "files/AB"], groups: [["files/AB", "files/Ab", "files/ab"]] },
    { name: "reports colliding parent folders", paths: ["files/A/x", "files/a/y"], groups: [["files/A", "files/a"]] },
    { name: "reports a file colliding with a folder", paths: ["files/Notes", "files/notes/a.md"], groups: [["files/Notes", "files/notes"]] },
    { name: "reports only the shallowest collision", paths: ["files/A/x", "files/a/x", "files/a/X"], groups: [["files/A", "files/a"]] },
    { name: "treats NFC and NFD spellings as a collision", paths: ["files/caf\u00e9", "files/cafe\u0301"], groups: [["files/cafe\u0301", "files/caf\u00e9"]] },
    { name: "folds non-ASCII case", paths: ["files/Ärger", "files/ärger"], groups: [["files/Ärger", "files/ärger"]] },
    { name: "reports separate groups in order", paths: ["files/b/Q", "files/b/q", "files/A", "files/a"], groups: [["files/A", "files/a"], ["files/b/Q", "files/b/q"]] },
    { name: "sees namespaces differing in case", paths: ["files/a", "Files/a"], groups: [["Files", "files"]] },
    { name: "finds a collision of a folder listed after its content", paths: ["files/A/x", "files/b", "files/A", "files/a"], groups: [["files/A", "files/a"]] },
    { name: "finds a collision between implicit folders", paths: ["files/d/A/x", "files/d/a/y", "files/d"], groups: [["files/d/A", "files/d/a"]] },
  ];
  for (const { name, paths, groups } of cases) {
    it(name, () => assert.deepEqual(findCaseCollisions(paths), groups));
  }

  it("accepts any iterable", () => {
    assert.deepEqual(findCaseCollisions(new Set(["files/A", "files/a"])), [["files/A", "files/a"]]);
  });

  it("agrees with grouping every path and ancestor by its fold, on random trees", () => {
    // The straightforward definition, for comparison with the plain-name shortcut.
    const reference = (paths: string[]): string[][] => {
      const fold = (v: string) => v.normalize("NFC").toLowerCase();
      const byFolded = new Map<string, Set<string>>();
      for (const full of new Set(paths)) {
        const segments = full.split("/");
        for (let depth = 1; depth <= segments.length; depth++) {
          const prefix = segments.slice(0, depth).join("/");
          const members = byFolded.get(fold(prefix)) ?? new Set<string>();
          byFolded.set(fold(prefix), members.add(prefix));
        }
      }
      const groups: string[][] = [];
      for (const [folded, members] of byFolded) {
        if (members.size < 2) continue;
        const segments = folded.split("/");
        const under = segments.slice(1).some((_, i) => (byFolded.get(segments.slice(0, i + 1).join("/"))?.size ?? 0) > 1);
        if (!under) groups.push([...members].sort());
      }
      return groups.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    };
    const names = ["a", "A", "b", "B", "ab", "aB", "\u00e9", "\u00c9", "e\u0301", "a-1", "a.b"];
    let seed = 11;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    const pick = () => names[Math.floor(next() * names.length)];
    for (let round = 0; round < 400; round++) {
      const paths: string[] = [];
      const count = 1 + Math.floor(next() * 8);
      for (let i = 0; i < count; i++) {
        const depth = 1 + Math.floor(next() * 3);
        paths.push(["files", ...Array.from({ length: depth }, pick)].join("/"));
      }
      if (next() < 0.5) paths.sort();
      assert.deepEqual(findCaseCollisions(paths), reference(paths), JSON.stringify(paths));
    }
  });
});

describe("resolveInside()", () => {
  const ok: { root: string; relative: string; module: typeof path.posix; expected: string }[] = [
    { root: "/data/root", relative: "files/a.md", module: path.posix, expected: "/data/root/files/a.md" },
    { root: "/data/root/", relative: "files/a/b", module: path.posix, expected: "/data/root/files/a/b" },
    { root: "/", relative: "files/a", module: path.posix, expected: "/files/a" },
    { root: "/data/root", relative: "files/a:b", module: path.posix, expected: "/data/root/files/a:b" },
    { root: "C:\\Users\\me\\proj", relative: "files/a.md", module: path.win32, expected: "C:\\Users\\me\\proj\\files\\a.md" },
    { root: "C:/Users/me/proj/", relative: "codex/x", module: path.win32, expected: "C:\\Users\\me\\proj\\codex\\x" },
    { root: "\\\\server\\share\\proj", relative: "files/a", module: path.win32, expected: "\\\\server\\share\\proj\\files\\a" },
    { root: "C:\\", relative: "files/a", module: path.win32, expected: "C:\\files\\a" },
  ];
  for (const { root, relative, module, expected } of ok) {
    it(`joins ${JSON.stringify(relative)} onto ${JSON.stringify(root)} (${module === path.win32 ? "win32" : "posix"})`, () => {
      assert.equal(resolveInside(root, relative, module), expected);
    });
  }

  const refused: { root: string; relative: string; module: typeof path.posix; rule: string }[] = [
    { root: "/data/root", relative: "../root2/x", module: path.posix, rule: "dot-segment" },
    { root: "/data/root", relative: "/etc/passwd", module: path.posix, rule: "absolute" },
    { root: "/data/root", relative: "C:\\Windows", module: path.posix, rule: "backslash" },
    { root: "/data/root", relative: "files/a\\b", module: path.posix, rule: "backslash" },
    { root: "/data/root", relative: "", module: path.posix, rule: "empty" },
    { root: "data/root", relative: "files/a", module: path.posix, rule: "root-not-absolute" },
    { root: "C:\\proj", relative: "C:\\Windows", module: path.win32, rule: "absolute" },
    { root: "C:\\proj", relative: "files/a:b", module: path.win32, rule: "windows-name" },
    { root: "C:\\proj", relative: "files/CON", module: path.win32, rule: "windows-name" },
    { root: "C:\\proj", relative: "d:evil", module: path.win32, rule: "absolute" },
    { root: "proj", relative: "files/a", module: path.win32, rule: "root-not-absolute" },
  ];
  for (const { root, relative, module, rule } of refused) {
    it(`refuses ${JSON.stringify(relative)} under ${JSON.stringify(root)} as ${rule}`, () => {
      assert.throws(
        () => resolveInside(root, relative, module),
        (error: unknown) => error instanceof CwsError && error.code === "INVALID_PATH" && error.data?.rule === rule,
      );
    });
  }

  it("defaults to the platform's path module", () => {
    const root = path.sep === "/" ? "/data/root" : "C:\\data\\root";
    assert.equal(resolveInside(root, "files/a"), path.join(root, "files", "a"));
  });
});

describe("isInsideRoot()", () => {
  const rows: { root: string; candidate: string; module: typeof path.posix; caseInsensitive?: boolean; strict?: boolean; inside: boolean }[] = [
    { root: "/data/root", candidate: "/data/root/a", module: path.posix, inside: true },
    { root: "/data/root", candidate: "/data/root", module: path.posix, inside: true },
    { root: "/data/root", candidate: "/data/root", module: path.posix, strict: true, inside: false },
    { root: "/data/root/", candidate: "/data/root/", module: path.posix, inside: true },
    { root: "/data/root", candidate: "/data/root2", module: path.posix, inside: false },
    { root: "/data/root", candidate: "/data/root2/a", module: path.posix, inside: false },
    { root: "/data/root", candidate: "/data", module: path.posix, inside: false },
    { root: "/data/root", candidate: "/data/root/../root2", module: path.posix, inside: false },
    { root: "/data/root", candidate: "/data/other/../root/x", module: path.posix, inside: true },
    { root: "/data/root", candidate: "/DATA/root/x", module: path.posix, inside: false },
    { root: "/data/root", candidate: "/DATA/root/x", module: path.posix, caseInsensitive: true, inside: true },
    { root: "/data/root", candidate: "data/root/x", module: path.posix, inside: false },
    { root: "/", candidate: "/anything", module: path.posix, inside: true },
    { root: "/data/caf\u00e9", candidate: "/data/cafe\u0301/x", module: path.posix, inside: true },
    { root: "C:\\Users\\me\\proj", candidate: "C:\\Users\\me\\proj\\sub", module: path.win32, inside: true },
    { root: "C:\\Users\\me\\proj", candidate: "c:\\users\\ME\\Proj\\sub", module: path.win32, inside: true },
    { root: "C:\\Users\\me\\proj", candidate: "c:\\users\\ME\\Proj\\sub", module: path.win32, caseInsensitive: false, inside: false },
    { root: "C:\\Users\\me\\proj", candidate: "C:/Users/me/proj/sub", module: path.win32, inside: true },
    { root: "C:\\Users\\me\\proj", candidate: "\\\\?\\C:\\Users\\me\\proj\\sub", module: path.win32, inside: true },
    { root: "\\\\?\\C:\\Users\\me\\proj\\", candidate: "C:\\Users\\me\\proj", module: path.win32, inside: true },
    { root: "C:\\Users\\me\\proj", candidate: "C:\\Users\\me\\proj2", module: path.win32, inside: false },
    { root: "C:\\Users\\me\\proj", candidate: "D:\\Users\\me\\proj\\x", module: path.win32, inside: false },
    { root: "\\\\server\\share\\p", candidate: "\\\\?\\UNC\\server\\share\\p\\x", module: path.win32, inside: true },
    { root: "\\\\server\\share\\p", candidate: "\\\\server\\share\\px", module: path.win32, inside: false },
    { root: "C:\\", candidate: "C:\\x", module: path.win32, inside: true },
    { root: "C:\\proj", candidate: "C:proj\\x", module: path.win32, inside: false },
  ];
  for (const { root, candidate, module, inside, ...flags } of rows) {
    const label = `${module === path.win32 ? "win32" : "posix"}${flags.caseInsensitive === undefined ? "" : ` caseInsensitive=${flags.caseInsensitive}`}${flags.strict ? " strict" : ""}`;
    it(`${inside ? "counts" : "does not count"} ${JSON.stringify(candidate)} inside ${JSON.stringify(root)} (${label})`, () => {
      const options = { pathModule: module, ...flags };
      assert.equal(isInsideRoot(root, candidate, options), inside);
    });
  }
});
