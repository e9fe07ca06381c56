/**
 * How the three-way sync treats the `codex/` namespace, on top of the generic plan:
 *
 * - The local side of the plan: this device's normalized threads (source.ts). When Codex
 *   sync is off for the binding, the server's `codex/` entries stand in for the local ones (no
 *   action either way) and the base keeps its old `codex/` part, so turning it on later picks
 *   up where it was. When CODEX_HOME does not exist yet, the base's entries stand in: server
 *   threads are pulled (the home is created), nothing is pushed or deleted.
 * - Rollouts are append-only. The plan compares whole contents, so when both sides changed a
 *   rollout the two versions are fetched and compared: if one extends the other it is a
 *   normal pull or push (e.g. after an interrupted sync), and only a real divergence (both
 *   appended) stays a conflict: the server's version stays live, the local one is backed up,
 *   recorded, and shown by `status`. Lines are never merged.
 * - The thread-name index is a union: when this device changed it (or both did), the server's
 *   version is fetched and the union is pushed (or pulled, when the server already has it
 *   all), and merged into the local index. A delete is never pushed for it.
 */
import { classifyRolloutUpdate } from "../../core/codex-rollout.ts";
import { makeManifest, type Manifest, type ManifestEntry } from "../../core/manifest.ts";
import { lowerBound, type PlanAction, type SyncPlan } from "../../core/plan.ts";
import { CODEX_PREFIX, INDEX_PATH, indexContent, isRolloutManifestPath, parseIndexContent, type CodexSide } from "./source.ts";

/**
 * Where the `codex/` entries of a manifest are: in sorted entries, the paths that start with
 * `codex/` are exactly those from `codex/` up to `codex0` (`0` follows `/`), one block found
 * by two binary searches rather than by a `startsWith` on each of 50,000 paths per sync.
 */
function codexRange(manifest: Manifest): [number, number] {
  return [lowerBound(manifest.entries, CODEX_PREFIX), lowerBound(manifest.entries, CODEX_PREFIX_END)];
}

const CODEX_PREFIX_END = CODEX_PREFIX.slice(0, -1) + String.fromCharCode(CODEX_PREFIX.charCodeAt(CODEX_PREFIX.length - 1) + 1);

/** The `codex/` entries of a manifest. */
export function codexEntries(manifest: Manifest): ManifestEntry[] {
  return manifest.entries.slice(...codexRange(manifest));
}

/** A manifest whose `codex/` part is replaced by `codex` (entries under `codex/`, any order). */
export function withCodexPart(manifest: Manifest, codex: readonly ManifestEntry[]): Manifest {
  const [start, end] = codexRange(manifest);
  // Without Codex entries on either side (most bindings, every sync) there is nothing to
  // replace, and re-sorting the whole tree would be wasted work.
  if (codex.length === 0 && start === end) return manifest;
  // The new `codex/` part takes the old one's place in the sort order: only it needs sorting.
  const part = makeManifest(codex).entries;
  if (!part.every((e) => e.path.startsWith(CODEX_PREFIX))) return makeManifest([...manifest.entries.filter((e) => !e.path.startsWith(CODEX_PREFIX)), ...codex]);
  return { format: manifest.format, entries: [...manifest.entries.slice(0, start), ...part, ...manifest.entries.slice(end)] };
}

/**
 * The local manifest to plan with: the scanned folder plus this device's Codex side (see the
 * module comment for a binding without Codex sync or without a Codex home).
 */
export function localForPlan(files: Manifest, side: CodexSide | null, server: Manifest, base: Manifest): Manifest {
  if (side === null) return withCodexPart(files, codexEntries(server));
  if (!side.available) return withCodexPart(files, codexEntries(base));
  return withCodexPart(files, side.entries);
}

export interface SettleOptions {
  side: CodexSide;
  server: Manifest;
  /** "pull" never pushes: a local extension is kept locally for a later sync. */
  mode: "sync" | "pull" | "override";
  /** Downloads the content of server entries (pull.ts fetchEntryContents). */
  fetch: (entries: ManifestEntry[]) => Promise<Map<string, Uint8Array>>;
}

export interface SettledPlan {
  plan: SyncPlan;
  /** Rollouts that are newer locally but not pushed (pull mode): the base keeps its old entry for them. */
  keepLocal: string[];
}

