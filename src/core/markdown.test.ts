import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isMarkdownPath, markdownDiffSummary, markdownStats } from "./markdown.ts";

describe("markdownStats()", () => {
  const cases: Array<{ name: string; text: string; headings: number; nonEmptyLines?: number }> = [
    { name: "counts ATX headings of every level", text: "# a\n## b\n###### c\n####### not\n#not\n", headings: 3 },
    { name: "counts an empty ATX heading", text: "#\n", headings: 1 },
    { name: "ignores a heading indented four spaces (code)", text: "    # code\n", headings: 0 },
    { name: "counts setext headings", text: "Title\n=====\n\nSub\n---\n", headings: 2 },
    { name: "counts a multi-line paragraph underlined once", text: "one\ntwo\n===\n", headings: 1 },
    { name: "does not read a thematic break after a blank line as a heading", text: "text\n\n---\n", headings: 0 },
    { name: "does not read --- under a list item as a heading", text: "- item\n---\n", headings: 0 },
    { name: "ignores headings in backtick fences", text: "```sh\n# comment\n```\n# real\n", headings: 1 },
    { name: "ignores headings in tilde fences closed by a longer fence", text: "~~~\n# no\n~~~~\n# yes\n", headings: 1 },
    { name: "keeps a fence open past a shorter or different closer", text: "````\n# no\n```\n~~~~\n# no\n````\n", headings: 0 },
    { name: "treats an unclosed fence as running to the end", text: "```\n# no\n", headings: 0 },
    { name: "skips YAML front matter", text: "---\nname: skill\ndescription: x\n---\n# Skill\n", headings: 1 },
    { name: "handles CRLF line ends", text: "# a\r\nb\r\n---\r\n", headings: 2 },
    { name: "counts non-empty lines, code included", text: "a\n\n  \n```\nb\n```\n", headings: 0, nonEmptyLines: 4 },
  ];
  for (const { name, text, headings, nonEmptyLines } of cases) {
    it(name, () => {
      const stats = markdownStats(text);
      assert.equal(stats.headings, headings);
      if (nonEmptyLines !== undefined) assert.equal(stats.nonEmptyLines, nonEmptyLines);
    });
  }

  it("counts UTF-8 bytes, not characters", () => {
    assert.equal(markdownStats("é€😀").bytes, 2 + 3 + 4);
    assert.deepEqual(markdownStats(""), { bytes: 0, headings: 0, nonEmptyLines: 0 });
  });
});

describe("isMarkdownPath()", () => {
  it("recognises .md and .markdown in any case", () => {
    assert.deepEqual(
      ["a.md", "A.MD", "b.Markdown", "c.mdx", "d.md.bak", "md"].map(isMarkdownPath),
      [true, true, true, false, false, false],
    );
  });
});

describe("markdownDiffSummary()", () => {
  it("returns nothing for texts with the same lines", () => {
    assert.equal(markdownDiffSummary("a\nb\n", "a\nb"), "");
  });

  it("shows a removal with its context and line numbers", () => {
    assert.equal(markdownDiffSummary("a\nb\nc\n", "a\nc\n"), "--- before\n+++ after\n@@ -1,3 +1,2 @@\n a\n-b\n c");
  });

  it("produces a minimal diff: a changed line is one removal and one addition", () => {
    const before = Array.from({ length: 20 }, (_, i) => `line ${i}`);
    const after = [...before];
    after[10] = "changed";
    const diff = markdownDiffSummary(before.join("\n"), after.join("\n"));
    assert.deepEqual(
      diff.split("\n").filter((l) => /^[-+][^-+]/.test(l)),
      ["-line 10", "+changed"],
    );
    assert.match(diff, /^@@ -8,7 \+8,7 @@$/m);
  });

  it("splits distant changes into hunks", () => {
    const before = Array.from({ length: 40 }, (_, i) => `line ${i}`);
    const after = before.filter((_, i) => i !== 2 && i !== 30);
    const hunks = markdownDiffSummary(before.join("\n"), after.join("\n")).split("\n").filter((l) => l.startsWith("@@"));
    assert.deepEqual(hunks, ["@@ -1,6 +1,5 @@", "@@ -28,7 +27,6 @@"]);
  });

  it("reports an addition to an empty text", () => {
    assert.equal(markdownDiffSummary("", "x\ny\n"), "--- before\n+++ after\n@@ -0,0 +1,2 @@\n+x\n+y");
  });

  it("bounds its output and says how much was left out", () => {
    const before = Array.from({ length: 5000 }, (_, i) => `# heading ${i}\n${"text ".repeat(100)}`).join("\n");
    const diff = markdownDiffSummary(before, "# only this\n", { maxLines: 50, maxLineChars: 40 });
    const lines = diff.split("\n");
    assert.equal(lines.length, 50);
    assert.match(lines.at(-1) as string, /^… \d+ more diff lines not shown$/);
    assert.ok(lines.every((l) => l.length <= 41));
  });

  it("stays exact for a cut that removes most of a big file", () => {
    const before = Array.from({ length: 3000 }, (_, i) => `line ${i}`);
    const after = before.slice(0, 300);
    const diff = markdownDiffSummary(before.join("\n"), after.join("\n"));
    const lines = diff.split("\n");
    assert.equal(lines.length, 200);
    assert.equal(lines[2], "@@ -298,2703 +298,3 @@");
  });

  it("reconstructs both texts with a minimal number of changed lines (seeded random cases)", () => {
    let seed = 42;
    const random = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 16) % n;
    };
    for (let round = 0; round < 300; round++) {
      const a = Array.from({ length: random(12) }, () => "abcd"[random(4)]);
      const b = Array.from({ length: random(12) }, () => "abcd"[random(4)]);
      const diff = markdownDiffSummary(a.join("\n"), b.join("\n"), { context: 1_000, maxLines: 1_000 });
      const body = diff === "" ? a.map((l) => ` ${l}`) : diff.split("\n").slice(3);
      assert.deepEqual(body.filter((l) => l[0] !== "+").map((l) => l.slice(1)), a);
      assert.deepEqual(body.filter((l) => l[0] !== "-").map((l) => l.slice(1)), b);
      // The longest common subsequence, by dynamic programming, fixes the least number of edits.
      const lcs = Array.from({ length: a.length + 1 }, () => new Array<number>(b.length + 1).fill(0));
      for (let i = a.length - 1; i >= 0; i--) {
        for (let j = b.length - 1; j >= 0; j--) {
          lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
        }
      }
      assert.equal(body.filter((l) => l[0] !== " ").length, a.length + b.length - 2 * lcs[0][0]);
    }
  });

  it("falls back to remove-then-add for a rewrite beyond the exact limit", () => {
    const before = Array.from({ length: 1500 }, (_, i) => `old ${i}`);
    const after = Array.from({ length: 1500 }, (_, i) => `new ${i}`);
    const diff = markdownDiffSummary(before.join("\n"), after.join("\n"), { maxLines: 10 });
    assert.deepEqual(diff.split("\n").slice(2, 5), ["@@ -1,1500 +1,1500 @@", "-old 0", "-old 1"]);
  });
});
