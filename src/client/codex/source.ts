/**
 * The `codex/` side of a superproject's manifest, produced from this device's Codex home.
 *
 * The manifest holds each of the superproject's threads in NORMALIZED form, not as the bytes
 * on disk: `codex/sessions/YYYY/MM/DD/rollout-….jsonl` (or `codex/archived_sessions/…`)
 * whose content is the rollout with this device's root replaced by `${CWS_ROOT}` (see
 * core/codex-rollout.ts), and `codex/session_index.jsonl` with only this superproject's
 * entries of Codex's thread-name index. So the engine syncs entries whose bytes exist only in
 * memory: this module scans them, and reads them back (verified) for the push and for reusing
 * local chunks in a pull. sink.ts is the other direction.
 *
 * Rules:
 * - A thread belongs when its creation cwd or latest turn cwd is inside the binding's Codex
 *   root (threadBelongsTo). Threads of other folders are looked at (once per version, thanks
 *   to the cache) and never synced; never-sync files are never even opened.
 * - A `.jsonl.zst` rollout is synced as its `.jsonl` name with uncompressed content, so Codex
 *   compressing a cold rollout is not a change, and appends still chunk well.
 * - Only complete lines are synced: a last line without `\n` may be one Codex is writing, and
 *   normalizing half a line would later look like a rewrite.
 * - The entry's mtime is the rollout's: Codex sorts threads by it.
 */