/** Applies the rollout and index rules of the module comment to a plan. */
export async function settleCodexPlan(plan: SyncPlan, options: SettleOptions): Promise<SettledPlan> {
  const { side, server, mode } = options;
  if (!side.available) return { plan, keepLocal: [] };
  const isCodex = (a: PlanAction) => a.path.startsWith(CODEX_PREFIX);

  const rolloutConflicts = plan.conflicts.filter(
    (a) => a.type === "conflict" && isRolloutManifestPath(a.path) && a.local !== null && a.server !== null,
  );
  const indexAction = [...plan.push, ...plan.conflicts].find((a) => a.path === INDEX_PATH);
  // Nothing to settle (every sync where no thread changed on both sides): the server's
  // entries are not even indexed.
  if (rolloutConflicts.length === 0 && indexAction === undefined) return { plan, keepLocal: [] };
  const serverIndex = new Map(server.entries.map((e) => [e.path, e]));
  const toFetch: ManifestEntry[] = rolloutConflicts.map((a) => serverIndex.get(a.path)!);
  const serverIndexEntry = serverIndex.get(INDEX_PATH) ?? null;
  if (indexAction !== undefined && serverIndexEntry !== null && side.indexEntry !== null) toFetch.push(serverIndexEntry);
  if (toFetch.length === 0 && indexAction === undefined) return { plan, keepLocal: [] };
  const fetched = toFetch.length > 0 ? await options.fetch(toFetch) : new Map<string, Uint8Array>();

  // A plain pull of the index (only the server changed it) stays as it is: the sink merges it.
  const settled = (a: PlanAction) => rolloutConflicts.includes(a) || (indexAction !== undefined && a.path === INDEX_PATH);
  const push = plan.push.filter((a) => !settled(a));
  const pull = plan.pull.filter((a) => !settled(a));
  const conflicts = plan.conflicts.filter((a) => !settled(a));
  const keepLocal: string[] = [];

  for (const conflict of rolloutConflicts) {
    if (conflict.type !== "conflict") continue;
    const local = await side.content(conflict.path);
    const remote = fetched.get(conflict.path)!;
    if (classifyRolloutUpdate(local, remote) === "extension") {
      pull.push({ type: "pull", path: conflict.path, entry: conflict.server });
    } else if (classifyRolloutUpdate(remote, local) === "extension") {
      if (mode === "pull") keepLocal.push(conflict.path);
      else push.push({ type: "push", path: conflict.path, entry: conflict.local });
    } else {
      conflicts.push(conflict);
    }
  }

  if (indexAction !== undefined) {
    const localEntry = side.indexEntry;
    if (localEntry === null) {
      // This device has no names of its own: the server's are merged into its index.
      if (serverIndexEntry !== null) pull.push({ type: "pull", path: INDEX_PATH, entry: serverIndexEntry });
    } else if (serverIndexEntry === null) {
      if (mode !== "pull") push.push({ type: "push", path: INDEX_PATH, entry: localEntry });
    } else {
      const remote = fetched.get(INDEX_PATH)!;
      const union = indexContent([...parseIndexContent(await side.content(INDEX_PATH)), ...parseIndexContent(remote)]);
      if (Buffer.from(union).equals(Buffer.from(remote)) || mode === "pull") {
        pull.push({ type: "pull", path: INDEX_PATH, entry: serverIndexEntry });
      } else {
        const entry = side.setIndexContent(union, localEntry.mtimeMs);
        push.push({ type: "push", path: INDEX_PATH, entry });
        // The local index gains the server's names too; the union's chunks are local.
        pull.push({ type: "pull", path: INDEX_PATH, entry });
      }
    }
  }

  const byPath = (a: PlanAction, b: PlanAction) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);
  push.sort(byPath);
  pull.sort(byPath);
  conflicts.sort(byPath);
  // The head to commit: the server's `codex/` part with this device's `codex/` pushes applied.
  const codex = new Map(codexEntries(server).map((e) => [e.path, e]));
  for (const action of push) {
    if (action.type !== "push" || !isCodex(action)) continue;
    if (action.entry === null) codex.delete(action.path);
    else codex.set(action.path, action.entry);
  }
  const merged = withCodexPart(plan.merged, [...codex.values()]);
  return { plan: { ...plan, push, pull, conflicts, merged }, keepLocal };
}

/** One path of the base overlay: the base entry to plan with instead of the base manifest's (null: none). */
export interface OverlayItem {
  path: string;
  entry: ManifestEntry | null;
}

/** The base to plan with: the base manifest with the overlay's entries put in. */
export function applyBaseOverlay(base: Manifest, overlay: readonly OverlayItem[]): Manifest {
  if (overlay.length === 0) return base;
  const entries = new Map(base.entries.map((e) => [e.path, e]));
  for (const { path, entry } of overlay) {
    if (entry === null) entries.delete(path);
    else entries.set(path, entry);
  }
  return makeManifest(entries.values());
}

/** The overlay that keeps `paths` at what `base` has for them. */
export function overlayFor(base: Manifest, paths: Iterable<string>): OverlayItem[] {
  const wanted = [...new Set(paths)];
  // Usually nothing is kept back: then the base is not indexed at all.
  if (wanted.length === 0) return [];
  const entries = new Map(base.entries.map((e) => [e.path, e]));
  return wanted.sort().map((path) => ({ path, entry: entries.get(path) ?? null }));
}
