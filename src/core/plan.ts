/**
 * The three-way sync plan: what to push, what to pull and what is in conflict, given the local
 * scan L, the server head S and the base B this device last agreed with the server.
 *
 * Per path (the union of the three manifests), comparing content only (kind, size, hash; never
 * mtime or mode):
 *
 *   L == S            nothing to do (both sides agree, whatever B says)
 *   L == B, S != B    only the server changed: pull S (a delete when S has no entry)
 *   S == B, L != B    only this device changed: push L (a delete when L has no entry)
 *   otherwise         both changed differently: a conflict. The server version stays live; the
 *                     caller backs the local version up, applies the server's, and sends the
 *                     local one to quarantine.
 *
 * Folders make paths depend on each other, so a second pass turns actions into conflicts where
 * applying them path by path would lose data or build an impossible tree:
 *
 *   R1  a push that removes a server folder (delete, or replace by a file) is a conflict when
 *       anything below it on the server is not being deleted by this same push (the server
 *       added, changed or conflicts there);
 *   R2  a pull that removes a local folder is a conflict when anything below it locally is not
 *       being deleted by this same pull (this device added, changed or conflicts there);
 *   R3  a push below a local folder whose result is not a folder (the server removed it and
 *       won) is a conflict, since the folder and everything in it will be replaced locally.
 *
 * R1 and R3 together keep every entry of the result out from under a file, so the merged
 * manifest is always a valid tree (checked once more at the end).
 *
 * Unknown is not absent. A path the local scan could not read (unreadable, vanished or changing
 * while it was read), and everything below it, is *unknown*: the plan takes the base entry as
 * its local version, so it is never pushed, and never pushed as a delete. A pull over it is
 * held back too (the path is *kept*): the caller must keep the path's base entry, so the
 * server's change still shows as one once the path can be read. A kept path also keeps every
 * local folder above it that the server removes:
 *
 *   R4  a pull or conflict that removes a local folder is kept when a kept path is below it.
 *
 * Folders are compared by kind alone: a folder entry changed only when it was added, removed or
 * became a file. A manifest may leave a folder implicit (an entry `a/b` without `a`): such a
 * folder is treated as present, and an action that must carry it gets a synthesized entry.
 *
 * Pure: no I/O, no clock; results are sorted by path so they are stable across runs.
 */
import { CwsError } from "../errors.ts";
import { firstIndexBelow, type Manifest, MANIFEST_FORMAT, type ManifestEntry, sameContent } from "./manifest.ts";

export type PlanAction =
  | { type: "push"; path: string; entry: ManifestEntry | null } // entry null = delete on server
  | { type: "pull"; path: string; entry: ManifestEntry | null } // entry null = delete locally
  | {
      type: "conflict";
      path: string;
      local: ManifestEntry | null;
      server: ManifestEntry | null;
      base: ManifestEntry | null;
    };

export interface SyncPlan {
  /** Changes only this device made, to send to the server; sorted by path. */
  push: PlanAction[];
  /** Changes only the server has, to apply locally (see orderForApply); sorted by path. */
  pull: PlanAction[];
  /** Paths both sides changed differently; the server version wins, the local one is kept aside. */
  conflicts: PlanAction[];
  /** The manifest the device should commit as the new head: S with the pushes applied (conflicts keep S). */
  merged: Manifest;
  /** How many paths both sides hold with the same content and need nothing. */
  unchanged: number;
  /**
   * Paths whose server change was held back because the local side is unknown (or holds an
   * unknown path): nothing is pulled or pushed for them, and the caller keeps their base
   * entries so the change is seen again by the next sync; sorted.
   */
  kept: string[];
}

/** What the plan needs beyond the three manifests. */
export interface PlanOptions {
  /**
   * Paths the local scan could not read, with everything below them: their base entries stand
   * in for the local ones (see "Unknown is not absent" above).
   *
   * @default none
   */
  unknown?: Iterable<string>;
}

// "keep" is the last word: once a path is kept, no rule turns it into anything else.
type Decision = "none" | "push" | "pull" | "conflict" | "keep";

