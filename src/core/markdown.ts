/**
 * What the quarantine policy needs to know about Markdown: which paths are Markdown, a few
 * numbers that show how much structure a file has (for the drift rule), and a compact line
 * diff that `cws quarantine show` prints so the user can judge a held change.
 *
 * Headings follow CommonMark closely enough for notes and AGENTS.md files:
 * - ATX: up to three spaces, 1–6 `#`, then a space, a tab or the end of the line;
 * - setext: a line of only `=` or only `-` (up to three leading spaces) right under a paragraph
 *   line, which makes that paragraph a heading;
 * - nothing inside a fenced code block (``` or ~~~, closed by the same character at least as
 *   long) counts, nor a YAML front-matter block at the very top (SKILL.md files have one, and
 *   its closing `---` under `name: x` would otherwise read as a setext heading).
 * Indented code, lists and block quotes are recognised only as far as needed to not mistake
 * `- item` or `> quote` followed by `---` for a heading.
 */

/** Numbers describing a Markdown text, compared before and after a change. */
export interface MarkdownStats {
  /** Length of the UTF-8 encoding. */
  bytes: number;
  /** ATX and setext headings outside fenced code and front matter. */
  headings: number;
  /** Lines holding anything but white space (code included). */
  nonEmptyLines: number;
}

/** True for `.md` and `.markdown` files, in any letter case. */
export function isMarkdownPath(path: string): boolean {
  return /\.(?:md|markdown)$/i.test(path);
}

const ATX_HEADING = /^ {0,3}#{1,6}(?:[ \t]|$)/;
const SETEXT_UNDERLINE = /^ {0,3}(?:=+|-+)[ \t]*$/;
const FENCE_OPEN = /^ {0,3}(`{3,}|~{3,})(.*)$/;
const THEMATIC_BREAK = /^ {0,3}(?:(?:-[ \t]*){3,}|(?:\*[ \t]*){3,}|(?:_[ \t]*){3,})$/;
// Lines that start a block other than a paragraph, so a `---` under them is not an underline.
const NOT_PARAGRAPH = /^(?: {4}|\t| {0,3}(?:[-+*][ \t]|\d{1,9}[.)][ \t]|>|<|[-+*]$|\d{1,9}[.)]$))/;

/** Splits text into lines on LF, CRLF or CR, without a phantom last line after a final break. */
function splitLines(text: string): string[] {
  if (text === "") return [];
  const lines = text.split(/\r\n|\n|\r/);
  if (lines.at(-1) === "") lines.pop();
  return lines;
}

/**
 * Counts bytes, headings and non-empty lines of a Markdown text.
 *
 * @example
 * markdownStats("# Title\n\nIntro\n===\n"); // { bytes: 20, headings: 2, nonEmptyLines: 3 }
 */
export function markdownStats(text: string): MarkdownStats {
  const lines = splitLines(text);
  let headings = 0;
  let nonEmptyLines = 0;
  // fence holds the opening marker while inside a fenced code block.
  let fence: string | undefined;
  // paragraph is true while the previous line continues a paragraph a setext underline may close.
  let paragraph = false;
  let start = 0;
  if (lines.length > 0 && /^---[ \t]*$/.test(lines[0])) {
    const close = lines.findIndex((line, i) => i > 0 && /^(?:---|\.\.\.)[ \t]*$/.test(line));
    // An unclosed `---` at the top is a thematic break, not front matter.
    if (close !== -1) start = close + 1;
  }
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.trim() !== "") nonEmptyLines++;
    if (i < start) continue;
    if (fence !== undefined) {
      const close = /^ {0,3}(`{3,}|~{3,})[ \t]*$/.exec(line);
      if (close !== null && close[1][0] === fence[0] && close[1].length >= fence.length) fence = undefined;
      continue;
    }
    const open = FENCE_OPEN.exec(line);
    // A backtick fence's info string may not contain a backtick (CommonMark), so "```a`b" is text.
    if (open !== null && !(open[1][0] === "`" && open[2].includes("`"))) {
      fence = open[1];
      paragraph = false;
      continue;
    }
    if (line.trim() === "") {
      paragraph = false;
      continue;
    }
    if (ATX_HEADING.test(line)) {
      headings++;
      paragraph = false;
      continue;
    }
    if (paragraph && SETEXT_UNDERLINE.test(line)) {
      headings++;
      paragraph = false;
      continue;
    }
    if (THEMATIC_BREAK.test(line)) {
      paragraph = false;
      continue;
    }
    // A line that starts a list item, quote, HTML or indented code does not feed a setext heading;
    // a lazy continuation line of a paragraph (paragraph already true) keeps it going.
    paragraph = paragraph || !NOT_PARAGRAPH.test(line);
  }
  return { bytes: new TextEncoder().encode(text).byteLength, headings, nonEmptyLines };
}

