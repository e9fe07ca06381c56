/**
 * Names that travel (DESIGN §6): the trees the server accepts are the trees every device can
 * hold. A tree travels when none of its entries
 *
 * - lies under a file (`files/a.md` and `files/a.md/b`): no file system holds both;
 * - has a name over 255 bytes of UTF-8 (ext4, APFS) or 255 UTF-16 units (NTFS);
 * - has a name Windows cannot hold (`<>:"|?*`, control characters, a trailing dot or space,
 *   `CON`, `NUL`, `COM1`… with any extension);
 * - is a bare namespace (`files` or `codex`): the namespaces are the roots, not entries.
 *
 * The rule is written once, here, and used on both sides: a device keeps entries that cannot
 * travel on itself and lists them (`holdUntravelable`), and the agent refuses a commit that
 * brings one (`checkTravellingTree`), so no device can store a head another cannot apply.
 *
 * Pure: no file system, no process state.
 */
import { CwsError } from "../errors.ts";
import { firstIndexBelow, type Manifest, type ManifestEntry } from "./manifest.ts";
import { PATH_NAMESPACES, windowsNameProblem } from "./paths.ts";

/** The longest file or folder name ext4 and APFS accept, in bytes of UTF-8. */
export const MAX_NAME_BYTES = 255;
/** The longest file or folder name NTFS accepts, in UTF-16 code units. */
export const MAX_NAME_UNITS = 255;

/** Which rule of names that travel an entry broke; carried in `CwsError.data.rule`. */
export type TravelRule = "name-too-long" | "windows-name" | "namespace-entry" | "file-under-file";

export interface TravelProblem {
  path: string;
  rule: TravelRule;
  /** Why, in a sentence fragment that follows "cannot travel:". */
  reason: string;
}

// A name of at most this many UTF-16 units is at most 255 bytes of UTF-8 (3 bytes per unit at
// worst), so almost every path is ruled out of the length check by its total length alone.
const SHORT_NAME_UNITS = Math.floor(MAX_NAME_BYTES / 3);

/**
 * Why one path's names cannot travel, or null when they can. Looks at the path alone; a file
 * under a file needs the whole tree (`travelProblems`).
 */
export function nameTravelProblem(path: string): TravelProblem | null {
  if ((PATH_NAMESPACES as readonly string[]).includes(path)) {
    return { path, rule: "namespace-entry", reason: `"${path}" is a namespace root, not an entry of its own` };
  }
  if (path.length > SHORT_NAME_UNITS) {
    // Segment lengths from the separators' positions: no array or string per segment unless
    // one is long enough to need its bytes counted.
    for (let start = 0; start <= path.length; ) {
      const slash = path.indexOf("/", start);
      const end = slash === -1 ? path.length : slash;
      if (end - start > SHORT_NAME_UNITS) {
        const segment = path.slice(start, end);
        const bytes = utf8Length(segment);
        if (bytes > MAX_NAME_BYTES || segment.length > MAX_NAME_UNITS) {
          return {
            path,
            rule: "name-too-long",
            reason: `the name ${JSON.stringify(clip(segment))} has ${bytes} bytes (${segment.length} UTF-16 units); names may have at most ${MAX_NAME_BYTES} bytes and ${MAX_NAME_UNITS} units`,
          };
        }
      }
      start = end + 1;
    }
  }
  const windows = windowsNameProblem(path);
  if (windows !== null) return { path, rule: "windows-name", reason: windows };
  return null;
}

/**
 * Every entry of `entries` (sorted by path, as in every manifest) that cannot travel: names
 * (`nameTravelProblem`) and files under files. With `only`, just the entries whose paths it
 * holds are judged (a commit's delta), but a file under a file is still found against the
 * whole tree: an entry of `only` below a file, or any entry below a file of `only`.
 *
 * @returns problems in path order; the entry below the file is the one named for a file under a file.
 */
export function travelProblems(entries: readonly ManifestEntry[], only?: ReadonlySet<string>): TravelProblem[] {
  return treeProblems(entries, only, nameTravelProblem);
}

