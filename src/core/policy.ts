/**
 * The quarantine policy (DESIGN.md §8): given the server head and the manifest a device
 * proposes, decide which changes land and which are held for the user to accept or reject.
 * The hub runs it on every push, override included. Pure: no I/O, no clock; whatever needs
 * file content (Markdown statistics, whether a rollout was only appended to) is computed by
 * the caller and passed in, keyed by path.
 *
 * Rules, each threshold a per-superproject setting (see {@link PolicySettings}):
 * - Suspicious deletes.
 *   - Mass delete: more than `maxDeleteShare` of the files of `before` and at least
 *     `minFilesForShareRule` files, or more than `maxDeleteCount` files. All such deletes of the
 *     push are held as ONE item, so a deliberate big cleanup is accepted in one step.
 *   - Protected delete: a file matching `protectedGlobs` (AGENTS.md, README.md, Codex rollouts by
 *     default), one item per file so each is confirmed on its own.
 *   - Emptied folder: a folder of `before` that held at least `minFolderFiles` files, of which at
 *     least `minFolderFiles` were deleted (not moved) and none is left in `after`, whether or not
 *     the folder entry itself survives. One item per outermost such folder; only checked when the
 *     mass-delete rule did not trip, since that item already holds every delete.
 * - Renames are not deletes: a deleted file whose exact content (hash and size) appears at a
 *   newly added path is paired with it, one to one, and both land. Renamed protected files land
 *   too (the content survives, and renaming AGENTS.md is a deliberate act), except that a Codex
 *   rollout keeps its identity only under its own file name: moving it between folders
 *   (archive/unarchive, which Codex does by rename) is a rename, renaming the file is not.
 * - Destructive Markdown drift: a changed `.md`/`.markdown` file of at least `minMarkdownBytes`
 *   whose new size is at most `shrinkRatio` of the old (emptying it included), or that loses at
 *   least `headingLossShare` of its headings when it had at least `minHeadings`.
 * - Non-append rewrite of a Codex rollout: a changed rollout whose new content does not start
 *   with the old content. A rollout that was compressed (`.jsonl` → `.jsonl.zst`) or
 *   materialized back before an append (`.zst` → `.jsonl`), maybe moved as well, is paired by
 *   file name and checked the same way, so neither counts as deleting a protected file.
 *
 * Held changes are reverted to `before` in `accepted`, together with whatever folder entries
 * must change with them for the tree to stay well-formed (see `closeItem`).
 */
import { z } from "zod";
import { CwsError } from "../errors.ts";
import { compileGlob, firstMatchingGlob, globProblem } from "./glob.ts";
import { ManifestEntry, makeManifest, manifestIndex, sameContent } from "./manifest.ts";
import { ancestorFolders as ancestors, byPath, manifestPushView, pathsUnder as entriesUnder, type PushView } from "./push-view.ts";
import type { Manifest } from "./manifest.ts";
import { isMarkdownPath } from "./markdown.ts";
import { displayPath } from "./paths.ts";
import type { MarkdownStats } from "./markdown.ts";

export { isMarkdownPath, markdownDiffSummary, markdownStats } from "./markdown.ts";
export type { MarkdownDiffOptions, MarkdownStats } from "./markdown.ts";

// ---- settings --------------------------------------------------------------------------

/** The most protected globs one superproject may configure. */
export const MAX_PROTECTED_GLOBS = 256;

