/**
 * One three-way sync of a superproject between its local folder and the server: scan the
 * folder (L), read the server head (S) and this device's base (B), plan, push what only this
 * device changed, commit by compare-and-swap, pull what only the server changed, and record
 * the new base. The base is written last: a sync interrupted anywhere is simply run again,
 * and the next run finds the server head and the folder where the interruption left them.
 */
import { initHash } from "../core/hash.ts";
import { faultPoint } from "../fault.ts";
import { applyManifestDelta, diffManifests, emptyManifest, type Manifest } from "../core/manifest.ts";
import { orderForApply, planSync, type PlanAction, type SyncPlan } from "../core/plan.ts";
import { findCaseCollisions } from "../core/paths.ts";
import { holdNamesThatCannotTravel } from "./held-names.ts";
import type { SnapshotInfo } from "../protocol/messages.ts";
import type { AgentConnection, WireCounters } from "../transport/connection.ts";
import { scanTree, type ScanProblem } from "./scanner.ts";
import type { WalkMemo } from "./tree-watch.ts";
import { removeTreeLeftovers, removeWorkDirLeftovers } from "./leftovers.ts";
import { checkRootForState } from "./root-check.ts";
import { addToStatCache, type StatCacheEntry } from "./stat-cache.ts";
import { BackupSession } from "./backups.ts";
import { fetchEntryContents, pullChanges, type PullHandler, type PullStats } from "./pull.ts";
import type { PathPlatform } from "../core/codex-paths.ts";
import { CodexAdapter, type CodexSummary } from "./codex/adapter.ts";
import type { CodexCommand } from "./codex/app-server.ts";
import type { CodexProbe } from "./codex/process.ts";
import { readBaseOverlay, writeBaseOverlay } from "./codex/state.ts";
import { applyBaseOverlay, overlayFor } from "./codex/plan.ts";
import type { PushStats } from "./push.ts";
import type { StateStore } from "./state.ts";
import { checkHeld, maskHeld, nextHeldRecord, readHeld, recordHeld, writeHeld } from "./quarantine-held.ts";
import type { HeldItem } from "../protocol/messages.ts";
import type { FirstJoinHook } from "./first-join.ts";
import { displayPath } from "../core/paths.ts";

/** The least time between two scan-progress events, in milliseconds. */
const PROGRESS_INTERVAL_MS = 250;
/** How many scanned files pass between two looks at the clock for a progress event. */
const PROGRESS_CHECK_FILES = 64;

/** One path a sync moves: written (new or changed) or deleted. */
export interface ChangedPath {
  path: string;
  deleted: boolean;
}

/** How many changed paths a summary lists per direction. */
export const MAX_LISTED_CHANGES = 200;

export type SyncEvent =
  | { type: "phase"; phase: "scan" | "plan" | "push" | "commit" | "pull" | "done" }
  | { type: "scan-progress"; files: number; bytes: number }
  | { type: "push-progress"; chunks: number; bytes: number; total: number }
  | { type: "pull-progress"; files: number; total: number };

/**
 * What a run may do: `sync` both ways; `pull` only brings server changes down (update-from-
 * server: local changes stay local, conflicting ones are backed up and replaced); `override`
 * makes the local folder the server's new head (the old head stays as a checkpoint).
 */
export type SyncMode = "sync" | "pull" | "override";