/** One input manifest, indexed, with the folders it holds only implicitly. */
interface Side {
  entries: Map<string, ManifestEntry>;
  implicitDirs: Set<string>;
}

/** Permission bits given to a folder a manifest holds only implicitly. */
const IMPLICIT_DIR_MODE = 0o755;

/**
 * Plans a three-way sync between the local scan, the server head and this device's base.
 *
 * @throws {CwsError} INVALID_ARGUMENT when a manifest repeats a path or has an entry below a file.
 */
export function planSync(local: Manifest, server: Manifest, base: Manifest, options: PlanOptions = {}): SyncPlan {
  const unknown = new Set(options.unknown ?? []);
  if (unknown.size === 0) {
    const unchangedPaths = countWhenAllEqual(local, server, base);
    if (unchangedPaths !== null) return { push: [], pull: [], conflicts: [], merged: server, unchanged: unchangedPaths, kept: [] };
    const narrowed = planChangedPaths(local, server, base);
    if (narrowed !== null) return narrowed;
  }
  return planEveryPath(local, server, base, unknown);
}

/** The plan over every path of the three manifests (what planSync computes, without shortcuts). */
export function planEveryPath(local: Manifest, server: Manifest, base: Manifest, unknown: ReadonlySet<string> = new Set()): SyncPlan {
  const isUnknown = (p: string) => unknown.has(p) || ancestors(p).some((q) => unknown.has(q));
  const sides = {
    local: indexSide(unknown.size === 0 ? local : withBaseForUnknown(local, base, isUnknown), "local scan"),
    server: indexSide(server, "server head"),
    base: indexSide(base, "base"),
  };
  const union = new Set<string>();
  for (const side of [sides.local, sides.server, sides.base]) for (const p of side.entries.keys()) union.add(p);
  const paths = [...union].sort(compareCodeUnits);

  const L = new Map<string, ManifestEntry | undefined>();
  const S = new Map<string, ManifestEntry | undefined>();
  const B = new Map<string, ManifestEntry | undefined>();
  const decision = new Map<string, Decision>();
  for (const p of paths) {
    const l = effectiveEntry(sides.local, p);
    const s = effectiveEntry(sides.server, p);
    const b = effectiveEntry(sides.base, p);
    L.set(p, l);
    S.set(p, s);
    B.set(p, b);
    const d: Decision = equal(l, s) ? "none" : equal(l, b) ? "pull" : equal(s, b) ? "push" : "conflict";
    // An unknown path has its base entry as local version, so it can only be "none" or "pull".
    decision.set(p, d === "pull" && isUnknown(p) ? "keep" : d);
  }

  // The entry a path ends with on both sides once the plan is applied.
  const result = (p: string) => (decision.get(p) === "push" ? L.get(p) : S.get(p));

  // Turning an action into a conflict can block others (a conflict below a folder blocks the
  // folder's removal, which in turn blocks pushes below it), so repeat until nothing moves.
  // Each round only turns actions into conflicts, never back, so this ends.
  let changed = true;
  while (changed) {
    changed = false;
    const toConflict = (p: string) => {
      const d = decision.get(p);
      if (d !== "conflict" && d !== "keep") {
        decision.set(p, "conflict");
        changed = true;
      }
    };
    for (const p of paths) {
      for (const q of ancestors(p)) {
        if (!union.has(q)) continue; // A folder no manifest names is never removed or a file.
        const dp = decision.get(p);
        const dq = decision.get(q);
        // R1: this device removes a server folder that still has server changes below it.
        if (
          dq === "push" &&
          S.get(q)?.kind === "dir" &&
          L.get(q)?.kind !== "dir" &&
          S.get(p) !== undefined &&
          !(dp === "push" && L.get(p) === undefined)
        ) {
          toConflict(q);
        }
        // R2: the server removes a local folder that still has local changes below it.
        if (
          dq === "pull" &&
          L.get(q)?.kind === "dir" &&
          S.get(q)?.kind !== "dir" &&
          L.get(p) !== undefined &&
          !(dp === "pull" && S.get(p) === undefined)
        ) {
          toConflict(q);
        }
        // R3: a local addition or change below a local folder that the server version replaces.
        if (dp === "push" && L.get(p) !== undefined && L.get(q)?.kind === "dir" && result(q)?.kind !== "dir") {
          toConflict(p);
        }
        // R4: the server removes a local folder that holds a kept path.
        if (dp === "keep" && (dq === "pull" || dq === "conflict") && L.get(q)?.kind === "dir" && S.get(q)?.kind !== "dir") {
          decision.set(q, "keep");
          changed = true;
        }
      }
    }
  }

  const push: PlanAction[] = [];
  const pull: PlanAction[] = [];
  const conflicts: PlanAction[] = [];
  const kept: string[] = [];
  let unchanged = 0;
  const mergedEntries = new Map(sides.server.entries);
  for (const p of paths) {
    const l = L.get(p) ?? null;
    const s = S.get(p) ?? null;
    switch (decision.get(p)) {
      case "none":
        if (s !== null) unchanged++;
        break;
      case "pull":
        pull.push({ type: "pull", path: p, entry: s });
        break;
      case "push":
        push.push({ type: "push", path: p, entry: l });
        if (l === null) mergedEntries.delete(p);
        else mergedEntries.set(p, l);
        break;
      case "conflict":
        conflicts.push({ type: "conflict", path: p, local: l, server: s, base: B.get(p) ?? null });
        break;
      case "keep":
        kept.push(p);
        break;
    }
  }
  const merged: Manifest = {
    format: MANIFEST_FORMAT,
    entries: [...mergedEntries.values()].sort((a, b) => compareCodeUnits(a.path, b.path)),
  };
  const problem = fileAncestorProblem(merged.entries);
  if (problem !== null) {
    // The rules above exist to make this impossible; reaching it is a bug in this module.
    throw new CwsError("INTERNAL", `Cannot plan the sync: the merged manifest would be invalid (${problem})`);
  }
  return { push, pull, conflicts, merged, unchanged, kept };
}

