/**
 * A watcher of a superproject folder for the kept session (kept-session.ts): it remembers what
 * the last walk listed in each folder (names and their lstat results) and watches every folder
 * it walked (`fs.watch`, one inotify watch per folder, never recursive), so that a no-op sync
 * re-lists only the folders something happened in since (see docs/performance.md, "The warm
 * path").
 *
 * Why a remembered listing is the listing the walk would make now. A folder's listing is kept
 * only when its watch was in place before the listing began and no event of that folder came
 * between the start of the listing and now: any create, delete, rename, write or attribute
 * change of a name in a folder is an event of that folder's watch, and the event drops the
 * listing. Only readdir and lstat results are remembered: whether a file is read again is still
 * decided by the scanner against the stat cache on disk, and the ignore rules are applied to
 * the remembered names as to fresh ones, so a base, stat cache or `.cwsignore` changed by
 * another command is seen as it would be without the watcher.
 *
 * When nothing may be trusted, and a walk lists every folder afresh:
 * - before `barrier()` has seen its own marker event come back: inotify delivers the events of
 *   one process in order, so every change made before the barrier was handled before the walk
 *   starts (a change made during the walk is either seen by it or drops the listing for the
 *   next walk, as with any scan);
 * - after a watch error, an event whose name cannot be read, or a burst of events at least half
 *   the kernel's queue (/proc/sys/fs/inotify/max_queued_events): libuv drops the queue-overflow
 *   event, so a burst that may have overflowed is taken as one. All listings and watches are
 *   dropped, and the watcher is set up again after the next sync;
 * - when the folder itself is no longer the same folder (device and inode), is on a file system
 *   that does not report every change to inotify (network and FUSE file systems), a folder
 *   inside it is on another device (a mount), or the mounts inside it changed since the folders
 *   were watched (a mount over a watched folder hides it from its watch);
 * - when the tree has more folders than `maxFolders`, or the system refuses more watches: the
 *   watcher gives up for the rest of the kept session.
 * A sub-folder that is created, deleted or renamed drops the listings and watches of that
 * sub-folder and everything below it; the next walk lists them afresh and they are watched
 * after that sync.
 *
 * Not seen by inotify, hence not by this watcher: writes through a shared memory mapping
 * (mmap) and changes made by another machine to a network file system (refused above).
 * `CWS_WATCH_FOLDERS=0` turns the watcher off.
 *
 * Setting up (`watchWalked`, `prime`) costs about a walk; the kept session does it after a
 * sync, between requests, and stops as soon as a request comes.
 */
import { type BigIntStats, type FSWatcher, lstatSync, mkdirSync, readdirSync, readFileSync, realpathSync, statfsSync, statSync, watch, writeFileSync } from "node:fs";
import { basename, join, sep } from "node:path";

/** What the walk needs of a name's lstat. */
export interface WalkStat {
  /** KIND_FILE, KIND_DIR, KIND_SYMLINK or KIND_OTHER. */
  kind: number;
  mode: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  ino: number;
}

export const KIND_FILE = 0;
export const KIND_DIR = 1;
export const KIND_SYMLINK = 2;
export const KIND_OTHER = 3;

/** A folder's names, sorted, and each name's lstat (undefined when it vanished before its lstat). */
export interface FolderListing {
  names: string[];
  stats: Array<WalkStat | undefined>;
}

/**
 * What the scanner asks of a watcher (scanner.ts `ScanOptions.memo`), by the folder's path on
 * disk relative to the root ("" for the root).
 */
export interface WalkMemo {
  /** The folder's listing when it is known unchanged since it was made; undefined otherwise. */
  recall(diskRel: string): FolderListing | undefined;
  /** Called right before a folder is listed afresh; the token goes to `remember`. */
  begin(diskRel: string): number;
  /** Called with the fresh listing of a folder once every name in it was lstat-ed. */
  remember(diskRel: string, token: number, listing: FolderListing): void;
}