export interface SyncOptions {
  /**
   * The session with the server, or the promise of one still being opened: the folder is
   * scanned meanwhile, and `head` is asked as soon as it is open. The caller closes it.
   */
  conn: AgentConnection | Promise<AgentConnection>;
  /** @default "sync" */
  mode?: SyncMode;
  state: StateStore;
  slug: string;
  /** Plan only: report what would move, change nothing. */
  dryRun?: boolean;
  signal?: AbortSignal;
  onEvent?: (event: SyncEvent) => void;
  /** The fencing token of this device's lease, when live sync holds one. */
  fencingToken?: number;
  /** Clock for backup folder names. */
  now?: () => Date;
  /**
   * Whose path rules the superproject root follows for Codex threads. Tests inject "win32" to
   * play a Windows device on Linux (with the binding's `codexRoot` a Windows path).
   *
   * @default from process.platform
   */
  codexPlatform?: PathPlatform;
  /** Finds running Codex processes before threads are replaced (tests inject one). */
  codexProbe?: CodexProbe;
  /** Environment used to find CODEX_HOME when the binding does not name one. @default process.env */
  env?: Readonly<Record<string, string | undefined>>;
  /**
   * Decides the first sync of a binding without a base, when the folder and the server both
   * hold files (first-join.ts): called after the scan and before anything is sent. Without
   * it, such a sync plans against an empty base.
   */
  firstJoin?: FirstJoinHook;
  /** The Codex CLI that registers arrived threads; null: never start it. @default found on PATH */
  codexCommand?: CodexCommand | null;
  /**
   * Folder listings known unchanged since the last walk, for the scan (the kept session's
   * watcher, tree-watch.ts); it must be the root's own.
   */
  walkMemo?: WalkMemo;
}

export type { CodexSummary };

export interface SyncSummary {
  slug: string;
  /** The superproject's local folder (conflict and dry-run messages name real paths in it). */
  root: string;
  mode: SyncMode;
  dryRun: boolean;
  /** The head snapshot after the sync (null when the server is still empty). */
  snapshot: SnapshotInfo | null;
  scanned: { files: number; hashedFiles: number; hashedBytes: number };
  pushed: { files: number; deleted: number } & PushStats;
  pulled: PullStats;
  /**
   * Paths both sides changed differently: the server's version stays live. `here` and
   * `onServer` say which sides still hold the path (one of them may have deleted it);
   * `backup` is where this device's version was kept (null on a dry run, or when it was absent).
   */
  conflicts: Array<{ path: string; backup: string | null; here: boolean; onServer: boolean }>;
  problems: ScanProblem[];
  /**
   * Paths the scan could not read: left as they are on this device and on the server (no push,
   * no delete, no pull over them) until a later sync can read them; with what to do about each.
   */
  unknown: UnknownPath[];
  /** Temp files and folders of interrupted runs that this sync removed. */
  leftoversRemoved: number;
  backupDir: string | null;
  codex: CodexSummary;
  /** What the server's quarantine holds of this device's changes (see quarantine-held.ts). */
  quarantine: {
    /** Items this sync's push was held in (`duplicate`: the same change was already pending). */
    held: HeldItem[];
    /** Items from earlier pushes still pending: their paths were left alone, not pushed again. */
    waiting: Array<{ id: number; reason: string; summary: string; paths: number }>;
    /** Rejected items whose paths get the server's version back. */
    restoring: number[];
  };
  /**
   * The paths the plan moves, as the user knows them (folder paths without the manifest's
   * internal `files/` prefix; Codex threads under `codex/`), at most {@link MAX_LISTED_CHANGES}
   * of each; the counts above are complete.
   */
  changes: { push: ChangedPath[]; pull: ChangedPath[] };
  /** Local files the pull replaced or deleted (each kept in `backupDir` first), relative to the folder. */
  replaced: string[];
  wire: WireCounters;
  durationMs: number;
}

/** A path the sync left alone because the scan could not read it. */
export interface UnknownPath {
  path: string;
  /** Why the scan could not read it. */
  reason: string;
  /** What the user can do so that the next sync handles it. */
  next: string;
}