/** `travelProblems` with the name check given: called once per judged path, in path order. */
function treeProblems(entries: readonly ManifestEntry[], only: ReadonlySet<string> | undefined, nameProblem: (path: string) => TravelProblem | null): TravelProblem[] {
  const problems = new Map<string, TravelProblem>();
  for (const entry of entries) {
    if (only !== undefined && !only.has(entry.path)) continue;
    const problem = nameProblem(entry.path);
    if (problem !== null) problems.set(entry.path, problem);
  }
  // What lies under a file is one block of the sorted paths (manifest.ts, firstIndexBelow).
  for (let i = 0; i + 1 < entries.length; i++) {
    const file = entries[i];
    if (file.kind !== "file") continue;
    const first = firstIndexBelow(entries, i);
    if (first === -1) continue;
    const prefix = `${file.path}/`;
    const fileChanged = only === undefined || only.has(file.path);
    for (let j = first; j < entries.length && entries[j].path.startsWith(prefix); j++) {
      const below = entries[j].path;
      if (problems.has(below) || !(fileChanged || only!.has(below))) continue;
      problems.set(below, { path: below, rule: "file-under-file", reason: `it lies under "${clip(file.path)}", which is a file` });
    }
  }
  return [...problems.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** What `changedTravelProblems` reads of the tree a commit makes. */
export interface TravelLookup {
  /** The entry at `path` of the new tree; asked for the ancestor folders of changed paths. */
  entry(path: string): ManifestEntry | undefined;
  /** The paths of the new tree under `path`, sorted; asked for changed files. */
  pathsBelow(path: string): readonly string[];
}

/**
 * `travelProblems` of a tree restricted to `changed` (a commit's upserts), read from a lookup
 * instead of the whole sorted tree: the same problems, found from the changed entries, their
 * ancestors and what lies below changed files.
 */
export function changedTravelProblems(changed: readonly ManifestEntry[], tree: TravelLookup): TravelProblem[] {
  const problems = new Map<string, TravelProblem>();
  for (const entry of changed) {
    const problem = nameTravelProblem(entry.path);
    if (problem !== null) problems.set(entry.path, problem);
  }
  const underFile = (below: string, file: string) => ({ path: below, rule: "file-under-file" as const, reason: `it lies under "${clip(file)}", which is a file` });
  for (const entry of changed) {
    for (let i = entry.path.indexOf("/"); i !== -1; i = entry.path.indexOf("/", i + 1)) {
      const folder = entry.path.slice(0, i);
      if (tree.entry(folder)?.kind === "file" && !problems.has(entry.path)) problems.set(entry.path, underFile(entry.path, folder));
    }
    if (entry.kind !== "file") continue;
    for (const below of tree.pathsBelow(entry.path)) if (!problems.has(below)) problems.set(below, underFile(below, entry.path));
  }
  return [...problems.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** Throws the INVALID_PATH of `checkTravellingTree` for `problems`, if any. */
export function refuseTravelProblems(problems: readonly TravelProblem[]): void {
  if (problems.length === 0) return;
  const [first] = problems;
  const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : "";
  throw new CwsError(
    "INVALID_PATH",
    `Cannot accept commit: ${JSON.stringify(clip(first.path))} cannot travel to every device (${first.rule}): ${first.reason}${more}. Rename it on the device that sent it and sync again.`,
    { data: { path: clip(first.path), rule: first.rule, count: problems.length } },
  );
}

/**
 * Refuses a tree (or the `changed` part of one) that does not travel.
 *
 * @throws {CwsError} INVALID_PATH naming the first bad path and its rule (`data.path`, `data.rule`),
 *   with how many entries break a rule (`data.count`).
 */
export function checkTravellingTree(manifest: Manifest, changed?: ReadonlySet<string>): void {
  refuseTravelProblems(travelProblems(manifest.entries, changed));
}

/**
 * `travelProblems` of server manifests whose entries array is frozen (a kept session's base,
 * which is also the server's side of a sync while no one else pushed): such an array cannot
 * change, so its names are judged once per kept session rather than at every sync.
 */
const serverProblems = new WeakMap<readonly ManifestEntry[], TravelProblem[]>();

/** Entries kept out of a sync because they cannot travel, by where they were found. */
export interface HeldNames {
  /** Entries of this device that stay on it, not sent. */
  local: TravelProblem[];
  /** Entries of the server head that this device leaves alone (an older server accepted them). */
  server: TravelProblem[];
}

/**
 * Takes every path that cannot travel out of a three-way sync, on this device's side: such a
 * path is dropped from the local, server and base views alike, so the plan neither sends it,
 * nor reads its absence as a delete, nor pulls it (nor trips over a file under a file the
 * server head holds). `restore` then puts the server's entries for those paths back into the
 * merged tree, so a commit leaves them as they are. The entries stay where they are: the local
 * file on disk, the server's entry in the head.
 */
export function holdUntravelable(local: Manifest, server: Manifest, base: Manifest): {
  local: Manifest;
  server: Manifest;
  base: Manifest;
  held: HeldNames;
  restore: (merged: Manifest) => Manifest;
} {
  const held: HeldNames = { local: travelProblems(local.entries), server: [] };
  const remembered = serverProblems.get(server.entries);
  if (remembered !== undefined) {
    held.server = [...remembered];
  } else {
    // The server's names are mostly the local ones: those are judged once, which keeps a large
    // tree's sync from paying for the name checks twice.
    const localNames = new Map(held.local.filter((problem) => problem.rule !== "file-under-file").map((problem) => [problem.path, problem]));
    let cursor = 0;
    held.server = treeProblems(server.entries, undefined, (path) => {
      while (cursor < local.entries.length && local.entries[cursor].path < path) cursor++;
      if (cursor < local.entries.length && local.entries[cursor].path === path) return localNames.get(path) ?? null;
      return nameTravelProblem(path);
    });
    if (Object.isFrozen(server.entries)) serverProblems.set(server.entries, held.server);
  }
  if (held.local.length === 0 && held.server.length === 0) return { local, server, base, held, restore: (merged) => merged };
  const paths = new Set([...held.local, ...held.server].map((problem) => problem.path));
  const without = (manifest: Manifest): Manifest => ({ format: manifest.format, entries: manifest.entries.filter((entry) => !paths.has(entry.path)) });
  const serverHeld = server.entries.filter((entry) => paths.has(entry.path));
  const restore = (merged: Manifest): Manifest => {
    if (serverHeld.length === 0) return merged;
    const entries = [...without(merged).entries, ...serverHeld];
    entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    return { format: merged.format, entries };
  };
  return { local: without(local), server: without(server), base: without(base), held, restore };
}

function utf8Length(value: string): number {
  let bytes = 0;
  for (let i = 0; i < value.length; i++) {
    const unit = value.charCodeAt(i);
    if (unit < 0x80) bytes += 1;
    else if (unit < 0x800) bytes += 2;
    else if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < value.length) {
      // A surrogate pair is one code point of four bytes.
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}

function clip(value: string): string {
  return value.length > 200 ? `${value.slice(0, 200)}…` : value;
}
