/**
 * Scans a superproject folder into a manifest under the `files/` namespace, and reads a
 * scanned file back chunk by chunk.
 *
 * - Walk: readdir and lstat, folder by folder (dotfiles, folders too, symlinks never followed).
 *   Folders are entries, so empty folders sync. Symlinks and other non-regular files are
 *   skipped and reported. A folder's names and their lstat results may come from the kept
 *   session's watcher instead (`memo`, tree-watch.ts), when it knows them unchanged since.
 * - Ignore rules: the defaults below, `extraIgnore`, and the root's `.cwsignore`, all in
 *   gitignore syntax, matched by the `ignore` package on the NFC path. Matching is
 *   case-insensitive on every OS so that all devices agree on what is synced. An ignored folder
 *   is not walked at all (gitignore cannot re-include anything below it), so `node_modules/` is
 *   never even listed. A file the stat cache holds was already matched against the same rules
 *   and is not matched again.
 * - Hashing: every chunk gets its xxh64 and the file its whole-content xxh64. Files smaller than
 *   one 1 MiB read buffer are read in one synchronous read (system-call overhead dominates them);
 *   bigger files are streamed in 1 MiB reads through the Chunker by a pool of HASH_CONCURRENCY
 *   async readers. Once a scan has read HASH_THREAD_START_BYTES, a second thread takes part of
 *   the files (scan-hash-pool.ts, same code in file-hash.ts), so a first scan uses two cores.
 *   No file is ever held whole in memory: peak memory is a few read buffers, whatever the size
 *   of the files or the tree (beyond the manifest itself).
 * - Stat cache: a file whose size, mtime, ctime and inode equal the cached ones is not read.
 * - A file that vanishes while the scan runs is left out and reported; one that changes while
 *   it is read is read again, and reported if it keeps changing. Neither stops the scan. Such
 *   problems are marked `unknown`: the sync keeps their base entries (never a delete).
 * - Temp files of an interrupted pull (leftovers.ts) are never entries; their paths are
 *   returned so that the sync can remove them.
 */
import type { Stats } from "node:fs";
import { availableParallelism } from "node:os";
import { open, readFile, stat, type FileHandle } from "node:fs/promises";
import { join, sep } from "node:path";
import ignore, { type Ignore } from "ignore";
import { CwsError } from "../errors.ts";
import { PACKAGE_VERSION } from "../version.ts";
import { Chunker } from "../core/chunker.ts";
import { createXxh64 } from "../core/hash.ts";
import { makeManifest, type ChunkRef, type Manifest, type ManifestEntry } from "../core/manifest.ts";
import { isTreeTempName, TREE_TEMP_SUFFIX } from "./leftovers.ts";
import { isErrno, OPEN_FLAGS, READ_BUFFER_BYTES } from "./file-chunks.ts";
import { describe, finishChunkRefs, hashSmallFileSync, keptChanging, MAX_READ_ATTEMPTS, openFailure, pushChunkRefs, sameStat, statFields, type FileStat, type HashOutcome } from "./file-hash.ts";
import { ScanHashPool } from "./scan-hash-pool.ts";
import { hashAppendedFile, mayBeAppended } from "./append-hash.ts";
import { type FolderListing, KIND_DIR, KIND_FILE, KIND_SYMLINK, listFolder, type WalkMemo } from "./tree-watch.ts";
import { RACY_WINDOW_MS, readStatCache, saveStatCache, StatCacheEntries, statMatches, type StatCache, type StatCacheEntry } from "./stat-cache.ts";

/** The namespace prefix of the superproject folder's entries. */
export const FILES_PREFIX = "files/";

/** The ignore file read from the root of the superproject, in gitignore syntax. */
export const IGNORE_FILE_NAME = ".cwsignore";

/** Rules that always apply: VCS and tool folders, cws's own files, OS and Office litter. */
export const DEFAULT_IGNORE: readonly string[] = [
  ".git/",
  "node_modules/",
  ".cws/",
  "*.cws-tmp",
  "Thumbs.db",
  ".DS_Store",
  "desktop.ini",
  "~$*",
];

/** How many files are hashed at once; reads overlap with hashing without thrashing a disk. */
export const HASH_CONCURRENCY = 4;

