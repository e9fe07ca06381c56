/**
 * What the quarantine policy (policy.ts) reads of a push: the paths that changed and a few
 * facts about the trees around them. A push of 50 files into a tree of 50,000 is judged from
 * its 50 paths, their folders and file counts kept per folder, so the hub's work grows with
 * what changed, not with the tree. Two sources give this view: two whole manifests
 * (`manifestPushView`, for callers and tests that hold them) and the tree objects of the
 * store (server-agent/store/manifest-tree.ts), which load only the folders on changed paths.
 */
import { sameEntry, type Manifest, type ManifestEntry } from "./manifest.ts";

export interface PushView {
  /** Every path whose entry differs in any field between before and after (either side may lack it), sorted by code unit. */
  readonly changed: readonly string[];
  /** The entry at `path` before the push. Answers for changed paths and their ancestor folders. */
  before(path: string): ManifestEntry | undefined;
  /** The entry at `path` after the push. Answers for changed paths and their ancestor folders. */
  after(path: string): ManifestEntry | undefined;
  /** File entries before the push, in the whole tree. */
  readonly beforeFiles: number;
  /** File entries at any depth under `folder` (ancestors of changed paths), before or after the push. */
  filesUnder(side: "before" | "after", folder: string): number;
  /** The paths of `after` under `folder`, sorted; asked for changed paths that were files before. */
  afterPathsUnder(folder: string): string[];
}

/** Every proper ancestor folder of a path, outermost first: `files/a/b.md` → `files`, `files/a`. */
export function ancestorFolders(path: string): string[] {
  const result: string[] = [];
  for (let i = path.indexOf("/"); i !== -1; i = path.indexOf("/", i + 1)) result.push(path.slice(0, i));
  return result;
}

/** The view of a push given as two whole manifests (both sorted, as every manifest is). */
export function manifestPushView(before: Manifest, after: Manifest): PushView {
  const beforeIndex = new Map(before.entries.map((e) => [e.path, e]));
  const afterIndex = new Map(after.entries.map((e) => [e.path, e]));
  const changed: string[] = [];
  for (const entry of before.entries) {
    const now = afterIndex.get(entry.path);
    if (now === undefined || !sameEntry(entry, now)) changed.push(entry.path);
  }
  for (const entry of after.entries) if (!beforeIndex.has(entry.path)) changed.push(entry.path);
  changed.sort(byPath);
  const counts = { before: filesPerFolder(before), after: filesPerFolder(after) };
  const afterPaths = after.entries.map((e) => e.path);
  return {
    changed,
    before: (path) => beforeIndex.get(path),
    after: (path) => afterIndex.get(path),
    beforeFiles: before.entries.reduce((n, e) => n + (e.kind === "file" ? 1 : 0), 0),
    filesUnder: (side, folder) => counts[side].get(folder) ?? 0,
    afterPathsUnder: (folder) => pathsUnder(afterPaths, folder),
  };
}

function filesPerFolder(manifest: Manifest): Map<string, number> {
  const counts = new Map<string, number>();
  for (const entry of manifest.entries) {
    if (entry.kind !== "file") continue;
    for (const folder of ancestorFolders(entry.path)) counts.set(folder, (counts.get(folder) ?? 0) + 1);
  }
  return counts;
}

export function byPath(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The paths under `folder` in a list sorted by code unit, found by binary search. */
export function pathsUnder(sortedPaths: readonly string[], folder: string): string[] {
  const prefix = `${folder}/`;
  let low = 0;
  let high = sortedPaths.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (sortedPaths[mid] < prefix) low = mid + 1;
    else high = mid;
  }
  const result: string[] = [];
  for (let i = low; i < sortedPaths.length && sortedPaths[i].startsWith(prefix); i++) result.push(sortedPaths[i]);
  return result;
}

/** Entries of `manifest` with `changes` applied (path → entry, or null to remove): the result sorted. */
export function applyEntryChanges(manifest: Manifest, changes: ReadonlyMap<string, ManifestEntry | null>): Manifest {
  const byPathMap = new Map(manifest.entries.map((e) => [e.path, e]));
  for (const [path, entry] of changes) {
    if (entry === null) byPathMap.delete(path);
    else byPathMap.set(path, entry);
  }
  const entries = [...byPathMap.values()].sort((a, b) => byPath(a.path, b.path));
  return { format: manifest.format, entries };
}
