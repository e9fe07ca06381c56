/**
 * The download half of a sync: fetch the chunks this device lacks in bundles, verify every
 * one, and write each pulled file to a temp name beside its target, fsync it, give it the
 * server's mtime and mode, and rename it into place. Chunks this device already has in
 * unchanged local files are copied from them instead of downloaded (an appended transcript
 * only downloads its new tail). Nothing is overwritten or deleted without a backup first.
 */
import { open, readdir, rm, rmdir, type FileHandle } from "node:fs/promises";
import { closeSync, fchmodSync, fsyncSync, futimesSync, lstatSync, mkdirSync, openSync, readSync, renameSync, rmSync, writeSync, type Stats } from "node:fs";
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { randomBytes, randomUUID } from "node:crypto";
import { CwsError } from "../errors.ts";
import { faultPoint } from "../fault.ts";
import { chunkId, type ChunkRef, type Manifest, type ManifestEntry } from "../core/manifest.ts";
import type { PlanAction } from "../core/plan.ts";
import { resolveInside } from "../core/paths.ts";
import { createXxh64, xxh64Hex } from "../core/hash.ts";
import { readBundle, verifyRecord } from "../protocol/bundle.ts";
import { MAX_IDS_PER_REQUEST } from "../protocol/messages.ts";
import type { AgentConnection } from "../transport/connection.ts";
import type { BackupSession } from "./backups.ts";
import type { StatCacheEntry } from "./stat-cache.ts";
import { isOsLitter, isTreeTempName, makeWorkDir, treeTempName } from "./leftovers.ts";

/** Ask the agent for at most this many raw bytes per bundle. */
const DOWNLOAD_BUNDLE_BYTES = 32 * 1024 * 1024;

export interface PullStats {
  files: number;
  deleted: number;
  chunks: number;
  bytes: number;
  /** Chunks taken from files already on this device instead of the network. */
  reusedChunks: number;
  /** Paths that could not be applied, with the reason (e.g. a folder still holding ignored files). */
  skipped: Array<{ path: string; reason: string }>;
}

/**
 * Applies pulled entries of one namespace whose bytes on this device are not the manifest's
 * bytes (the `codex/` namespace: normalized on the server, materialized locally). The pull
 * still downloads, reuses and verifies chunks; the handler decides how content lands.
 */
export interface PullHandler {
  /** Reads `length` bytes at `offset` of a local entry's content, to reuse its chunks. */
  readLocal(path: string, offset: number, length: number): Promise<Uint8Array>;
  /** Writes an entry whose verified content is `data`, or says why it was skipped. */
  write(entry: ManifestEntry, data: Uint8Array): Promise<{ skipped?: string }>;
  /** Removes the local version of an entry the server deleted, or says why it was skipped. */
  remove(path: string): Promise<{ removed: boolean; skipped?: string }>;
}

export interface PullOptions {
  conn: AgentConnection;
  root: string;
  /** Pull actions in apply order (see orderForApply). */
  actions: readonly PlanAction[];
  /** The local scan, used to find chunks already on this device. */
  local: Manifest;
  backup: BackupSession;
  /** Handlers by namespace prefix (e.g. "codex/"); paths of other namespaces are files below `root`. */
  handlers?: ReadonlyMap<string, PullHandler>;
  /** Receives the stat of every file written, so the next scan does not hash it again. */
  onWritten?: (path: string, entry: StatCacheEntry) => void;
  signal?: AbortSignal;
  onProgress?: (done: { files: number; total: number }) => void;
}

interface LocalSource {
  path: string;
  /** Where the file is on disk, or undefined when a handler reads it (`read`). */
  absPath?: string;
  read?: (length: number) => Promise<Uint8Array>;
  offset: number;
}

function handlerFor(handlers: ReadonlyMap<string, PullHandler> | undefined, path: string): PullHandler | undefined {
  if (handlers === undefined) return undefined;
  for (const [prefix, handler] of handlers) if (path.startsWith(prefix)) return handler;
  return undefined;
}