/** The largest `.cwsignore` accepted, in bytes. */
const MAX_IGNORE_FILE_BYTES = 1024 * 1024;

/**
 * Bytes the main thread hashes before a scan starts its second hashing thread: a thread costs
 * tens of milliseconds and some MiB to start, which a few changed files do not repay.
 */
const HASH_THREAD_START_BYTES = 16 * 1024 * 1024;

/** Files, and bytes, queued on the hashing thread at most; past them a file is hashed on the main thread. */
const HASH_THREAD_QUEUE_FILES = 64;
const HASH_THREAD_QUEUE_BYTES = 8 * 1024 * 1024;

/** After this many files hashed synchronously in a row, the scan yields to the event loop. */
const SYNC_FILES_PER_YIELD = 32;

/** After this many entries walked (about a millisecond of lstat calls), the walk yields to the event loop. */
const WALK_ENTRIES_PER_YIELD = 256;

const NON_ASCII = /[^\x00-\x7f]/;

export interface ScanOptions {
  /** The superproject folder to scan. */
  root: string;
  /** Where the stat cache lives; without it every file is hashed. */
  statCachePath?: string;
  /** Aborting rejects the scan with a CANCELLED CwsError (the cache is then not written). */
  signal?: AbortSignal;
  /** Called after each file with the running totals of files and bytes scanned (hashed or cached). */
  onProgress?: (progress: { files: number; bytes: number }) => void;
  /** More ignore rules in gitignore syntax, after the defaults and before `.cwsignore`. */
  extraIgnore?: string[];
  /**
   * Receives warnings that do not stop the scan (an unusable stat cache).
   *
   * @default process.emitWarning
   */
  onWarning?: (message: string) => void;
  /**
   * The clock, in milliseconds since the epoch, used to keep racy (just modified) files out of the cache.
   *
   * @default Date.now
   */
  now?: () => number;
  /**
   * Remembers folder listings between walks and recalls those known unchanged (a watcher of
   * the kept session, tree-watch.ts); without it every folder is listed afresh.
   */
  memo?: WalkMemo;
  /**
   * Whether a second thread hashes files beside the main thread (scan-hash-pool.ts): "auto"
   * once the scan has hashed HASH_THREAD_START_BYTES on a machine with more than one core,
   * "always" from the first file, "never" (tests compare the two).
   *
   * @default "auto"
   */
  hashThread?: "auto" | "always" | "never";
}

/** A path the scan skipped, and why; problems never stop a scan. */
export interface ScanProblem {
  path: string;
  reason: string;
  /**
   * True when the path is there but its content is not known (unreadable, vanished or changing
   * while it was read, a name that cannot be told apart): the sync must treat it as unchanged,
   * never as deleted. Absent for what cws never syncs (symbolic links, sockets).
   */
  unknown?: true;
}

export interface ScanResult {
  /** The entries found, sorted, all under `files/`. */
  manifest: Manifest;
  /** How many files were read and hashed (the rest came from the stat cache). */
  hashedFiles: number;
  /** How many bytes were read and hashed. */
  hashedBytes: number;
  problems: ScanProblem[];
  /**
   * The on-disk relative path of every entry whose name is not NFC on disk (e.g. from macOS), by
   * entry path; everything else is at `join(root, entryPath without "files/")`.
   */
  diskPaths: Map<string, string>;
  /** Absolute paths of temp files that interrupted pulls left in the tree (see leftovers.ts); never entries. */
  leftovers: string[];
  /** How many folders were taken as the last scan found them, unwalked (kept sessions only; see FolderYield). */
  reusedFolders: number;
}

/** Under which stat cache (the object a kept session holds for the file on disk) and ignore rules a scan ran. */
interface ScanStamp {
  /** The cache the scan left on disk; null until the scan completed and saved it. */
  cache: StatCacheEntries | null;
  rules: string;
}

