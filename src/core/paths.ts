/**
 * Path rules for manifests and for joining manifest paths onto real folders.
 *
 * A manifest path is relative, `/`-separated and NFC, names one file or folder, and starts with
 * a namespace: `files/…` (the superproject folder) or `codex/…` (its Codex artifacts). Every
 * path that arrives from a peer or from disk goes through `checkManifestPath` before it is
 * used, and every path that is turned into a real file name goes through `resolveInside`, so a
 * hostile or corrupted manifest can never name something outside the folder it belongs to.
 *
 * Windows adds rules of its own (reserved device names, forbidden characters, trailing dots and
 * spaces) and folds case, so `windowsNameProblem` and `findCaseCollisions` let a caller refuse
 * or report names that a Windows device could not hold, before they reach one.
 *
 * Pure string work: no file system, no process state (`path.resolve` is avoided on purpose
 * because it reads the current directory).
 */
import path from "node:path";
import { CwsError } from "../errors.ts";
import { MAX_PATH_LENGTH } from "./manifest.ts";

/** The namespaces a manifest path may start with. */
export const PATH_NAMESPACES = ["files", "codex"] as const;
export type PathNamespace = (typeof PATH_NAMESPACES)[number];

/** The rule a refused path broke; carried in `CwsError.data.rule` so programs can act on it. */
export const PATH_RULES = [
  "empty", // the path is the empty string
  "too-long", // more than MAX_PATH_LENGTH UTF-16 code units
  "control-character", // NUL or another C0 control character (U+0000–U+001F)
  "absolute", // starts with `/` or `\` (`\\server\share`), or on Windows with a drive letter (`C:\x`, `C:x`)
  "backslash", // a `\` anywhere: manifest paths separate folders with `/` only
  "empty-segment", // `a//b` or a trailing `/`
  "dot-segment", // a `.` or `..` segment
  "malformed-unicode", // an unpaired UTF-16 surrogate, which cannot be stored as UTF-8
  "not-nfc", // not in Unicode normalization form C
  "namespace", // the first segment is not `files` or `codex`
] as const;
export type PathRule = (typeof PATH_RULES)[number];

/** The longest single file or folder name Windows (NTFS) accepts, in UTF-16 code units. */
export const MAX_WINDOWS_NAME_LENGTH = 255;

/** The `node:path` flavours `resolveInside` and `isInsideRoot` accept. */
export type PathModule = typeof path.posix | typeof path.win32;

/** How many code units of a refused path its error message quotes, so messages stay readable. */
const QUOTED_PATH_LENGTH = 200;

// C0 control characters: NUL to U+001F. JSON.stringify in `quote` escapes them in messages.
const CONTROL_CHARACTER = /[\u0000-\u001f]/;
const DRIVE_LETTER = /^[A-Za-z]:/;

/**
 * Returns `relative` unchanged when it is a valid relative `/`-path; throws otherwise.
 *
 * A leading drive letter (`C:x`) makes a path absolute only where it is joined onto a Windows
 * folder, so that rule applies with `windows` alone: on Linux and macOS `Q:A notes.md` is an
 * ordinary name (macOS stores Finder's `Q/A notes` so), and a scan that found one must not fail.
 * Whether such a name may travel to other devices is portable-names.ts's question.
 *
 * @throws {CwsError} INVALID_PATH naming the path and the broken rule (`data.rule`).
 * @example checkRelativePath("files/notes/a.md") // "files/notes/a.md"
 */
export function checkRelativePath(relative: string, options: { windows?: boolean } = {}): string {
  if (relative.length === 0) {
    throw invalidPath(relative, "empty", 'a manifest path names a file or folder, like "files/notes.md"');
  }
  // Length comes before the other rules so a huge path is refused before it is scanned.
  if (relative.length > MAX_PATH_LENGTH) {
    throw invalidPath(
      relative,
      "too-long",
      `it has ${relative.length} characters, more than the limit of ${MAX_PATH_LENGTH}; shorten its folder or file names`,
    );
  }
  const control = CONTROL_CHARACTER.exec(relative);
  if (control !== null) {
    const codePoint = control[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, "0");
    throw invalidPath(
      relative,
      "control-character",
      `it contains the control character U+${codePoint} at position ${control.index}; rename it without control characters`,
    );
  }
  // Absolute forms are checked before backslashes so `C:\x` and `\\server\share` are reported as
  // what they are rather than as a stray separator.
  if (relative.startsWith("/") || relative.startsWith("\\") || (options.windows === true && DRIVE_LETTER.test(relative))) {
    throw invalidPath(
      relative,
      "absolute",
      'it is absolute (it starts with "/", "\\" or a drive letter); manifest paths are relative, like "files/notes.md"',
    );
  }
  if (relative.includes("\\")) {
    throw invalidPath(relative, "backslash", 'it contains a backslash; manifest paths separate folders with "/" only');
  }
  const segments = relative.split("/");
  if (segments.includes("")) {
    throw invalidPath(relative, "empty-segment", 'it has an empty segment (a doubled or trailing "/")');
  }
  if (segments.some((segment) => segment === "." || segment === "..")) {
    throw invalidPath(
      relative,
      "dot-segment",
      'it has a "." or ".." segment, which could step outside the folder it belongs to',
    );
  }
  if (!relative.isWellFormed()) {
    throw invalidPath(
      relative,
      "malformed-unicode",
      "it contains an unpaired UTF-16 surrogate, which no file system can store as UTF-8",
    );
  }
  if (relative.normalize("NFC") !== relative) {
    throw invalidPath(
      relative,
      "not-nfc",
      'it is not in Unicode NFC form; send paths normalized with .normalize("NFC")',
    );
  }
  return relative;
}