/** Options for {@linkcode markdownDiffSummary}. */
export interface MarkdownDiffOptions {
  /**
   * Most lines of output, headers and the truncation note included.
   *
   * @default {200}
   */
  maxLines?: number;
  /**
   * Unchanged lines shown around each change.
   *
   * @default {3}
   */
  context?: number;
  /**
   * Longest line shown, in characters; longer lines are cut and end with `…`.
   *
   * @default {200}
   */
  maxLineChars?: number;
}

/**
 * The largest edit distance the exact diff explores. Its memory grows with the square of this
 * number (about 4 MiB at 1000), so a near-total rewrite of a big file falls back to showing
 * the changed middle as one removal followed by one addition, which is what it is anyway.
 */
const MAX_EXACT_EDIT_DISTANCE = 1000;

type Op = { kind: " " | "-" | "+"; line: string };

/**
 * A compact unified-style line diff of two texts, bounded in size, for `cws quarantine show`.
 * Returns "" when the texts have the same lines.
 *
 * @example
 * markdownDiffSummary("a\nb\nc\n", "a\nc\n");
 * // "--- before\n+++ after\n@@ -1,3 +1,2 @@\n a\n-b\n c"
 */
export function markdownDiffSummary(beforeText: string, afterText: string, options: MarkdownDiffOptions = {}): string {
  const { maxLines = 200, context = 3, maxLineChars = 200 } = options;
  if (!Number.isInteger(maxLines) || maxLines < 4) throw new RangeError(`maxLines must be an integer of at least 4, got ${maxLines}`);
  if (!Number.isInteger(context) || context < 0) throw new RangeError(`context must be a non-negative integer, got ${context}`);
  const a = splitLines(beforeText);
  const b = splitLines(afterText);
  const ops = diffLines(a, b);
  if (ops.every((op) => op.kind === " ")) return "";

  // Group changes into hunks that share context, as `diff -u` does.
  const hunks: Array<{ from: number; to: number }> = [];
  for (let i = 0; i < ops.length; i++) {
    if (ops[i].kind === " ") continue;
    const from = Math.max(0, i - context);
    let to = i;
    while (to + 1 < ops.length) {
      let next = to + 1;
      while (next < ops.length && ops[next].kind === " ") next++;
      if (next >= ops.length || next - to - 1 > 2 * context) break;
      to = next;
    }
    const end = Math.min(ops.length - 1, to + context);
    const last = hunks.at(-1);
    if (last !== undefined && from <= last.to + 1) last.to = end;
    else hunks.push({ from, to: end });
    i = to;
  }

  // Line numbers at the start of each op, to write the @@ headers.
  const aLine: number[] = [];
  const bLine: number[] = [];
  let x = 1;
  let y = 1;
  for (const op of ops) {
    aLine.push(x);
    bLine.push(y);
    if (op.kind !== "+") x++;
    if (op.kind !== "-") y++;
  }

  const out = ["--- before", "+++ after"];
  let written = 0;
  let total = 0;
  for (const hunk of hunks) total += hunk.to - hunk.from + 2;
  for (const hunk of hunks) {
    const slice = ops.slice(hunk.from, hunk.to + 1);
    const aCount = slice.filter((op) => op.kind !== "+").length;
    const bCount = slice.filter((op) => op.kind !== "-").length;
    const aStart = aCount === 0 ? aLine[hunk.from] - 1 : aLine[hunk.from];
    const bStart = bCount === 0 ? bLine[hunk.from] - 1 : bLine[hunk.from];
    const rows = [`@@ -${aStart},${aCount} +${bStart},${bCount} @@`, ...slice.map((op) => op.kind + clip(op.line, maxLineChars))];
    for (const row of rows) {
      // Keep one line free for the note that says how much was left out.
      if (out.length >= maxLines - 1) {
        out.push(`… ${total - written} more diff lines not shown`);
        return out.join("\n");
      }
      out.push(row);
      written++;
    }
  }
  return out.join("\n");
}