/**
 * What a walk found in one folder whose every name was settled without reading a file: the
 * file entries (all stat cache hits), the cache pairs they keep, names stored under another
 * spelling on disk, and the sub-folders to walk (with their entries). Kept, in a kept session
 * only, against the folder's listing object from the watcher (tree-watch.ts).
 *
 * Why the next scan may take it as it is. The watcher hands out the same listing object only
 * while no event came for that folder since it was made: no name in it was created, deleted,
 * renamed, written or changed its attributes. Every file entry came from that listing's stat
 * and the cache entry with the same stat fields, and the cache is still the very one the last
 * scan left (the stamp; a pull, another command or a failed save replaces or drops it), so the
 * walk would look up the same entries and find the same hashes. The ignore rules are the same
 * (the stamp). A folder with a problem, a leftover or a file it read is not kept, and is walked
 * as usual next time.
 */
interface FolderYield {
  stamp: ScanStamp;
  files: ManifestEntry[];
  cache: Array<[string, StatCacheEntry]>;
  diskPaths: Array<[string, string]>;
  folders: Array<[string, string, ManifestEntry]>;
}

/** FolderYield by listing object: an entry goes with its listing when the watcher drops it. */
const folderYields = new WeakMap<FolderListing, FolderYield>();

/**
 * Scans `options.root` into a manifest of `files/…` entries.
 *
 * @throws {CwsError} NOT_FOUND when the root does not exist, INVALID_ARGUMENT when it is not a
 *   folder or cannot be walked, CANCELLED when `signal` aborts.
 */
