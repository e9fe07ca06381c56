/**
 * The pull side of Codex sync: lands `codex/` entries from the server in this device's Codex
 * home (the PullHandler of that namespace).
 *
 * A rollout is validated (its first line is `session_meta` with the id of its file name, it
 * belongs to this superproject once materialized, and it normalizes back to exactly the
 * server's bytes on this device), materialized with this device's root in its native form,
 * and written crash-safely at the thread's place below CODEX_HOME (temp file, fsync, mtime,
 * rename, folder fsync), compressed when the local copy was a `.jsonl.zst`. The version it
 * replaces is backed up first. A rollout Codex may be appending to is never replaced: it must
 * be unchanged since the scan, not written in the last few seconds, and not open in a Codex
 * process (Linux); such a thread is skipped and comes with a later sync. The thread-name index
 * is merged, never overwritten: other threads' lines keep their bytes and places.
 */
import { lstat, mkdir, rename, rm, utimes } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { basename, dirname, join } from "node:path";
import { zstdCompressSync } from "node:zlib";
import { CwsError } from "../../errors.ts";
import type { ManifestEntry } from "../../core/manifest.ts";
import { mergeSessionIndex } from "../../core/codex-index.ts";
import { checkRolloutName, parseRolloutRelativePath, threadBelongsTo } from "../../core/codex-paths.ts";
import { materializeRollout, readThreadMeta, type ThreadMeta } from "../../core/codex-rollout.ts";
import { syncDir, writeDurableTemp, writeFileAtomic } from "../../fs-atomic.ts";
import type { BackupSession } from "../backups.ts";
import { readSessionIndex } from "./home.ts";
import { completeLength, computeOverrides, normalizeWithOverrides } from "./overrides.ts";
import { defaultCodexProbe, type CodexProbe, type CodexProcesses } from "./process.ts";
import { CODEX_PREFIX, INDEX_PATH, factsFor, parseIndexContent, type CodexSide } from "./source.ts";
import type { PullHandler } from "../pull.ts";

/** A rollout written to this recently is not replaced: Codex may be in the middle of a turn. */
export const DEFAULT_BUSY_WINDOW_MS = 5_000;

/** Where a backed-up Codex file goes inside the sync's backup folder. */
export const CODEX_BACKUP_DIR = "codex-home";

export interface CodexSinkOptions {
  side: CodexSide;
  backup: BackupSession;
  /** Thread ids of the rollouts in the manifest being applied: index entries of these threads are merged. */
  targetIds: ReadonlySet<string>;
  /** @default defaultCodexProbe() */
  probe?: CodexProbe;
  /** @default Date.now */
  now?: () => number;
  /** @default DEFAULT_BUSY_WINDOW_MS */
  busyWindowMs?: number;
}

/** The result of validating and materializing one server rollout for this device. */
export interface MaterializedRollout {
  relativePath: string;
  materialized: Uint8Array;
  overrides: ReturnType<typeof computeOverrides>;
  facts: ReturnType<typeof factsFor>;
  meta: ThreadMeta;
  archived: boolean;
}

/** A thread the sink wrote, for registering it with Codex afterwards. */
export interface WrittenThread {
  id: string;
  archived: boolean;
  /** Absolute path of the file written. */
  file: string;
  meta: ThreadMeta;
}

/**
 * Checks a normalized rollout from the server against its manifest path and materializes it
 * for this device. Returns the reason it cannot be written instead of throwing, since one bad
 * thread must not stop a sync.
 */
export function materializeForDevice(path: string, data: Uint8Array, side: Pick<CodexSide, "binding">): MaterializedRollout | { refused: string } {
  const { root, style, platform } = side.binding;
  const relativePath = path.slice(CODEX_PREFIX.length);
  let name;
  try {
    name = parseRolloutRelativePath(relativePath);
  } catch (error) {
    return { refused: (error as Error).message };
  }
  // The checkpoint every thread must pass: a first line that is session_meta with the id in the file name.
  const view = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const firstEnd = view.indexOf(0x0a);
  type FirstLine = { type?: unknown; payload?: { id?: unknown } } | null;
  let first: FirstLine = null;
  try {
    first = JSON.parse(view.subarray(0, firstEnd === -1 ? view.length : firstEnd).toString("utf8")) as FirstLine;
  } catch {
    first = null;
  }
  if (first === null || first.type !== "session_meta" || first.payload?.id !== name.id) {
    return { refused: `its first line is not the session_meta of thread ${name.id}; the server copy looks damaged (try \`cws refresh-thread\` after checking the server)` };
  }
  if (completeLength(data) !== data.length) return { refused: "it ends in the middle of a line, which cws never pushes; the server copy looks damaged" };
  let materialized: Uint8Array;
  let meta;
  try {
    materialized = materializeRollout(data, root, style);
    meta = readThreadMeta(materialized);
    checkRolloutName(name.fileName, meta.id);
  } catch (error) {
    return { refused: (error as Error).message };
  }
  if (!threadBelongsTo(meta, [root], platform)) {
    return { refused: `once written here its working directory ("${meta.cwd}") is not inside ${root}, so it would not be this superproject's thread on this device` };
  }
  const overrides = computeOverrides(data, materialized, root, style);
  let again: Uint8Array;
  try {
    again = normalizeWithOverrides(materialized, root, style, overrides).normalized;
  } catch (error) {
    return { refused: (error as Error).message };
  }
  if (!Buffer.from(again.buffer, again.byteOffset, again.byteLength).equals(view)) {
    return { refused: "it would not read back byte for byte on this device, so it is not written (a bug: please report it)" };
  }
  return { relativePath, materialized, overrides, facts: factsFor(meta, data), meta, archived: name.archived };
}