/** The local manifest with the base's entries in place of everything unknown. */
function withBaseForUnknown(local: Manifest, base: Manifest, isUnknown: (p: string) => boolean): Manifest {
  const entries = local.entries.filter((e) => !isUnknown(e.path));
  for (const entry of base.entries) if (isUnknown(entry.path)) entries.push(entry);
  return { format: MANIFEST_FORMAT, entries };
}

/**
 * Orders pull actions so they can be applied on a disk safely: deletions deepest-first, then
 * folder creations shallowest-first, then files.
 *
 * A conflict is ordered as the application of its server version (the caller backs the local
 * version up first); a push is ordered by its entry, for a side that applies pushes to a tree.
 * A file that replaces a folder comes after the deletions that empty that folder, and a
 * folder that replaces a file comes before the files written into it.
 */
export function orderForApply(actions: readonly PlanAction[]): PlanAction[] {
  const phase = (action: PlanAction) => {
    const target = action.type === "conflict" ? action.server : action.entry;
    return target === null ? 0 : target.kind === "dir" ? 1 : 2;
  };
  const depth = (action: PlanAction) => action.path.split("/").length;
  return [...actions].sort((a, b) => {
    const pa = phase(a);
    const pb = phase(b);
    if (pa !== pb) return pa - pb;
    if (pa === 0 && depth(a) !== depth(b)) return depth(b) - depth(a);
    if (pa === 1 && depth(a) !== depth(b)) return depth(a) - depth(b);
    return compareCodeUnits(a.path, b.path);
  });
}

/**
 * The no-op fast path. When the three manifests list the same paths in the same (strictly
 * sorted) order with the same content, every path is "none", no folder rule can apply and the
 * merged manifest is the server's: the plan is empty. This is what a sync finds when nothing
 * changed, and checking it takes one pass without the indexes the full plan builds (which cost
 * most of a second at 50,000 entries). The inputs are still checked as the full plan checks
 * them (no duplicates, nothing below a file); a problem sends them down the full plan, which
 * reports it.
 *
 * @returns how many paths are unchanged, or null when the full plan must run
 */