export async function scanTree(options: ScanOptions): Promise<ScanResult> {
  const {
    root,
    statCachePath,
    signal,
    onProgress,
    extraIgnore = [],
    onWarning = (message: string) => process.emitWarning(message),
    now = Date.now,
    memo,
    hashThread = "auto",
  } = options;
  throwIfCancelled(signal);
  const startedAt = now();
  await checkRoot(root);

  const problems: ScanProblem[] = [];
  const ignoreLines = [...DEFAULT_IGNORE, ...extraIgnore, ...(await readIgnoreFile(root, problems))];
  // The rules as the stat cache records them, and whether the cached paths passed these very
  // rules: then a cached path need not be matched again (its verdict cannot have changed). The
  // cws version is part of them, as another version may match differently.
  const ignoreRules = JSON.stringify({ cws: PACKAGE_VERSION, rules: ignoreLines });
  const matcher = matcherFor(ignoreRules, ignoreLines, memo !== undefined);
  // Whether the cache on disk needs rewriting: a no-op scan should not pay for an fsync, but
  // an unusable cache file is replaced even when the tree yields no entry for it.
  let cacheChanged = false;
  const cache: StatCache =
    statCachePath === undefined
      ? { entries: new StatCacheEntries(), ignoreRules: null, unchecked: new Set() }
      : await readStatCache(statCachePath, (message) => {
          cacheChanged = true;
          onWarning(message);
        });
  const rulesKnown = cache.ignoreRules === ignoreRules;
  if (!rulesKnown || cache.unchecked.size > 0) cacheChanged = true;
  // What the next cache holds, in walk order; sorted only when it has to be written.
  const nextCache: Array<[string, StatCacheEntry]> = [];
  let reusedEntries = 0;

  const entries: ManifestEntry[] = [];
  const diskPaths = new Map<string, string>();
  const leftovers: string[] = [];
  let hashedFiles = 0;
  let hashedBytes = 0;
  let scannedFiles = 0;
  let scannedBytes = 0;

  /** Adds a file's entry (and its stat cache entry unless racy); returns the cache pair added, if any. */
  const addFile = (entryPath: string, stats: FileStat, hash: string, chunks: ChunkRef[], cached: StatCacheEntry | undefined): [string, StatCacheEntry] | undefined => {
    entries.push({
      path: entryPath,
      kind: "file",
      size: stats.size,
      mtimeMs: entryMtime(stats),
      mode: permissionBits(stats, false),
      hash,
      chunks,
    });
    let pair: [string, StatCacheEntry] | undefined;
    if (stats.mtimeMs < startedAt - RACY_WINDOW_MS) {
      if (cached !== undefined && cached.ctimeMs !== undefined) {
        pair = [entryPath, cached];
        reusedEntries++;
      } else {
        pair = [entryPath, { size: stats.size, mtimeMs: stats.mtimeMs, ctimeMs: stats.ctimeMs, ino: stats.ino, hash, chunks }];
        cacheChanged = true;
      }
      nextCache.push(pair);
    }
    scannedFiles++;
    scannedBytes += stats.size;
    onProgress?.({ files: scannedFiles, bytes: scannedBytes });
    return pair;
  };

  const record = (entryPath: string, outcome: HashOutcome): void => {
    if (outcome.ok) {
      hashedFiles++;
      hashedBytes += outcome.stat.size;
      addFile(entryPath, outcome.stat, outcome.hash, outcome.chunks, undefined);
    } else {
      problems.push({ path: entryPath, reason: outcome.reason, unknown: true });
    }
  };

  // Files smaller than one read buffer (most Markdown and JSON) are hashed synchronously: a
  // file then costs five system calls without a thread-pool round trip each, which measured
  // 15-30x faster than the promise API on small files. The scan yields to the event loop every
  // SYNC_FILES_PER_YIELD files so heartbeats, progress and aborts still get their turn.
  const smallBuffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
  let syncRun = 0;

  // Bigger files stream through a small pool of async readers, so the disk reads of one file
  // overlap with the hashing of another. Each reader owns one read buffer and one Chunker, so
  // memory stays flat however big the tree is. Tasks never reject; a failure is a problem.
  const freeReaders: Array<{ buffer: Buffer; chunker: Chunker }> = [];
  const inFlight = new Set<Promise<void>>();
  const hashInline = async (entryPath: string, absPath: string, cached: StatCacheEntry | undefined): Promise<void> => {
    const reader = freeReaders.pop() ?? { buffer: Buffer.allocUnsafe(READ_BUFFER_BYTES), chunker: new Chunker() };
    try {
      // A file that only grew (a rollout with a new turn) has only its tail chunked: append-hash.ts.
      const appended = cached === undefined ? undefined : await hashAppendedFile(absPath, cached, reader.buffer, reader.chunker, signal);
      record(entryPath, appended !== undefined ? { ok: true, ...appended } : await hashFile(absPath, reader.buffer, reader.chunker, signal));
    } catch (error) {
      // Cancellation is reported once, by scanTree itself, after every task has settled.
      if (!signal?.aborted) problems.push({ path: entryPath, reason: `it could not be read: ${describe(error)}`, unknown: true });
      reader.chunker.finish(); // resets a chunker left mid-file
    } finally {
      freeReaders.push(reader);
    }
  };
  /** Keeps `task` in `tasks` until it settles (tasks never reject). */
  const track = (tasks: Set<Promise<void>>, task: Promise<void>): void => {
    tasks.add(task);
    void task.finally(() => tasks.delete(task));
  };
  const hashLater = (entryPath: string, absPath: string, cached: StatCacheEntry | undefined): void => {
    track(inFlight, hashInline(entryPath, absPath, cached));
  };

  // A second thread hashes beside this one once the scan has shown that it has much to read
  // (scan-hash-pool.ts): a file goes to it while it has little queued, else it is hashed here,
  // so both cores stay busy and neither waits for the other. Small scans (a few changed
  // files) never start it. A file the thread could not take (it failed) is hashed here.
  const threadWanted = hashThread === "always" || (hashThread === "auto" && availableParallelism() > 1);
  let thread: ScanHashPool | undefined;
  let hashedHere = 0;
  const threadTasks = new Set<Promise<void>>();
  const stopThread = (): void => void thread?.close();
  signal?.addEventListener("abort", stopThread, { once: true });
  const threadFor = (size: number): ScanHashPool | undefined => {
    if (!threadWanted) return undefined;
    if (thread === undefined) {
      if (hashThread !== "always" && hashedHere < HASH_THREAD_START_BYTES) return undefined;
      thread = new ScanHashPool();
    }
    // A file larger than the byte bound goes when nothing else is queued.
    const room = thread.queuedFiles === 0 || (thread.queuedFiles < HASH_THREAD_QUEUE_FILES && thread.queuedBytes + size <= HASH_THREAD_QUEUE_BYTES);
    return thread.usable && room ? thread : undefined;
  };
  const hashOnThread = (pool: ScanHashPool, entryPath: string, absPath: string, size: number): void => {
    track(threadTasks, (async () => {
      const outcome = await pool.hash(absPath, size);
      if (outcome !== null) record(entryPath, outcome);
      else await hashInline(entryPath, absPath, undefined);
    })());
  };
  const settleAll = async (): Promise<void> => {
    await Promise.allSettled(threadTasks);
    await Promise.allSettled(inFlight);
    signal?.removeEventListener("abort", stopThread);
    await thread?.close();
  };

  // The walk uses synchronous calls on purpose: tens of thousands of lstat calls through the
  // thread pool cost seconds of round trips, the same calls made directly cost a fraction of
  // that (50,000 files: about 0.2 s instead of 4 s). It yields to the event loop every
  // WALK_ENTRIES_PER_YIELD entries, so that a connection being set up meanwhile, heartbeats
  // and Ctrl+C are served. Each folder is listed, sorted, and walked right after its entry, so
  // the entries come out nearly in manifest order and the final sort has little to do.
  let sinceYield = 0;
  // With a watcher, what each clean folder yielded is kept with its listing for the next scan
  // (see FolderYield); the stamp says under which cache and rules, and is filled in only once
  // this scan has completed and its cache is the one on disk.
  const stamp: ScanStamp = { cache: null, rules: ignoreRules };
  let reusedFolders = 0;
  const walkFolder = async (diskRel: string, nfcRel: string, folderEntry: ManifestEntry | null): Promise<void> => {
    const absFolder = diskRel === "" ? root : join(root, diskRel);
    // Names are appended to this rather than joined: join() normalises the whole path each time.
    const folderPrefix = absFolder.endsWith(sep) ? absFolder : absFolder + sep;
    // A watcher (tree-watch.ts) may know the folder's listing unchanged since the last walk.
    let listing = memo?.recall(diskRel);
    const kept = listing === undefined ? undefined : folderYields.get(listing);
    if (kept !== undefined && kept.stamp.cache === cache.entries && kept.stamp.rules === ignoreRules) {
      // The very listing the last scan walked, under the same cache and rules: the walk would
      // find what it found then (see FolderYield), so that is taken as it is.
      folderYields.set(listing!, { ...kept, stamp });
      if (folderEntry !== null) entries.push(folderEntry);
      for (const file of kept.files) entries.push(file);
      for (const pair of kept.cache) nextCache.push(pair);
      for (const pair of kept.diskPaths) diskPaths.set(pair[0], pair[1]);
      reusedEntries += kept.cache.length;
      scannedFiles += kept.files.length;
      for (const file of kept.files) scannedBytes += file.size;
      if (kept.files.length > 0) onProgress?.({ files: scannedFiles, bytes: scannedBytes });
      sinceYield += kept.files.length;
      reusedFolders++;
      if (sinceYield >= WALK_ENTRIES_PER_YIELD) {
        sinceYield = 0;
        throwIfCancelled(signal);
        await yieldToEventLoop();
      }
      for (const [subDisk, subNfc, subEntry] of kept.folders) await walkFolder(subDisk, subNfc, subEntry);
      return;
    }
    if (listing === undefined) {
      const token = memo?.begin(diskRel) ?? 0;
      try {
        listing = listFolder(absFolder);
      } catch (error) {
        // A folder deleted (or replaced by a file) after the walk saw it: gone, like a vanished file.
        if (folderEntry !== null && (isErrno(error, "ENOENT") || isErrno(error, "ENOTDIR"))) {
          problems.push({ path: folderEntry.path, reason: "it vanished during the scan", unknown: true });
          return;
        }
        throw error;
      }
      memo?.remember(diskRel, token, listing);
    }
    if (folderEntry !== null) entries.push(folderEntry);
    const { names, stats: statsOf } = listing;
    // Two names can be equal once NFC-normalised only if one of them is not ASCII, and only
    // within one folder (a folder that loses such a tie is not walked), so only folders with a
    // non-ASCII name keep track of the normalised names they hold.
    const claimed = names.some((name) => NON_ASCII.test(name)) ? new Set<string>() : null;
    // Per name only the entry path and the absolute path are built; the relative paths are
    // made when needed (matching, folders, names that are not NFC), which most files are not.
    const entryPrefix = nfcRel === "" ? FILES_PREFIX : `${FILES_PREFIX}${nfcRel}/`;
    const relPathOf = (name: string) => (diskRel === "" ? name : `${diskRel}/${name}`);
    const nfcPathOf = (entryPath: string) => entryPath.slice(FILES_PREFIX.length);
    // What this folder yields, kept for the next scan only if every name was settled here
    // without a read, a problem or a leftover (see FolderYield).
    const yielded: FolderYield | null = memo === undefined ? null : { stamp, files: [], cache: [], diskPaths: [], folders: [] };
    let clean = yielded !== null;
    const problemsBefore = problems.length;
    for (let index = 0; index < names.length; index++) {
      const name = names[index]!;
      throwIfCancelled(signal);
      if (++sinceYield >= WALK_ENTRIES_PER_YIELD) {
        sinceYield = 0;
        await yieldToEventLoop();
      }
      const nfcName = claimed === null ? name : name.normalize("NFC");
      const entryPath = entryPrefix + nfcName;
      if (name.endsWith(TREE_TEMP_SUFFIX) && isTreeTempName(name)) {
        leftovers.push(folderPrefix + name);
        clean = false;
        continue;
      }
      const stats = statsOf[index];
      if (stats === undefined) {
        if (!isIgnored(matcher, nfcPathOf(entryPath), entryPath, [])) problems.push({ path: entryPath, reason: "it vanished during the scan", unknown: true });
        continue;
      }
      const isDir = stats.kind === KIND_DIR;
      const cached = isDir ? undefined : cache.entries.get(entryPath);
      const passedRules = cached !== undefined && rulesKnown && (cache.unchecked.size === 0 || !cache.unchecked.has(entryPath));
      if (!passedRules && isIgnored(matcher, isDir ? `${nfcPathOf(entryPath)}/` : nfcPathOf(entryPath), entryPath, problems)) continue;
      if (claimed !== null) {
        if (claimed.has(nfcName)) {
          // When two names differ on disk but are equal once NFC-normalised (possible on Linux).
          problems.push({ path: entryPath, reason: `another name in the same folder is equal to "${relPathOf(name)}" once Unicode-normalised; rename one of them`, unknown: true });
          continue;
        }
        claimed.add(nfcName);
      }
      if (nfcName !== name || nfcRel !== diskRel) {
        diskPaths.set(entryPath, relPathOf(name));
        yielded?.diskPaths.push([entryPath, relPathOf(name)]);
      }
      if (isDir) {
        const sub: [string, string, ManifestEntry] = [relPathOf(name), nfcPathOf(entryPath), { path: entryPath, kind: "dir", size: 0, mtimeMs: entryMtime(stats), mode: permissionBits(stats, true), hash: "", chunks: [] }];
        yielded?.folders.push(sub);
        await walkFolder(...sub);
        continue;
      }
      if (stats.kind === KIND_SYMLINK) {
        problems.push({ path: entryPath, reason: "it is a symbolic link, which cws never follows or syncs" });
        continue;
      }
      if (stats.kind !== KIND_FILE) {
        problems.push({ path: entryPath, reason: "it is not a regular file (a socket, pipe or device), which cws does not sync" });
        continue;
      }
      if (cached !== undefined && statMatches(cached, stats)) {
        const pair = addFile(entryPath, stats, cached.hash, cached.chunks, cached);
        if (yielded !== null) {
          yielded.files.push(entries[entries.length - 1]!);
          if (pair !== undefined) yielded.cache.push(pair);
        }
        continue;
      }
      // A file read in this scan: its entry comes later (hashing may run in the background).
      clean = false;
      const appendable = mayBeAppended(cached, stats);
      const pool = appendable ? undefined : threadFor(stats.size);
      if (pool !== undefined) {
        hashOnThread(pool, entryPath, folderPrefix + name, stats.size);
        continue;
      }
      hashedHere += stats.size;
      if (stats.size < READ_BUFFER_BYTES) {
        const outcome = hashSmallFileSync(folderPrefix + name, smallBuffer);
        if (outcome !== undefined) {
          record(entryPath, outcome);
          if (++syncRun >= SYNC_FILES_PER_YIELD) {
            syncRun = 0;
            await yieldToEventLoop();
          }
          continue;
        }
        // The file grew past the buffer since the walk saw it: stream it like a big file.
      }
      hashLater(entryPath, folderPrefix + name, appendable ? cached : undefined);
      if (inFlight.size >= HASH_CONCURRENCY) await Promise.race(inFlight);
    }
    // Problems of this folder's own names (sub-folders' come after their own walks, which
    // already ran, so they are counted too: a folder is kept only if nothing below it was odd).
    if (problems.length !== problemsBefore) clean = false;
    if (yielded !== null) {
      if (clean) folderYields.set(listing, yielded);
      else folderYields.delete(listing);
    }
  };

  try {
    await walkFolder("", "", null);
  } catch (error) {
    await settleAll();
    throwIfCancelled(signal);
    // Only file-system errors come from the walk; anything else (a throwing onProgress) is not ours to relabel.
    if (typeof (error as NodeJS.ErrnoException | undefined)?.syscall !== "string") throw error;
    // When a folder inside the root cannot be listed (permissions, I/O error). Failing the whole
    // scan is deliberate: a partial listing would look like deleted files to the sync.
    throw new CwsError("INVALID_ARGUMENT", `Cannot scan "${root}" as a folder inside it cannot be read: ${describe(error)}; fix its permissions or add it to ${IGNORE_FILE_NAME}`, {
      cause: error,
      data: { root },
    });
  }
  await settleAll();
  throwIfCancelled(signal);

  // A file deleted or newly racy since the last scan leaves the cache smaller: rewrite it too.
  if (reusedEntries !== cache.entries.size) cacheChanged = true;
  if (statCachePath !== undefined && cacheChanged) {
    try {
      // Only what changed since the cache was read is written (stat-cache.ts, journal-file.ts).
      const saved = new StatCacheEntries(nextCache);
      await saveStatCache(statCachePath, saved, ignoreRules, [], cache);
      stamp.cache = saved;
    } catch (error) {
      // When the cache cannot be written; the scan itself is still valid.
      onWarning(`Cannot save the stat cache "${statCachePath}" as ${describe(error)}: the next scan will hash every file again`);
    }
  } else if (statCachePath !== undefined) {
    stamp.cache = cache.entries;
  }
  problems.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { manifest: makeManifest(entries), hashedFiles, hashedBytes, problems, diskPaths, leftovers, reusedFolders };
}

