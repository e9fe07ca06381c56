/**
 * The Codex adapter: the one interface through which the sync engine (sync.ts) handles a
 * superproject's Codex threads. Everything Codex-specific (where CODEX_HOME is, which threads
 * belong, the normalized `codex/` namespace, the append-only rules, writing threads, asking
 * Codex itself to register what arrived) lives in this folder behind it, so a Codex format
 * change touches this folder only.
 *
 * A binding with Codex sync off still gets an adapter: it keeps the server's `codex/` part
 * out of the plan and the base's `codex/` part as it was (see plan.ts).
 * (The base overlay itself, which also keeps files the scan could not read, stays with the
 * sync engine.)
 */
import { homedir } from "node:os";
import type { Manifest, ManifestEntry } from "../../core/manifest.ts";
import type { PathPlatform } from "../../core/codex-paths.ts";
import type { SyncPlan } from "../../core/plan.ts";
import type { BackupSession } from "../backups.ts";
import type { PullHandler } from "../pull.ts";
import type { ScanProblem } from "../scanner.ts";
import type { CodexCommand } from "./app-server.ts";
import { codexEntries, localForPlan, settleCodexPlan, withCodexPart } from "./plan.ts";
import type { CodexProbe } from "./process.ts";
import { findCodexCommand, syncWithCodex, type ArrivedThread, type CodexThreadView } from "./register.ts";
import { CodexSink } from "./sink.ts";
import { CodexSide, CODEX_PREFIX, isRolloutManifestPath, resolveCodexBinding, rolloutIdOf, type CodexBinding, type CodexBindingFields } from "./source.ts";
import { codexCachePath, recordCodexConflicts } from "./state.ts";
import { readSessionIndex } from "./home.ts";
import { effectiveThreadNames } from "../../core/codex-index.ts";
import type { ThreadMeta } from "../../core/codex-rollout.ts";

/** What a sync did with the superproject's Codex threads. */
export interface CodexSummary {
  /** CODEX_HOME used, or null when Codex sync is off for this binding. */
  home: string | null;
  /** The root Codex records as cwd for this superproject. */
  root: string;
  /** The superproject's threads found in the Codex home (0 when it does not exist). */
  threads: number;
  /** Rollouts read during the scan (the rest came from the cache), and their bytes. */
  readFiles: number;
  readBytes: number;
  warnings: string[];
  /**
   * What Codex on this device shows for the threads this sync wrote (listed under which cwd,
   * with which name), or null when none were written or Codex was not asked.
   */
  registered: CodexThreadView[] | null;
}

export interface CodexAdapterOptions {
  stateHome: string;
  slug: string;
  binding: CodexBindingFields;
  env?: Readonly<Record<string, string | undefined>>;
  /** Whose path rules the root follows (tests play a Windows device with "win32"). */
  platform?: PathPlatform;
  probe?: CodexProbe;
  signal?: AbortSignal;
  /** The Codex CLI to register arrived threads with; undefined: found on PATH ($CWS_CODEX). */
  codexCommand?: CodexCommand | null;
}

export class CodexAdapter {
  readonly binding: CodexBinding | null;
  readonly #side: CodexSide | null;
  readonly #options: CodexAdapterOptions;
  #sink: CodexSink | null = null;

  private constructor(options: CodexAdapterOptions, binding: CodexBinding | null, side: CodexSide | null) {
    this.#options = options;
    this.binding = binding;
    this.#side = side;
  }

  /** Resolves the binding and scans this device's Codex home (nothing when sync is off). */
  static async open(options: CodexAdapterOptions): Promise<CodexAdapter> {
    const binding = resolveCodexBinding(options.binding, { env: options.env, platform: options.platform, homedir: homedir() });
    const side =
      binding === null
        ? null
        : await CodexSide.scan({ binding, cachePath: codexCachePath(options.stateHome, options.slug), signal: options.signal, onWarning: (m) => process.emitWarning(m) });
    return new CodexAdapter(options, binding, side);
  }

  get problems(): ScanProblem[] {
    return this.#side?.problems ?? [];
  }

