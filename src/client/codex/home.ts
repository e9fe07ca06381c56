/**
 * Reads a Codex home (CODEX_HOME, default `~/.codex`) for the sync engine: which rollout
 * files exist, what they say about their threads, and the thread-name index. Nothing here
 * writes. Every path this module hands out is checked against the never-sync list first, so
 * credentials and databases cannot leak through it even if a caller asks for them.
 */
import { createReadStream } from "node:fs";
import { lstat, opendir, readFile } from "node:fs/promises";
import path from "node:path";
import { createZstdDecompress } from "node:zlib";
import { CwsError } from "../../errors.ts";
import { parseSessionIndex, type SessionIndexEntry } from "../../core/codex-index.ts";
import {
  assertSyncable,
  checkRolloutName,
  isNeverSync,
  parseRolloutName,
  rolloutRelativePath,
  type PathPlatform,
} from "../../core/codex-paths.ts";
import { ThreadMetaReader, type ThreadMeta } from "../../core/codex-rollout.ts";

export { NEVER_SYNC, isNeverSync } from "../../core/codex-paths.ts";

/**
 * Where Codex keeps its state: `CODEX_HOME` when set (resolved against nothing: Codex requires
 * it to be absolute and existing), else `~/.codex`, on Windows `%USERPROFILE%\.codex`.
 */
export function findCodexHome(
  env: Readonly<Record<string, string | undefined>>,
  platform: PathPlatform,
  homedir: string,
): string {
  const p = platform === "win32" ? path.win32 : path.posix;
  const explicit = env.CODEX_HOME;
  if (explicit !== undefined && explicit.trim() !== "") return p.normalize(explicit);
  const home = platform === "win32" ? env.USERPROFILE || homedir : homedir;
  return p.join(home, ".codex");
}

/** One rollout file found below CODEX_HOME. */
export interface LocalThread {
  /** Absolute path of the file. */
  filePath: string;
  /** Path relative to CODEX_HOME, `/`-separated, where the file actually is. */
  relativePath: string;
  /** Where Codex would put it (date folders from the name); differs if the file was misplaced. */
  canonicalRelativePath: string;
  fileName: string;
  archived: boolean;
  /** True for `.jsonl.zst`. */
  compressed: boolean;
  /** Modification time; Codex sorts "updated" by it, so a sync must preserve it. */
  mtimeMs: number;
  /** Size on disk (compressed size for `.zst`); `meta.byteCount` is the JSONL size. */
  size: number;
  meta: ThreadMeta;
  /** A `.jsonl.zst` beside this plain file, hidden by it as Codex hides it. */
  shadowedRelativePath: string | null;
}

/** A file that looks like a rollout but could not be used; reported, never fatal. */
export interface ThreadProblem {
  relativePath: string;
  reason: string;
}

export interface ThreadListing {
  threads: LocalThread[];
  problems: ThreadProblem[];
}

/** Decompressed rollouts larger than this are refused (protects against zstd bombs). */
export const MAX_ROLLOUT_BYTES = 4 * 1024 * 1024 * 1024;

/** The index is small in practice; a larger one is refused rather than read into memory. */
export const MAX_SESSION_INDEX_BYTES = 64 * 1024 * 1024;

async function existingDir(dir: string): Promise<boolean> {
  try {
    return (await lstat(dir)).isDirectory();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw error;
  }
}

async function listDir(dir: string): Promise<{ name: string; isFile: boolean; isDir: boolean }[]> {
  const out: { name: string; isFile: boolean; isDir: boolean }[] = [];
  // Dirent types come from lstat semantics: a symlink is neither a file nor a folder here,
  // so links (e.g. a "rollout" pointing at auth.json) are never followed.
  for await (const d of await opendir(dir)) out.push({ name: d.name, isFile: d.isFile(), isDir: d.isDirectory() });
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Streams a rollout (decompressing `.zst`) through the metadata reader. */
export async function readRolloutMeta(filePath: string, compressed: boolean): Promise<ThreadMeta> {
  const reader = new ThreadMetaReader();
  const file = createReadStream(filePath);
  const source = compressed ? file.pipe(createZstdDecompress()) : file;
  // A decompression error is emitted on the zstd stream, a read error on the file stream.
  file.on("error", (error) => source.destroy(error));
  let total = 0;
  try {
    for await (const chunk of source as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > MAX_ROLLOUT_BYTES) {
        throw new CwsError("FRAME_TOO_LARGE", `rollout is larger than ${MAX_ROLLOUT_BYTES} bytes; it is not synced`);
      }
      reader.push(chunk);
    }
  } finally {
    // Leaving the loop early destroys only `source`; the file under a zstd pipe must close too.
    file.destroy();
  }
  return reader.finish();
}

function describe(error: unknown): string {
  if (error instanceof CwsError) return error.message;
  const e = error as NodeJS.ErrnoException;
  return e.code !== undefined ? `${e.code}: ${e.message}` : String(e?.message ?? error);
}

/**
 * Lists every rollout below `sessions/YYYY/MM/DD/` and `archived_sessions/` (plain and
 * `.jsonl.zst`; a plain file hides a `.zst` of the same name, as in Codex). Files whose head
 * cannot be read, or whose name and session_meta id disagree, go to `problems`. Threads
 * are returned sorted by relative path. Throws NOT_FOUND when CODEX_HOME itself is missing.
 */