/** The manifest path `files/a/b` lives at `<root>/a/b`. */
export function diskPath(root: string, manifestPath: string): string {
  const relative = manifestPath.startsWith("files/") ? manifestPath.slice("files/".length) : manifestPath;
  return resolveInside(root, relative);
}

export async function pullChanges(options: PullOptions): Promise<PullStats> {
  const { conn, root, actions, local, backup, signal } = options;
  const stats: PullStats = { files: 0, deleted: 0, chunks: 0, bytes: 0, reusedChunks: 0, skipped: [] };
  const changing = new Set(actions.map((a) => a.path));

  // Where each chunk can be read on this device. A source file that this pull replaces is
  // only usable for its own path (it is read before being renamed over).
  const localSources = new Map<string, LocalSource[]>();
  for (const entry of local.entries) {
    if (entry.kind !== "file") continue;
    const handler = handlerFor(options.handlers, entry.path);
    let offset = 0;
    for (const ref of entry.chunks) {
      const id = chunkId(ref);
      const list = localSources.get(id) ?? [];
      const at = offset;
      if (list.length < 4) {
        list.push(handler === undefined
          ? { path: entry.path, absPath: diskPath(root, entry.path), offset }
          : { path: entry.path, offset, read: (length) => handler.readLocal(entry.path, at, length) });
      }
      localSources.set(id, list);
      offset += ref[1];
    }
  }
  const usableSource = (id: string, target: string): LocalSource | undefined =>
    localSources.get(id)?.find((s) => s.path === target || !changing.has(s.path));

  const need = new Map<string, number>();
  for (const action of actions) {
    if (action.type !== "pull" || action.entry === null || action.entry.kind !== "file") continue;
    for (const ref of action.entry.chunks) {
      const id = chunkId(ref);
      if (!usableSource(id, action.path)) need.set(id, ref[1]);
    }
  }

  const workDir = await makeWorkDir("pull");
  const spool = new ChunkSpool(join(workDir, "spool"));
  let writer: BatchedWriter | undefined;
  try {
    await spool.open();
    await downloadInto(conn, [...need.keys()], need, workDir, spool, stats, signal);

    const totalFiles = actions.filter((a) => a.type === "pull" && a.entry?.kind === "file").length;
    writer = new BatchedWriter(backup, stats, (path, entry) => options.onWritten?.(path, entry), () => options.onProgress?.({ files: stats.files, total: totalFiles }));
    let sinceYield = 0;
    for (const action of actions) {
      if (signal?.aborted) throw new CwsError("CANCELLED", "The pull was cancelled; files already written are complete, the rest come with the next sync");
      if (action.type !== "pull") continue;
      const handler = handlerFor(options.handlers, action.path);
      if (handler !== undefined) {
        if (action.entry === null) {
          const removed = await handler.remove(action.path);
          if (removed.skipped !== undefined) stats.skipped.push({ path: action.path, reason: removed.skipped });
          else if (removed.removed) stats.deleted++;
          continue;
        }
        if (action.entry.kind !== "file") continue; // handlers own flat namespaces: folders are implicit
        const data = await assembleBytes(action.entry, spool, (id) => usableSource(id, action.path), stats);
        const written = await handler.write(action.entry, data);
        if (written.skipped !== undefined) {
          stats.skipped.push({ path: action.path, reason: written.skipped });
          continue;
        }
        stats.files++;
        options.onProgress?.({ files: stats.files, total: totalFiles });
        continue;
      }
      const absPath = diskPath(root, action.path);
      const relative = action.path.slice("files/".length);
      if (action.entry === null || action.entry.kind === "dir") {
        // Deletions and folders come before files in apply order; finish pending writes first
        // so the order on disk is the order of the plan.
        await writer.flush();
        const existing = lstatOrNull(absPath);
        if (action.entry === null) {
          if (existing === null) continue;
          if (existing.isDirectory()) {
            if (!(await removeEmptiedFolder(absPath, relative, backup))) {
              stats.skipped.push({ path: action.path, reason: "the folder still holds files that are not synced (ignored or new); it was left in place" });
              continue;
            }
          } else {
            await backup.remove(relative, absPath);
          }
          stats.deleted++;
          continue;
        }
        if (existing !== null && !existing.isDirectory()) await backup.remove(relative, absPath);
        writer.ensureDir(absPath);
        continue;
      }
      const entry = action.entry;
      const existing = lstatOrNull(absPath);
      if (existing?.isDirectory()) {
        stats.skipped.push({ path: action.path, reason: "a folder of that name is still here with unsynced files in it" });
        continue;
      }
      writer.ensureDir(dirname(absPath));
      const temp = writeFileFromChunksSync(writer.tempName(absPath), entry, spool, (id) => usableSource(id, action.path), stats);
      await writer.add({ temp, absPath, relative, entry, replaces: existing !== null });
      if (++sinceYield >= FILES_PER_YIELD) {
        sinceYield = 0;
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
    await writer.flush();
    return stats;
  } catch (error) {
    // Temp files of a batch that never got renamed would fill a full disk further and make
    // every retry fail the same way: they go now, and only complete renamed files stay.
    writer?.discard();
    throw error;
  } finally {
    await spool.close();
    await rm(workDir, { recursive: true, force: true });
  }
}

/**
 * Removes a folder the server deleted, once the files this pull deleted have left it. Litter
 * the operating system drops everywhere (`.DS_Store`) is moved to the backup first, and temp
 * files of an interrupted pull are removed, so they do not keep the folder (which a later
 * sync would push back to every device). Returns false, leaving the folder in place, when it
 * still holds anything else: files this device did not sync (ignored or new) are never lost.
 */
async function removeEmptiedFolder(absPath: string, relative: string, backup: BackupSession): Promise<boolean> {
  try {
    await rmdir(absPath);
    return true;
  } catch {
    // Not empty (or not removable): look at what is left.
  }
  let names: string[];
  try {
    names = await readdir(absPath);
  } catch {
    return false;
  }
  const removable = names.every((name) => (isOsLitter(name) || isTreeTempName(name)) && lstatOrNull(join(absPath, name))?.isFile() === true);
  if (!removable) return false;
  for (const name of names) {
    if (isTreeTempName(name)) await rm(join(absPath, name), { force: true });
    else await backup.remove(`${relative}/${name}`, join(absPath, name));
  }
  try {
    await rmdir(absPath);
    return true;
  } catch {
    return false;
  }
}

async function downloadInto(conn: AgentConnection, ids: string[], lengths: Map<string, number>, workDir: string, spool: ChunkSpool, stats: PullStats, signal?: AbortSignal): Promise<void> {
  let start = 0;
  while (start < ids.length) {
    let bytes = 0;
    let end = start;
    while (end < ids.length && end - start < MAX_IDS_PER_REQUEST && (end === start || bytes + lengths.get(ids[end])! <= DOWNLOAD_BUNDLE_BYTES)) {
      bytes += lengths.get(ids[end])!;
      end++;
    }
    const batch = ids.slice(start, end);
    start = end;
    const { name } = await conn.call("prepareBundle", { ids: batch }, { signal });
    const localBundle = join(workDir, `${randomUUID()}.bundle`);
    try {
      await conn.download(name, localBundle, { signal });
    } finally {
      await conn.call("releaseBundle", { name }).catch(() => {});
    }
    const expected = new Set(batch);
    for await (const record of readBundle(localBundle)) {
      if (!expected.has(record.id)) throw new CwsError("CORRUPT", `The server sent chunk ${record.id}, which was not asked for; the download was stopped.`);
      const raw = verifyRecord(record);
      await spool.put(record.id, raw);
      expected.delete(record.id);
      stats.chunks++;
      stats.bytes += raw.byteLength;
    }
    if (expected.size > 0) throw new CwsError("CORRUPT", `The server's bundle lacked ${expected.size} chunk(s) that were asked for; run the sync again.`);
    await rm(localBundle, { force: true });
  }
}

/**
 * Builds one file under a temp name beside its target, with its mode and mtime, and returns
 * that name. Synchronous on purpose: a pull of thousands of small files spends its time in
 * per-file system calls, and direct calls cost a fraction of thread-pool round trips. It is
 * not fsynced here: the batch it belongs to is made durable in one step (see BatchedWriter).
 */
function writeFileFromChunksSync(temp: string, entry: ManifestEntry, spool: ChunkSpool, localSource: (id: string) => LocalSource | undefined, stats: PullStats): string {
  const fd = openSync(temp, "wx", 0o600);
  const whole = createXxh64();
  try {
    for (const ref of entry.chunks) {
      const id = chunkId(ref);
      let data = spool.getSync(id);
      if (data === undefined) {
        const source = localSource(id);
        if (source === undefined || source.absPath === undefined) throw new CwsError("INTERNAL", `Chunk ${id} of ${entry.path} is neither downloaded nor on this device`);
        data = readLocalChunkSync(source.absPath, source.offset, ref[1]);
        if (xxh64Hex(data) !== ref[0]) {
          throw new CwsError("CORRUPT", `${source.path} changed while the sync read it (chunk ${id}); run the sync again.`);
        }
        stats.reusedChunks++;
      }
      whole.update(data);
      writeAllSync(fd, data);
    }
    if (whole.digestHex() !== entry.hash) {
      throw new CwsError("CORRUPT", `${entry.path} did not assemble to its content hash; nothing was replaced. Run \`cws-server verify\` on the server.`);
    }
    if (process.platform !== "win32") fchmodSync(fd, entry.mode & 0o777);
    const mtime = new Date(entry.mtimeMs);
    futimesSync(fd, mtime, mtime);
  } catch (error) {
    closeSync(fd);
    rmSync(temp, { force: true });
    throw error;
  }
  closeSync(fd);
  return temp;
}

function readLocalChunkSync(absPath: string, offset: number, length: number): Uint8Array {
  const fd = openSync(absPath, "r");
  try {
    const buffer = Buffer.allocUnsafe(length);
    let read = 0;
    while (read < length) {
      const bytesRead = readSync(fd, buffer, read, length - read, offset + read);
      if (bytesRead === 0) break;
      read += bytesRead;
    }
    return buffer.subarray(0, read);
  } finally {
    closeSync(fd);
  }
}

function writeAllSync(fd: number, data: Uint8Array): void {
  let written = 0;
  while (written < data.byteLength) written += writeSync(fd, data, written, data.byteLength - written);
}

function lstatOrNull(path: string): Stats | null {
  try {
    return lstatSync(path);
  } catch {
    return null;
  }
}

/** Files written per durability barrier, and bytes: bounded so a crash loses little work. */
const BATCH_FILES = 2000;
const BATCH_BYTES = 256 * 1024 * 1024;
/** Files written between two returns to the event loop (heartbeats, Ctrl+C). */
const FILES_PER_YIELD = 200;

interface PendingFile {
  temp: string;
  absPath: string;
  relative: string;
  entry: ManifestEntry;
  replaces: boolean;
}

/**
 * Makes pulled files durable in batches instead of one fsync per file: a batch of temp files
 * is written, then one barrier makes all of their contents durable, and only then are they
 * renamed over their targets (old versions hard-linked into the backup first) and their
 * folders fsynced. A crash before the barrier leaves only temp files (never synced, and
 * removed by the next sync's scan, see leftovers.ts); a failure removes them at once; a crash after it leaves every renamed file complete. On Linux the
 * barrier is syncfs(2) on the superproject's file system (`sync -f`); elsewhere, or if that
 * fails, each temp file is fsynced.
 */
class BatchedWriter {
  private pending: PendingFile[] = [];
  private pendingBytes = 0;
  private readonly madeDirs = new Set<string>();
  private readonly prefix = randomBytes(4).toString("hex");
  private counter = 0;
  private readonly backup: BackupSession;
  private readonly stats: PullStats;
  private readonly onWritten: (path: string, entry: StatCacheEntry) => void;
  private readonly onProgress: () => void;

  constructor(backup: BackupSession, stats: PullStats, onWritten: (path: string, entry: StatCacheEntry) => void, onProgress: () => void) {
    this.backup = backup;
    this.stats = stats;
    this.onWritten = onWritten;
    this.onProgress = onProgress;
  }

  tempName(target: string): string {
    return join(dirname(target), treeTempName(this.prefix, this.counter++));
  }

  /** Removes the temp files of the batch not yet renamed (after a failure). */
  discard(): void {
    for (const file of this.pending) rmSync(file.temp, { force: true });
    this.pending = [];
    this.pendingBytes = 0;
  }

  ensureDir(dir: string): void {
    if (this.madeDirs.has(dir)) return;
    mkdirSync(dir, { recursive: true });
    this.madeDirs.add(dir);
  }

  async add(file: PendingFile): Promise<void> {
    this.pending.push(file);
    this.pendingBytes += file.entry.size;
    if (this.pending.length >= BATCH_FILES || this.pendingBytes >= BATCH_BYTES) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    try {
      durabilityBarrier(batch.map((f) => f.temp));
      faultPoint("client-mid-pull");
      const dirs = new Set<string>();
      for (const file of batch) {
        if (file.replaces && lstatOrNull(file.absPath) !== null) await this.backup.preserve(file.relative, file.absPath);
        renameSync(file.temp, file.absPath);
        dirs.add(dirname(file.absPath));
        const after = lstatSync(file.absPath);
        this.onWritten(file.entry.path, { size: after.size, mtimeMs: after.mtimeMs, ctimeMs: after.ctimeMs, ino: after.ino, hash: file.entry.hash, chunks: file.entry.chunks });
        this.stats.files++;
        this.onProgress();
      }
      for (const dir of dirs) fsyncDir(dir);
    } catch (error) {
      for (const file of batch) rmSync(file.temp, { force: true });
      throw error;
    }
  }
}

function durabilityBarrier(files: readonly string[]): void {
  if (files.length === 0) return;
  if (process.platform === "linux") {
    const result = spawnSync("sync", ["-f", files[0]], { stdio: "ignore", timeout: 120_000 });
    if (result.status === 0) return;
  }
  for (const file of files) {
    const fd = openSync(file, "r+");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}

function fsyncDir(dir: string): void {
  try {
    const fd = openSync(dir, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // Windows cannot fsync folders; NTFS journals renames itself.
  }
}

/** One chunk of an entry: downloaded, or read from a local file that holds it (and checked). */
async function chunkData(entry: ManifestEntry, ref: ChunkRef, spool: ChunkSpool, localSource: (id: string) => LocalSource | undefined, stats: PullStats): Promise<Uint8Array> {
  const id = chunkId(ref);
  let data = await spool.get(id);
  if (data === undefined) {
    const source = localSource(id);
    if (source === undefined) throw new CwsError("INTERNAL", `Chunk ${id} of ${entry.path} is neither downloaded nor on this device`);
    data = await readLocalChunk(source, ref[1]);
    if (xxh64Hex(data) !== ref[0]) {
      throw new CwsError("CORRUPT", `${source.path} changed while the sync read it (chunk ${id}); run the sync again.`);
    }
    stats.reusedChunks++;
  }
  return data;
}

/** Assembles an entry's content in memory and checks its whole hash (for handlers). */
async function assembleBytes(entry: ManifestEntry, spool: ChunkSpool, localSource: (id: string) => LocalSource | undefined, stats: PullStats): Promise<Uint8Array> {
  const out = new Uint8Array(entry.size);
  let at = 0;
  for (const ref of entry.chunks) {
    const data = await chunkData(entry, ref, spool, localSource, stats);
    if (data.byteLength !== ref[1] || at + data.byteLength > out.length) throw new CwsError("CORRUPT", `${entry.path}: chunk ${chunkId(ref)} has the wrong length`);
    out.set(data, at);
    at += data.byteLength;
  }
  if (at !== entry.size || xxh64Hex(out) !== entry.hash) {
    throw new CwsError("CORRUPT", `${entry.path} did not assemble to its content hash; nothing was replaced. Run \`cws-server verify\` on the server.`);
  }
  return out;
}

/**
 * Downloads the content of some entries (each checked against its hash) without writing
 * anything: what the sync needs to compare two versions of a Codex thread or index.
 */
export async function fetchEntryContents(conn: AgentConnection, entries: readonly ManifestEntry[], signal?: AbortSignal): Promise<Map<string, Uint8Array>> {
  const lengths = new Map<string, number>();
  for (const entry of entries) for (const ref of entry.chunks) lengths.set(chunkId(ref), ref[1]);
  const result = new Map<string, Uint8Array>();
  const workDir = await makeWorkDir("fetch");
  const spool = new ChunkSpool(join(workDir, "spool"));
  const stats: PullStats = { files: 0, deleted: 0, chunks: 0, bytes: 0, reusedChunks: 0, skipped: [] };
  try {
    await spool.open();
    await downloadInto(conn, [...lengths.keys()], lengths, workDir, spool, stats, signal);
    for (const entry of entries) result.set(entry.path, await assembleBytes(entry, spool, () => undefined, stats));
    return result;
  } finally {
    await spool.close();
    await rm(workDir, { recursive: true, force: true });
  }
}

async function readLocalChunk(source: LocalSource, length: number): Promise<Uint8Array> {
  if (source.read !== undefined) return source.read(length);
  const handle = await open(source.absPath!, "r");
  try {
    const buffer = Buffer.allocUnsafe(length);
    let read = 0;
    while (read < length) {
      const { bytesRead } = await handle.read(buffer, read, length - read, source.offset + read);
      if (bytesRead === 0) break;
      read += bytesRead;
    }
    return buffer.subarray(0, read);
  } finally {
    await handle.close();
  }
}

async function writeAll(handle: FileHandle, data: Uint8Array): Promise<void> {
  let written = 0;
  while (written < data.byteLength) {
    const { bytesWritten } = await handle.write(data, written, data.byteLength - written);
    written += bytesWritten;
  }
}

/**
 * Downloaded chunks, appended to one temp file and indexed in memory by id, so memory stays
 * flat however much is pulled.
 */
class ChunkSpool {
  private readonly path: string;
  private handle: FileHandle | undefined;
  private size = 0;
  private readonly index = new Map<string, { offset: number; length: number }>();

  constructor(path: string) {
    this.path = path;
  }

  async open(): Promise<void> {
    this.handle = await open(this.path, "w+", 0o600);
  }

  async put(id: string, data: Uint8Array): Promise<void> {
    if (this.index.has(id)) return;
    let written = 0;
    while (written < data.byteLength) written += writeSync(this.handle!.fd, data, written, data.byteLength - written, this.size + written);
    this.index.set(id, { offset: this.size, length: data.byteLength });
    this.size += data.byteLength;
  }

  getSync(id: string): Uint8Array | undefined {
    const at = this.index.get(id);
    if (at === undefined) return undefined;
    const buffer = Buffer.allocUnsafe(at.length);
    let read = 0;
    while (read < at.length) {
      const n = readSync(this.handle!.fd, buffer, read, at.length - read, at.offset + read);
      if (n === 0) break;
      read += n;
    }
    return buffer;
  }

  async get(id: string): Promise<Uint8Array | undefined> {
    const at = this.index.get(id);
    if (at === undefined) return undefined;
    const buffer = Buffer.allocUnsafe(at.length);
    await this.handle!.read(buffer, 0, at.length, at.offset);
    return buffer;
  }

  async close(): Promise<void> {
    await this.handle?.close();
    this.handle = undefined;
  }
}