/**
 * Reads and hashes one file through `buffer`. The stat of the open file is taken before and after
 * reading; if they differ, or the bytes read differ from the size, the file changed under us and
 * is read again (a few times at most).
 */
async function hashFile(absPath: string, buffer: Buffer, chunker: Chunker, signal: AbortSignal | undefined): Promise<HashOutcome> {
  for (let attempt = 1; attempt <= MAX_READ_ATTEMPTS; attempt++) {
    throwIfCancelled(signal);
    let handle: FileHandle;
    try {
      handle = await open(absPath, OPEN_FLAGS);
    } catch (error) {
      return openFailure(error);
    }
    try {
      const before = await handle.stat();
      if (!before.isFile()) return { ok: false, reason: "it is no longer a regular file" };
      const whole = createXxh64();
      chunker.finish(); // starts from a clean state whatever the last file left
      const chunks: ChunkRef[] = [];
      let total = 0;
      for (;;) {
        throwIfCancelled(signal);
        const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
        if (bytesRead === 0) break;
        const piece = buffer.subarray(0, bytesRead);
        whole.update(piece);
        pushChunkRefs(chunker, piece, chunks);
        total += bytesRead;
      }
      finishChunkRefs(chunker, chunks);
      const after = await handle.stat();
      if (total === before.size && sameStat(before, after)) {
        return { ok: true, stat: statFields(before), hash: whole.digestHex(), chunks };
      }
    } catch (error) {
      if (isCancelled(error)) throw error;
      return { ok: false, reason: `it could not be read: ${describe(error)}` };
    } finally {
      await handle.close();
    }
  }
  return keptChanging();
}

