/**
 * One three-way sync of a superproject between its local folder and the server: scan the
 * folder (L), read the server head (S) and this device's base (B), plan, push what only this
 * device changed, commit by compare-and-swap, pull what only the server changed, and record
 * the new base. The base is written last: a sync interrupted anywhere is simply run again,
 * and the next run finds the server head and the folder where the interruption left them.
 */
import { initHash } from "../core/hash.ts";
import { faultPoint } from "../fault.ts";
import type { Manifest } from "../core/manifest.ts";
import { orderForApply, planSync, type PlanAction, type SyncPlan } from "../core/plan.ts";
import { findCaseCollisions, windowsNameProblem } from "../core/paths.ts";
import type { SnapshotInfo } from "../protocol/messages.ts";
import type { AgentConnection, WireCounters } from "../transport/connection.ts";
import { scanTree, type ScanProblem } from "./scanner.ts";
import { loadStatCache, saveStatCache, type StatCacheEntry } from "./stat-cache.ts";
import { BackupSession } from "./backups.ts";
import { diskPath, pullChanges, type PullStats } from "./pull.ts";
import { pushChunks, type PushStats } from "./push.ts";
import type { StateStore } from "./state.ts";

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
  conn: AgentConnection;
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
}

export interface SyncSummary {
  slug: string;
  mode: SyncMode;
  dryRun: boolean;
  /** The head snapshot after the sync (null when the server is still empty). */
  snapshot: SnapshotInfo | null;
  scanned: { files: number; hashedFiles: number; hashedBytes: number };
  pushed: { files: number; deleted: number } & PushStats;
  pulled: PullStats;
  conflicts: Array<{ path: string; backup: string | null }>;
  problems: ScanProblem[];
  backupDir: string | null;
  wire: WireCounters;
  durationMs: number;
}

