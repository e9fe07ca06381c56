/**
 * The download half of a sync: stream the chunks this device lacks from the server in
 * bundles (a few in flight, each held in memory only while it is read), verify every one, and
 * write each pulled file under a temp name beside its target as its chunks arrive; then make
 * them all durable at once and rename them into place (see PullWriter). Chunks this device
 * already has in unchanged local files are copied from them instead of downloaded (an appended
 * transcript only downloads its new tail). Nothing is overwritten or deleted without a backup first.
 */
import { readdir, rm, rmdir } from "node:fs/promises";
import { closeSync, fsyncSync, lstatSync, openSync, readSync, renameSync, rmSync, writeSync, type Stats } from "node:fs";
import { dirname, join } from "node:path";
import { randomBytes } from "node:crypto";
import { CwsError } from "../errors.ts";
import { chunkId, type ChunkRef, type Manifest, type ManifestEntry } from "../core/manifest.ts";
import type { PlanAction } from "../core/plan.ts";
import { resolveInside } from "../core/paths.ts";
import { xxh64Hex } from "../core/hash.ts";
import { BUNDLE_MAGIC, decodeRecordPayload, END_RECORD_BYTES, FrameDecoder, MAX_STORED_OVERHEAD_BYTES, readBundleBytes, RECORD_HEADER_BYTES, verifyRecord } from "../protocol/bundle.ts";
import { faultPoint } from "../fault.ts";
import { FileSystemSyncer } from "../fs-atomic.ts";
import { MAX_IDS_PER_REQUEST } from "../protocol/messages.ts";
import type { AgentConnection } from "../transport/connection.ts";
import type { BackupSession } from "./backups.ts";
import type { StatCacheEntry } from "./stat-cache.ts";
import { isOsLitter, isTreeTempName, makeWorkDir, treeTempName } from "./leftovers.ts";
import { BatchWriter, type RecordCheck } from "./pull-write.ts";
import { LinkMeter } from "./link-meter.ts";

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

  const totalFiles = actions.filter((a) => a.type === "pull" && a.entry?.kind === "file").length;
  const writer = new PullWriter(root, backup, stats, (path, entry) => options.onWritten?.(path, entry), totalFiles);
  const workDir = await makeWorkDir("pull");
  const spool = new ChunkSpool(join(workDir, "spool"));
  try {
    await spool.open();
    // Deletions and folders come first in apply order; they are applied as met. Files are
    // collected, in order, and written below.
    const jobs: FileJob[] = [];
    for (const action of actions) {
      if (signal?.aborted) throw pullCancelled();
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
        jobs.push({ entry: action.entry, absPath: null, replaces: false, handler, local: undefined });
        continue;
      }
      const absPath = diskPath(root, action.path);
      const relative = action.path.slice("files/".length);
      // In a folder this pull created there is nothing to look for (a fresh device's case).
      const existing = writer.isFresh(absPath) ? null : lstatOrNull(absPath);
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
      if (action.entry.kind === "dir") {
        if (existing !== null && !existing.isDirectory()) await backup.remove(relative, absPath);
        writer.ensureDir(absPath);
        continue;
      }
      if (existing?.isDirectory()) {
        stats.skipped.push({ path: action.path, reason: "a folder of that name is still here with unsynced files in it" });
        continue;
      }
      jobs.push({ entry: action.entry, absPath, replaces: existing !== null, handler: undefined, local: undefined });
    }

    // The folders go to the writer thread now, to be made while the first bundles are prepared.
    writer.offerFolders();

    // Which chunks come from the network, in the order the files need them; a chunk needed
    // again later (by a second file, or twice in one) is kept in the spool when it arrives.
    const need = new Map<string, number>();
    const keep = new Set<string>();
    for (const job of jobs) {
      const { chunks } = job.entry;
      for (let i = 0; i < chunks.length; i++) {
        const id = chunkId(chunks[i]!);
        if (usableSource(id, job.entry.path) !== undefined) (job.local ??= new Uint8Array(chunks.length))[i] = 1;
        else if (need.has(id)) keep.add(id);
        else need.set(id, chunks[i]![1]);
      }
    }

    const records = fetchRecords(conn, need, stats, signal, true);
    try {
      let sinceYield = 0;
      let done = 0;
      for (const job of jobs) {
        if (signal?.aborted) throw pullCancelled();
        const next = async (ref: ChunkRef, i: number): Promise<Piece> => {
          const id = chunkId(ref);
          if (job.local?.[i] === 1) {
            const source = usableSource(id, job.entry.path)!;
            const data = source.absPath !== undefined ? readLocalChunkSync(source.absPath, source.offset, ref[1]) : await source.read!(ref[1]);
            if (xxh64Hex(data) !== ref[0]) throw new CwsError("CORRUPT", `${source.path} changed while the sync read it (chunk ${id}); run the sync again.`);
            stats.reusedChunks++;
            return { data };
          }
          const kept = spool.getSync(id);
          if (kept !== undefined) return { data: kept };
          const record = await records.next();
          if (record.done || record.value.record.id !== id) {
            throw new CwsError("CORRUPT", `The server sent ${record.done ? "fewer chunks than asked for" : `chunk ${record.value.record.id} where ${id} was expected`}; run the sync again.`);
          }
          // A chunk needed again is kept decoded and verified; the others are checked where they are written.
          if (keep.has(id)) {
            const raw = rawOf(record.value);
            spool.put(id, raw);
            return { data: raw };
          }
          return record.value;
        };
        if (job.handler !== undefined) {
          const data = await assembleInMemory(job.entry, next);
          const written = await job.handler.write(job.entry, data);
          if (written.skipped !== undefined) {
            stats.skipped.push({ path: job.entry.path, reason: written.skipped });
            continue;
          }
          stats.files++;
          options.onProgress?.({ files: ++done, total: totalFiles });
          continue;
        }
        await writer.write(job.entry, job.absPath!, job.replaces, next);
        // Progress counts files written (under their temp names): the renames at the end are quick.
        options.onProgress?.({ files: ++done, total: totalFiles });
        // Back to the event loop now and then, so downloads, heartbeats and Ctrl+C go on.
        if (++sinceYield >= FILES_PER_YIELD) {
          sinceYield = 0;
          await new Promise((resolve) => setImmediate(resolve));
        }
      }
      const extra = await records.next();
      if (!extra.done) throw new CwsError("CORRUPT", `The server sent chunk ${extra.value.record.id}, which was not asked for; the pull was stopped.`);
    } finally {
      await records.return(undefined);
    }
    faultPoint("client-pull-before-barrier");
    // Every file is complete under its temp name: one barrier, then every rename.
    await writer.commit();
    return stats;
  } catch (error) {
    // Temp files that never got renamed would fill a full disk further and make every retry
    // fail the same way: they go now, and only complete renamed files stay.
    await writer.discard();
    throw error;
  } finally {
    writer.close();
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

/**
 * One file of the pull: written below the root, or handed to a namespace's handler. A pull
 * holds one per file from the start, so it is kept small (at 50,000 files every hundred bytes
 * of it is 5 MiB): every field is set when it is made, so V8 gives them all one shape.
 */
interface FileJob {
  entry: ManifestEntry;
  /** Where a file below the root goes; null for a handler's entry. */
  absPath: string | null;
  /** Whether a local version is in its place (backed up before it is replaced). */
  replaces: boolean;
  handler: PullHandler | undefined;
  /**
   * Per chunk: 1 when it is read from a file on this device, 0 when it comes from the server;
   * undefined when every chunk comes from the server (every file of a fresh device).
   */
  local: Uint8Array | undefined;
}

/** Gives the `i`-th chunk of the entry being written, verified. */
type NextChunk = (ref: ChunkRef, i: number) => Promise<Piece>;

/**
 * A chunk's bytes: verified raw bytes, or (with `record`) a downloaded record's stored bytes
 * not yet decoded or checked, which the writer does (see pull-write.ts) or `rawOf`.
 */
interface Piece {
  data: Uint8Array;
  record?: RecordCheck;
}

/** A piece's raw bytes, decoded and checked against its hash if it is a downloaded record. */
function rawOf(piece: Piece): Uint8Array {
  const record = piece.record;
  if (record === undefined) return piece.data;
  return verifyRecord({ ...record, raw: () => decodeRecordPayload(record.flags, piece.data, record.rawLength, `chunk "${record.id}"`) });
}

function pullCancelled(): CwsError {
  return new CwsError("CANCELLED", "The pull was cancelled; nothing was replaced, the files come with the next sync");
}

/** Raw bytes asked for per bundle: a few bundles in flight stay well inside the memory budget. */
const DOWNLOAD_BUNDLE_BYTES = 4 * 1024 * 1024;

/** The buffer a bundle is downloaded into (reused, see fetchRecords): a bundle's raw bytes and some. */
const DOWNLOAD_BUFFER_BYTES = DOWNLOAD_BUNDLE_BYTES + 256 * 1024;

/** Bundles prepared and downloaded ahead of the one being applied. */
const BUNDLES_AHEAD = 2;

/**
 * The chunks `need` lists, in its order, as their records' stored bytes (checked against their
 * ids by whoever decodes them: see Piece): bundles are prepared by the agent and
 * downloaded into memory a few ahead of the one being read, so the server's work, the
 * transfer and the writing of files overlap. Memory: at most BUNDLES_AHEAD + 2 bundles.
 *
 * With `reuse`, a bundle's buffer is filled again by a later download once the caller asks
 * for the record after its last one, and a streamed frame's content is decompressed into one
 * buffer that the next frame overwrites: the caller must be done with a record's bytes (copied
 * or written) before it asks for the next. That keeps a handful of buffers for the whole
 * pull instead of a new 4 MiB one per bundle and a new 1.25 MiB one per frame, which V8 would
 * only free at its next full collection (they outlive the young generation).
 */
async function* fetchRecords(conn: AgentConnection, need: ReadonlyMap<string, number>, stats: PullStats, signal: AbortSignal | undefined, reuse: boolean): AsyncGenerator<Piece & { record: RecordCheck }> {
  const batches: string[][] = [];
  let batch: string[] = [];
  let bytes = 0;
  for (const [id, length] of need) {
    if (batch.length > 0 && (batch.length >= MAX_IDS_PER_REQUEST || bytes + length > DOWNLOAD_BUNDLE_BYTES)) {
      batches.push(batch);
      batch = [];
      bytes = 0;
    }
    batch.push(id);
    bytes += length;
  }
  if (batch.length > 0) batches.push(batch);
  const stream = conn.hello.capabilities.includes("bundles-stream");
  const link = new LinkMeter();
  const inflight: Array<Promise<Buffer>> = [];
  const spare: Buffer[] = [];
  // Streamed frames are decompressed into one buffer too, under the same rule.
  const frameDecoder = reuse ? new FrameDecoder() : undefined;
  let started = 0;
  const fill = (): void => {
    while (inflight.length < BUNDLES_AHEAD + 1 && started < batches.length) {
      const into = reuse ? (spare.pop() ?? Buffer.allocUnsafeSlow(DOWNLOAD_BUFFER_BYTES)) : undefined;
      const fetching = fetchBundle(conn, batches[started++], need, { stream: stream && !link.fast, link }, signal, into);
      fetching.catch(() => {}); // reported when its turn comes
      inflight.push(fetching);
    }
  };
  try {
    for (const ids of batches) {
      fill();
      const data = await inflight.shift()!;
      fill();
      let index = 0;
      for await (const record of readBundleBytes(data, "pull bundle", frameDecoder === undefined ? {} : { frameDecoder })) {
        if (record.id !== ids[index]) {
          throw new CwsError("CORRUPT", `The server sent chunk ${record.id} where ${ids[index] ?? "no more chunks"} was asked for; the download was stopped.`);
        }
        index++;
        stats.chunks++;
        stats.bytes += record.rawLength;
        yield { data: record.stored, record: { id: record.id, hash: record.hash, rawLength: record.rawLength, flags: record.flags } };
      }
      if (index !== ids.length) throw new CwsError("CORRUPT", `The server's bundle lacked ${ids.length - index} chunk(s) that were asked for; run the sync again.`);
      // Only a buffer of its own (not a view of a smaller file's) is worth keeping.
      if (reuse && data.byteOffset === 0 && data.buffer.byteLength >= DOWNLOAD_BUFFER_BYTES) spare.push(Buffer.from(data.buffer, 0, data.buffer.byteLength));
    }
  } finally {
    // Bundles still on their way are released by their own fetch; wait for them to end.
    await Promise.allSettled(inflight);
  }
}

/** The most bytes a bundle of these chunks can take (every record at its size cap). */
function bundleBound(ids: readonly string[], lengths: ReadonlyMap<string, number>): number {
  let bound = BUNDLE_MAGIC.byteLength + END_RECORD_BYTES;
  for (const id of ids) bound += RECORD_HEADER_BYTES + lengths.get(id)! + MAX_STORED_OVERHEAD_BYTES;
  return bound;
}

async function fetchBundle(conn: AgentConnection, ids: string[], lengths: ReadonlyMap<string, number>, how: { stream: boolean; link: LinkMeter }, signal: AbortSignal | undefined, into: Buffer | undefined): Promise<Buffer> {
  const { stream, link } = how;
  // This reader takes raw frames apart itself (older agents ignore the request).
  const { name } = await conn.call("prepareBundle", stream ? { ids, stream, rawFrames: true } : { ids }, { signal });
  let received = 0;
  link.start(performance.now());
  try {
    const data = await conn.downloadBytes(name, { signal, maxBytes: bundleBound(ids, lengths), ...(into === undefined ? {} : { into }) });
    received = data.byteLength;
    return data;
  } finally {
    link.end(performance.now(), received);
    await conn.call("releaseBundle", { name }).catch(() => {});
  }
}

/** Assembles an entry's content in memory and checks its whole hash (for handlers). */
async function assembleInMemory(entry: ManifestEntry, next: NextChunk): Promise<Uint8Array> {
  const out = new Uint8Array(entry.size);
  let at = 0;
  for (const [i, ref] of entry.chunks.entries()) {
    const data = rawOf(await next(ref, i));
    if (data.byteLength !== ref[1] || at + data.byteLength > out.length) throw new CwsError("CORRUPT", `${entry.path}: chunk ${chunkId(ref)} has the wrong length`);
    out.set(data, at);
    at += data.byteLength;
  }
  if (at !== entry.size || xxh64Hex(out) !== entry.hash) {
    throw new CwsError("CORRUPT", `${entry.path} did not assemble to its content hash; nothing was replaced. Run \`cws-server verify\` on the server.`);
  }
  return out;
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

function lstatOrNull(path: string): Stats | null {
  try {
    // No exception for a missing file: a first pull asks this for every file it writes.
    return lstatSync(path, { throwIfNoEntry: false }) ?? null;
  } catch {
    return null;
  }
}

/** Files written between two returns to the event loop (downloads, heartbeats, Ctrl+C). */
const FILES_PER_YIELD = 64;

/** Pulls of at least this many files write on a worker thread (see pull-write.ts); smaller ones need not start it. */
const THREADED_WRITE_FILES = 16;

/**
 * A file handed to the writer, until the pull ends. Its temp name is made again from its
 * target and its number when needed (see PullWriter.tempOf), and its stat is kept in a packed
 * array (PullWriter.stats): a pull of 50,000 files held both for every file, about 300 bytes
 * each, to the end.
 */
interface PendingFile {
  absPath: string;
  entry: ManifestEntry;
  replaces: boolean;
  /** PLACED_EARLY once handed to the writer thread to be renamed early; RENAMED once commit renamed it. */
  state: number;
}

/** PendingFile states: written or being written under its temp name; renamed early (see PullWriter); renamed by commit. */
const TEMP = 0;
const PLACED_EARLY = 1;
const RENAMED = 2;

/** Numbers per file in PullWriter.stats: size, mtimeMs, ino. */
const STAT_NUMBERS = 3;

/**
 * Writes the files of a pull durably with file-system barriers instead of one fsync per file:
 * every file is written under a temp name beside its target (with its mode and mtime, its
 * content hash checked); then a barrier makes their contents durable; then each is renamed
 * over its target (the old version hard-linked into the backup first); then a last barrier
 * makes the renames durable. Only after that does the caller record the new base. A crash
 * before a file's rename leaves its temp file only (never synced, and removed by the next
 * sync's scan, see leftovers.ts) and the old version; a crash after it leaves the file complete
 * and the base still the old one, so the next sync finds it equal to the server's and
 * converges. On Linux a barrier is one syncfs(2) of the superproject's file system (`sync -f`,
 * from one helper process, see FileSystemSyncer); elsewhere, or if that fails, each file and
 * then each folder is fsynced.
 *
 * Files that replace nothing (every file of a fresh device) need not wait for the end of the
 * pull to be renamed: every ROUND_BYTES or ROUND_FILES written, a barrier is started in the
 * background for the files the writer thread has finished so far, and once it succeeded they
 * are renamed into place by the writer thread, between the next files. So the renames, which
 * took seconds at the end of a pull of many files, mostly happen while it downloads, and the
 * barrier at the end finds most bytes written already. Each such file still goes through the
 * same sequence (temp file, barrier, rename, barrier, base); a crash or a failure part-way
 * leaves some new files in place, complete, as a crash among the renames at the end does.
 * Files that replace a local version wait for the end, where the old version is backed up
 * first, so a cancelled or failed pull still replaced nothing.
 *
 * The temp files are created, filled and checked in batches on a writer thread (pull-write.ts)
 * while this thread downloads the next chunks. Folders are made by the writer too, in order,
 * before their files: on a fresh device that is thousands of creations, which would otherwise
 * hold up the first download. Folders this pull makes are known empty but for its own temp
 * files, so files in them are not looked for first (on a fresh device, no stat per file).
 */
class PullWriter {
  private pending: PendingFile[] = [];
  /** Folders that exist or that the writer thread is to make before anything given after them. */
  private readonly knownDirs = new Set<string>();
  /** Folders given to the writer to make: their entries in their parents are made durable with the files. */
  private readonly madeDirs = new Set<string>();
  /** Folders this pull creates (they held nothing before it). */
  private readonly freshDirs = new Set<string>();
  private readonly prefix = randomBytes(4).toString("hex");
  private readonly root: string;
  private readonly backup: BackupSession;
  private readonly pullStats: PullStats;
  private readonly onWritten: (path: string, entry: StatCacheEntry) => void;
  private readonly batches: BatchWriter;
  /** The barriers' helper, started with the first barrier. */
  private syncer: FileSystemSyncer | undefined;
  /** Bytes and files handed to the writer since the last early round started. */
  private sinceRoundBytes = 0;
  private sinceRoundFiles = 0;
  /** The early round under way: its barrier, until it ended. */
  private round: Promise<void> | undefined;
  /** Files that replace nothing, finished by the writer thread since the last round started. */
  private finishedNew: number[] = [];
  /** Files that a round's barrier made durable, to be renamed by the writer thread. */
  private durable: number[] = [];
  private placedAny = false;
  /** The stat of each finished temp file, by file number (see STAT_NUMBERS): what the stat cache needs (its ctime changes with the rename). */
  private stats = new Float64Array(STAT_NUMBERS * 1024);

  constructor(root: string, backup: BackupSession, stats: PullStats, onWritten: (path: string, entry: StatCacheEntry) => void, files: number) {
    this.root = root;
    this.backup = backup;
    this.pullStats = stats;
    this.onWritten = onWritten;
    this.batches = new BatchWriter(files >= THREADED_WRITE_FILES, (finished) => {
      const at = finished.file * STAT_NUMBERS;
      if (at + STAT_NUMBERS > this.stats.length) {
        const grown = new Float64Array(Math.max(this.stats.length * 2, at + STAT_NUMBERS));
        grown.set(this.stats);
        this.stats = grown;
      }
      this.stats[at] = finished.size;
      this.stats[at + 1] = finished.mtimeMs;
      this.stats[at + 2] = finished.ino;
      if (!this.pending[finished.file]!.replaces) this.finishedNew.push(finished.file);
    });
  }

  /** The temp name of file number `file`, beside its target. */
  private tempOf(file: number): string {
    return join(dirname(this.pending[file]!.absPath), treeTempName(this.prefix, file));
  }

  /**
   * Has the writer thread make `dir` (and its missing parents) before the files given after
   * it. A folder inside one this pull makes cannot exist yet; any other is looked for once.
   */
  ensureDir(dir: string): void {
    if (this.knownDirs.has(dir)) return;
    const parent = dirname(dir);
    let fresh = this.freshDirs.has(parent);
    if (!fresh) {
      const existing = lstatOrNull(dir);
      if (existing?.isDirectory()) {
        this.knownDirs.add(dir);
        return;
      }
      // Missing, or something else in its place (then the writer's mkdir reports it).
      if (parent !== dir) this.ensureDir(parent);
      fresh = existing === null;
    }
    this.batches.mkdir(dir);
    this.knownDirs.add(dir);
    this.madeDirs.add(dir);
    if (fresh) this.freshDirs.add(dir);
  }

  /** Hands the folders given so far to the writer thread if it has room, without waiting. */
  offerFolders(): void {
    this.batches.offer();
  }

  /** Whether `absPath` cannot exist yet: its folder was created by this pull. */
  isFresh(absPath: string): boolean {
    return this.freshDirs.has(dirname(absPath));
  }

  /**
   * Writes one file under a temp name from its chunks, checks its whole hash and gives it its
   * mode and mtime (on the writer thread, in batches). Not fsynced here: the barriers of an
   * early round or of `commit` make it durable.
   */
  async write(entry: ManifestEntry, absPath: string, replaces: boolean, next: NextChunk): Promise<void> {
    this.placeDurable();
    this.ensureDir(dirname(absPath));
    const file = this.pending.length;
    this.pending.push({ absPath, entry, replaces, state: TEMP });
    const temp = this.tempOf(file);
    // A file of one chunk is that chunk, checked against its hash on its way here or on the
    // writer: its whole hash is the same hash (when the manifest says so) and need not be taken again.
    const single = entry.chunks.length === 1 && entry.chunks[0]![0] === entry.hash && entry.chunks[0]![1] === entry.size ? entry.size : undefined;
    this.batches.open(file, temp, entry.mode, single);
    for (const [i, ref] of entry.chunks.entries()) {
      const piece = await next(ref, i);
      // Crash tests: a file half-written under its temp name (or the second file begun).
      await this.batches.write(file, piece.data, i === 0 && (entry.chunks.length > 1 || this.pending.length === 2), piece.record);
    }
    await this.batches.finish(file, { path: entry.path, hash: entry.hash, mode: entry.mode, mtimeMs: entry.mtimeMs });
    this.sinceRoundBytes += entry.size;
    this.sinceRoundFiles++;
    if ((this.sinceRoundBytes >= ROUND_BYTES || this.sinceRoundFiles >= ROUND_FILES) && this.round === undefined) this.startRound();
  }

  /**
   * Starts a barrier in the background for the files the writer thread has finished (closed)
   * so far that replace nothing; once it succeeded, the next `write` has the writer rename
   * them into place. It also starts the file system's writeback early: the kernel would
   * otherwise hold the pull's bytes in memory for up to 30 s, and the barrier at the end would
   * write them all while the user waits. A failed barrier only leaves its files for the end.
   */
  private startRound(): void {
    this.sinceRoundBytes = 0;
    this.sinceRoundFiles = 0;
    const files = this.finishedNew;
    this.finishedNew = [];
    this.round = this.barrier().then((ok) => {
      if (ok) this.durable.push(...files);
      this.round = undefined;
    });
  }

  /** Has the writer thread rename the files an early round made durable (after what it was given before). */
  private placeDurable(): void {
    if (this.durable.length === 0) return;
    const last = this.durable.length - 1;
    for (const [i, file] of this.durable.entries()) {
      const pending = this.pending[file]!;
      // Crash tests: the first round's files are in place, the rest of the pull is not.
      this.batches.rename(file, this.tempOf(file), pending.absPath, !this.placedAny && i === last);
      pending.state = PLACED_EARLY;
    }
    this.placedAny = true;
    this.durable = [];
  }

  /** One `sync -f` of the superproject's file system (see FileSystemSyncer); false where it is not available. */
  private barrier(): Promise<boolean> {
    this.syncer ??= new FileSystemSyncer(this.root);
    return this.syncer.sync();
  }

  /** Waits for the writer thread, then the barriers and the renames between them (see the class comment). */
  async commit(): Promise<void> {
    await this.batches.drain();
    // A round still under way ends first (its barrier is the same work as the next one's), and
    // its files go into place like the others of early rounds.
    await this.round;
    this.placeDurable();
    await this.batches.drain();
    await this.batches.close();
    const batch = this.pending;
    if (batch.length === 0) return;
    const rest: number[] = [];
    for (const [file, pending] of batch.entries()) if (pending.state === TEMP) rest.push(file);
    if (rest.length > 0 && !(await this.barrier())) await fsyncEach(rest.map((file) => this.tempOf(file)), "files");
    faultPoint("client-mid-pull");
    const dirs = new Set<string>();
    let renamed = 0;
    for (const [number, file] of batch.entries()) {
      dirs.add(dirname(file.absPath));
      if (file.state !== TEMP) continue;
      if (file.replaces && lstatOrNull(file.absPath) !== null) await this.backup.preserve(file.entry.path.slice("files/".length), file.absPath);
      renameSync(this.tempOf(number), file.absPath);
      file.state = RENAMED;
      if (++renamed === Math.ceil(rest.length / 2)) faultPoint("client-pull-mid-rename");
    }
    // The folders this pull made must be durable in their parents too.
    for (const made of this.madeDirs) dirs.add(dirname(made));
    if (!(await this.barrier())) await fsyncEach([...dirs], "folders");
    this.pending = [];
    for (const [number, file] of batch.entries()) {
      // The stat taken before the rename: size, mtime and inode are the file's; its ctime
      // changed with the rename, so it is left out and the next scan records it.
      const at = number * STAT_NUMBERS;
      this.onWritten(file.entry.path, { size: this.stats[at]!, mtimeMs: this.stats[at + 1]!, ino: this.stats[at + 2]!, hash: file.entry.hash, chunks: file.entry.chunks });
      this.pullStats.files++;
    }
  }

  /**
   * Stops the writer thread and removes the temp files not renamed yet (after a failure); a
   * file an early round placed has no temp name left to remove.
   */
  async discard(): Promise<void> {
    await this.batches.close();
    for (const [number, file] of this.pending.entries()) if (file.state !== RENAMED) rmSync(this.tempOf(number), { force: true });
    this.pending = [];
  }

  /** Ends the barriers' helper (after `commit` or `discard`). */
  close(): void {
    this.syncer?.close();
  }
}

/** Bytes a pull writes between two early rounds (see PullWriter). */
const ROUND_BYTES = 64 * 1024 * 1024;

/** Files a pull writes between two early rounds: renames are per file, so a pull of many small ones needs rounds too. */
const ROUND_FILES = 2048;

/** Makes `paths` durable one by one (their contents, or for folders their entries), where a barrier is not available. */
async function fsyncEach(paths: readonly string[], kind: "files" | "folders"): Promise<void> {
  for (const path of paths) {
    try {
      const fd = openSync(path, kind === "files" ? "r+" : "r");
      try {
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    } catch (error) {
      // Windows cannot fsync folders; NTFS journals renames itself. A file must be synced.
      if (kind === "files") throw error;
    }
  }
}

/**
 * Downloads the content of some entries (each checked against its hash) without writing
 * anything: what the sync needs to compare two versions of a Codex thread or index.
 */
export async function fetchEntryContents(conn: AgentConnection, entries: readonly ManifestEntry[], signal?: AbortSignal): Promise<Map<string, Uint8Array>> {
  const lengths = new Map<string, number>();
  for (const entry of entries) for (const ref of entry.chunks) lengths.set(chunkId(ref), ref[1]);
  const stats: PullStats = { files: 0, deleted: 0, chunks: 0, bytes: 0, reusedChunks: 0, skipped: [] };
  // These are compared in memory anyway: their chunks are kept in memory too.
  const chunks = new Map<string, Uint8Array>();
  for await (const piece of fetchRecords(conn, lengths, stats, signal, false)) chunks.set(piece.record!.id, rawOf(piece));
  const result = new Map<string, Uint8Array>();
  for (const entry of entries) result.set(entry.path, await assembleInMemory(entry, async (ref) => ({ data: chunks.get(chunkId(ref))! })));
  return result;
}

/**
 * Downloaded chunks needed more than once, appended to one temp file and indexed in memory by
 * id, so memory stays flat however much is pulled.
 */
class ChunkSpool {
  private readonly path: string;
  private fd: number | undefined;
  private size = 0;
  private readonly index = new Map<string, { offset: number; length: number }>();

  constructor(path: string) {
    this.path = path;
  }

  async open(): Promise<void> {
    this.fd = openSync(this.path, "w+", 0o600);
  }

  put(id: string, data: Uint8Array): void {
    if (this.index.has(id)) return;
    let written = 0;
    while (written < data.byteLength) written += writeSync(this.fd!, data, written, data.byteLength - written, this.size + written);
    this.index.set(id, { offset: this.size, length: data.byteLength });
    this.size += data.byteLength;
  }

  getSync(id: string): Uint8Array | undefined {
    const at = this.index.get(id);
    if (at === undefined) return undefined;
    const buffer = Buffer.allocUnsafe(at.length);
    let read = 0;
    while (read < at.length) {
      const n = readSync(this.fd!, buffer, read, at.length - read, at.offset + read);
      if (n === 0) break;
      read += n;
    }
    return buffer;
  }

  async close(): Promise<void> {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