export async function listThreads(codexHome: string): Promise<ThreadListing> {
  if (!(await existingDir(codexHome))) {
    throw new CwsError(
      "NOT_FOUND",
      `Codex home "${codexHome}" does not exist; run Codex once on this device or set CODEX_HOME`,
      { data: { codexHome } },
    );
  }
  const candidates: { dir: string; relDir: string; archived: boolean }[] = [];
  const sessions = path.join(codexHome, "sessions");
  if (await existingDir(sessions)) {
    for (const y of await listDir(sessions)) {
      if (!y.isDir || !/^\d{4}$/.test(y.name)) continue;
      for (const m of await listDir(path.join(sessions, y.name))) {
        if (!m.isDir || !/^\d{2}$/.test(m.name)) continue;
        for (const d of await listDir(path.join(sessions, y.name, m.name))) {
          if (!d.isDir || !/^\d{2}$/.test(d.name)) continue;
          candidates.push({
            dir: path.join(sessions, y.name, m.name, d.name),
            relDir: `sessions/${y.name}/${m.name}/${d.name}`,
            archived: false,
          });
        }
      }
    }
  }
  const archivedDir = path.join(codexHome, "archived_sessions");
  if (await existingDir(archivedDir)) candidates.push({ dir: archivedDir, relDir: "archived_sessions", archived: true });

  const threads: LocalThread[] = [];
  const problems: ThreadProblem[] = [];
  for (const { dir, relDir, archived } of candidates) {
    const entries = await listDir(dir);
    const plainNames = new Set(entries.filter((e) => e.isFile && e.name.endsWith(".jsonl")).map((e) => e.name));
    for (const entry of entries) {
      const relativePath = `${relDir}/${entry.name}`;
      if (isNeverSync(relativePath) || !entry.name.startsWith("rollout-")) continue;
      if (!entry.isFile) {
        problems.push({ relativePath, reason: "not a regular file (symlinks are not followed)" });
        continue;
      }
      const name = parseRolloutName(entry.name);
      if (name === null) {
        problems.push({ relativePath, reason: "not a rollout name Codex writes (rollout-<time>-<uuid>.jsonl[.zst])" });
        continue;
      }
      if (name.compressed && plainNames.has(entry.name.slice(0, -4))) continue; // hidden by the plain file
      const filePath = path.join(dir, entry.name);
      try {
        const stat = await lstat(filePath);
        if (!stat.isFile()) throw new CwsError("INVALID_PATH", "not a regular file (symlinks are not followed)");
        const meta = await readRolloutMeta(filePath, name.compressed);
        checkRolloutName(entry.name, meta.id);
        const zstSibling = `${entry.name}.zst`;
        threads.push({
          filePath,
          relativePath,
          canonicalRelativePath: rolloutRelativePath(entry.name, archived),
          fileName: entry.name,
          archived,
          compressed: name.compressed,
          mtimeMs: stat.mtimeMs,
          size: stat.size,
          meta,
          shadowedRelativePath: entries.some((e) => e.isFile && e.name === zstSibling) ? `${relDir}/${zstSibling}` : null,
        });
      } catch (error) {
        problems.push({ relativePath, reason: describe(error) });
      }
    }
  }
  threads.sort((a, b) => (a.relativePath < b.relativePath ? -1 : a.relativePath > b.relativePath ? 1 : 0));
  return { threads, problems };
}

export interface LocalSessionIndex {
  /** The file's text, or "" when there is none. */
  text: string;
  /** False when the file was not valid UTF-8; the text was decoded with replacements, so do not write it back. */
  exact: boolean;
  entries: SessionIndexEntry[];
  badLines: number;
  /** Modification time, or null when the file does not exist. */
  mtimeMs: number | null;
}

/** Reads `session_index.jsonl` (thread names). A missing file is an empty index. */
export async function readSessionIndex(codexHome: string): Promise<LocalSessionIndex> {
  const relativePath = "session_index.jsonl";
  assertSyncable(relativePath);
  const filePath = path.join(codexHome, relativePath);
  let stat;
  try {
    stat = await lstat(filePath);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") {
      return { text: "", exact: true, entries: [], badLines: 0, mtimeMs: null };
    }
    throw error;
  }
  if (!stat.isFile()) {
    throw new CwsError("INVALID_PATH", `"${filePath}" is not a regular file; move it aside so Codex can recreate it`);
  }
  if (stat.size > MAX_SESSION_INDEX_BYTES) {
    throw new CwsError(
      "FRAME_TOO_LARGE",
      `"${filePath}" is ${stat.size} bytes, more than the ${MAX_SESSION_INDEX_BYTES} accepted; thread names are not synced until it is trimmed`,
    );
  }
  const bytes = await readFile(filePath);
  let text: string;
  let exact = true;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    text = new TextDecoder("utf-8").decode(bytes);
    exact = false;
  }
  const { entries, badLines } = parseSessionIndex(text);
  return { text, exact, entries, badLines, mtimeMs: stat.mtimeMs };
}