export class CodexSink implements PullHandler {
  readonly side: CodexSide;
  /** Warnings for the user (Codex running while threads are written). */
  readonly warnings: string[] = [];
  /** Manifest path → where the local version was backed up before it was replaced or removed. */
  readonly backups = new Map<string, string>();
  /** Threads written by this sync (new or extended), in the order written. */
  readonly written: WrittenThread[] = [];
  #backup: BackupSession;
  #targetIds: ReadonlySet<string>;
  #probe: CodexProbe;
  #now: () => number;
  #busyWindowMs: number;
  #processes: Promise<CodexProcesses> | null = null;
  #warnedRunning = false;

  constructor(options: CodexSinkOptions) {
    this.side = options.side;
    this.#backup = options.backup;
    this.#targetIds = options.targetIds;
    this.#probe = options.probe ?? defaultCodexProbe();
    this.#now = options.now ?? Date.now;
    this.#busyWindowMs = options.busyWindowMs ?? DEFAULT_BUSY_WINDOW_MS;
  }

  readLocal(path: string, offset: number, length: number): Promise<Uint8Array> {
    return this.side.readAt(path, offset, length);
  }

  async write(entry: ManifestEntry, data: Uint8Array): Promise<{ skipped?: string }> {
    if (entry.path === INDEX_PATH) return this.#writeIndex(data);
    const ready = materializeForDevice(entry.path, data, this.side);
    if ("refused" in ready) return { skipped: `not written: ${ready.refused}` };
    const home = this.side.binding.home;
    const plainRel = ready.relativePath;
    const zstRel = `${plainRel}.zst`;
    const plainStat = await lstatOrNull(abs(home, plainRel));
    const zstStat = plainStat === null ? await lstatOrNull(abs(home, zstRel)) : null;
    // Codex reads the plain file when both exist; a lone .zst stays compressed, as it was.
    const targetRel = zstStat !== null ? zstRel : plainRel;
    const existing = zstStat ?? plainStat;
    const target = abs(home, targetRel);
    if (existing !== null) {
      const busy = await this.#busyReason(entry.path, targetRel, target, existing);
      if (busy !== null) return { skipped: busy };
    }
    const bytes = zstStat !== null ? zstdCompressSync(ready.materialized) : ready.materialized;
    await mkdir(dirname(target), { recursive: true });
    const temp = join(dirname(target), `.${basename(target)}.${randomBytes(6).toString("hex")}.cws-tmp`);
    await writeDurableTemp(temp, bytes);
    try {
      const mtime = new Date(entry.mtimeMs);
      await utimes(temp, mtime, mtime);
      if (existing !== null) {
        // The last look before the rename: a single appended line since the checks above
        // means Codex is writing, and that line must not be lost.
        const now = await lstatOrNull(target);
        if (now === null || now.size !== existing.size || now.mtimeMs !== existing.mtimeMs) {
          await rm(temp, { force: true });
          return { skipped: "not written: Codex wrote to this thread while the sync ran; it comes with the next sync" };
        }
        const relative = `${CODEX_BACKUP_DIR}/${targetRel}`;
        await this.#backup.preserve(relative, target);
        this.backups.set(entry.path, join(this.#backup.dir, ...relative.split("/")));
      }
      await rename(temp, target);
    } catch (error) {
      await rm(temp, { force: true });
      // On Windows an open handle of Codex makes the rename fail: that thread is busy, not broken.
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "EPERM" || code === "EBUSY" || code === "EACCES") {
        return { skipped: `not written: the file is in use (${code}), probably by Codex; it comes with the next sync` };
      }
      throw error;
    }
    await syncDir(dirname(target));
    const after = await lstat(target);
    this.side.recordWritten(
      targetRel,
      {
        size: after.size, mtimeMs: after.mtimeMs, ctimeMs: after.ctimeMs, ino: after.ino, belongs: true,
        normalized: { size: entry.size, hash: entry.hash, chunks: entry.chunks },
        rawLength: ready.materialized.length,
        facts: ready.facts,
      },
      ready.overrides,
    );
    this.written.push({ id: ready.meta.id, archived: ready.archived, file: target, meta: ready.meta });
    return {};
  }

  async remove(path: string): Promise<{ removed: boolean; skipped?: string }> {
    // Names are only ever added: a server without this superproject's index entries means
    // nothing for the local index, which Codex owns.
    if (path === INDEX_PATH) return { removed: false };
    const home = this.side.binding.home;
    const plainRel = path.slice(CODEX_PREFIX.length);
    let removed = false;
    for (const rel of [plainRel, `${plainRel}.zst`]) {
      const target = abs(home, rel);
      const existing = await lstatOrNull(target);
      if (existing === null) continue;
      if (!existing.isFile()) return { removed, skipped: `not removed: ${rel} below CODEX_HOME is not a regular file` };
      const busy = await this.#busyReason(path, rel, target, existing);
      if (busy !== null) return { removed, skipped: busy.replace("not written", "not removed") };
      const relative = `${CODEX_BACKUP_DIR}/${rel}`;
      await this.#backup.remove(relative, target);
      this.backups.set(path, join(this.#backup.dir, ...relative.split("/")));
      this.side.forget(rel);
      removed = true;
    }
    return { removed };
  }

  /** Why a local rollout must not be replaced now, or null when it may be. */
  async #busyReason(path: string, rel: string, target: string, existing: { size: number; mtimeMs: number; isFile(): boolean }): Promise<string | null> {
    if (!existing.isFile()) return `not written: ${rel} below CODEX_HOME is not a regular file`;
    const scanned = this.side.rollouts.get(path);
    if (scanned !== undefined && scanned.relativePath === rel && (scanned.stat.size !== existing.size || scanned.stat.mtimeMs !== existing.mtimeMs)) {
      return "not written: Codex wrote to this thread since the scan; it comes with the next sync";
    }
    const age = this.#now() - existing.mtimeMs;
    if (age < this.#busyWindowMs) {
      return `not written: Codex wrote to this thread ${Math.max(0, Math.round(age / 1000))} s ago and may still be working in it; it comes with a later sync`;
    }
    this.#processes ??= this.#probe().catch(() => ({ pids: [], openFiles: null }));
    const processes = await this.#processes;
    if (processes.pids.length > 0 && !this.#warnedRunning) {
      this.#warnedRunning = true;
      this.warnings.push(
        `Codex is running on this device (pid ${processes.pids.join(", ")}) while threads are updated from the server. ` +
          (processes.openFiles === null
            ? "Threads written in the last few seconds were left alone; if a thread you have open in Codex was updated, reopen it in Codex."
            : "Threads it holds open were left alone."),
      );
    }
    if (processes.openFiles?.has(target)) {
      return `not written: Codex (pid ${processes.pids.join(", ")}) has this thread open; close it in Codex and sync again`;
    }
    return null;
  }

  async #writeIndex(data: Uint8Array): Promise<{ skipped?: string }> {
    const home = this.side.binding.home;
    const incoming = parseIndexContent(data);
    const owned = new Set([...this.#targetIds, ...this.side.ownedIds]);
    let local;
    try {
      local = await readSessionIndex(home);
    } catch (error) {
      return { skipped: `thread names not merged: ${(error as Error).message}` };
    }
    if (!local.exact) return { skipped: "thread names not merged: session_index.jsonl is not valid UTF-8, so it is left as Codex wrote it" };
    const merged = mergeSessionIndex(local.text, incoming, owned);
    if (merged === local.text) return {};
    const target = join(home, "session_index.jsonl");
    const before = await lstatOrNull(target);
    if ((before?.mtimeMs ?? null) !== local.mtimeMs) return { skipped: "thread names not merged: Codex changed session_index.jsonl meanwhile; they come with the next sync" };
    await mkdir(home, { recursive: true });
    if (before !== null) {
      const relative = `${CODEX_BACKUP_DIR}/session_index.jsonl`;
      await this.#backup.preserve(relative, target);
    }
    await writeFileAtomic(target, merged, { mode: before !== null ? before.mode & 0o777 : 0o600 });
    return {};
  }
}

function abs(home: string, rel: string): string {
  if (rel.split("/").some((s) => s === "" || s === "." || s === "..")) {
    throw new CwsError("INVALID_PATH", `"${rel}" is not a path below CODEX_HOME`);
  }
  return join(home, ...rel.split("/"));
}

async function lstatOrNull(path: string) {
  try {
    return await lstat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw error;
  }
}