export async function syncSuperproject(options: SyncOptions): Promise<SyncSummary> {
  const started = performance.now();
  const { state, slug, signal } = options;
  const emit = options.onEvent ?? (() => {});
  const binding = state.binding(slug);
  // Bindings made before roots were checked may name a root that must never be synced.
  checkRootForState(binding.root, state);
  // The connection (an SSH handshake and the agent's start-up) and the first round trip run
  // while the folder is scanned; the base manifest is read meanwhile too. Their failures are
  // seen where they are awaited, after the scan; until then they must not go unhandled.
  let wireAtStart: WireCounters = { sent: 0, received: 0 };
  const connecting = Promise.resolve(options.conn);
  const asking = connecting.then((conn) => {
    wireAtStart = conn.counters();
    return conn.call("head", { slug }, { signal });
  });
  const readingBase = binding.base === null ? Promise.resolve(emptyManifest()) : state.readBase(slug);
  for (const pending of [asking, readingBase]) pending.catch(() => {});
  await initHash();

  emit({ type: "phase", phase: "scan" });
  const statCachePath = state.statCachePath(slug);
  let progressAt = 0;
  let progressCalls = 0;
  const scan = await scanTree({
    root: binding.root,
    statCachePath,
    signal,
    onProgress: (p) => {
      // A few updates a second are enough for a person; an event per file (and the line the
      // command line formats for each) cost tens of milliseconds on a large tree, and even
      // reading the clock for each of 50,000 files shows in a profile: it is read every
      // PROGRESS_CHECK_FILES files.
      if (++progressCalls % PROGRESS_CHECK_FILES !== 0) return;
      const now = performance.now();
      if (now - progressAt < PROGRESS_INTERVAL_MS) return;
      progressAt = now;
      emit({ type: "scan-progress", ...p });
    },
    onWarning: (message) => process.emitWarning(message),
    memo: options.walkMemo,
  });
  const problems = [...scan.problems, ...nameProblems(scan.manifest)];
  const unknown = unknownPaths(scan.problems);
  // Leftovers of interrupted runs go now (not in a dry run, which changes nothing). Cleaning
  // the temp folder runs beside the rest of the sync and never fails it.
  let leftoversRemoved = 0;
  const cleaningTemp = options.dryRun ? Promise.resolve(0) : removeWorkDirLeftovers();
  if (!options.dryRun) leftoversRemoved += removeTreeLeftovers(scan.leftovers);
  const codex = await CodexAdapter.open({
    stateHome: state.home, slug, binding, env: options.env, platform: options.codexPlatform, probe: options.codexProbe, signal, codexCommand: options.codexCommand,
  });
  problems.push(...codex.problems);

  emit({ type: "phase", phase: "plan" });
  const conn = await connecting;
  const { snapshot: head } = await asking;
  const base = await readingBase;
  // The no-op fast path: when the head is still this device's base, the server manifest is
  // the base manifest and need not be fetched.
  let server: Manifest;
  if (head === null) server = { format: 1, entries: [] };
  else if (head.id === binding.base) server = base;
  else server = await fetchServerManifest(conn, slug, head, binding.base === null ? null : { id: binding.base, manifest: base }, signal);

  let mode = options.mode ?? "sync";
  // Override plans against the server itself as base: every difference is then a local change
  // to push, and nothing is pulled. Pull drops the pushes: local-only changes stay local and
  // are pushed by a later sync.
  const overlay = await readBaseOverlay(state.home, slug);
  const baseForPlan = applyBaseOverlay(base, overlay);
  let effectiveBase = mode === "override" ? server : head === null ? { format: 1 as const, entries: [] } : baseForPlan;
  let local = codex.localForPlan(scan.manifest, server, baseForPlan);
  let localFiles = scan.manifest;
  let replacing = false;
  if (options.firstJoin !== undefined && binding.base === null && head !== null && mode !== "override") {
    const joined = await options.firstJoin({ local, server, base: effectiveBase, head, root: binding.root, dryRun: options.dryRun === true, signal });
    if (joined !== null) {
      ({ local, base: effectiveBase, replace: replacing } = joined);
      localFiles = joined.scan(localFiles);
      // Replacing the server's state pushes, whichever command asked.
      if (replacing) mode = "sync";
    }
  }
  // Changes the server's quarantine holds are not pushed again, and rejected ones come back
  // from the server (an override pushes them again on purpose, so only pending ones are masked).
  const heldRecord = await readHeld(state, slug);
  const heldStatus = await checkHeld(conn, slug, heldRecord, signal);
  const masked = maskHeld(local, server, effectiveBase, mode === "override" ? { ...heldStatus, rejected: [] } : heldStatus);
  // Names that cannot travel stay out of the plan: kept where they are, never read as deletes.
  const travel = holdNamesThatCannotTravel(slug, { local: masked.local, server, base: masked.base });
  problems.push(...travel.problems);
  let plan = planSync(travel.local, travel.server, travel.base, { unknown: unknown.map((u) => u.path) });
  plan = { ...plan, merged: travel.restore(plan.merged) };
  if (mode === "pull") plan = { ...plan, push: [], merged: server };
  let keepLocal: string[];
  ({ plan, keepLocal } = await codex.settle(plan, { server, mode, fetch: (entries) => fetchEntryContents(conn, entries, signal) }));
  const summary: SyncSummary = {
    slug,
    root: binding.root,
    mode,
    dryRun: options.dryRun === true,
    snapshot: head,
    scanned: { files: countFiles(scan.manifest), hashedFiles: scan.hashedFiles, hashedBytes: scan.hashedBytes },
    pushed: { files: 0, deleted: 0, chunks: 0, bytes: 0, bundles: 0 },
    pulled: { files: 0, deleted: 0, chunks: 0, bytes: 0, reusedChunks: 0, skipped: [] },
    conflicts: plan.conflicts.map((c) => ({ path: c.path, backup: null, here: c.type === "conflict" && c.local !== null, onServer: c.type === "conflict" && c.server !== null })),
    problems,
    unknown,
    leftoversRemoved: 0,
    backupDir: null,
    codex: codex.summary(server),
    quarantine: { held: [], waiting: masked.waiting, restoring: masked.restoring },
    changes: { push: listChanges(plan.push), pull: listChanges(plan.pull) },
    replaced: [],
    wire: { sent: 0, received: 0 },
    durationMs: 0,
  };
  countPlan(plan, summary);
  summary.leftoversRemoved = leftoversRemoved + (await cleaningTemp);
  if (options.dryRun) return finish(summary, conn, wireAtStart, started);

  let headAfter = head;
  if (plan.push.length > 0) {
    emit({ type: "phase", phase: "push" });
    const files = [];
    for (const action of plan.push) {
      if (action.type === "push" && action.entry !== null && action.entry.kind === "file") {
        const entry = action.entry;
        const read = codex.reader(entry);
        if (read !== null) files.push({ entry, read });
        else files.push({ entry, root: binding.root });
      }
    }
    // Loaded only when there is something to push (bundles, zstd): not for a no-op sync.
    const { pushChunks, wholeManifestForCommit } = await import("./push.ts");
    // A first push names its whole manifest: a large one is staged on the agent in pieces
    // while the chunks upload, from the first ingested bundle on (the agent handles requests
    // one at a time, so pieces sent sooner would hold up its answer about missing chunks, on
    // which the whole push waits), and the commit after the push is one short request. Awaited
    // after the push, which reports its own failures first.
    let whole: ReturnType<typeof wholeManifestForCommit> | undefined;
    const stageWhole = () => {
      if (head !== null || whole !== undefined) return;
      whole = wholeManifestForCommit(conn, slug, plan.merged, signal);
      whole.catch(() => {});
    };
    const pushStats = await pushChunks({ conn, files, signal, onProgress: (p) => { stageWhole(); emit({ type: "push-progress", ...p }); } });
    stageWhole();
    Object.assign(summary.pushed, pushStats);
    emit({ type: "phase", phase: "commit" });
    faultPoint("client-before-commit");
    // Against an existing head, only the difference from the server's manifest travels: for a
    // big tree that is kilobytes instead of megabytes of manifest per push.
    const committed = await conn.call("commit", {
      slug,
      base: head?.id ?? null,
      ...(head === null ? await whole! : { delta: diffManifests(server, plan.merged) }),
      kind: mode === "override" || replacing ? "override" : "push",
      fencingToken: options.fencingToken,
    }, { signal });
    headAfter = committed.snapshot;
    summary.quarantine.held = committed.held ?? [];
  }

  const backup = new BackupSession(state.backupsDir(slug), (options.now ?? (() => new Date()))());
  const cacheUpdates = new Map<string, StatCacheEntry>();
  const handlers: Map<string, PullHandler> = codex.pullHandlers(backup, plan.merged);
  // Paths whose server version did not land here (Codex threads kept locally, paths the scan
  // could not read, pulls the disk refused): the base keeps what it had for them, so the
  // difference is seen again next time instead of being taken for a local change to push.
  const notApplied = new Set<string>([...keepLocal, ...plan.kept]);
  if (plan.pull.length > 0 || plan.conflicts.length > 0) {
    emit({ type: "phase", phase: "pull" });
    // Conflicts: the server version stays live; the local version is backed up first (by the
    // pull itself, which preserves every file it replaces or removes).
    const conflictPulls: PlanAction[] = plan.conflicts.map((c) => ({ type: "pull", path: c.path, entry: c.type === "conflict" ? c.server : null }));
    const pulled = await pullChanges({
      conn,
      root: binding.root,
      actions: orderForApply([...plan.pull, ...conflictPulls]),
      local: codex.localForPull(localFiles),
      backup,
      handlers,
      signal,
      onWritten: (path, entry) => cacheUpdates.set(path, entry),
      onProgress: (p) => emit({ type: "pull-progress", ...p }),
    });
    summary.pulled = pulled;
    faultPoint("client-pull-before-base");
    const saved = new Set(backup.saved);
    for (const conflict of summary.conflicts) {
      if (codex.owns(conflict.path)) {
        conflict.backup = codex.backupOf(conflict.path);
        continue;
      }
      const relative = conflict.path.slice("files/".length);
      conflict.backup = saved.has(relative) ? `${backup.dir}/${relative}` : null;
    }
    for (const skipped of pulled.skipped) notApplied.add(skipped.path);
    await codex.recordConflicts(summary.conflicts, headAfter?.id ?? null);
  }
  await codex.finish(summary.codex);
  if (backup.saved.length > 0) summary.backupDir = backup.dir;
  summary.replaced = [...backup.saved];

  // Files the pull wrote are not read by the next scan (their paths are matched against the
  // ignore rules then: they came from the server, not from a walk).
  if (cacheUpdates.size > 0) await addToStatCache(statCachePath, cacheUpdates);

  // The new base is what the server head holds now; written last, after every local change.
  // When the quarantine held part of the push, the head is what the hub accepted of it, not
  // plan.merged: that is what this device now agrees with (quarantine-held.ts records the rest).
  const held = summary.quarantine.held;
  const accepted = headAfter !== null && held.length > 0 ? (await conn.call("fetchManifest", { slug, snapshotId: headAfter.id }, { signal })).manifest : null;
  if (heldRecord.length > 0 || held.length > 0) {
    await writeHeld(state, slug, nextHeldRecord(heldStatus, accepted === null ? [] : recordHeld(held, plan.merged, accepted)));
  }
  // Codex threads whose server version did not land here (busy, refused, kept locally) keep
  // their old base entry in the overlay, so the next sync sees the same difference again
  // instead of taking it for a local change; with Codex sync off, the whole `codex/` part of
  // the base stays as it was. The base manifest itself stays the server's (the no-op fast path
  // relies on that), and the overlay is written first: a crash between the two is harmless.
  await writeBaseOverlay(state.home, slug, overlay, headAfter === null ? [] : overlayFor(baseForPlan, codex.overlayPaths(server, baseForPlan, notApplied)));
  const newBase = headAfter === null ? null : accepted ?? (plan.push.length > 0 ? plan.merged : server);
  if (newBase !== null && headAfter !== null) {
    if (headAfter.id !== binding.base || plan.push.length > 0) await state.writeBase(slug, newBase);
    await state.update((s) => {
      s.superprojects[slug] = { ...s.superprojects[slug], base: headAfter!.id, lastSyncAt: Date.now() };
    });
  }
  summary.snapshot = headAfter;
  emit({ type: "phase", phase: "done" });
  return finish(summary, conn, wireAtStart, started);
}