/**
 * The matcher of the last walk with a memo (the kept session's), while its rules stay the same:
 * the `ignore` package remembers each path's verdict, so the folders of a tree are matched once
 * rather than on every walk. It is made anew after MATCHER_REUSES walks, which bounds the
 * verdicts it holds for names that came and went.
 */
let keptMatcher: { rules: string; matcher: Ignore; uses: number } | null = null;
const MATCHER_REUSES = 100;

function matcherFor(rules: string, lines: string[], keep: boolean): Ignore {
  if (keep && keptMatcher !== null && keptMatcher.rules === rules && keptMatcher.uses++ < MATCHER_REUSES) return keptMatcher.matcher;
  const matcher = ignore().add(lines);
  if (keep) keptMatcher = { rules, matcher, uses: 0 };
  return matcher;
}

function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** The mtime for a manifest entry; the manifest has no dates before 1970, so those become 0. */
function entryMtime(stats: FileStat): number {
  return Math.max(0, stats.mtimeMs);
}

/**
 * The permission bits of a file or folder. Windows has no Unix modes (Node reports 0o666 or
 * 0o444), so Windows devices report the manifest's conventional 0o644 for files and 0o755 for
 * folders, and the sync keeps modes it cannot see.
 */
function permissionBits(stats: FileStat, isDir: boolean): number {
  if (process.platform === "win32") return isDir ? 0o755 : 0o644;
  return stats.mode & 0o777;
}