/** Quarantine thresholds, stored per superproject and validated wherever they are read. */
export const PolicySettings = z.strictObject({
  // maxDeleteShare is the share (0–1) of the files of `before` a push may delete before it counts as a mass delete.
  maxDeleteShare: z.number().min(0).max(1),
  // minFilesForShareRule is the fewest deleted files for which the share rule applies at all.
  minFilesForShareRule: z.number().int().min(1).max(1_000_000_000),
  // maxDeleteCount is the most files one push may delete, whatever the share.
  maxDeleteCount: z.number().int().min(0).max(1_000_000_000),
  // protectedGlobs name files whose deletion is always held (`**`, `*`, `?`; case-insensitive).
  protectedGlobs: z
    .array(
      z.string().check((ctx) => {
        const problem = globProblem(ctx.value);
        if (problem !== undefined) ctx.issues.push({ code: "custom", message: `glob ${problem}`, input: ctx.value });
      }),
    )
    .max(MAX_PROTECTED_GLOBS),
  // minFolderFiles is the fewest files a folder must have held (and lost) to count as emptied.
  minFolderFiles: z.number().int().min(1).max(1_000_000_000),
  // shrinkRatio is the new/old size ratio of a Markdown file at or below which a change is drift.
  shrinkRatio: z.number().min(0).lt(1),
  // headingLossShare is the share (0–1] of its headings a Markdown file may not lose.
  headingLossShare: z.number().gt(0).max(1),
  // minHeadings is the fewest headings the old version needs for the heading rule to apply.
  minHeadings: z.number().int().min(1).max(1_000_000_000),
  // minMarkdownBytes is the size below which an old Markdown file is too small to drift.
  minMarkdownBytes: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
});
export type PolicySettings = z.infer<typeof PolicySettings>;

/** What a superproject stores: only the settings it changes from the defaults. */
export const PolicySettingsOverrides = PolicySettings.partial();
export type PolicySettingsOverrides = z.infer<typeof PolicySettingsOverrides>;

/** The defaults, chosen in the spirit of Unison's `confirmbigdeletes` and rsync's `--max-delete`. */
export const DEFAULT_POLICY: PolicySettings = Object.freeze({
  // Unison asks before propagating the deletion of a whole replica; deleting more than half the
  // tree in one push is the everyday form of that accident (a wrong folder synced, a bad checkout).
  maxDeleteShare: 0.5,
  // Below ten deletes the share says little: deleting 1 of 2 files is not "half the tree".
  // Small trees stay protected by the emptied-folder and protected-file rules.
  minFilesForShareRule: 10,
  // rsync's --max-delete is an absolute cap; a hundred files at once is well above a day's
  // editing in a notes folder but far below what a runaway script or a wrong root removes.
  maxDeleteCount: 100,
  // The files Codex and people read first (AGENTS.md, README.md) at any depth, and every Codex
  // rollout, which is the only copy of a thread. The first two pairs overlap on purpose, so the
  // list keeps working for anyone who reads `**/` as "one or more folders".
  protectedGlobs: Object.freeze([
    "files/**/AGENTS.md",
    "files/AGENTS.md",
    "files/**/README.md",
    "files/README.md",
    "codex/**/rollout-*",
  ]) as string[],
  // Three files: a folder with one or two files is too small for its emptying to mean much.
  minFolderFiles: 3,
  // DESIGN.md §8: shrinking to at most 20% of the old size is losing most of the content.
  shrinkRatio: 0.2,
  // DESIGN.md §8: losing half or more of the headings is losing most of the structure.
  headingLossShare: 0.5,
  // With one or two headings, losing one is an ordinary edit (merging two sections).
  minHeadings: 3,
  // Half a KiB: a stub or a short list; rewriting it wholesale loses little and is common.
  minMarkdownBytes: 512,
});

/**
 * Merges overrides into the defaults and validates the result.
 *
 * @throws {CwsError} INVALID_ARGUMENT when a setting is unknown or out of range.
 */
export function resolvePolicySettings(overrides: unknown = {}): PolicySettings {
  const parsed = PolicySettingsOverrides.safeParse(overrides ?? {});
  // A key present with the value undefined means "not set", as it does in a Partial<>.
  const set = parsed.success ? Object.fromEntries(Object.entries(parsed.data).filter(([, value]) => value !== undefined)) : {};
  const merged = parsed.success ? PolicySettings.safeParse({ ...DEFAULT_POLICY, ...set }) : parsed;
  if (!merged.success) {
    const problems = merged.error.issues.map((issue) => `${issue.path.join(".") || "settings"}: ${issue.message}`);
    throw new CwsError(
      "INVALID_ARGUMENT",
      `Cannot use the quarantine settings as they are invalid: ${problems.join("; ")}. Fix or remove these settings`,
      { data: { problems } },
    );
  }
  return merged.data;
}

// ---- items -----------------------------------------------------------------------------