/** Lists a folder: its names sorted, each with its lstat. */
export function listFolder(absFolder: string): FolderListing {
  const names = readdirSync(absFolder);
  names.sort();
  const prefix = absFolder.endsWith(sep) ? absFolder : absFolder + sep;
  const stats: Array<WalkStat | undefined> = new Array(names.length);
  for (let i = 0; i < names.length; i++) stats[i] = walkStat(prefix + names[i]);
  return { names, stats };
}

/** The lstat of a path as the walk needs it, or undefined when it no longer exists. */
export function walkStat(path: string): WalkStat | undefined {
  let stats;
  try {
    stats = lstatSync(path, { throwIfNoEntry: false });
  } catch (error) {
    // Its folder was replaced by a file since it was listed: gone, like a deleted name.
    if ((error as NodeJS.ErrnoException).code === "ENOTDIR") return undefined;
    throw error;
  }
  if (stats === undefined) return undefined;
  const kind = stats.isFile() ? KIND_FILE : stats.isDirectory() ? KIND_DIR : stats.isSymbolicLink() ? KIND_SYMLINK : KIND_OTHER;
  return { kind, mode: stats.mode, size: stats.size, mtimeMs: stats.mtimeMs, ctimeMs: stats.ctimeMs, ino: stats.ino };
}

/**
 * File systems whose changes all reach inotify (statfs magic numbers): ext2/3/4, XFS, Btrfs,
 * tmpfs, F2FS, overlayfs. Network and FUSE file systems are left out: another machine's (or
 * the FUSE server's own) changes are not reported.
 */
const LOCAL_FILE_SYSTEMS = new Set([0xef53, 0x58465342, 0x9123683e, 0x01021994, 0xf2f52010, 0x794c7630]);

/** The default of CWS_WATCH_FOLDERS: the most folders one superproject's watcher watches. */
export const DEFAULT_MAX_WATCHED_FOLDERS = 20_000;

/** How long `barrier()` waits for its marker event before it gives up trusting the watcher for this walk. */
const BARRIER_TIMEOUT_MS = 2_000;

/** How many lstat calls `prime()` makes between two turns of the event loop (about a millisecond). */
const PRIME_ENTRIES_PER_YIELD = 256;

/** The most folders a watcher watches, from CWS_WATCH_FOLDERS (0 turns watching off). */
export function maxWatchedFolders(env: NodeJS.ProcessEnv = process.env): number {
  const value = env.CWS_WATCH_FOLDERS;
  if (value === undefined || value.trim() === "") return DEFAULT_MAX_WATCHED_FOLDERS;
  const parsed = Number(value);
  return Number.isSafeInteger(parsed) && parsed >= 0 ? parsed : DEFAULT_MAX_WATCHED_FOLDERS;
}

/** The kernel's inotify queue length, or its usual default when it cannot be read. */
function kernelQueueLimit(): number {
  try {
    const value = Number(readFileSync("/proc/sys/fs/inotify/max_queued_events", "utf8").trim());
    if (Number.isSafeInteger(value) && value > 0) return value;
  } catch {
    // Not Linux, or /proc is not mounted: the default below.
  }
  return 16_384;
}

interface WatchedFolder {
  watcher: FSWatcher;
  /** Bumped by every event of this folder. */
  generation: number;
  listing: FolderListing | null;
}

export interface TreeWatcherOptions {
  /** The superproject folder. */
  root: string;
  /** A private folder for the barrier's marker file (the state dir's). */
  markerDir: string;
  /** The most folders watched; more makes the watcher give up. */
  maxFolders: number;
  /** Where a reason to stop trusting the watcher is logged. */
  log: (line: string) => void;
  /** Events in one burst that count as a possible overflow. @default half the kernel's queue */
  burstLimit?: number;
}

/** Watches one superproject folder; see the top of this module. */
export class TreeWatcher implements WalkMemo {
  readonly root: string;
  readonly #options: TreeWatcherOptions;
  readonly #folders = new Map<string, WatchedFolder>();
  /** Folders the walks listed since the last `watchWalked`, to watch next. */
  readonly #walked = new Set<string>();
  /** The root's device and inode when the first folder was watched. */
  #rootIdentity: string | null = null;
  /** The mounts inside the folder then: a file system mounted inside it since hides folders from their watches. */
  #mounts: string | null = null;
  /** Set once the watcher gave up for good (too many folders, no more watches, another file system). */
  #gaveUp: string | null = null;
  /** Whether the last `barrier()` saw its marker: listings are recalled only then. */
  #trusted = false;
  #burst = 0;
  readonly #burstLimit: number;
  #marker: { watcher: FSWatcher; path: string; waiting: Set<(seen: boolean) => void> } | null = null;
  /** How many listings were recalled and made afresh since the last `takeCounts()`, for the log. */
  #recalled = 0;
  #listed = 0;

