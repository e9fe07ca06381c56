/**
 * `cws threads <slug>`: the superproject's Codex threads, from this device's Codex home and the
 * server head, with their name, last update and where each one lives; and
 * `cws refresh-thread <slug> --thread <id>`: write one thread again from the server head (the
 * local copy is backed up first), e.g. after it was damaged or edited by hand.
 */
import { homedir } from "node:os";
import { CwsError } from "../../errors.ts";
import { initHash } from "../../core/hash.ts";
import { effectiveThreadNames } from "../../core/codex-index.ts";
import type { ManifestEntry } from "../../core/manifest.ts";
import type { PathPlatform } from "../../core/codex-paths.ts";
import type { AgentConnection } from "../../transport/connection.ts";
import type { StateStore } from "../state.ts";
import { BackupSession } from "../backups.ts";
import { readSessionIndex } from "../codex/home.ts";
import type { CodexProbe } from "../codex/process.ts";
import { CodexSink } from "../codex/sink.ts";
import { CodexSide, INDEX_PATH, isRolloutManifestPath, parseIndexContent, resolveCodexBinding, rolloutIdOf } from "../codex/source.ts";
import { codexCachePath, readCodexConflicts, type CodexConflict } from "../codex/state.ts";
import { fetchEntryContents } from "../pull.ts";
import type { CodexCommand } from "../codex/app-server.ts";
import { CODEX_BIN_ENV, findCodexCommand, syncWithCodex, type ArrivedThread, type CodexThreadView } from "../codex/register.ts";
import { arrivedThreads } from "../codex/adapter.ts";
import { isAbsoluteFor } from "../../core/codex-paths.ts";

export interface ThreadsOptions {
  state: StateStore;
  conn: AgentConnection;
  slug: string;
  /** The path rules of this device's root (tests play Windows on Linux). @default from process.platform */
  platform?: PathPlatform;
  /** The Codex CLI asked what it lists; null: do not ask. @default found on PATH ($CWS_CODEX) */
  codexCommand?: CodexCommand | null;
  env?: Readonly<Record<string, string | undefined>>;
}

/** One thread of the superproject as `cws threads` shows it. */
export interface ThreadRow {
  id: string;
  /** The thread's name (session index, else its last rename), or null. */
  name: string | null;
  /** The start of the first user message, when the thread is on this device. */
  preview: string | null;
  /** Last update: the rollout's mtime (local when it is here, else the server's), ms since the epoch. */
  updatedMs: number;
  /** Where the thread lives. */
  where: "local" | "server" | "both";
  /** With `both`: whether this device's copy is the server's. */
  inSync: boolean | null;
  archived: boolean;
  /** The creation cwd relative to the superproject root ("" for the root itself), when known. */
  cwd: string | null;
  /** The manifest path (`codex/sessions/…`). */
  path: string;
  /**
   * What Codex on this device shows for the thread (local threads only, when Codex was
   * asked): whether `thread/list` lists it under its folder here, with which cwd and name.
   */
  codex: { listed: boolean; cwd: string | null; name: string | null } | null;
}

export interface ThreadsListing {
  slug: string;
  /** CODEX_HOME, or null when Codex sync is off for this binding. */
  home: string | null;
  root: string;
  /** Newest first. */
  threads: ThreadRow[];
  /** Diverged local copies that were set aside (see codex/state.ts). */
  conflicts: CodexConflict[];
  problems: Array<{ path: string; reason: string }>;
  /** Whether Codex was asked: "asked", "not installed", "off" (sync off or CWS_CODEX=off) or why it failed. */
  codexCheck: string;
}

async function serverManifest(conn: AgentConnection, slug: string): Promise<{ entries: ManifestEntry[]; snapshot: number | null }> {
  const { snapshot } = await conn.call("head", { slug });
  if (snapshot === null) return { entries: [], snapshot: null };
  const { manifest } = await conn.call("fetchManifest", { slug, snapshotId: snapshot.id });
  return { entries: manifest.entries.filter((e) => e.path.startsWith("codex/")), snapshot: snapshot.id };
}