export const QuarantineReason = z.enum([
  "mass-delete",
  "protected-delete",
  "folder-emptied",
  "markdown-drift",
  "rollout-rewrite",
]);
export type QuarantineReason = z.infer<typeof QuarantineReason>;

/** One held change set, as the hub stores it (with device and snapshot) and shows it. */
export const QuarantineItemDraft = z.object({
  // reason names the rule that held the change.
  reason: QuarantineReason,
  // paths lists the files the rule is about, sorted; `proposed` may add folder entries.
  paths: z.array(z.string().min(1)).min(1),
  // metrics are the numbers that triggered the rule, for `cws quarantine show`.
  metrics: z.record(z.string(), z.number()),
  // summary is a one-line human description, e.g. "deletes 80 of 100 files (80% > 50%)".
  summary: z.string(),
  // proposed is what the held change would put at each path (null = delete).
  proposed: z.record(z.string(), ManifestEntry.nullable()),
  // previous is what the head kept at each path of `proposed` when the item was held (null = absent),
  // so that accepting it later cannot silently overwrite a change made since.
  previous: z.record(z.string(), ManifestEntry.nullable()),
});
export type QuarantineItemDraft = z.infer<typeof QuarantineItemDraft>;

/** The outcome of {@linkcode evaluatePush}. */
export interface PolicyDecision {
  /** `after` with every held change reverted to `before` (this becomes the new head). */
  accepted: Manifest;
  /** The held changes, ordered by reason then path. */
  held: QuarantineItemDraft[];
}

/** A rollout whose new version must be checked for being an append-only extension of the old. */
export interface RolloutCheck {
  /** Where the new version is; the key of `rolloutExtends`. */
  path: string;
  /** Where the old version is: `path` itself, or the `.jsonl`/`.jsonl.zst` it replaces. */
  previousPath: string;
}

/** Input of {@linkcode evaluatePush}. */
export interface PushInput {
  /** The server head (validated; may be empty). */
  before: Manifest;
  /** The manifest the device proposes (validated). */
  after: Manifest;
  /** Per-superproject overrides of {@linkcode DEFAULT_POLICY}. */
  settings?: Partial<PolicySettings>;
  /**
   * Statistics of both versions of each changed Markdown file (see
   * {@linkcode pushChecksNeeded}). Needed for every changed Markdown file whose old size is
   * at least `minMarkdownBytes`; a missing one is a caller bug and throws.
   */
  markdown?: ReadonlyMap<string, { before: MarkdownStats; after: MarkdownStats }>;
  /**
   * For each {@linkcode RolloutCheck} of {@linkcode pushChecksNeeded}, keyed by its `path`:
   * true when the new content (decompressed if `.zst`) starts with the whole old content
   * (decompressed), equal content included; false otherwise, and also when either side cannot
   * be read or decompressed. A missing entry is a caller bug and throws.
   */
  rolloutExtends?: ReadonlyMap<string, boolean>;
}

// ---- classification --------------------------------------------------------------------

const ROLLOUT_NAME = /^rollout-.*\.jsonl(?:\.zst)?$/i;

/** True for a Codex rollout: a `rollout-*.jsonl` or `rollout-*.jsonl.zst` file under `codex/`. */
export function isRolloutPath(path: string): boolean {
  return path.startsWith("codex/") && ROLLOUT_NAME.test(basename(path));
}