import { lstat, opendir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { zstdDecompressSync } from "node:zlib";
import { CwsError } from "../../errors.ts";
import { chunkLengths } from "../../core/chunker.ts";
import { xxh64Hex } from "../../core/hash.ts";
import { chunkId, type ChunkRef, type ManifestEntry } from "../../core/manifest.ts";
import { parseSessionIndex, updatedAtKey, formatIndexEntry, type SessionIndexEntry } from "../../core/codex-index.ts";
import {
  checkRolloutName,
  isNeverSync,
  parseRolloutName,
  parseRolloutRelativePath,
  threadBelongsTo,
  type PathPlatform,
} from "../../core/codex-paths.ts";
import { ROOT_PLACEHOLDER, readThreadMeta, type PathStyle, type ThreadMeta } from "../../core/codex-rollout.ts";
import { findCodexHome, readSessionIndex } from "./home.ts";
import { completeLength, normalizeWithOverrides } from "./overrides.ts";
import { loadCodexCache, saveCodexCache, type CachedRollout, type CodexCacheFile, type ThreadFacts } from "./state.ts";
import { RACY_WINDOW_MS } from "../stat-cache.ts";
import type { ScanProblem } from "../scanner.ts";

/** The namespace of Codex artifacts in a superproject's manifest. */
export const CODEX_PREFIX = "codex/";

/** The superproject's entries of Codex's thread-name index. */
export const INDEX_PATH = "codex/session_index.jsonl";

/** Rollouts larger than this (uncompressed) are reported, not synced: they are held in memory. */
export const MAX_SYNCED_ROLLOUT_BYTES = 512 * 1024 * 1024;

/** How this device maps a binding to Codex. */
export interface CodexBinding {
  /** CODEX_HOME on this device. */
  home: string;
  /** The folder Codex records as cwd for this superproject: the binding's root unless overridden. */
  root: string;
  /** Whose path rules the root follows (Windows: case-insensitive, drive letters, `\`). */
  platform: PathPlatform;
  style: PathStyle;
}

/** The fields of a binding that decide Codex sync. */
export interface CodexBindingFields {
  root: string;
  /** Undefined: find CODEX_HOME as Codex does; null: Codex sync is off for this binding. */
  codexHome?: string | null;
  /** The path Codex records as cwd when it differs from `root` (e.g. a symlinked folder). */
  codexRoot?: string;
}

export interface ResolveCodexOptions {
  /** @default process.env */
  env?: Readonly<Record<string, string | undefined>>;
  /**
   * The path rules of this device's root. Tests inject "win32" to play a Windows device.
   *
   * @default from process.platform
   */
  platform?: PathPlatform;
  /** @default os.homedir() */
  homedir?: string;
}

/** Where Codex lives for a binding, or null when Codex sync is off for it. */
export function resolveCodexBinding(binding: CodexBindingFields, options: ResolveCodexOptions & { homedir: string }): CodexBinding | null {
  if (binding.codexHome === null) return null;
  const platform = options.platform ?? (process.platform === "win32" ? "win32" : "posix");
  // The home is a path on this machine, found with this machine's rules whatever `platform` says.
  const home = binding.codexHome ?? findCodexHome(options.env ?? process.env, process.platform === "win32" ? "win32" : "posix", options.homedir);
  return { home, root: binding.codexRoot ?? binding.root, platform, style: platform === "win32" ? "windows" : "posix" };
}

/** The manifest path of a rollout found at `relativePath` below CODEX_HOME (`.zst` dropped). */
export function rolloutManifestPath(relativePath: string): string {
  return CODEX_PREFIX + relativePath.replace(/\.zst$/, "");
}

/** True for a rollout's manifest path (as opposed to the index). */
export function isRolloutManifestPath(path: string): boolean {
  return path.startsWith(CODEX_PREFIX) && path !== INDEX_PATH;
}

/** The thread id in a rollout's manifest path, or null. */
export function rolloutIdOf(path: string): string | null {
  return parseRolloutName(path.slice(path.lastIndexOf("/") + 1))?.id ?? null;
}

/**
 * The normalized index content for some entries: one line per distinct entry in Codex's
 * format, ordered by `updated_at` (then by text), so that equal sets give equal bytes on
 * every device and the newest name of each thread is its last line.
 */
export function indexContent(entries: readonly SessionIndexEntry[]): Uint8Array {
  const lines = new Map<string, bigint>();
  for (const e of entries) {
    const key = updatedAtKey(e.updatedAt);
    if (key !== null) lines.set(formatIndexEntry(e), key);
  }
  const sorted = [...lines].sort(([ta, ka], [tb, kb]) => (ka < kb ? -1 : ka > kb ? 1 : ta < tb ? -1 : ta > tb ? 1 : 0));
  return Buffer.from(sorted.map(([text]) => text + "\n").join(""));
}

/** Parses index content that arrived from the server (tolerant: bad lines are skipped). */
export function parseIndexContent(bytes: Uint8Array): SessionIndexEntry[] {
  return parseSessionIndex(new TextDecoder("utf-8").decode(bytes)).entries;
}

/** Builds a file entry for content held in memory. */
export function entryForBytes(path: string, bytes: Uint8Array, mtimeMs: number, mode: number): ManifestEntry {
  const chunks: ChunkRef[] = [];
  let at = 0;
  for (const length of chunkLengths(bytes)) {
    chunks.push([xxh64Hex(bytes.subarray(at, at + length)), length]);
    at += length;
  }
  return { path, kind: "file", size: bytes.length, mtimeMs: Math.max(0, mtimeMs), mode, hash: xxh64Hex(bytes), chunks };
}

/** Reads a rollout whole (decompressing `.zst`), refusing what is too big to hold. */
export async function readRolloutBytes(absPath: string, compressed: boolean): Promise<Uint8Array> {
  const info = await lstat(absPath);
  if (!info.isFile()) throw new CwsError("INVALID_PATH", `"${absPath}" is not a regular file (symlinks are not followed)`);
  if (info.size > MAX_SYNCED_ROLLOUT_BYTES) {
    throw new CwsError("FRAME_TOO_LARGE", `the rollout is ${info.size} bytes, more than the ${MAX_SYNCED_ROLLOUT_BYTES} cws syncs`);
  }
  const bytes = await readFile(absPath);
  if (!compressed) return bytes;
  try {
    return zstdDecompressSync(bytes, { maxOutputLength: MAX_SYNCED_ROLLOUT_BYTES });
  } catch (error) {
    throw new CwsError("CORRUPT", `the .zst rollout cannot be decompressed (${(error as Error).message}) or is larger than ${MAX_SYNCED_ROLLOUT_BYTES} bytes`, { cause: error });
  }
}

/** The cwd of a normalized rollout's first session_meta line, relative to the root when inside it. */
export function factsFor(meta: ThreadMeta, normalized: Uint8Array): ThreadFacts {
  let cwd = meta.cwd;
  const nl = Buffer.from(normalized.buffer, normalized.byteOffset, normalized.byteLength).indexOf(0x0a);
  try {
    const first = JSON.parse(new TextDecoder().decode(normalized.subarray(0, nl === -1 ? normalized.length : nl))) as { payload?: { cwd?: unknown } };
    const value = first.payload?.cwd;
    if (typeof value === "string" && value.startsWith(ROOT_PLACEHOLDER.slice(0, -1))) {
      cwd = value.slice(value.indexOf("}") + 1).replace(/^\//, "");
    }
  } catch {
    // The first line is not JSON; keep the absolute cwd.
  }
  const clip = (text: string | null) => (text === null ? null : text.length > 200 ? `${text.slice(0, 199)}…` : text);
  return { id: meta.id, name: clip(meta.threadName), preview: clip(meta.preview), provider: meta.modelProvider, cwd, lines: meta.lineCount };
}

/** One of the superproject's rollouts as found by the scan. */
export interface ScannedRollout {
  /** The manifest path (`codex/sessions/…/rollout-….jsonl`). */
  path: string;
  /** Where the file is below CODEX_HOME (may end in `.zst`). */
  relativePath: string;
  absPath: string;
  compressed: boolean;
  stat: { size: number; mtimeMs: number; ctimeMs: number; ino: number };
  /** How many bytes of the uncompressed file the entry covers (its complete lines). */
  rawLength: number;
  id: string;
  entry: ManifestEntry;
  facts: ThreadFacts;
}

export interface CodexScanOptions {
  binding: CodexBinding;
  /** The cache file of this binding (see state.ts). */
  cachePath: string;
  signal?: AbortSignal;
  /** @default Date.now */
  now?: () => number;
  /** @default process.emitWarning */
  onWarning?: (message: string) => void;
}

function modeOf(mode: number): number {
  return process.platform === "win32" ? 0o644 : mode & 0o777;
}

async function isDir(path: string): Promise<boolean> {
  try {
    return (await lstat(path)).isDirectory();
  } catch {
    return false;
  }
}

async function names(dir: string): Promise<Array<{ name: string; isFile: boolean; isDir: boolean }>> {
  const out: Array<{ name: string; isFile: boolean; isDir: boolean }> = [];
  // Dirent types follow lstat: symlinks are neither files nor folders, so none is followed.
  for await (const d of await opendir(dir)) out.push({ name: d.name, isFile: d.isFile(), isDir: d.isDirectory() });
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function describe(error: unknown): string {
  if (error instanceof CwsError) return error.message;
  const e = error as NodeJS.ErrnoException;
  return e?.code !== undefined ? `${e.code}: ${e.message}` : String((e as Error)?.message ?? error);
}

/**
 * This device's Codex side of one superproject: the manifest entries, where their content
 * comes from, and the cache that makes the next scan cheap.
 */
export class CodexSide {
  readonly binding: CodexBinding;
  /** False when CODEX_HOME does not exist (Codex never ran here): nothing was scanned. */
  readonly available: boolean;
  readonly rollouts = new Map<string, ScannedRollout>();
  /** Ids of the superproject's threads found locally. */
  readonly ownedIds = new Set<string>();
  readonly problems: ScanProblem[] = [];
  hashedFiles = 0;
  hashedBytes = 0;
  /** Threads found in CODEX_HOME whose folder is not under the binding's root. */
  otherThreads = 0;
  #index: { entry: ManifestEntry; bytes: Uint8Array } | null = null;
  #cache: CodexCacheFile;
  #cachePath: string;
  #cacheDirty = false;
  #memo: { path: string; bytes: Uint8Array } | null = null;

  private constructor(binding: CodexBinding, available: boolean, cache: CodexCacheFile, cachePath: string) {
    this.binding = binding;
    this.available = available;
    this.#cache = cache;
    this.#cachePath = cachePath;
  }

  /** The manifest entries, sorted by path. */
  get entries(): ManifestEntry[] {
    const all = [...this.rollouts.values()].map((r) => r.entry);
    if (this.#index !== null) all.push(this.#index.entry);
    return all.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }

  get indexEntry(): ManifestEntry | null {
    return this.#index?.entry ?? null;
  }

  /** The overrides recorded for a thread (see overrides.ts). */
  overridesFor(id: string): CodexCacheFile["overrides"][string] {
    return this.#cache.overrides[id] ?? [];
  }

  /** Scans the Codex home of a binding. Never throws for one bad rollout: that is a problem. */
  static async scan(options: CodexScanOptions): Promise<CodexSide> {
    const { binding, cachePath, signal, now = Date.now, onWarning = (m: string) => process.emitWarning(m) } = options;
    const startedAt = now();
    const cache = await loadCodexCache(cachePath, binding.root, binding.style, onWarning);
    const home = binding.home;
    const available = await isDir(home);
    const side = new CodexSide(binding, available, cache, cachePath);
    if (!available) return side;

    const next: CodexCacheFile = { ...cache, rollouts: {}, overrides: {} };
    const dirs: Array<{ dir: string; rel: string }> = [];
    const sessions = join(home, "sessions");
    if (await isDir(sessions)) {
      for (const y of await names(sessions)) {
        if (!y.isDir || !/^\d{4}$/.test(y.name)) continue;
        for (const m of await names(join(sessions, y.name))) {
          if (!m.isDir || !/^\d{2}$/.test(m.name)) continue;
          for (const d of await names(join(sessions, y.name, m.name))) {
            if (d.isDir && /^\d{2}$/.test(d.name)) dirs.push({ dir: join(sessions, y.name, m.name, d.name), rel: `sessions/${y.name}/${m.name}/${d.name}` });
          }
        }
      }
    }
    if (await isDir(join(home, "archived_sessions"))) dirs.push({ dir: join(home, "archived_sessions"), rel: "archived_sessions" });

    for (const { dir, rel } of dirs) {
      const listing = await names(dir);
      const plain = new Set(listing.filter((e) => e.isFile && e.name.endsWith(".jsonl")).map((e) => e.name));
      for (const item of listing) {
        if (signal?.aborted) throw new CwsError("CANCELLED", "The scan of the Codex home was cancelled");
        const relativePath = `${rel}/${item.name}`;
        if (isNeverSync(relativePath) || !item.name.startsWith("rollout-")) continue;
        const problemPath = CODEX_PREFIX + relativePath;
        if (!item.isFile) {
          side.problems.push({ path: problemPath, reason: "it is not a regular file (symlinks are never followed)" });
          continue;
        }
        const name = parseRolloutName(item.name);
        if (name === null) {
          side.problems.push({ path: problemPath, reason: "it is not a rollout name Codex writes (rollout-<time>-<uuid>.jsonl[.zst])" });
          continue;
        }
        // Codex reads the plain file when both exist, so the .zst twin is stale.
        if (name.compressed && plain.has(item.name.slice(0, -4))) continue;
        const absPath = join(dir, item.name);
        let known: { stat: { size: number; mtimeMs: number; ctimeMs: number; ino: number }; racy: boolean } | null = null;
        try {
          const info = await lstat(absPath);
          if (!info.isFile()) throw new CwsError("INVALID_PATH", "it is not a regular file (symlinks are never followed)");
          const stat = { size: info.size, mtimeMs: info.mtimeMs, ctimeMs: info.ctimeMs, ino: info.ino };
          const cached = cache.rollouts[relativePath];
          const racy = info.mtimeMs >= startedAt - RACY_WINDOW_MS;
          known = { stat, racy };
          if (cached !== undefined && sameStat(cached, stat)) {
            if (!racy) next.rollouts[relativePath] = cached;
            if (cached.problem !== undefined) {
              side.problems.push({ path: problemPath, reason: cached.problem });
              continue;
            }
            if (!cached.belongs) {
              side.otherThreads++;
              continue;
            }
            if (cached.normalized !== undefined && cached.facts !== undefined && cached.rawLength !== undefined) {
              const path = rolloutManifestPath(relativePath);
              side.#add({
                path, relativePath, absPath, compressed: name.compressed, stat, rawLength: cached.rawLength, id: cached.facts.id,
                entry: { path, kind: "file", size: cached.normalized.size, mtimeMs: Math.max(0, info.mtimeMs), mode: modeOf(info.mode), hash: cached.normalized.hash, chunks: cached.normalized.chunks },
                facts: cached.facts,
              });
              if (cache.overrides[cached.facts.id] !== undefined) next.overrides[cached.facts.id] = cache.overrides[cached.facts.id];
              continue;
            }
          }
          const raw = await readRolloutBytes(absPath, name.compressed);
          side.hashedFiles++;
          side.hashedBytes += raw.length;
          const rawLength = completeLength(raw);
          const complete = raw.subarray(0, rawLength);
          const meta = readThreadMeta(complete);
          const belongs = threadBelongsTo(meta, [binding.root], binding.platform);
          if (!belongs) {
            if (!racy) next.rollouts[relativePath] = { ...stat, belongs: false };
            side.otherThreads++;
            continue;
          }
          // Checked only for the superproject's threads: other folders' oddities are not ours to report.
          checkRolloutName(item.name, meta.id);
          // Codex finds a thread by its name below the date folder of that name; a file
          // elsewhere would land somewhere else on the other devices.
          parseRolloutRelativePath(relativePath);
          const { normalized, used } = normalizeWithOverrides(complete, binding.root, binding.style, cache.overrides[meta.id] ?? []);
          const path = rolloutManifestPath(relativePath);
          const entry = entryForBytes(path, normalized, info.mtimeMs, modeOf(info.mode));
          const facts = factsFor(meta, normalized);
          side.#add({ path, relativePath, absPath, compressed: name.compressed, stat, rawLength, id: meta.id, entry, facts });
          if (used.length > 0) next.overrides[meta.id] = used;
          if (!racy) {
            next.rollouts[relativePath] = { ...stat, belongs: true, normalized: { size: entry.size, hash: entry.hash, chunks: entry.chunks }, rawLength, facts };
          }
        } catch (error) {
          if (signal?.aborted) throw new CwsError("CANCELLED", "The scan of the Codex home was cancelled");
          const reason = `not synced: ${describe(error)}`;
          side.problems.push({ path: problemPath, reason });
          // A file that cannot be synced is not read again until it changes; I/O errors are retried.
          if (known !== null && !known.racy && error instanceof CwsError) next.rollouts[relativePath] = { ...known.stat, belongs: false, problem: reason };
        }
      }
    }

    try {
      const index = await readSessionIndex(home);
      const owned = index.entries.filter((e) => side.ownedIds.has(e.id));
      if (owned.length > 0) {
        const bytes = indexContent(owned);
        side.#index = { entry: entryForBytes(INDEX_PATH, bytes, index.mtimeMs ?? 0, 0o644), bytes };
      }
    } catch (error) {
      side.problems.push({ path: INDEX_PATH, reason: `thread names are not synced: ${describe(error)}` });
    }

    side.#cacheDirty = JSON.stringify(next) !== JSON.stringify(cache);
    side.#cache = next;
    return side;
  }

  #add(rollout: ScannedRollout): void {
    const existing = this.rollouts.get(rollout.path);
    if (existing !== undefined) {
      // Only a plain file and its .zst twin can share a manifest path, and the twin was skipped.
      this.problems.push({ path: rollout.path, reason: `found twice (${existing.relativePath}, ${rollout.relativePath}); only the first is synced` });
      return;
    }
    this.rollouts.set(rollout.path, rollout);
    this.ownedIds.add(rollout.id);
  }

  /** Replaces the index content with `bytes` (the union the plan settled on) and returns its entry. */
  setIndexContent(bytes: Uint8Array, mtimeMs: number): ManifestEntry {
    const entry = entryForBytes(INDEX_PATH, bytes, mtimeMs, 0o644);
    this.#index = { entry, bytes };
    return entry;
  }

  /**
   * The normalized content of one of this side's entries, read again from disk and checked
   * against the scan. Appends since the scan do not matter (only the scanned prefix is read);
   * any other change is CORRUPT, and the next sync picks it up.
   */
  async content(path: string): Promise<Uint8Array> {
    if (this.#memo?.path === path) return this.#memo.bytes;
    if (path === INDEX_PATH) {
      if (this.#index === null) throw new CwsError("NOT_FOUND", `Cannot read "${path}" as this device has no thread names of the superproject`);
      return this.#index.bytes;
    }
    const rollout = this.rollouts.get(path);
    if (rollout === undefined) throw new CwsError("NOT_FOUND", `Cannot read "${path}" as the Codex scan did not find it; scan again and retry`);
    let raw: Uint8Array;
    try {
      raw = await readRolloutBytes(rollout.absPath, rollout.compressed);
    } catch (error) {
      throw new CwsError("NOT_FOUND", `Cannot read "${path}" again (${describe(error)}); run the sync again`, { cause: error });
    }
    if (raw.length < rollout.rawLength) throw changed(path, `it is shorter than the ${rollout.rawLength} bytes scanned`);
    const { normalized } = normalizeWithOverrides(raw.subarray(0, rollout.rawLength), this.binding.root, this.binding.style, this.overridesFor(rollout.id));
    if (normalized.length !== rollout.entry.size || xxh64Hex(normalized) !== rollout.entry.hash) {
      throw changed(path, "its scanned lines were rewritten");
    }
    this.#memo = { path, bytes: normalized };
    return normalized;
  }

  /** The chunks of one of this side's entries, each checked against the entry. */
  async *readChunks(entry: ManifestEntry): AsyncGenerator<{ id: string; data: Uint8Array }> {
    const bytes = await this.content(entry.path);
    if (bytes.length !== entry.size || xxh64Hex(bytes) !== entry.hash) throw changed(entry.path, "its content differs from the entry pushed");
    let at = 0;
    for (const ref of entry.chunks) {
      const data = bytes.subarray(at, at + ref[1]);
      if (xxh64Hex(data) !== ref[0]) throw changed(entry.path, `its chunk at byte ${at} differs`);
      at += ref[1];
      yield { id: chunkId(ref), data };
    }
  }

  /** `length` bytes at `offset` of an entry's content (for reusing local chunks in a pull). */
  async readAt(path: string, offset: number, length: number): Promise<Uint8Array> {
    return (await this.content(path)).subarray(offset, offset + length);
  }

  /** Records a rollout this device just wrote, so the next scan neither reads it nor loses its overrides. */
  recordWritten(relativePath: string, record: CachedRollout, overrides: CodexCacheFile["overrides"][string]): void {
    for (const rel of Object.keys(this.#cache.rollouts)) {
      if (rel.replace(/\.zst$/, "") === relativePath.replace(/\.zst$/, "") && rel !== relativePath) delete this.#cache.rollouts[rel];
    }
    this.#cache.rollouts[relativePath] = record;
    const id = record.facts?.id;
    if (id !== undefined) {
      if (overrides.length > 0) this.#cache.overrides[id] = overrides;
      else delete this.#cache.overrides[id];
    }
    if (this.#memo?.path === rolloutManifestPath(relativePath)) this.#memo = null;
    this.#cacheDirty = true;
  }

  /** Forgets a rollout this device just removed. */
  forget(relativePath: string): void {
    delete this.#cache.rollouts[relativePath];
    this.#cacheDirty = true;
  }

  async saveCache(): Promise<void> {
    if (!this.#cacheDirty) return;
    await saveCodexCache(this.#cachePath, this.#cache);
    this.#cacheDirty = false;
  }
}

// When a rollout changed between the scan and the read in a way appends do not explain.
function changed(path: string, detail: string): CwsError {
  return new CwsError("CORRUPT", `Cannot read "${path}" as it changed since the scan (${detail}); run the sync again`, { data: { path } });
}

function sameStat(cached: CachedRollout, stat: { size: number; mtimeMs: number; ctimeMs: number; ino: number }): boolean {
  return cached.size === stat.size && cached.mtimeMs === stat.mtimeMs && cached.ctimeMs === stat.ctimeMs && cached.ino === stat.ino;
}