/** Lists the superproject's threads here and on the server. */
export async function listSuperprojectThreads(options: ThreadsOptions): Promise<ThreadsListing> {
  const { state, conn, slug } = options;
  await initHash();
  const binding = state.binding(slug);
  const codex = resolveCodexBinding(binding, { platform: options.platform, homedir: homedir() });
  const side = codex === null ? null : await CodexSide.scan({ binding: codex, cachePath: codexCachePath(state.home, slug), onWarning: () => {} });
  const server = await serverManifest(conn, slug);

  // Names: the local index wins (it is what Codex shows here), then the server's index.
  const names = new Map<string, string>();
  const serverIndex = server.entries.find((e) => e.path === INDEX_PATH);
  if (serverIndex !== undefined) {
    const content = (await fetchEntryContents(conn, [serverIndex])).get(INDEX_PATH)!;
    for (const e of parseIndexContent(content)) names.set(e.id, e.threadName);
  }
  if (side?.available) {
    try {
      for (const [id, e] of effectiveThreadNames((await readSessionIndex(side.binding.home)).text)) names.set(id, e.threadName);
    } catch {
      // An unreadable index only costs the local names; the scan reported it.
    }
  }

  const rows = new Map<string, ThreadRow>();
  for (const r of side?.rollouts.values() ?? []) {
    rows.set(r.path, {
      id: r.id, name: names.get(r.id) ?? r.facts.name, preview: r.facts.preview, updatedMs: r.stat.mtimeMs,
      where: "local", inSync: null, archived: r.path.startsWith("codex/archived_sessions/"), cwd: r.facts.cwd, path: r.path, codex: null,
    });
  }
  for (const entry of server.entries) {
    if (!isRolloutManifestPath(entry.path)) continue;
    const id = rolloutIdOf(entry.path);
    if (id === null) continue;
    const row = rows.get(entry.path);
    if (row !== undefined) {
      row.where = "both";
      row.inSync = side?.rollouts.get(entry.path)?.entry.hash === entry.hash;
      continue;
    }
    rows.set(entry.path, {
      id, name: names.get(id) ?? null, preview: null, updatedMs: entry.mtimeMs, where: "server", inSync: null,
      archived: entry.path.startsWith("codex/archived_sessions/"), cwd: null, path: entry.path, codex: null,
    });
  }
  const codexCheck = side?.available ? await askCodex(side, [...rows.values()], options) : "off";
  return {
    slug,
    home: codex?.home ?? null,
    root: codex?.root ?? binding.root,
    threads: [...rows.values()].sort((a, b) => b.updatedMs - a.updatedMs || (a.id < b.id ? -1 : 1)),
    conflicts: await readCodexConflicts(state.home, slug),
    problems: side?.problems ?? [],
    codexCheck,
  };
}

/** Asks Codex on this device what it lists for the local threads (see codex/register.ts). */
async function askCodex(side: CodexSide, rows: ThreadRow[], options: ThreadsOptions): Promise<string> {
  let command: CodexCommand | null;
  try {
    command = options.codexCommand !== undefined ? options.codexCommand : findCodexCommand(options.env ?? process.env);
  } catch (error) {
    return (error as Error).message;
  }
  if (command === null) return (options.env ?? process.env)[CODEX_BIN_ENV] === "off" || options.codexCommand === null ? "off" : "not installed";
  const { binding } = side;
  const sep = binding.style === "windows" ? "\\" : "/";
  const local = rows.filter((r) => r.where !== "server");
  const threads: ArrivedThread[] = local.map((r) => ({
    id: r.id,
    name: r.name,
    // The creation folder: Codex lists a thread under its latest cwd, which is the same unless
    // the thread was resumed elsewhere.
    cwd: r.cwd === null || r.cwd === "" ? binding.root : isAbsoluteFor(r.cwd, binding.platform) ? r.cwd : binding.root + sep + r.cwd.split("/").join(sep),
    archived: r.archived,
    file: "",
    settings: { sandbox: null, permissionProfile: null, approvalPolicy: null },
    git: { sha: null, branch: null, originUrl: null },
  }));
  try {
    const { views } = await syncWithCodex({ codex: command, codexHome: binding.home, threads, platform: binding.platform, register: false });
    const byId = new Map(views.map((v) => [v.id, v]));
    for (const r of local) {
      const v = byId.get(r.id);
      r.codex = v === undefined ? null : { listed: v.listed, cwd: v.cwd, name: v.name };
    }
    return "asked";
  } catch (error) {
    return `Codex could not be asked: ${(error as Error).message}`;
  }
}