function clip(line: string, maxChars: number): string {
  return line.length <= maxChars ? line : `${line.slice(0, Math.max(0, maxChars - 1))}…`;
}

/**
 * Line diff by Myers' O(ND) algorithm after trimming the common prefix and suffix, so a small
 * edit in a big file costs little. Beyond {@link MAX_EXACT_EDIT_DISTANCE} the middle is reported
 * as removed then added.
 */
function diffLines(a: readonly string[], b: readonly string[]): Op[] {
  let prefix = 0;
  while (prefix < a.length && prefix < b.length && a[prefix] === b[prefix]) prefix++;
  let suffix = 0;
  while (suffix < a.length - prefix && suffix < b.length - prefix && a[a.length - 1 - suffix] === b[b.length - 1 - suffix]) suffix++;
  const midA = a.slice(prefix, a.length - suffix);
  const midB = b.slice(prefix, b.length - suffix);
  const middle =
    myers(midA, midB) ?? [...midA.map((line): Op => ({ kind: "-", line })), ...midB.map((line): Op => ({ kind: "+", line }))];
  return [
    ...a.slice(0, prefix).map((line): Op => ({ kind: " ", line })),
    ...middle,
    ...a.slice(a.length - suffix).map((line): Op => ({ kind: " ", line })),
  ];
}

/** Myers' greedy forward search with a saved frontier per step; undefined past the cap. */
function myers(a: readonly string[], b: readonly string[]): Op[] | undefined {
  const n = a.length;
  const m = b.length;
  const max = Math.min(n + m, MAX_EXACT_EDIT_DISTANCE);
  // frontier[d][k + d] is the furthest x reached on diagonal k = x - y with d edits.
  const frontier: Int32Array[] = [];
  let previous = new Int32Array(1);
  for (let d = 0; d <= max; d++) {
    const current = new Int32Array(2 * d + 1);
    for (let k = -d; k <= d; k += 2) {
      let x: number;
      if (d === 0) x = 0;
      else if (k === -d || (k !== d && previous[k - 1 + (d - 1)] < previous[k + 1 + (d - 1)])) x = previous[k + 1 + (d - 1)];
      else x = previous[k - 1 + (d - 1)] + 1;
      let y = x - k;
      while (x < n && y < m && a[x] === b[y]) {
        x++;
        y++;
      }
      current[k + d] = x;
      if (x >= n && y >= m) {
        frontier.push(current);
        return backtrack(frontier, a, b);
      }
    }
    frontier.push(current);
    previous = current;
  }
  return undefined;
}

function backtrack(frontier: readonly Int32Array[], a: readonly string[], b: readonly string[]): Op[] {
  const ops: Op[] = [];
  let x = a.length;
  let y = b.length;
  for (let d = frontier.length - 1; d > 0; d--) {
    const previous = frontier[d - 1];
    const k = x - y;
    const down = k === -d || (k !== d && previous[k - 1 + (d - 1)] < previous[k + 1 + (d - 1)]);
    const prevK = down ? k + 1 : k - 1;
    const prevX = previous[prevK + (d - 1)];
    const prevY = prevX - prevK;
    // The edit of step d led from (prevX, prevY) to (midX, midY); equal lines follow it up to (x, y).
    const midX = down ? prevX : prevX + 1;
    const midY = down ? prevY + 1 : prevY;
    while (x > midX && y > midY) {
      ops.push({ kind: " ", line: a[x - 1] });
      x--;
      y--;
    }
    if (down) ops.push({ kind: "+", line: b[prevY] });
    else ops.push({ kind: "-", line: a[prevX] });
    x = prevX;
    y = prevY;
  }
  while (x > 0 && y > 0) {
    ops.push({ kind: " ", line: a[x - 1] });
    x--;
    y--;
  }
  return ops.reverse();
}
