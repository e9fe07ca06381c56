/**
 * A small glob matcher for manifest paths, used by the quarantine policy's `protectedGlobs`.
 *
 * Syntax (the subset users know from .gitignore and rsync filters):
 *   `**`  as a whole segment matches zero or more path segments (`files/**\/AGENTS.md`
 *         matches `files/AGENTS.md` and `files/a/b/AGENTS.md`);
 *   `*`   matches any run of characters inside one segment (never `/`);
 *   `?`   matches exactly one character inside one segment.
 * Every other character matches itself. There are no character classes, braces or escapes,
 * so no pattern can surprise anyone. Matching is case-insensitive: the devices are mostly
 * Windows machines, where `Agents.md` and `AGENTS.md` are the same file, and a protection rule
 * that misses a file costs data while one that matches too much only costs a confirmation.
 *
 * It is written by hand rather than compiled to a regular expression because a pattern with
 * several `**` turns into nested `(.*\/)?` groups whose backtracking can blow up on a long
 * path; the two-pointer wildcard algorithm used here is O(pattern × path) in the worst case.
 */

/** The longest pattern accepted, in UTF-16 code units (the settings schema enforces it). */
export const MAX_GLOB_LENGTH = 1024;

/** A compiled glob: its segments, lower-cased once. */
export interface Glob {
  readonly source: string;
  readonly segments: readonly string[];
}

/**
 * Compiles a glob for repeated matching.
 *
 * @throws {TypeError} when the pattern is empty, too long, or has an empty segment.
 */
export function compileGlob(pattern: string): Glob {
  const problem = globProblem(pattern);
  if (problem !== undefined) throw new TypeError(`Cannot use glob ${JSON.stringify(pattern)} as it ${problem}`);
  // Consecutive `**` segments mean the same as one and would only cost time.
  const segments: string[] = [];
  for (const segment of pattern.toLowerCase().split("/")) {
    if (segment === "**" && segments.at(-1) === "**") continue;
    segments.push(segment);
  }
  return { source: pattern, segments };
}

/** Says what is wrong with a glob pattern, or returns undefined when it is usable. */
export function globProblem(pattern: string): string | undefined {
  if (pattern.length === 0) return "is empty";
  if (pattern.length > MAX_GLOB_LENGTH) return `is longer than ${MAX_GLOB_LENGTH} characters`;
  if (pattern.startsWith("/")) return "is absolute (manifest paths are relative, like files/AGENTS.md)";
  if (pattern.split("/").some((segment) => segment === "")) return "has an empty segment (a doubled or trailing /)";
  return undefined;
}

/** True when the `/`-separated path matches the compiled glob. */
export function matchGlob(glob: Glob, path: string): boolean {
  const segments = path.toLowerCase().split("/");
  return wildcardMatch(glob.segments, segments, (p) => p === "**", matchSegment);
}

/** The source of the first glob that matches the path, or undefined when none does. */
export function firstMatchingGlob(globs: readonly Glob[], path: string): string | undefined {
  for (const glob of globs) if (matchGlob(glob, path)) return glob.source;
  return undefined;
}

function matchSegment(pattern: string, segment: string): boolean {
  // Inside a segment a run of stars is one star (so `a**b` is `a*b`), and `?` is any character.
  return wildcardMatch(
    pattern,
    segment,
    (p) => p === "*",
    (p, s) => p === "?" || p === s,
  );
}

/**
 * The classic two-pointer wildcard match over sequences: on a mismatch it returns to the
 * latest star and lets it swallow one more element. Only the latest star needs revisiting,
 * because any match an earlier star could make is also reachable through the later one.
 */
function wildcardMatch<T>(
  pattern: ArrayLike<T>,
  subject: ArrayLike<T>,
  isStar: (p: T) => boolean,
  matchOne: (p: T, s: T) => boolean,
): boolean {
  let p = 0;
  let s = 0;
  let starP = -1;
  let starS = 0;
  while (s < subject.length) {
    if (p < pattern.length && isStar(pattern[p])) {
      starP = p;
      starS = s;
      p++;
    } else if (p < pattern.length && matchOne(pattern[p], subject[s])) {
      p++;
      s++;
    } else if (starP !== -1) {
      p = starP + 1;
      starS++;
      s = starS;
    } else {
      return false;
    }
  }
  while (p < pattern.length && isStar(pattern[p])) p++;
  return p === pattern.length;
}