function countWhenAllEqual(local: Manifest, server: Manifest, base: Manifest): number | null {
  const l = local.entries;
  const s = server.entries;
  const b = base.entries;
  if (l.length !== s.length || l.length !== b.length) return null;
  for (let i = 0; i < l.length; i++) {
    const path = s[i].path;
    if (l[i].path !== path || b[i].path !== path || !sameContent(l[i], s[i]) || !sameContent(b[i], s[i])) return null;
    if (i > 0 && !(s[i - 1].path < path)) return null;
  }
  if (!isConsistent(s)) return null;
  return s.length;
}

/** Above this share of changed paths, planning every path costs no more than narrowing first. */
const MAX_NARROWED_SHARE = 0.25;

/**
 * The plan of a sync where few paths changed, computed over those paths only (what a 1% change
 * finds): the same result as planEveryPath, which indexes every path of all three manifests.
 *
 * Why it is the same: a path whose entries are equal in all three manifests is "none", and the
 * folder rules (R1–R3) only ever act on a pair of an ancestor and a descendant where the
 * ancestor is a push or pull (R1, R2) or the descendant a push (R3), never on two "none" paths.
 * So the plan over the changed paths D, the listed ancestors of D and everything listed below D
 * decides exactly what the full plan decides. Everything listed below a changed path also keeps
 * the folders a manifest holds only implicitly (`a/b` without `a`) implicit in the smaller
 * manifests. Paths outside that set keep the server's entry in the merged manifest.
 *
 * Used only when no local path is unknown: kept paths (R4) are decided over every path.
 *
 * @returns null when the inputs are not all strictly sorted and consistent (the full plan then
 *   reports the problem) or when too many paths changed for narrowing to pay.
 */
export function planChangedPaths(local: Manifest, server: Manifest, base: Manifest): SyncPlan | null {
  const sides = [local.entries, server.entries, base.entries];
  // The server's entries are often the base's very array (no one pushed since): checked once.
  for (const entries of new Set(sides)) if (!isConsistent(entries)) return null;
  const [l, s, b] = sides;
  const limit = Math.max(l.length, s.length, b.length) * MAX_NARROWED_SHARE;
  // The paths whose listed entries differ (a superset of those whose decision is not "none":
  // a folder listed on one side and implicit on another is in it, and planned like the rest).
  const changed: string[] = [];
  let i = 0;
  let j = 0;
  let k = 0;
  while (i < l.length || j < s.length || k < b.length) {
    let path = i < l.length ? l[i].path : undefined;
    if (j < s.length && (path === undefined || s[j].path < path)) path = s[j].path;
    if (k < b.length && (path === undefined || b[k].path < path)) path = b[k].path;
    const le = i < l.length && l[i].path === path ? l[i++] : undefined;
    const se = j < s.length && s[j].path === path ? s[j++] : undefined;
    const be = k < b.length && b[k].path === path ? b[k++] : undefined;
    if (le === undefined || se === undefined || be === undefined || !sameContent(le, se) || !sameContent(le, be)) {
      changed.push(path!);
      if (changed.length > limit) return null;
    }
  }
  const listed = (path: string) => sides.some((entries) => indexOf(entries, path) >= 0);
  const keep = new Set<string>();
  for (const path of changed) {
    keep.add(path);
    for (const q of ancestors(path)) if (!keep.has(q) && listed(q)) keep.add(q);
    const below = `${path}/`;
    for (const entries of sides) {
      for (let at = lowerBound(entries, below); at < entries.length && entries[at].path.startsWith(below); at++) keep.add(entries[at].path);
    }
    if (keep.size > limit) return null;
  }
  // The kept paths in order, each looked up in the sorted sides: a few hundred binary searches
  // instead of a pass over every entry of each side.
  const kept = [...keep].sort(compareCodeUnits);
  const narrow = (manifest: Manifest): Manifest => {
    const entries: ManifestEntry[] = [];
    for (const path of kept) {
      const at = indexOf(manifest.entries, path);
      if (at >= 0) entries.push(manifest.entries[at]);
    }
    return { format: manifest.format, entries };
  };
  const plan = planEveryPath(narrow(local), narrow(server), narrow(base));
  // The merged manifest: the server's entries outside the planned paths (copied a run at a time
  // between the kept paths), and the plan's inside.
  const merged: ManifestEntry[] = [];
  const planned = plan.merged.entries;
  let m = 0;
  let from = 0;
  const copyServerUpTo = (end: number) => {
    for (; from < end; from++) {
      const entry = s[from];
      while (m < planned.length && planned[m].path < entry.path) merged.push(planned[m++]);
      merged.push(entry);
    }
  };
  for (const path of kept) {
    const at = lowerBound(s, path);
    copyServerUpTo(at);
    if (at < s.length && s[at].path === path) from = at + 1;
  }
  copyServerUpTo(s.length);
  while (m < planned.length) merged.push(planned[m++]);
  const unchanged = plan.unchanged + merged.length - planned.length;
  const problem = mergedProblem(merged, planned);
  if (problem !== null) {
    // The rules exist to make this impossible; reaching it is a bug in this module.
    throw new CwsError("INTERNAL", `Cannot plan the sync: the merged manifest would be invalid (${problem})`);
  }
  return { ...plan, merged: { format: MANIFEST_FORMAT, entries: merged }, unchanged };
}