/**
 * The manifest of the server head. With a base on this device and an agent that offers it, only
 * what changed since the base travels (a delta the agent reads from the folders that differ);
 * the result is checked against the head's file and byte totals, and anything that does not add
 * up (a base file lost or damaged here) falls back to the whole manifest.
 */
async function fetchServerManifest(conn: AgentConnection, slug: string, head: SnapshotInfo, base: { id: number; manifest: Manifest } | null, signal: AbortSignal | undefined): Promise<Manifest> {
  if (base !== null && base.manifest.entries.length > 0 && conn.hello.capabilities.includes("manifest-delta")) {
    const { delta } = await conn.call("fetchManifestDelta", { slug, snapshotId: head.id, since: base.id }, { signal });
    try {
      const manifest = applyManifestDelta(base.manifest, delta);
      let bytes = 0;
      for (const entry of manifest.entries) bytes += entry.size;
      if (countFiles(manifest) === head.files && bytes === head.bytes) return manifest;
    } catch {
      // A delta that does not fit this base: the whole manifest below.
    }
  }
  return (await conn.call("fetchManifest", { slug, snapshotId: head.id }, { signal })).manifest;
}

function finish(summary: SyncSummary, conn: AgentConnection, wireAtStart: WireCounters, started: number): SyncSummary {
  const now = conn.counters();
  summary.wire = { sent: now.sent - wireAtStart.sent, received: now.received - wireAtStart.received };
  summary.durationMs = Math.round(performance.now() - started);
  return summary;
}

