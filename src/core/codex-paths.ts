/**
 * Path rules for Codex artifacts, kept pure so that the client, the agent and the tests all
 * agree on them:
 *
 * - whether a thread's working directory lies inside a superproject root (Codex itself
 *   compares Windows paths case-insensitively and with the `\\?\` verbatim prefix removed,
 *   so we do the same, or a thread Codex lists for a folder would not be synced with it);
 * - where a rollout file lives below CODEX_HOME, derived strictly from its name;
 * - which files below CODEX_HOME must never leave the device (credentials, databases,
 *   caches, machine-local security state).
 */
import { CwsError } from "../errors.ts";

/** The platform whose path rules apply: Windows (`win32`) or everything else (`posix`). */
export type PathPlatform = "win32" | "posix";

// ---- working directories ---------------------------------------------------------------

/**
 * Folds a path into the form used only for comparisons, never for writing.
 *
 * On Windows the verbatim prefix `\\?\` (and `\\?\UNC\` for shares) is removed, `/` becomes
 * `\`, runs of separators collapse to one (except the two that start a UNC path), trailing
 * separators are dropped and the result is lower-cased, because NTFS and Codex's own
 * `paths_match_after_normalization` treat those spellings as the same folder. On POSIX only
 * separator runs and trailing separators are folded: case matters there.
 */
export function comparablePath(path: string, platform: PathPlatform): string {
  if (platform === "win32") {
    let p = path;
    if (p.startsWith("\\\\?\\UNC\\")) p = "\\\\" + p.slice(8);
    else if (p.startsWith("\\\\?\\")) p = p.slice(4);
    p = p.replaceAll("/", "\\");
    const unc = p.startsWith("\\\\");
    p = (unc ? "\\\\" : "") + p.slice(unc ? 2 : 0).replace(/\\+/g, "\\");
    while (p.length > (unc ? 2 : 1) && p.endsWith("\\")) p = p.slice(0, -1);
    return p.toLowerCase();
  }
  let p = path.replace(/\/+/g, "/");
  while (p.length > 1 && p.endsWith("/")) p = p.slice(0, -1);
  return p;
}

/** True when `path` is absolute under the platform's rules (drive or UNC on Windows). */
export function isAbsoluteFor(path: string, platform: PathPlatform): boolean {
  if (platform === "win32") {
    const p = path.startsWith("\\\\?\\") ? path.slice(4) : path;
    return /^[A-Za-z]:([\\/]|$)/.test(p) || /^[\\/]{2}[^\\/]/.test(p) || p.startsWith("UNC\\");
  }
  return path.startsWith("/");
}

/**
 * True when `cwd` is `root` itself or lies inside it. The test is separator-aware
 * (`C:\Users\a\proj2` is not inside `C:\Users\a\proj`), ignores trailing separators, and on
 * Windows ignores case and the `\\?\` prefix. Relative paths never match: Codex records
 * absolute working directories, so a relative one is not something we can place.
 */
export function cwdBelongsToRoot(cwd: string, root: string, platform: PathPlatform): boolean {
  if (!isAbsoluteFor(cwd, platform) || !isAbsoluteFor(root, platform)) return false;
  const c = comparablePath(cwd, platform);
  const r = comparablePath(root, platform);
  const sep = platform === "win32" ? "\\" : "/";
  if (c === r) return true;
  return c.startsWith(r.endsWith(sep) ? r : r + sep);
}

/** The two working directories a rollout records, as read by `readThreadMeta`. */
export interface ThreadCwds {
  /** `session_meta.payload.cwd` of the first session_meta line. */
  cwd: string | null;
  /** `turn_context.payload.cwd` of the last turn_context line, if any. */
  latestTurnCwd: string | null;
}

/**
 * True when the thread belongs to a superproject with these roots: its creation cwd or its
 * latest turn cwd lies inside one of them. Both count because Codex's own `--last` matching
 * accepts either, so a thread resumed into the project from elsewhere is still found there.
 */