/** Checks that the root exists and is a folder, so a missing drive never looks like an empty tree. */
async function checkRoot(root: string): Promise<void> {
  let stats: Stats;
  try {
    stats = await stat(root);
  } catch (error) {
    if (isErrno(error, "ENOENT")) {
      // When the superproject folder was moved, deleted, or is on an unmounted drive.
      throw new CwsError("NOT_FOUND", `Cannot scan "${root}" as it does not exist; check that its drive is mounted or attach the superproject again`, {
        cause: error,
        data: { root },
      });
    }
    throw new CwsError("INVALID_ARGUMENT", `Cannot scan "${root}" as it cannot be read: ${describe(error)}`, { cause: error, data: { root } });
  }
  if (!stats.isDirectory()) {
    // When the configured root points at a file.
    throw new CwsError("INVALID_ARGUMENT", `Cannot scan "${root}" as it is not a folder`, { data: { root } });
  }
}

/** Reads the root's `.cwsignore` lines; a missing file has none, an unusable one is a problem. */
async function readIgnoreFile(root: string, problems: ScanProblem[]): Promise<string[]> {
  const path = join(root, IGNORE_FILE_NAME);
  let text: string;
  try {
    const handle = await open(path, OPEN_FLAGS);
    try {
      const stats = await handle.stat();
      if (!stats.isFile() || stats.size > MAX_IGNORE_FILE_BYTES) {
        problems.push({ path: FILES_PREFIX + IGNORE_FILE_NAME, reason: `its rules were not applied as it is not a regular file of at most ${MAX_IGNORE_FILE_BYTES} bytes` });
        return [];
      }
      text = await readFile(handle, "utf8");
    } finally {
      await handle.close();
    }
  } catch (error) {
    if (isErrno(error, "ENOENT")) return [];
    problems.push({ path: FILES_PREFIX + IGNORE_FILE_NAME, reason: `its rules were not applied as it could not be read: ${describe(error)}` });
    return [];
  }
  return text.split(/\r?\n/);
}

/** Applies the ignore rules to one NFC relative path (folders end in "/"). */
function isIgnored(matcher: Ignore, relPath: string, entryPath: string, problems: ScanProblem[]): boolean {
  try {
    return matcher.ignores(relPath);
  } catch (error) {
    // `ignore` refuses paths it cannot interpret; such a file is skipped rather than guessed at.
    problems.push({ path: entryPath, reason: `its name cannot be matched against the ignore rules: ${describe(error)}`, unknown: true });
    return true;
  }
}

function throwIfCancelled(signal: AbortSignal | undefined): void {
  if (signal?.aborted) {
    // When the user interrupted the scan (Ctrl+C, turn-off-sync).
    throw new CwsError("CANCELLED", "The scan was cancelled", { cause: signal.reason });
  }
}

function isCancelled(error: unknown): boolean {
  return error instanceof CwsError && error.code === "CANCELLED";
}