export interface RefreshThreadOptions extends ThreadsOptions {
  /** The thread's id (UUID). */
  thread: string;
  /** @default the platform's probe */
  codexProbe?: CodexProbe;
  /** Clock for the backup folder's name. */
  now?: () => Date;
}

export interface RefreshThreadResult {
  id: string;
  path: string;
  /** The snapshot the thread was taken from. */
  snapshot: number;
  /** Where the replaced local copy was saved, or null when there was none. */
  backup: string | null;
  warnings: string[];
  /** What Codex on this device lists for the thread after it was registered again, or null when Codex was not asked. */
  codex: CodexThreadView | null;
}

/**
 * Writes one thread again from the server head, materialized for this device. The local copy
 * is backed up first. A thread Codex holds open is refused (close it in Codex first).
 */
export async function refreshThread(options: RefreshThreadOptions): Promise<RefreshThreadResult> {
  const { state, conn, slug, thread } = options;
  await initHash();
  const binding = state.binding(slug);
  const codex = resolveCodexBinding(binding, { platform: options.platform, homedir: homedir() });
  if (codex === null) {
    throw new CwsError("INVALID_ARGUMENT", `Codex thread sync is off for ${slug} on this device; attach it again without --no-codex to use refresh-thread`);
  }
  const server = await serverManifest(conn, slug);
  const matches = server.entries.filter((e) => isRolloutManifestPath(e.path) && rolloutIdOf(e.path)?.toLowerCase() === thread.toLowerCase());
  if (matches.length === 0 || server.snapshot === null) {
    throw new CwsError("NOT_FOUND", `The server head of ${slug} has no thread ${thread}; \`cws threads ${slug}\` lists the threads it has`, { data: { thread } });
  }
  // A thread found both live and archived (an archive not yet synced everywhere) is taken live.
  const entry = matches.find((e) => e.path.startsWith("codex/sessions/")) ?? matches[0];
  const side = await CodexSide.scan({ binding: codex, cachePath: codexCachePath(state.home, slug), onWarning: () => {} });
  const data = (await fetchEntryContents(conn, [entry])).get(entry.path)!;
  const backup = new BackupSession(state.backupsDir(slug), (options.now ?? (() => new Date()))());
  // The user asked for this thread explicitly, so a recent mtime is no reason to wait; a
  // thread Codex holds open still is (its next lines would be lost).
  const sink = new CodexSink({ side, backup, targetIds: new Set([rolloutIdOf(entry.path)!]), probe: options.codexProbe, busyWindowMs: 0 });
  const written = await sink.write(entry, data);
  if (written.skipped !== undefined) {
    throw new CwsError("CONFLICT", `Cannot refresh thread ${thread}: ${written.skipped}`, { data: { thread } });
  }
  await side.saveCache();
  // Codex keeps its own view of the thread (name, cwd, turns); it is registered again too.
  let view: CodexThreadView | null = null;
  const warnings = [...sink.warnings];
  try {
    const command = options.codexCommand !== undefined ? options.codexCommand : findCodexCommand(options.env ?? process.env);
    if (command !== null) {
      const threads = await arrivedThreads(codex, sink.written);
      view = (await syncWithCodex({ codex: command, codexHome: codex.home, threads, platform: codex.platform, register: true })).views[0] ?? null;
    }
  } catch (error) {
    warnings.push(`Codex could not register the thread again: ${(error as Error).message}`);
  }
  return { id: rolloutIdOf(entry.path)!, path: entry.path, snapshot: server.snapshot, backup: sink.backups.get(entry.path) ?? null, warnings, codex: view };
}