export function threadBelongsTo(meta: ThreadCwds, roots: readonly string[], platform: PathPlatform): boolean {
  for (const root of roots) {
    if (meta.cwd !== null && cwdBelongsToRoot(meta.cwd, root, platform)) return true;
    if (meta.latestTurnCwd !== null && cwdBelongsToRoot(meta.latestTurnCwd, root, platform)) return true;
  }
  return false;
}

// ---- rollout file names ----------------------------------------------------------------

/** What a rollout file name says about the thread. */
export interface RolloutName {
  fileName: string;
  /** The thread id (UUID) embedded in the name; it must equal `session_meta.payload.id`. */
  id: string;
  /** Local start time from the name, as `YYYY`, `MM`, `DD`, `hh`, `mm`, `ss`. */
  year: string;
  month: string;
  day: string;
  hour: string;
  minute: string;
  second: string;
  /** True for `.jsonl.zst` (zstd-compressed cold rollout). */
  compressed: boolean;
}

// Codex names rollouts `rollout-<local time with - for :>-<uuid>.jsonl`, optionally `.zst`.
// Nothing else is accepted: revert files (`<id>_<rollout id>`) and stray names are not
// threads we know how to place, so the caller reports them instead of syncing them.
const ROLLOUT_NAME =
  /^rollout-(\d{4})-(\d{2})-(\d{2})T(\d{2})-(\d{2})-(\d{2})-([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\.jsonl(\.zst)?$/;

/** Parses a rollout file name, or returns null when it is not one (including impossible dates). */
export function parseRolloutName(fileName: string): RolloutName | null {
  const m = ROLLOUT_NAME.exec(fileName);
  if (m === null) return null;
  const [, year, month, day, hour, minute, second, id, zst] = m;
  const y = Number(year);
  const mo = Number(month);
  const d = Number(day);
  // Date.UTC rolls impossible days over (Feb 30 -> Mar 2), so comparing back rejects them.
  const date = new Date(Date.UTC(y, mo - 1, d));
  if (date.getUTCFullYear() !== y || date.getUTCMonth() !== mo - 1 || date.getUTCDate() !== d) return null;
  if (Number(hour) > 23 || Number(minute) > 59 || Number(second) > 59) return null;
  return { fileName, id, year, month, day, hour, minute, second, compressed: zst !== undefined };
}

/**
 * Checks that `fileName` is a valid rollout name whose UUID equals the thread id from its
 * `session_meta` line, and returns the parsed name. Codex finds a thread by the id in the
 * name, so a file whose name and content disagree would resume the wrong thread elsewhere.
 */
export function checkRolloutName(fileName: string, sessionId: string): RolloutName {
  const name = parseRolloutName(fileName);
  if (name === null) {
    throw new CwsError(
      "INVALID_PATH",
      `"${fileName}" is not a Codex rollout name (expected rollout-YYYY-MM-DDThh-mm-ss-<uuid>.jsonl[.zst]); it is not synced`,
      { data: { fileName } },
    );
  }
  if (name.id !== sessionId) {
    throw new CwsError(
      "INVALID_ARGUMENT",
      `rollout "${fileName}" names thread ${name.id} but its session_meta says ${sessionId}; ` +
        "the file was renamed or edited by hand, so it is not synced until the two agree",
      { data: { fileName, nameId: name.id, sessionId } },
    );
  }
  return name;
}

/**
 * Where a rollout lives below CODEX_HOME, `/`-separated: `sessions/YYYY/MM/DD/<name>` with the
 * date taken from the name (that is where Codex unarchives to), or flat
 * `archived_sessions/<name>` for archived threads.
 */
export function rolloutRelativePath(fileName: string, archived: boolean): string {
  const name = parseRolloutName(fileName);
  if (name === null) {
    throw new CwsError(
      "INVALID_PATH",
      `"${fileName}" is not a Codex rollout name (expected rollout-YYYY-MM-DDThh-mm-ss-<uuid>.jsonl[.zst])`,
      { data: { fileName } },
    );
  }
  return archived ? `archived_sessions/${fileName}` : `sessions/${name.year}/${name.month}/${name.day}/${fileName}`;
}

/**
 * The inverse of `rolloutRelativePath` for paths that arrive from a peer: accepts only the
 * two canonical placements (date folders matching the name, or flat archive) and refuses
 * everything else, so a peer cannot make us write anywhere else below CODEX_HOME.
 */
export function parseRolloutRelativePath(relativePath: string): RolloutName & { archived: boolean } {
  const parts = relativePath.split("/");
  const fileName = parts[parts.length - 1];
  const name = parseRolloutName(fileName);
  const archived = parts.length === 2 && parts[0] === "archived_sessions";
  if (name === null || (!archived && relativePath !== rolloutRelativePath(fileName, false))) {
    throw new CwsError(
      "INVALID_PATH",
      `"${relativePath}" is not a rollout path (expected sessions/YYYY/MM/DD/rollout-… matching the name, or archived_sessions/rollout-…)`,
      { data: { relativePath } },
    );
  }
  return { ...name, archived };
}

// ---- never sync ------------------------------------------------------------------------

/**
 * Files and folders below CODEX_HOME that never leave the device, whatever a caller asks:
 * credentials (refresh tokens rotate, so a copied one breaks both machines), Codex's SQLite
 * databases (a cache rebuilt from rollouts; sharing it has broken migrations), logs, caches,
 * shell snapshots (may hold secrets from the environment), sandbox/security state, the
 * Desktop app's UI state (absolute paths, rewritten on exit) and temporary files.
 * Entries ending in `/` are folders at the top of CODEX_HOME; a trailing `*` is a prefix.
 */
export const NEVER_SYNC: readonly string[] = [
  "auth.json",
  ".credentials.json",
  "*.sqlite*",
  "sqlite/",
  "shell_snapshots/",
  "log/",
  "logs_*",
  ".codex-global-state.json",
  "cap_sid",
  ".sandbox*",
  "models_cache.json",
  "version.json",
  "installation_id",
  "tmp/",
  ".tmp/",
  "plugins/cache/",
  "worktrees/",
  "app-server-*",
  "packages/",
];

// Secrets and databases are refused at any depth (a copy in a sub-folder is just as secret);
// the caches and state folders are only special at the top of CODEX_HOME.
const NEVER_ANY_DEPTH_NAMES = new Set(["auth.json", ".credentials.json", "cap_sid", ".codex-global-state.json"]);
const NEVER_TOP_NAMES = new Set(["models_cache.json", "version.json", "installation_id"]);
const NEVER_TOP_DIRS = ["sqlite", "shell_snapshots", "log", "tmp", ".tmp", "plugins/cache", "worktrees", "packages"];

/**
 * True when a path relative to CODEX_HOME must never be synced (see NEVER_SYNC). Accepts
 * `/` or `\` separators and compares without case, because on Windows and macOS `Auth.json`
 * is the same file as `auth.json`.
 */
export function isNeverSync(relativePath: string): boolean {
  const parts = relativePath
    .replaceAll("\\", "/")
    .toLowerCase()
    .split("/")
    .filter((s) => s !== "" && s !== ".");
  if (parts.length === 0) return false;
  for (const part of parts) {
    if (NEVER_ANY_DEPTH_NAMES.has(part)) return true;
    if (part.includes(".sqlite")) return true;
    if (part.startsWith(".sandbox")) return true;
  }
  const top = parts[0];
  if (parts.length === 1 && NEVER_TOP_NAMES.has(top)) return true;
  if (top.startsWith("logs_") || top.startsWith("app-server-")) return true;
  const joined = parts.join("/");
  return NEVER_TOP_DIRS.some((dir) => joined === dir || joined.startsWith(dir + "/"));
}

/** Throws when a path relative to CODEX_HOME is on the never-sync list. */
export function assertSyncable(relativePath: string): void {
  if (isNeverSync(relativePath)) {
    throw new CwsError(
      "INVALID_PATH",
      `"${relativePath}" below CODEX_HOME holds credentials, a database, caches or machine-local state and is never synced`,
      { data: { relativePath } },
    );
  }
}
