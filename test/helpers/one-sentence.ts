/**
 * The check that a failed command said one sentence: the CLI's failure line on stderr, without a
 * stack trace. A sync writes one progress line per phase before it when stderr is not a terminal
 * (src/cli/output.ts), and those lines are not part of the failure.
 */
import assert from "node:assert/strict";

/** The phase lines of src/cli/output.ts's Progress on a non-terminal. */
const PROGRESS_LINE = /^cws: (scanning the folder|comparing with the server|uploading changes|committing on the server|writing server changes)$/;

/** Asserts a failure is one line on stderr (after the progress lines), without a stack trace, and returns it. */
export function oneSentence(result: { stderr: string }): string {
  const lines = result.stderr.trim().split("\n").filter((line) => !PROGRESS_LINE.test(line));
  assert.equal(lines.length, 1, `one line expected, got:\n${result.stderr}`);
  assert.doesNotMatch(result.stderr, /^\s+at /m, "no stack trace");
  assert.match(lines[0], /^cws: /);
  return lines[0];
}