  constructor(options: TreeWatcherOptions) {
    this.#options = options;
    this.root = options.root;
    this.#burstLimit = options.burstLimit ?? Math.max(1, Math.floor(kernelQueueLimit() / 2));
    if (options.maxFolders === 0) this.#gaveUp = "watching is turned off (CWS_WATCH_FOLDERS=0)";
  }

  /** Why the watcher is not used at all, or null. */
  get gaveUp(): string | null {
    return this.#gaveUp;
  }

  /** How many folders are watched, and how many of them have a listing kept. */
  get size(): { watched: number; listed: number } {
    let listed = 0;
    for (const folder of this.#folders.values()) if (folder.listing !== null) listed++;
    return { watched: this.#folders.size, listed };
  }

  /** Listings recalled and made afresh since the last call. */
  takeCounts(): { recalled: number; listed: number } {
    const counts = { recalled: this.#recalled, listed: this.#listed };
    this.#recalled = 0;
    this.#listed = 0;
    return counts;
  }

  recall(diskRel: string): FolderListing | undefined {
    if (!this.#trusted) return undefined;
    const listing = this.#folders.get(diskRel)?.listing ?? undefined;
    if (listing !== undefined) this.#recalled++;
    return listing;
  }

  begin(diskRel: string): number {
    this.#walked.add(diskRel);
    this.#listed++;
    return this.#folders.get(diskRel)?.generation ?? -1;
  }

  remember(diskRel: string, token: number, listing: FolderListing): void {
    const folder = this.#folders.get(diskRel);
    if (folder !== undefined && folder.generation === token) folder.listing = listing;
  }

  /**
   * Makes sure every event of a change made before this call was handled, by writing a marker
   * file in a watched private folder and waiting for its event (inotify keeps one queue per
   * process, in order). Until the next barrier, listings are recalled only if it succeeded;
   * resolves to whether it did.
   */
  async barrier(): Promise<boolean> {
    this.#trusted = false;
    if (this.#gaveUp !== null || this.#folders.size === 0) return false;
    if (!this.#sameRoot()) {
      this.#invalidate("the folder is no longer the one that was watched");
      return false;
    }
    if (mountsInside(this.root) !== this.#mounts) {
      this.#invalidate("a file system was mounted or unmounted since the folder was watched");
      return false;
    }
    try {
      if (this.#marker === null) {
        const dir = this.#options.markerDir;
        mkdirSync(dir, { recursive: true, mode: 0o700 });
        const waiting = new Set<(seen: boolean) => void>();
        const markerWatcher = watch(dir, { persistent: false }, () => {
          for (const resolve of waiting) resolve(true);
          waiting.clear();
        });
        markerWatcher.on("error", () => this.#dropMarker());
        this.#marker = { watcher: markerWatcher, path: join(dir, "marker"), waiting };
      }
      const marker = this.#marker;
      const seen = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => {
          marker.waiting.delete(done);
          resolve(false);
        }, BARRIER_TIMEOUT_MS);
        const done = (seen: boolean) => {
          clearTimeout(timer);
          resolve(seen);
        };
        marker.waiting.add(done);
        writeFileSync(marker.path, `${process.pid} ${Date.now()}\n`);
      });
      // Events handled while waiting may have made the watcher give up.
      this.#trusted = seen && this.#folders.size > 0;
      if (!seen && this.#folders.size > 0) this.#options.log("the file watcher's marker event did not come back in time: this walk lists every folder");
    } catch (error) {
      this.#options.log(`the file watcher's marker could not be written (${(error as Error).message}): this walk lists every folder`);
      this.#dropMarker();
    }
    return this.#trusted;
  }

  /**
   * Watches the folders the walks listed since the last call that are not watched yet. A
   * folder watched now has no listing until it is listed again (`prime` or the next walk).
   * Returns false when the watcher gave up.
   */
  watchWalked(): boolean {
    if (this.#gaveUp !== null) return false;
    let rootStats;
    try {
      rootStats = statSync(this.root, { bigint: true });
      const identity = folderIdentity(rootStats);
      if (this.#rootIdentity !== null && this.#rootIdentity !== identity) this.#invalidate("the folder is no longer the one that was watched");
      if (this.#rootIdentity === null) {
        const type = Number(statfsSync(this.root).type);
        if (!LOCAL_FILE_SYSTEMS.has(type)) {
          this.#giveUp(`its file system (type 0x${type.toString(16)}) may not report every change`);
          return false;
        }
        this.#rootIdentity = identity;
        this.#mounts = mountsInside(this.root);
      }
    } catch (error) {
      this.#walked.clear();
      this.#invalidate(`the folder cannot be read: ${(error as Error).message}`);
      return false;
    }
    const missing = [...this.#walked].filter((diskRel) => !this.#folders.has(diskRel));
    this.#walked.clear();
    if (missing.length === 0) return true;
    if (this.#folders.size + missing.length > this.#options.maxFolders) {
      this.#giveUp(`the folder has more than ${this.#options.maxFolders} folders (CWS_WATCH_FOLDERS)`);
      return false;
    }
    // Parents first: a folder is watched only while its parent is (the root aside), so that
    // dropping a folder's watch can drop everything below it.
    missing.sort();
    for (const diskRel of missing) {
      if (diskRel !== "" && !this.#folders.has(parentOf(diskRel))) continue;
      const absFolder = diskRel === "" ? this.root : join(this.root, diskRel);
      let stats;
      try {
        stats = lstatSync(absFolder, { bigint: true, throwIfNoEntry: false });
      } catch {
        stats = undefined;
      }
      // Gone or replaced since the walk: the next walk of its parent sees it, and it is watched after that.
      if (stats === undefined || !stats.isDirectory()) continue;
      if (stats.dev !== rootStats.dev) {
        this.#giveUp(`"${diskRel}" is on another file system`);
        return false;
      }
      let watcher: FSWatcher;
      try {
        watcher = watch(absFolder, { persistent: false }, (event, name) => this.#onEvent(diskRel, event, name));
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === "ENOENT" || code === "ENOTDIR") continue;
        this.#giveUp(`a folder could not be watched (${(error as Error).message}; see /proc/sys/fs/inotify/max_user_watches)`);
        return false;
      }
      watcher.on("error", (error) => this.#invalidate(`watching "${diskRel}" failed: ${error.message}`));
      this.#folders.set(diskRel, { watcher, generation: 0, listing: null });
      // A name made in the folder before its watch changed the folder's times, which its
      // parent's listing holds: the parent is listed again too.
      if (diskRel !== "") this.#touch(parentOf(diskRel));
    }
    return this.#gaveUp === null;
  }

  /**
   * Lists every watched folder that has no listing, yielding to the event loop as it goes;
   * stops early (the rest stay without listing) when `stop()` says so.
   */
  async prime(stop: () => boolean): Promise<void> {
    let sinceYield = 0;
    for (const [diskRel, folder] of [...this.#folders]) {
      if (stop() || this.#gaveUp !== null) return;
      if (folder.listing !== null || this.#folders.get(diskRel) !== folder) continue;
      const token = folder.generation;
      let listing: FolderListing;
      try {
        listing = listFolder(diskRel === "" ? this.root : join(this.root, diskRel));
      } catch {
        // Gone or unreadable: the next walk finds out what it is.
        continue;
      }
      if (folder.generation === token) folder.listing = listing;
      sinceYield += listing.names.length + 1;
      if (sinceYield >= PRIME_ENTRIES_PER_YIELD) {
        sinceYield = 0;
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
  }

  /** Stops every watch. */
  close(): void {
    for (const folder of this.#folders.values()) folder.watcher.close();
    this.#folders.clear();
    this.#dropMarker();
    this.#trusted = false;
  }

  #onEvent(diskRel: string, event: string, name: string | Buffer | null): void {
    // Every event of one read of the inotify queue arrives before the next turn of the event
    // loop: a burst close to the queue's length may hide a dropped overflow.
    if (this.#burst++ === 0) setImmediate(() => { this.#burst = 0; });
    if (this.#burst >= this.#burstLimit) {
      this.#invalidate(`a burst of ${this.#burst} events may have overflowed the kernel's event queue`);
      return;
    }
    if (!this.#folders.has(diskRel)) return;
    this.#touch(diskRel);
    if (typeof name !== "string" || name.includes("\ufffd")) {
      this.#invalidate(`an event in "${diskRel}" names no readable file`);
      return;
    }
    if (event !== "rename") return;
    // An event of the folder itself (moved, deleted) carries its own name, like one of a child of that name.
    if (diskRel === "" && name === basename(this.root)) {
      this.#invalidate("the folder itself may have been moved or deleted");
      return;
    }
    // A name created, deleted or moved here changed this folder's own times, which are part of
    // its parent's listing (the parent's watch gets no event for them).
    if (diskRel !== "") this.#touch(parentOf(diskRel));
    // A sub-folder created, deleted or moved here: what was watched below that name is no longer there.
    this.#dropTree(diskRel === "" ? name : `${diskRel}/${name}`);
  }

  /** Drops a folder's listing, and one being made (its token no longer matches). */
  #touch(diskRel: string): void {
    const folder = this.#folders.get(diskRel);
    if (folder === undefined) return;
    folder.generation++;
    folder.listing = null;
  }

  /** Stops watching a folder and everything below it. */
  #dropTree(diskRel: string): void {
    // Nothing below an unwatched folder is watched (see watchWalked).
    if (!this.#folders.has(diskRel)) return;
    const below = `${diskRel}/`;
    for (const [path, folder] of this.#folders) {
      if (path === diskRel || path.startsWith(below)) {
        folder.watcher.close();
        this.#folders.delete(path);
      }
    }
  }

  /** Drops every watch and listing; the watcher is set up again after the next walk. */
  #invalidate(reason: string): void {
    this.#options.log(`the file watcher of ${this.root} stopped: ${reason}; the next sync lists every folder`);
    this.close();
    this.#rootIdentity = null;
  }

  #giveUp(reason: string): void {
    this.#invalidate(reason);
    this.#gaveUp = reason;
  }

  #sameRoot(): boolean {
    try {
      return folderIdentity(statSync(this.root, { bigint: true })) === this.#rootIdentity;
    } catch {
      return false;
    }
  }

  #dropMarker(): void {
    this.#marker?.watcher.close();
    // A barrier waiting for the marker is answered at once: nothing is trusted now.
    for (const resolve of this.#marker?.waiting ?? []) resolve(false);
    this.#marker = null;
  }
}

/**
 * The lines of this process's mount table (Linux) whose mount point is `root` or inside it, or
 * "" where there is none to read. Mounts elsewhere (containers starting) do not matter; one over
 * the root's own path changes the root's device, which `#sameRoot` sees.
 */
function mountsInside(root: string): string {
  let table: string;
  let point: string;
  try {
    table = readFileSync("/proc/self/mountinfo", "utf8");
    // The table escapes space, tab, newline and backslash as octal.
    point = realpathSync(root).replace(/[\\ \t\n]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, "0")}`);
  } catch {
    return "";
  }
  const below = point.endsWith("/") ? point : `${point}/`;
  return table.split("\n").filter((line) => {
    const mountPoint = line.split(" ")[4];
    return mountPoint !== undefined && (mountPoint === point || mountPoint.startsWith(below));
  }).join("\n");
}

/** Which folder a path is (device and inode): a folder replaced at the same path is another. */
function folderIdentity(stats: BigIntStats): string {
  return `${stats.dev}:${stats.ino}`;
}

function parentOf(diskRel: string): string {
  const slash = diskRel.lastIndexOf("/");
  return slash === -1 ? "" : diskRel.slice(0, slash);
}