function countFiles(manifest: Manifest): number {
  let files = 0;
  for (const entry of manifest.entries) if (entry.kind === "file") files++;
  return files;
}

/** Counts planned files and deletions (a real pull replaces the pull counts with what it did). */
function listChanges(actions: readonly PlanAction[]): ChangedPath[] {
  const listed: ChangedPath[] = [];
  for (const action of actions) {
    if (listed.length >= MAX_LISTED_CHANGES) break;
    if (action.type === "conflict" || (action.entry !== null && action.entry.kind !== "file")) continue;
    listed.push({ path: displayPath(action.path), deleted: action.entry === null });
  }
  return listed;
}

function countPlan(plan: SyncPlan, summary: SyncSummary): void {
  for (const action of plan.push) {
    if (action.type !== "push") continue;
    if (action.entry === null) summary.pushed.deleted++;
    else if (action.entry.kind === "file") summary.pushed.files++;
  }
  for (const action of plan.pull) {
    if (action.type !== "pull") continue;
    if (action.entry === null) summary.pulled.deleted++;
    else if (action.entry.kind === "file") summary.pulled.files++;
  }
}

/** The scan problems that are unknown paths, each with the step that lets a later sync handle it. */
function unknownPaths(problems: readonly ScanProblem[]): UnknownPath[] {
  return problems.filter((p) => p.unknown === true).map((p) => ({ path: p.path, reason: p.reason, next: nextStepFor(p.reason) }));
}

function nextStepFor(reason: string): string {
  if (/EACCES|EPERM|permission/i.test(reason)) return "give your user read access to it (e.g. `chmod u+r`) and sync again";
  if (/kept changing/.test(reason)) return "sync again once nothing is writing to it";
  if (/vanished/.test(reason)) return "sync again; if it was deleted, the next sync shares the deletion";
  if (/normalised/.test(reason)) return "rename one of the two names and sync again";
  return "fix what is said above and sync again";
}

/** Case-only collisions, as scan problems (names no device can hold are held-names.ts's). */
function nameProblems(manifest: Manifest): ScanProblem[] {
  const problems: ScanProblem[] = [];
  for (const group of findCaseCollisions(manifest.entries.map((e) => e.path))) {
    problems.push({ path: group[0], reason: `differs only in letter case from ${group.slice(1).join(", ")}; Windows and macOS devices cannot hold both` });
  }
  return problems;
}