  /** True for manifest paths of the `codex/` namespace. */
  owns(path: string): boolean {
    return path.startsWith(CODEX_PREFIX);
  }

  /** The local side of the plan: the scanned folder plus this device's threads. */
  localForPlan(files: Manifest, server: Manifest, base: Manifest): Manifest {
    return localForPlan(files, this.#side, server, base);
  }

  /** Applies the append-only and index-union rules to a plan. */
  async settle(plan: SyncPlan, options: { server: Manifest; mode: "sync" | "pull" | "override"; fetch: (entries: ManifestEntry[]) => Promise<Map<string, Uint8Array>> }): Promise<{ plan: SyncPlan; keepLocal: string[] }> {
    if (this.#side === null) return { plan, keepLocal: [] };
    return settleCodexPlan(plan, { side: this.#side, ...options });
  }

  /**
   * The summary of the scan. `server` is the server's manifest: when this device's Codex home
   * holds threads but none under the root while the server has the superproject's threads,
   * the root is probably not the folder Codex records here, and the summary says so.
   */
  summary(server?: Manifest): CodexSummary {
    const warnings: string[] = [];
    const side = this.#side;
    if (side !== null && side.available && side.rollouts.size === 0 && side.otherThreads > 0 && server !== undefined) {
      const onServer = server.entries.filter((e) => isRolloutManifestPath(e.path)).length;
      if (onServer > 0) {
        warnings.push(
          `none of the ${side.otherThreads} thread(s) in ${side.binding.home} lies under ${side.binding.root}, while the server has ${onServer} of this superproject; ` +
            "if Codex records this project under another folder on this device (a symlink, another drive letter), attach it with --codex-root set to that folder",
        );
      }
    }
    return {
      home: this.binding?.home ?? null,
      root: this.binding?.root ?? this.#options.binding.root,
      threads: this.#side?.rollouts.size ?? 0,
      readFiles: this.#side?.hashedFiles ?? 0,
      readBytes: this.#side?.hashedBytes ?? 0,
      warnings,
      registered: null,
    };
  }

  /** Where a pushed `codex/` entry's bytes come from (null for other entries). */
  reader(entry: ManifestEntry): (() => AsyncIterable<{ id: string; data: Uint8Array }>) | null {
    const side = this.#side;
    if (side === null || !this.owns(entry.path)) return null;
    return () => side.readChunks(entry);
  }

  /** The pull handlers of the `codex/` namespace (none when Codex sync is off). */
  pullHandlers(backup: BackupSession, merged: Manifest): Map<string, PullHandler> {
    if (this.#side === null) return new Map();
    this.#sink = new CodexSink({ side: this.#side, backup, probe: this.#options.probe, targetIds: rolloutIds(merged) });
    return new Map([[CODEX_PREFIX, this.#sink]]);
  }

  /** The local manifest a pull compares against (the folder plus this device's threads). */
  localForPull(files: Manifest): Manifest {
    return this.#side === null ? files : withCodexPart(files, this.#side.entries);
  }

  /** Where the pull backed up the local version of a `codex/` path. */
  backupOf(path: string): string | null {
    return this.#sink?.backups.get(path) ?? null;
  }

  /** Records the diverged local copies the pull set aside (shown by `cws threads`). */
  async recordConflicts(conflicts: ReadonlyArray<{ path: string; backup: string | null }>, snapshot: number | null): Promise<void> {
    await recordCodexConflicts(
      this.#options.stateHome,
      this.#options.slug,
      conflicts.flatMap((c) => {
        const id = rolloutIdOf(c.path);
        return isRolloutManifestPath(c.path) && c.backup !== null && id !== null ? [{ path: c.path, id, backup: c.backup, at: Date.now(), snapshot }] : [];
      }),
    );
  }

  /**
   * After the pull: saves the scan cache, and when threads were written asks Codex on this
   * device to register them (names, stale rows, turn cache) and reports what it lists.
   * Failures of Codex are warnings: the files are synced either way.
   */
  async finish(summary: CodexSummary): Promise<void> {
    if (this.#sink !== null) summary.warnings.push(...this.#sink.warnings);
    await this.#side?.saveCache();
    const written = this.#sink?.written ?? [];
    if (written.length === 0 || this.binding === null) return;
    let command: CodexCommand | null;
    try {
      command = this.#options.codexCommand !== undefined ? this.#options.codexCommand : findCodexCommand(this.#options.env ?? process.env);
    } catch (error) {
      summary.warnings.push((error as Error).message);
      return;
    }
    if (command === null) {
      if ((this.#options.env ?? process.env).CWS_CODEX !== "off") {
        summary.warnings.push(
          `Codex CLI not found on this device (no \`codex\` on PATH, or set CWS_CODEX): ${written.length} thread(s) were written to ${this.binding.home}; ` +
            "Codex lists them when it next starts, but names set on other devices and the turn view appear only after the thread is opened once",
        );
      }
      return;
    }
    try {
      const threads = await arrivedThreads(this.binding, written);
      const result = await syncWithCodex({ codex: command, codexHome: this.binding.home, threads, platform: this.binding.platform, register: true });
      summary.registered = result.views;
      const appended = Object.entries(result.actions).filter(([, a]) => a.some((x) => x.startsWith("appended")));
      if (appended.length > 0) {
        summary.warnings.push(`Codex recorded this device's settings in ${appended.length} thread(s) when it loaded them (${appended.map(([id]) => id).join(", ")}); the line syncs like any append`);
      }
      const failed = Object.entries(result.actions).filter(([, a]) => a.some((x) => x.startsWith("failed")));
      for (const [id, a] of failed) summary.warnings.push(`Codex could not register thread ${id}: ${a.find((x) => x.startsWith("failed"))}`);
      const missing = result.views.filter((v) => !v.listed);
      if (missing.length > 0) {
        summary.warnings.push(`Codex on this device does not list ${missing.length} synced thread(s) under ${this.binding.root}: ${missing.map((v) => `${v.id} (cwd ${v.cwd ?? "unknown"})`).join(", ")}`);
      }
    } catch (error) {
      summary.warnings.push(`Codex could not register the synced threads (${(error as Error).message}); the files are synced, Codex indexes them when it next loads them`);
    }
  }

  /**
   * The paths the base overlay keeps at their base entry (see plan.ts): those whose server
   * version did not land here, and with Codex sync off the whole `codex/` part.
   */
  overlayPaths(server: Manifest, baseForPlan: Manifest, notApplied: ReadonlySet<string>): Iterable<string> {
    if (this.#side !== null) return notApplied;
    return [...codexEntries(server), ...codexEntries(baseForPlan)].map((e) => e.path).concat([...notApplied].filter((p) => !this.owns(p)));
  }
}

/** The written threads with the names of the merged session index and their folders. */
export async function arrivedThreads(binding: CodexBinding, written: ReadonlyArray<{ id: string; archived: boolean; file: string; meta: ThreadMeta }>): Promise<ArrivedThread[]> {
  const index = await readSessionIndex(binding.home).catch(() => null);
  const names = index === null ? new Map<string, string>() : new Map([...effectiveThreadNames(index.text)].map(([id, e]) => [id, e.threadName]));
  const byId = new Map<string, ArrivedThread>();
  for (const w of written) {
    byId.set(w.id, {
      id: w.id,
      name: names.get(w.id) ?? w.meta.threadName ?? null,
      cwd: w.meta.latestTurnCwd ?? w.meta.cwd,
      archived: w.archived,
      file: w.file,
      settings: { sandbox: w.meta.sandboxMode, permissionProfile: w.meta.permissionProfile, approvalPolicy: w.meta.approvalPolicy },
      git: { sha: w.meta.gitSha, branch: w.meta.gitBranch, originUrl: w.meta.gitRepositoryUrl },
    });
  }
  return [...byId.values()];
}

/** The thread ids of the rollouts in a manifest. */
function rolloutIds(manifest: Manifest): Set<string> {
  const ids = new Set<string>();
  for (const entry of codexEntries(manifest)) {
    if (!isRolloutManifestPath(entry.path)) continue;
    const id = rolloutIdOf(entry.path);
    if (id !== null) ids.add(id);
  }
  return ids;
}