function basename(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

/** A rollout's identity across compression: its file name without `.jsonl` or `.jsonl.zst`. */
function rolloutStem(path: string): string {
  return basename(path).replace(/\.jsonl(?:\.zst)?$/i, "");
}

/** Lists of candidate paths per key, handed out front first, skipping paths already taken. */
class Queues {
  #lists = new Map<string, { paths: string[]; next: number }>();

  add(key: string, path: string): void {
    const list = this.#lists.get(key);
    if (list === undefined) this.#lists.set(key, { paths: [path], next: 0 });
    else list.paths.push(path);
  }

  take(key: string, taken: ReadonlySet<string>): string | undefined {
    const list = this.#lists.get(key);
    if (list === undefined) return undefined;
    while (list.next < list.paths.length && taken.has(list.paths[list.next])) list.next++;
    return list.next < list.paths.length ? list.paths[list.next++] : undefined;
  }
}

/** The changes of a push, sorted out into what the rules look at. */
interface Changes {
  view: PushView;
  before: { get(path: string): ManifestEntry | undefined; has(path: string): boolean };
  after: { get(path: string): ManifestEntry | undefined; has(path: string): boolean };
  beforeFiles: number;
  /** Files of `before` that are not files in `after` and are neither renamed nor transitioned. */
  deleted: string[];
  /** Deleted path → added path holding the same content. */
  renamed: Map<string, string>;
  /** Files in both with different content. */
  modified: string[];
  /** Rollouts replaced by their compressed or decompressed form (maybe moved too). */
  transitions: RolloutCheck[];
}

function classify(view: PushView): Changes {
  const before = { get: (path: string) => view.before(path), has: (path: string) => view.before(path) !== undefined };
  const after = { get: (path: string) => view.after(path), has: (path: string) => view.after(path) !== undefined };
  // Only changed paths can be removed, modified or added: the view lists them in path order.
  const removed: string[] = [];
  const modified: string[] = [];
  const added: string[] = [];
  for (const path of view.changed) {
    const old = view.before(path);
    const now = view.after(path);
    if (old?.kind === "file") {
      if (now?.kind !== "file") removed.push(path);
      else if (!sameContent(old, now)) modified.push(path);
    } else if (now?.kind === "file") {
      added.push(path);
    }
  }

  // Pair renames one to one, so deleting a hundred identical `.gitkeep` files and adding one is
  // still a hundred deletes. Same-name pairs go first (a move keeps its name), then the rest.
  // Candidates sit in queues per key and are taken from the front, so even thousands of files
  // with the same content pair up in linear time.
  const contentKey = (entry: ManifestEntry): string => `${entry.hash}:${entry.size}`;
  const byContent = new Queues();
  const byContentAndName = new Queues();
  // Only a removed file can pair with an added one: without any, no queue is needed.
  for (const path of removed.length > 0 ? added : []) {
    const key = contentKey(after.get(path) as ManifestEntry);
    // Rollouts pair only with rollouts of the same name (below), never by content alone.
    if (!isRolloutPath(path)) byContent.add(key, path);
    byContentAndName.add(`${key}/${isRolloutPath(path)}/${basename(path)}`, path);
  }
  const renamed = new Map<string, string>();
  const taken = new Set<string>();
  for (const path of removed) {
    const key = contentKey(before.get(path) as ManifestEntry);
    // A rollout only pairs with a rollout of its own name: the name carries its thread id.
    const target = isRolloutPath(path)
      ? byContentAndName.take(`${key}/true/${basename(path)}`, taken)
      : (byContentAndName.take(`${key}/false/${basename(path)}`, taken) ??
        byContentAndName.take(`${key}/true/${basename(path)}`, taken));
    if (target === undefined) continue;
    renamed.set(path, target);
    taken.add(target);
  }
  for (const path of removed) {
    if (renamed.has(path) || isRolloutPath(path)) continue;
    const target = byContent.take(contentKey(before.get(path) as ManifestEntry), taken);
    if (target === undefined) continue;
    renamed.set(path, target);
    taken.add(target);
  }

  // Pair the remaining deleted and added rollouts by file name without the compression suffix.
  const addedRollouts = new Queues();
  for (const path of removed.length > 0 ? added : []) {
    if (!taken.has(path) && isRolloutPath(path)) addedRollouts.add(rolloutStem(path), path);
  }
  const transitions: RolloutCheck[] = [];
  const transitioned = new Set<string>();
  for (const path of removed) {
    if (renamed.has(path) || !isRolloutPath(path)) continue;
    const target = addedRollouts.take(rolloutStem(path), taken);
    if (target === undefined) continue;
    transitions.push({ path: target, previousPath: path });
    transitioned.add(path);
    taken.add(target);
  }

  const deleted = removed.filter((path) => !renamed.has(path) && !transitioned.has(path));
  return { view, before, after, beforeFiles: view.beforeFiles, deleted, renamed, modified, transitions };
}

/** What the caller must compute from content before calling {@linkcode evaluatePush}. */
export interface PushChecks {
  /**
   * The Markdown files whose content changed: pass `markdownStats` of both versions of each
   * as `markdown`.
   */
  markdown: string[];
  /**
   * The rollouts changed other than by adding or deleting them: modified in place, or replaced
   * by their compressed or decompressed form. Answer each with
   * `rolloutExtends.set(check.path, newStartsWithOld)`.
   */
  rollouts: RolloutCheck[];
}

/**
 * True when a push onto a tree with `beforeFiles` files may hold anything. Every rule judges a
 * file the head already has (deleted, modified, rewritten): onto a tree without files a push
 * only adds, and nothing is held. The hub skips comparing the trees of such a push (a first
 * push of 50,000 files) rather than listing every entry as added to find nothing.
 */
export function pushMayHold(beforeFiles: number): boolean {
  return beforeFiles > 0;
}

/** Lists, for a push, the content checks {@linkcode evaluatePush} needs answered. */
export function pushChecksNeeded(before: Manifest | PushView, after?: Manifest): PushChecks {
  const changes = classify(viewOf(before, after));
  return { markdown: changes.modified.filter(isMarkdownPath), rollouts: rolloutChecks(changes) };
}

function viewOf(before: Manifest | PushView, after: Manifest | undefined): PushView {
  return "changed" in before ? before : manifestPushView(before, after as Manifest);
}

function rolloutChecks(changes: Changes): RolloutCheck[] {
  const inPlace = changes.modified.filter(isRolloutPath).map((path) => ({ path, previousPath: path }));
  return [...inPlace, ...changes.transitions].sort((a, b) => byPath(a.path, b.path));
}

// ---- evaluation ------------------------------------------------------------------------

function percent(share: number): string {
  return `${Number((share * 100).toFixed(1))}%`;
}

function ratio(part: number, whole: number): number {
  return whole === 0 ? 0 : part / whole;
}

/** An item before `closeItem` adds the folder entries that must change with it. */
interface Draft {
  reason: QuarantineReason;
  paths: string[];
  metrics: Record<string, number>;
  summary: string;
}

/**
 * Decides which changes of a push land and which are held for review.
 *
 * @throws {CwsError} INVALID_ARGUMENT when the settings are invalid.
 * @throws {TypeError} when `markdown` or `rolloutExtends` lacks an entry the rules need.
 */
export function evaluatePush(input: PushInput): PolicyDecision {
  const { held, reverts } = evaluatePushView({ ...input, view: manifestPushView(input.before, input.after) });
  return { accepted: reverts.size === 0 ? input.after : applyReverts(input.after, reverts), held };
}

function applyReverts(after: Manifest, reverts: ReadonlyMap<string, ManifestEntry | null>): Manifest {
  const accepted = manifestIndex(after);
  for (const [path, old] of reverts) {
    if (old === null) accepted.delete(path);
    else accepted.set(path, old);
  }
  return makeManifest(accepted.values());
}

/** What {@linkcode evaluatePushView} decides: the held items, and what reverting them changes in `after`. */
export interface PolicyViewDecision {
  held: QuarantineItemDraft[];
  /** Path → its entry before the push (null: absent then) for every held path; applied to `after`, this gives the new head. */
  reverts: Map<string, ManifestEntry | null>;
}

/**
 * {@linkcode evaluatePush} on a view of the push (push-view.ts): reads only the changed paths,
 * their folders and per-folder file counts, so its cost grows with the push, not the tree.
 */
export function evaluatePushView(input: Omit<PushInput, "before" | "after"> & { view: PushView }): PolicyViewDecision {
  const settings = resolvePolicySettings(input.settings ?? {});
  const { markdown = new Map(), rolloutExtends = new Map() } = input;
  const globs = settings.protectedGlobs.map(compileGlob);
  const changes = classify(input.view);
  const { before, after } = changes;
  const drafts: Draft[] = [];

  // Protected deletes: one item each, whatever else trips.
  const protectedPaths = new Set<string>();
  for (const path of changes.deleted) {
    const glob = firstMatchingGlob(globs, path);
    if (glob === undefined) continue;
    protectedPaths.add(path);
    const what = isRolloutPath(path) ? "Codex rollout" : "protected file";
    drafts.push({
      reason: "protected-delete",
      paths: [path],
      metrics: { bytes: (before.get(path) as ManifestEntry).size },
      summary: `deletes ${what} ${displayPath(path)} (matches ${JSON.stringify(glob)})`,
    });
  }
  const ordinary = changes.deleted.filter((path) => !protectedPaths.has(path));

  // Mass delete: the share and count rules look at every real delete, protected ones included.
  const deletedCount = changes.deleted.length;
  const share = ratio(deletedCount, changes.beforeFiles);
  const shareTrips = share > settings.maxDeleteShare && deletedCount >= settings.minFilesForShareRule;
  const countTrips = deletedCount > settings.maxDeleteCount;
  if (shareTrips || countTrips) {
    if (ordinary.length > 0) {
      const why = [
        ...(shareTrips ? [`${percent(share)} > ${percent(settings.maxDeleteShare)}`] : []),
        ...(countTrips ? [`more than ${settings.maxDeleteCount} at once`] : []),
      ].join(", ");
      const separately = protectedPaths.size > 0 ? `; ${protectedPaths.size} protected held separately` : "";
      drafts.push({
        reason: "mass-delete",
        paths: ordinary,
        metrics: {
          deletedFiles: deletedCount,
          beforeFiles: changes.beforeFiles,
          deleteShare: share,
          maxDeleteShare: settings.maxDeleteShare,
          minFilesForShareRule: settings.minFilesForShareRule,
          maxDeleteCount: settings.maxDeleteCount,
          renamedFiles: changes.renamed.size,
          heldFiles: ordinary.length,
        },
        summary: `deletes ${deletedCount} of ${changes.beforeFiles} files (${why})${separately}`,
      });
    }
  } else {
    drafts.push(...emptiedFolders(changes, ordinary, settings));
  }

  // Markdown drift, only for changed content and never for a file that was tiny.
  for (const path of changes.modified) {
    if (!isMarkdownPath(path)) continue;
    const old = before.get(path) as ManifestEntry;
    const now = after.get(path) as ManifestEntry;
    if (old.size < settings.minMarkdownBytes) continue;
    const stats = markdown.get(path);
    if (stats === undefined) {
      throw new TypeError(
        `Cannot evaluate push as Markdown stats are missing for ${JSON.stringify(path)}: pass markdownStats() of both versions of every path pushChecksNeeded() lists under markdown`,
      );
    }
    const sizeRatio = ratio(now.size, old.size);
    const shrinks = now.size <= settings.shrinkRatio * old.size;
    const lost = Math.max(0, stats.before.headings - stats.after.headings);
    const headingsLost = ratio(lost, stats.before.headings);
    const losesHeadings = stats.before.headings >= settings.minHeadings && headingsLost >= settings.headingLossShare;
    if (!shrinks && !losesHeadings) continue;
    const why = [
      ...(shrinks
        ? [
            now.size === 0
              ? `empties it (${old.size} bytes to 0)`
              : `shrinks it from ${old.size} to ${now.size} bytes (${percent(sizeRatio)} ≤ ${percent(settings.shrinkRatio)})`,
          ]
        : []),
      ...(losesHeadings
        ? [`loses ${lost} of ${stats.before.headings} headings (${percent(headingsLost)} ≥ ${percent(settings.headingLossShare)})`]
        : []),
    ];
    drafts.push({
      reason: "markdown-drift",
      paths: [path],
      metrics: {
        beforeBytes: old.size,
        afterBytes: now.size,
        sizeRatio,
        shrinkRatio: settings.shrinkRatio,
        beforeHeadings: stats.before.headings,
        afterHeadings: stats.after.headings,
        headingsLost,
        headingLossShare: settings.headingLossShare,
        beforeNonEmptyLines: stats.before.nonEmptyLines,
        afterNonEmptyLines: stats.after.nonEmptyLines,
      },
      summary: `${displayPath(path)}: ${why.join(" and ")}`,
    });
  }

  // Rollouts are append-only: anything else keeps the old version live until the user decides.
  for (const { path, previousPath } of rolloutChecks(changes)) {
    const extendsOld = rolloutExtends.get(path);
    if (extendsOld === undefined) {
      throw new TypeError(
        `Cannot evaluate push as rolloutExtends has no answer for ${JSON.stringify(path)}: answer every check pushChecksNeeded() lists under rollouts`,
      );
    }
    if (extendsOld) continue;
    const old = before.get(previousPath) as ManifestEntry;
    const now = after.get(path) as ManifestEntry;
    const where = path === previousPath ? displayPath(path) : `${displayPath(previousPath)} → ${displayPath(path)}`;
    drafts.push({
      reason: "rollout-rewrite",
      paths: path === previousPath ? [path] : [previousPath, path].sort(byPath),
      metrics: { beforeBytes: old.size, afterBytes: now.size },
      summary: `${where}: the new version does not extend the old one (rewritten, not appended to)`,
    });
  }

  const held = drafts.map((draft) => closeItem(draft, changes));
  const order = QuarantineReason.options;
  held.sort((a, b) => order.indexOf(a.reason) - order.indexOf(b.reason) || byPath(a.paths[0], b.paths[0]));

  // The new head: `after` with every held path (folder entries included) put back as it was.
  const reverts = new Map<string, ManifestEntry | null>();
  for (const item of held) {
    for (const path of Object.keys(item.proposed)) reverts.set(path, before.get(path) ?? null);
  }
  return { held, reverts };
}

/** The outermost folders whose files were deleted (not moved) down to none, one item each. */
function emptiedFolders(changes: Changes, ordinary: readonly string[], settings: PolicySettings): Draft[] {
  // Only folders that lost a file can have been emptied: their file counts come from the view.
  const deletedIn = new Map<string, number>();
  for (const path of changes.deleted) {
    for (const folder of ancestors(path)) deletedIn.set(folder, (deletedIn.get(folder) ?? 0) + 1);
  }
  const filesIn = new Map<string, number>();
  for (const folder of deletedIn.keys()) filesIn.set(folder, changes.view.filesUnder("before", folder));
  const emptied = [...deletedIn.keys()]
    .filter(
      (folder) =>
        changes.view.filesUnder("after", folder) === 0 &&
        (filesIn.get(folder) ?? 0) >= settings.minFolderFiles &&
        (deletedIn.get(folder) ?? 0) >= settings.minFolderFiles,
    )
    .sort(byPath);
  // A folder sorts before everything inside it, so an emptied parent is always kept first.
  const outermost = new Set<string>();
  for (const folder of emptied) {
    if (!ancestors(folder).some((outer) => outermost.has(outer))) outermost.add(folder);
  }
  const heldIn = new Map<string, string[]>();
  for (const path of ordinary) {
    const folder = ancestors(path).find((outer) => outermost.has(outer));
    if (folder === undefined) continue;
    const list = heldIn.get(folder);
    if (list === undefined) heldIn.set(folder, [path]);
    else list.push(path);
  }
  const drafts: Draft[] = [];
  for (const folder of outermost) {
    const paths = heldIn.get(folder) ?? [];
    // When every deleted file in it was protected, those items already hold the whole folder.
    if (paths.length === 0) continue;
    const folderFiles = filesIn.get(folder) ?? 0;
    const deletedFiles = deletedIn.get(folder) ?? 0;
    const movedFiles = folderFiles - deletedFiles;
    const moved = movedFiles > 0 ? ` (${movedFiles} moved elsewhere)` : "";
    drafts.push({
      reason: "folder-emptied",
      paths,
      metrics: { folderFiles, deletedFiles, movedFiles, minFolderFiles: settings.minFolderFiles },
      summary: `empties folder ${displayPath(folder)}: deletes ${deletedFiles} of its ${folderFiles} files${moved}`,
    });
  }
  return drafts;
}

/**
 * Completes a draft with every entry that must change together with its paths, so that both
 * the head without the item (`accepted`) and the head with it (`applyItem`) are well-formed:
 * - a file or folder put back needs its folders: an ancestor that `before` had as a folder and
 *   `after` deleted (or turned into a file) is put back too, and one that `after` newly made a
 *   file is removed again;
 * - a file put back where `after` has a folder buries that folder's new entries, which are
 *   held too.
 * Each such path joins the item with its `after` value, so accepting the item applies it. A
 * path may belong to several items (two held deletes in one deleted folder); `applyItem`
 * handles that.
 */
function closeItem(draft: Draft, changes: Changes): QuarantineItemDraft {
  const { before, after, view } = changes;
  const proposed = new Map<string, ManifestEntry | null>();
  const restored: string[] = [];
  const hold = (path: string): void => {
    if (proposed.has(path)) return;
    proposed.set(path, after.get(path) ?? null);
    if (before.has(path)) restored.push(path);
  };
  for (const path of draft.paths) hold(path);

  while (restored.length > 0) {
    const path = restored.pop() as string;
    for (const folder of ancestors(path)) {
      const old = before.get(folder);
      const now = after.get(folder);
      if ((old?.kind === "dir" && now?.kind !== "dir") || (old === undefined && now?.kind === "file")) hold(folder);
    }
    if (before.get(path)?.kind === "file") {
      for (const inside of view.afterPathsUnder(path)) hold(inside);
    }
  }
  const keys = [...proposed.keys()].sort(byPath);
  return {
    reason: draft.reason,
    paths: [...draft.paths].sort(byPath),
    metrics: draft.metrics,
    summary: draft.summary,
    proposed: Object.fromEntries(keys.map((path) => [path, proposed.get(path) ?? null])),
    previous: Object.fromEntries(keys.map((path) => [path, before.get(path) ?? null])),
  };
}

// ---- accepting -------------------------------------------------------------------------

/** True when two entries (or absences) hold the same thing; a folder's mtime does not matter. */
function sameState(a: ManifestEntry | null | undefined, b: ManifestEntry | null | undefined): boolean {
  if (a == null || b == null) return a == null && b == null;
  return a.kind === b.kind && (a.kind === "dir" || sameContent(a, b));
}

function conflict(message: string, data: Record<string, unknown>): CwsError {
  return new CwsError(
    "CONFLICT",
    `Cannot accept the quarantine item as the head changed since it was held: ${message}. Reject the item, or restore the checkpoint it was held against and accept it then`,
    { data },
  );
}

/**
 * Applies an accepted item to a head manifest: the proposed entries replace the head's (used
 * by `quarantine accept`). A proposed folder deletion is skipped while the head still has
 * entries inside that folder (they belong to another held item, whose acceptance deletes it).
 *
 * @throws {CwsError} CONFLICT when the head changed since the item was held: a path no longer
 *   holds what it held then (checked when the item carries `previous`), a proposed entry would
 *   sit under a file, or a proposed file would bury entries of the head.
 */
export function applyItem(
  head: Manifest,
  item: Pick<QuarantineItemDraft, "proposed"> & Partial<Pick<QuarantineItemDraft, "previous">>,
): Manifest {
  const original = manifestIndex(head);
  const current = manifestIndex(head);
  const proposed = Object.entries(item.proposed);
  for (const [path, entry] of proposed) {
    const now = original.get(path);
    // Accepting twice is harmless; accepting over a newer change would lose that change.
    if (item.previous !== undefined && !sameState(now, item.previous[path]) && !sameState(now, entry)) {
      throw conflict(`${JSON.stringify(path)} was changed by a later push`, { path });
    }
    if (entry === null) current.delete(path);
    else current.set(path, entry);
  }
  const paths = [...current.keys()].sort(byPath);
  for (const [path, entry] of proposed) {
    if (entry === null) {
      const old = original.get(path);
      if (old?.kind === "dir" && entriesUnder(paths, path).length > 0) current.set(path, old);
      continue;
    }
    const blocking = ancestors(path).find((folder) => current.get(folder)?.kind === "file");
    if (blocking !== undefined) {
      throw conflict(`${JSON.stringify(path)} would sit under the file ${JSON.stringify(blocking)}`, { path, blocking });
    }
    if (entry.kind === "file") {
      const buried = entriesUnder(paths, path).length;
      if (buried > 0) {
        throw conflict(`the file ${JSON.stringify(path)} would replace a folder that holds ${buried} entries`, { path, buried });
      }
    }
  }
  return makeManifest(current.values());
}