/**
 * What `fileAncestorProblem` would say of `merged`, made of a consistent server side and the
 * `planned` entries, looked for only where a planned entry takes part: the server's own entries
 * were checked already. Such a problem pairs a file with an entry below it, so one of the two is
 * planned: a planned entry with a file among its listed ancestors, or a planned file with
 * entries below it. Each is a few binary searches.
 */
function mergedProblem(merged: readonly ManifestEntry[], planned: readonly ManifestEntry[]): string | null {
  for (const entry of planned) {
    const at = indexOf(merged, entry.path);
    if (at < 0) return `${JSON.stringify(entry.path)} is missing`;
    if ((at > 0 && !(merged[at - 1].path < entry.path)) || (at + 1 < merged.length && !(entry.path < merged[at + 1].path))) {
      return `${JSON.stringify(entry.path)} is out of order`;
    }
    for (const ancestor of ancestors(entry.path)) {
      const up = indexOf(merged, ancestor);
      if (up >= 0 && merged[up].kind === "file") return `${JSON.stringify(entry.path)} is below the file ${JSON.stringify(ancestor)}`;
    }
    if (entry.kind === "file") {
      const below = firstIndexBelow(merged, at);
      if (below !== -1) return `${JSON.stringify(merged[below].path)} is below the file ${JSON.stringify(entry.path)}`;
    }
  }
  return null;
}