export async function syncSuperproject(options: SyncOptions): Promise<SyncSummary> {
  const started = performance.now();
  const { conn, state, slug, signal } = options;
  const emit = options.onEvent ?? (() => {});
  const binding = state.binding(slug);
  const wireAtStart = conn.counters();
  await initHash();

  emit({ type: "phase", phase: "scan" });
  const statCachePath = state.statCachePath(slug);
  const scan = await scanTree({
    root: binding.root,
    statCachePath,
    signal,
    onProgress: (p) => emit({ type: "scan-progress", ...p }),
    onWarning: (message) => process.emitWarning(message),
  });
  const problems = [...scan.problems, ...nameProblems(scan.manifest)];

  emit({ type: "phase", phase: "plan" });
  const { snapshot: head } = await conn.call("head", { slug }, { signal });
  const base = binding.base === null ? { format: 1 as const, entries: [] } : await state.readBase(slug);
  // The no-op fast path: when the head is still this device's base, the server manifest is
  // the base manifest and need not be fetched.
  let server: Manifest;
  if (head === null) server = { format: 1, entries: [] };
  else if (head.id === binding.base) server = base;
  else server = (await conn.call("fetchManifest", { slug, snapshotId: head.id }, { signal })).manifest;

  const mode = options.mode ?? "sync";
  // Override plans against the server itself as base: every difference is then a local change
  // to push, and nothing is pulled. Pull drops the pushes: local-only changes stay local and
  // are pushed by a later sync.
  const effectiveBase = mode === "override" ? server : head === null ? { format: 1 as const, entries: [] } : base;
  let plan = planSync(scan.manifest, server, effectiveBase);
  if (mode === "pull") plan = { ...plan, push: [], merged: server };
  const summary: SyncSummary = {
    slug,
    mode,
    dryRun: options.dryRun === true,
    snapshot: head,
    scanned: { files: scan.manifest.entries.filter((e) => e.kind === "file").length, hashedFiles: scan.hashedFiles, hashedBytes: scan.hashedBytes },
    pushed: { files: 0, deleted: 0, chunks: 0, bytes: 0, bundles: 0 },
    pulled: { files: 0, deleted: 0, chunks: 0, bytes: 0, reusedChunks: 0, skipped: [] },
    conflicts: plan.conflicts.map((c) => ({ path: c.path, backup: null })),
    problems,
    backupDir: null,
    wire: { sent: 0, received: 0 },
    durationMs: 0,
  };
  countPlan(plan, summary);
  if (options.dryRun) return finish(summary, conn, wireAtStart, started);

  let headAfter = head;
  if (plan.push.length > 0) {
    emit({ type: "phase", phase: "push" });
    const files = [];
    for (const action of plan.push) {
      if (action.type === "push" && action.entry !== null && action.entry.kind === "file") {
        files.push({ entry: action.entry, absPath: diskPath(binding.root, action.path) });
      }
    }
    const pushStats = await pushChunks({ conn, files, signal, onProgress: (p) => emit({ type: "push-progress", ...p }) });
    Object.assign(summary.pushed, pushStats);
    emit({ type: "phase", phase: "commit" });
    faultPoint("client-before-commit");
    const committed = await conn.call("commit", {
      slug,
      base: head?.id ?? null,
      manifest: plan.merged,
      kind: mode === "override" ? "override" : "push",
      fencingToken: options.fencingToken,
    }, { signal });
    headAfter = committed.snapshot;
  }

  const backup = new BackupSession(state.backupsDir(slug), (options.now ?? (() => new Date()))());
  const cacheUpdates = new Map<string, StatCacheEntry>();
  if (plan.pull.length > 0 || plan.conflicts.length > 0) {
    emit({ type: "phase", phase: "pull" });
    // Conflicts: the server version stays live; the local version is backed up first (by the
    // pull itself, which preserves every file it replaces or removes).
    const conflictPulls: PlanAction[] = plan.conflicts.map((c) => ({ type: "pull", path: c.path, entry: c.type === "conflict" ? c.server : null }));
    const pulled = await pullChanges({
      conn,
      root: binding.root,
      actions: orderForApply([...plan.pull, ...conflictPulls]),
      local: scan.manifest,
      backup,
      signal,
      onWritten: (path, entry) => cacheUpdates.set(path, entry),
      onProgress: (p) => emit({ type: "pull-progress", ...p }),
    });
    summary.pulled = pulled;
    const saved = new Set(backup.saved);
    for (const conflict of summary.conflicts) {
      const relative = conflict.path.slice("files/".length);
      conflict.backup = saved.has(relative) ? `${backup.dir}/${relative}` : null;
    }
  }
  if (backup.saved.length > 0) summary.backupDir = backup.dir;

  if (cacheUpdates.size > 0) {
    const cache = await loadStatCache(statCachePath, () => {});
    for (const [path, entry] of cacheUpdates) cache.set(path, entry);
    await saveStatCache(statCachePath, cache);
  }

  // The new base is what the server head holds now; written last, after every local change.
  const newBase = headAfter === null ? null : plan.push.length > 0 ? plan.merged : server;
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

function finish(summary: SyncSummary, conn: AgentConnection, wireAtStart: WireCounters, started: number): SyncSummary {
  const now = conn.counters();
  summary.wire = { sent: now.sent - wireAtStart.sent, received: now.received - wireAtStart.received };
  summary.durationMs = Math.round(performance.now() - started);
  return summary;
}

/** Counts planned files and deletions (a real pull replaces the pull counts with what it did). */
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

/** Names another device (Windows) could not hold, and case-only collisions, as scan problems. */
function nameProblems(manifest: Manifest): ScanProblem[] {
  const problems: ScanProblem[] = [];
  for (const entry of manifest.entries) {
    const reason = windowsNameProblem(entry.path);
    if (reason !== null) problems.push({ path: entry.path, reason: `Windows devices cannot hold this name: ${reason}` });
  }
  for (const group of findCaseCollisions(manifest.entries.map((e) => e.path))) {
    problems.push({ path: group[0], reason: `differs only in letter case from ${group.slice(1).join(", ")}; Windows and macOS devices cannot hold both` });
  }
  return problems;
}