/**
 * Returns `manifestPath` unchanged when it is a valid relative path whose first segment is a
 * namespace (`files` or `codex`); throws otherwise. The bare namespace (`files`) is accepted,
 * since it names the namespace's root folder.
 *
 * @throws {CwsError} INVALID_PATH naming the path and the broken rule (`data.rule`).
 */
export function checkManifestPath(manifestPath: string): string {
  checkRelativePath(manifestPath);
  const first = manifestPath.split("/", 1)[0];
  if (!(PATH_NAMESPACES as readonly string[]).includes(first)) {
    throw invalidPath(
      manifestPath,
      "namespace",
      `its first segment must be "files" or "codex", not ${quote(first)}`,
    );
  }
  return manifestPath;
}

// Device names Windows reserves in every folder, with or without an extension. Windows treats
// the superscript digits ¹ ² ³ (ISO 8859-1) as digits in COM and LPT names too.
const WINDOWS_RESERVED_NAME = /^(?:CON|PRN|AUX|NUL|COM[1-9¹²³]|LPT[1-9¹²³])$/;
const WINDOWS_FORBIDDEN_CHARACTER = /[<>:"|?*\u0000-\u001f]/;
// What String.prototype.trimEnd removes (the same set as \s).
const WHITESPACE = /\s/;
// Matches every path that has a forbidden character, a segment ending in a dot or space, or a
// segment whose stem is a reserved name (case-insensitive: no other character upper-cases to
// the letters of these names), and few others; a match is then checked segment by segment.
const MAYBE_WINDOWS_PROBLEM = /[<>:"|?*\u0000-\u001f]|[. ](?:\/|$)|(?:^|\/)(?:CON|PRN|AUX|NUL|COM[1-9¹²³]|LPT[1-9¹²³])\s*(?:[./]|$)/i;

/**
 * Says why Windows cannot hold `relative` (a `/`-path), or returns null when it can.
 *
 * Checks each segment for reserved device names (`CON`, `nul.txt`, `COM¹`…), the characters
 * `<>:"|?*` and control characters, a trailing dot or space, and a length over 255.
 */
export function windowsNameProblem(relative: string): string | null {
  // Almost every path has none of the problems: one search of the whole path rules them out
  // before it is cut into segments.
  if (relative.length <= MAX_WINDOWS_NAME_LENGTH && !MAYBE_WINDOWS_PROBLEM.test(relative)) return null;
  for (const segment of relative.split("/")) {
    const problem = windowsSegmentProblem(segment);
    // The path is quoted only for a problem: quoting every segment of every path cost more
    // than the checks themselves on a large tree.
    if (problem !== null) return `Windows cannot hold the name ${quote(segment)} in ${quote(relative)}: ${problem}`;
  }
  return null;
}

/** Why Windows cannot hold one name, or null. */
function windowsSegmentProblem(segment: string): string | null {
  if (segment.length > MAX_WINDOWS_NAME_LENGTH) {
    return `it has ${segment.length} characters, more than ${MAX_WINDOWS_NAME_LENGTH}`;
  }
  const forbidden = WINDOWS_FORBIDDEN_CHARACTER.exec(segment);
  if (forbidden !== null) return `it contains the character ${JSON.stringify(forbidden[0])}`;
  if (segment.endsWith(".") || segment.endsWith(" ")) return "Windows drops a trailing dot or space from names";
  // Windows looks at the part before the first dot, ignoring trailing spaces, so `con.txt`
  // and `CON .md` name the console device just like `CON`. Reserved names have 3 or 4
  // characters, so longer stems are not even upper-cased.
  const dot = segment.indexOf(".");
  const stemEnd = dot === -1 ? segment.length : dot;
  if (stemEnd < 3 || (stemEnd > 4 && !WHITESPACE.test(segment.charAt(4)))) return null;
  const stem = segment.slice(0, stemEnd).trimEnd().toUpperCase();
  if (WINDOWS_RESERVED_NAME.test(stem)) return `${stem} is a reserved device name, also with an extension`;
  return null;
}

/**
 * Finds paths that are equal once case is folded (`toLowerCase` after NFC) but not identical,
 * which a case-insensitive file system (Windows, default macOS) would store as one entry.
 *
 * Folders count too: `files/A/x` and `files/a/y` collide as the folders `files/A` and `files/a`.
 * Only the shallowest collisions are reported: a collision below a folder that already collides
 * is left out, because renaming the folder is what the user must do first.
 *
 * @returns groups of colliding paths, each sorted, the groups sorted by their first path.
 */
export function findCaseCollisions(paths: Iterable<string>): string[][] {
  // Lower-case ASCII is its own fold, so two different names fold alike only if one of them
  // has an upper-case letter or a non-ASCII character ("special"). Only special paths and
  // their special ancestors are folded and grouped; whether a plain path or folder folds alike
  // is looked up among the plain ones. Large trees have few special names, so this is about a
  // pass over the paths instead of a fold and a map entry for each.
  const plain: string[] = [];
  const plainAncestors = new Set<string>();
  const special = new Set<string>();
  for (const full of paths) {
    if (!SPECIAL.test(full)) {
      plain.push(full);
      continue;
    }
    let prefix = full;
    while (!special.has(prefix)) {
      special.add(prefix);
      const slash = prefix.lastIndexOf("/");
      if (slash === -1) break;
      prefix = prefix.slice(0, slash);
      if (!SPECIAL.test(prefix)) {
        // Plain from here up: record them, as a special name elsewhere may fold to one.
        for (let up = prefix; !plainAncestors.has(up); ) {
          plainAncestors.add(up);
          const next = up.lastIndexOf("/");
          if (next === -1) break;
          up = up.slice(0, next);
        }
        break;
      }
    }
  }
  if (special.size === 0) return [];
  if (!isSortedStrings(plain)) plain.sort(compareCodeUnits);
  // A plain string exists when it is a plain path, a plain ancestor of a special one, or an
  // ancestor of a plain path (the sorted block of paths that start with it and "/").
  const plainExists = (value: string): boolean => {
    if (plainAncestors.has(value)) return true;
    const at = lowerBound(plain, value);
    if (at < plain.length && plain[at] === value) return true;
    const below = lowerBound(plain, `${value}/`, at);
    return below < plain.length && plain[below].startsWith(`${value}/`);
  };
  const byFolded = new Map<string, Set<string>>();
  for (const name of special) {
    const folded = foldCase(name);
    let members = byFolded.get(folded);
    if (members === undefined) {
      byFolded.set(folded, (members = new Set()));
      if (plainExists(folded)) members.add(folded);
    }
    members.add(name);
  }
  const colliding = (folded: string) => (byFolded.get(folded)?.size ?? 0) > 1;
  const groups: string[][] = [];
  for (const [folded, members] of byFolded) {
    if (members.size < 2) continue;
    // Folding keeps "/" where it was, so the folded ancestors are prefixes of the folded key.
    const segments = folded.split("/");
    let underCollision = false;
    for (let depth = 1; depth < segments.length && !underCollision; depth++) {
      underCollision = colliding(segments.slice(0, depth).join("/"));
    }
    if (!underCollision) groups.push([...members].sort(compareCodeUnits));
  }
  return groups.sort((a, b) => compareCodeUnits(a[0], b[0]));
}

// Upper-case ASCII or anything not ASCII: the characters whose fold may differ from themselves.
const SPECIAL = /[A-Z]|[^\x00-\x7f]/;

function isSortedStrings(values: readonly string[]): boolean {
  for (let i = 1; i < values.length; i++) if (values[i - 1] > values[i]) return false;
  return true;
}

/** The first index from `from` whose value is not below `value`, in sorted `values`. */
function lowerBound(values: readonly string[], value: string, from = 0): number {
  let lo = from;
  let hi = values.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (values[mid] < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Joins a relative `/`-path onto an absolute root and returns the result, refusing anything
 * that would not land strictly inside the root. With the win32 path module the name must also
 * be one Windows can hold, since `a:b` would open an alternate data stream and `CON` the console.
 *
 * @param pathModule `path.posix` or `path.win32`; defaults to the platform's.
 * @throws {CwsError} INVALID_PATH when `relative` breaks a path rule, `root` is not absolute,
 *   or the result is not strictly inside `root`.
 */
export function resolveInside(root: string, relative: string, pathModule: PathModule = path): string {
  const win32 = pathModule.sep === "\\";
  checkRelativePath(relative, { windows: win32 });
  if (!pathModule.isAbsolute(root)) {
    throw new CwsError("INVALID_PATH", `Cannot place ${quote(relative)} under ${quote(root)}: the root is not absolute`, {
      data: { path: truncate(relative), root: truncate(root), rule: "root-not-absolute" },
    });
  }
  if (win32) {
    const problem = windowsNameProblem(relative);
    if (problem !== null) {
      throw new CwsError("INVALID_PATH", `Cannot place ${quote(relative)} under ${quote(root)}: ${problem}`, {
        data: { path: truncate(relative), root: truncate(root), rule: "windows-name" },
      });
    }
  }
  // join (unlike resolve) is pure: it never consults the current directory.
  const joined = pathModule.join(root, ...relative.split("/"));
  if (!isInsideRoot(root, joined, { caseInsensitive: win32, strict: true, pathModule })) {
    throw new CwsError(
      "INVALID_PATH",
      `Cannot place ${quote(relative)} under ${quote(root)}: the result ${quote(joined)} is not inside the root`,
      { data: { path: truncate(relative), root: truncate(root), rule: "escapes-root" } },
    );
  }
  return joined;
}

export interface InsideRootOptions {
  /** Compare case-insensitively (Windows). Defaults to true for `path.win32`, false otherwise. */
  caseInsensitive?: boolean;
  /** Refuse the root itself, accepting only paths strictly below it. Defaults to false. */
  strict?: boolean;
  /** `path.posix` or `path.win32`; defaults to the platform's. */
  pathModule?: PathModule;
}

/**
 * True when the absolute path `candidate` is `root` itself (unless `strict`) or lies below it.
 *
 * Separator-aware: `/data/root2` is not inside `/data/root`. Both paths are normalized first
 * (`.`/`..` resolved, trailing separators dropped, NFC, and on win32 `/` read as `\` and the
 * `\\?\` prefix stripped), so a Codex `cwd` written in another spelling still matches. A relative
 * path is never inside anything.
 */
export function isInsideRoot(root: string, candidate: string, options: InsideRootOptions = {}): boolean {
  const pathModule = options.pathModule ?? path;
  const caseInsensitive = options.caseInsensitive ?? pathModule.sep === "\\";
  const normalizedRoot = normalizeAbsolute(root, pathModule, caseInsensitive);
  const normalizedCandidate = normalizeAbsolute(candidate, pathModule, caseInsensitive);
  if (normalizedRoot === null || normalizedCandidate === null) return false;
  if (normalizedCandidate === normalizedRoot) return options.strict !== true;
  // A file-system root (`/`, `C:\`) already ends with its separator.
  const prefix = normalizedRoot.endsWith(pathModule.sep) ? normalizedRoot : normalizedRoot + pathModule.sep;
  return normalizedCandidate.startsWith(prefix);
}

/** The comparable form of an absolute path, or null when it is not absolute. */
function normalizeAbsolute(input: string, pathModule: PathModule, caseInsensitive: boolean): string | null {
  let value = input.normalize("NFC");
  if (pathModule.sep === "\\") {
    // Win32 long-path prefixes name the same file as the plain form.
    value = value.replace(/^[\\/]{2}\?[\\/]UNC[\\/]/i, "\\\\").replace(/^[\\/]{2}\?[\\/]/, "");
  }
  if (!pathModule.isAbsolute(value)) return null;
  value = pathModule.normalize(value);
  const rootLength = pathModule.parse(value).root.length;
  while (value.length > rootLength && value.endsWith(pathModule.sep)) value = value.slice(0, -1);
  return caseInsensitive ? value.toLowerCase() : value;
}

function foldCase(value: string): string {
  // ASCII is already NFC; skipping the normalisation halves the cost on a large tree.
  return (NON_ASCII.test(value) ? value.normalize("NFC") : value).toLowerCase();
}

const NON_ASCII = /[^\x00-\x7f]/;

function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function invalidPath(relative: string, rule: PathRule, why: string): CwsError {
  const subject = relative.length === 0 ? "an empty path" : `path ${quote(relative)}`;
  return new CwsError("INVALID_PATH", `Cannot use ${subject}: ${why}`, {
    data: { path: truncate(relative), rule },
  });
}

/** A path quoted for a message: JSON escapes make control characters visible. */
function quote(value: string): string {
  return JSON.stringify(truncate(value));
}

function truncate(value: string): string {
  return value.length > QUOTED_PATH_LENGTH ? `${value.slice(0, QUOTED_PATH_LENGTH)}…` : value;
}

/**
 * A manifest path as the user knows it: the folder's own files lose the manifest's internal
 * `files/` prefix (the folder itself shows as `.`); Codex threads keep their `codex/` prefix,
 * which tells them apart from the folder's files.
 */
export function displayPath(manifestPath: string): string {
  if (manifestPath === "files") return ".";
  return manifestPath.startsWith("files/") ? manifestPath.slice("files/".length) : manifestPath;
}