/** The index of the first entry of sorted `entries` whose path is not before `path` in code-unit order. */
export function lowerBound(entries: readonly ManifestEntry[], path: string): number {
  let lo = 0;
  let hi = entries.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (entries[mid].path < path) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The index of `path` in sorted `entries`, or -1. */
function indexOf(entries: readonly ManifestEntry[], path: string): number {
  const at = lowerBound(entries, path);
  return at < entries.length && entries[at].path === path ? at : -1;
}

/** True when both entries are absent, or both present with the same content. */
function equal(a: ManifestEntry | undefined, b: ManifestEntry | undefined): boolean {
  return a === undefined || b === undefined ? a === b : sameContent(a, b);
}

function indexSide(manifest: Manifest, name: string): Side {
  const entries = new Map<string, ManifestEntry>();
  for (const entry of manifest.entries) {
    if (entries.has(entry.path)) {
      throw new CwsError("INVALID_ARGUMENT", `Cannot plan the sync: the ${name} lists ${JSON.stringify(entry.path)} twice`, {
        data: { manifest: name, path: entry.path },
      });
    }
    entries.set(entry.path, entry);
  }
  const problem = fileAncestorProblem(manifest.entries);
  if (problem !== null) {
    throw new CwsError("INVALID_ARGUMENT", `Cannot plan the sync: the ${name} is inconsistent (${problem}); rescan or re-fetch it`, {
      data: { manifest: name },
    });
  }
  const implicitDirs = new Set<string>();
  for (const p of entries.keys()) {
    for (const q of ancestors(p)) if (!entries.has(q)) implicitDirs.add(q);
  }
  return { entries, implicitDirs };
}

/** The side's entry at `p`, a synthesized folder when it holds `p` only implicitly, else undefined. */
function effectiveEntry(side: Side, p: string): ManifestEntry | undefined {
  const entry = side.entries.get(p);
  if (entry !== undefined) return entry;
  if (!side.implicitDirs.has(p)) return undefined;
  // NOTE: An implicit folder has no recorded mtime or mode; 0 and 0o755 are what a fresh folder
  // would get on a device that creates it.
  return { path: p, kind: "dir", size: 0, mtimeMs: 0, mode: IMPLICIT_DIR_MODE, hash: "", chunks: [] };
}

/**
 * Describes an entry that sits below a file entry, or returns null when there is none.
 *
 * Sorted entries (every manifest) are checked in one pass without building anything: the
 * entries below a file F are the block that starts with `F/`, which in code-unit order comes
 * right after F and its siblings named `F<c>…` with c before "/" (`F-1`, `F.txt`). Other orders
 * use an index, where each entry climbs its ancestors only up to the nearest one listed (a
 * listed folder was, or will be, checked itself).
 */
function fileAncestorProblem(entries: readonly ManifestEntry[]): string | null {
  if (isStrictlySorted(entries)) return sortedFileAncestorProblem(entries);
  const kinds = new Map<string, ManifestEntry["kind"]>();
  for (const entry of entries) kinds.set(entry.path, entry.kind);
  for (const entry of entries) {
    const p = entry.path;
    for (let i = p.lastIndexOf("/"); i > 0; i = p.lastIndexOf("/", i - 1)) {
      const q = p.slice(0, i);
      const kind = kinds.get(q);
      if (kind === "file") return `${JSON.stringify(p)} is below the file ${JSON.stringify(q)}`;
      if (kind === "dir") break;
    }
  }
  return null;
}

/** `fileAncestorProblem` of entries known to be strictly sorted: one pass. */
function sortedFileAncestorProblem(entries: readonly ManifestEntry[]): string | null {
  for (let i = 0; i < entries.length; i++) {
    if (entries[i].kind !== "file") continue;
    const file = entries[i].path;
    const below = firstBelow(entries, i);
    if (below !== null) return `${JSON.stringify(below)} is below the file ${JSON.stringify(file)}`;
  }
  return null;
}

/**
 * Entry arrays found strictly sorted with nothing below a file, remembered only when frozen
 * (a kept session's base, state.ts): such an array cannot change afterwards, so a long-lived
 * process checks its base once instead of at every sync.
 */
const consistentArrays = new WeakSet<readonly ManifestEntry[]>();

/** Whether `entries` are strictly sorted with nothing below a file (what every manifest must be). */
function isConsistent(entries: readonly ManifestEntry[]): boolean {
  if (consistentArrays.has(entries)) return true;
  if (!isStrictlySorted(entries) || sortedFileAncestorProblem(entries) !== null) return false;
  if (Object.isFrozen(entries)) consistentArrays.add(entries);
  return true;
}

/** The first path of sorted `entries` below `file` (at index `at`), or null. */
function firstBelow(entries: readonly ManifestEntry[], at: number): string | null {
  const below = firstIndexBelow(entries, at);
  return below === -1 ? null : entries[below].path;
}

function isStrictlySorted(entries: readonly ManifestEntry[]): boolean {
  for (let i = 1; i < entries.length; i++) if (!(entries[i - 1].path < entries[i].path)) return false;
  return true;
}

/** The proper ancestors of a `/`-path, nearest first: `a/b/c` gives `a/b`, `a`. */
function ancestors(p: string): string[] {
  const result: string[] = [];
  for (let i = p.lastIndexOf("/"); i > 0; i = p.lastIndexOf("/", i - 1)) result.push(p.slice(0, i));
  return result;
}

function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
