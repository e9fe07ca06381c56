/**
 * Leftovers of interrupted runs, recognised by name and removed by the next run (DESIGN §6,
 * "Leftovers clean themselves"):
 *
 * - in the superproject folder, the temp files a pull writes beside their targets before it
 *   renames them into place (`.<8 hex>-<pid>-<n>.cws-tmp`); a pull killed before the rename
 *   leaves them behind;
 * - in the system temp folder, the work folders of pulls, pushes and fetches
 *   (`cws-pull-<pid>-XXXXXX` and the like), which hold a spool of downloaded chunks or built
 *   bundles, tens of MB each.
 *
 * Both names carry the process id of the run that made them, so a leftover is removed only when
 * that process is gone: two runs at once never remove each other's files. Names written by
 * versions before the pid was added are removed when old enough that no run can still own them.
 * None of these ever holds user data: a temp file in the tree is a copy being assembled of a
 * file the server holds, so removing it needs no backup.
 */
import { lstatSync, readdirSync, rmSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** The suffix of the temp files a pull writes in the tree (also a default ignore rule). */
export const TREE_TEMP_SUFFIX = ".cws-tmp";

// `.` 8 hex digits (one run's random prefix), the pid (absent in older versions), a counter.
const TREE_TEMP_NAME = /^\.[0-9a-f]{8}-(?:(\d{1,10})-)?[0-9a-z]{1,12}\.cws-tmp$/;

// What the temp folder holds for one run: its kind, the pid (absent in older versions), mkdtemp's six characters.
const WORK_DIR_NAME = /^cws-(?:pull|push|fetch)-(?:(\d{1,10})-)?[A-Za-z0-9]{6}$/;

/** Files of an older version without a pid are left alone this long, in case a run still writes them. */
const UNOWNED_GRACE_MS = 60 * 60 * 1000;

/** Operating-system litter that may be moved aside to let a folder the server deleted go. */
const OS_LITTER = new Set([".DS_Store", "Thumbs.db", "desktop.ini"]);

/** True when `name` is the name of a pull's temp file in the tree. */
export function isTreeTempName(name: string): boolean {
  return TREE_TEMP_NAME.test(name);
}

/** True when `name` is operating-system litter (Finder's `.DS_Store`, Explorer's `Thumbs.db`). */
export function isOsLitter(name: string): boolean {
  return OS_LITTER.has(name);
}

/** The name of a pull's temp file: `prefix` is the run's random part, `n` counts its files. */
export function treeTempName(prefix: string, n: number): string {
  return `.${prefix}-${process.pid}-${n.toString(36)}${TREE_TEMP_SUFFIX}`;
}

/** Makes a run's work folder in the system temp folder, named so a later run can clean it up. */
export function makeWorkDir(kind: "pull" | "push" | "fetch"): Promise<string> {
  return mkdtemp(join(tmpdir(), `cws-${kind}-${process.pid}-`));
}

/**
 * Removes the tree temp files the scan found whose run is gone. Returns how many went; a file
 * that cannot be removed stays for the next run (it is never synced either way).
 */
export function removeTreeLeftovers(absPaths: readonly string[], now = Date.now()): number {
  let removed = 0;
  for (const absPath of absPaths) {
    const name = absPath.slice(Math.max(absPath.lastIndexOf("/"), absPath.lastIndexOf("\\")) + 1);
    const match = TREE_TEMP_NAME.exec(name);
    if (match === null || !isAbandoned(match[1], absPath, now)) continue;
    try {
      if (!lstatSync(absPath).isFile()) continue;
      rmSync(absPath, { force: true });
      removed++;
    } catch {
      // Gone already, or not ours to remove: the next run tries again.
    }
  }
  return removed;
}

/**
 * Removes the work folders of cws runs that are gone from the system temp folder. Returns how
 * many went. Never throws: cleaning up must not stop a sync.
 */
export async function removeWorkDirLeftovers(dir = tmpdir(), now = Date.now()): Promise<number> {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return 0;
  }
  let removed = 0;
  for (const name of names) {
    const match = WORK_DIR_NAME.exec(name);
    if (match === null) continue;
    const path = join(dir, name);
    if (!isAbandoned(match[1], path, now)) continue;
    try {
      if (!lstatSync(path).isDirectory()) continue;
      await rm(path, { recursive: true, force: true });
      removed++;
    } catch {
      // Another user's folder (sticky /tmp), or removed meanwhile.
    }
  }
  return removed;
}

/** Whether the run that made a leftover is gone: its pid is not alive, or, without a pid, it is old. */
function isAbandoned(pidText: string | undefined, path: string, now: number): boolean {
  if (pidText === undefined) {
    try {
      const stats = lstatSync(path);
      // ctime, not mtime: a pull gives its temp files the server's mtime before renaming them.
      return now - stats.ctimeMs > UNOWNED_GRACE_MS;
    } catch {
      return false;
    }
  }
  const pid = Number(pidText);
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else, so it is alive.
    return (error as NodeJS.ErrnoException).code === "ESRCH";
  }
}
