/**
 * `cws backups list [slug]` and `cws backups restore <slug> <backup-id> [--path p]`: the local
 * backup area (`<CWS_HOME>/backups/<slug>/<timestamp>/<relative path>`), where every sync puts
 * the old version of each file it is about to overwrite or delete (src/client/backups.ts).
 *
 * A restore copies files back into the superproject folder, but never over a local file that
 * is newer than the backed-up copy (that would lose later work): those are reported and left.
 * A local file it does replace is itself backed up first, into a new backup set, so a restore
 * can be undone the same way. The next sync shares the restored files like any local change.
 */
import { copyFile, lstat, open, readdir, rename, rm, stat, utimes } from "node:fs/promises";
import { dirname, join } from "node:path";
import { mkdir } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { CwsError } from "../../errors.ts";
import { checkRelativePath, resolveInside } from "../../core/paths.ts";
import { BackupSession } from "../backups.ts";
import type { StateStore } from "../state.ts";
import { CODEX_BACKUP_DIR } from "../codex/sink.ts";
import { checkSlug } from "./superprojects.ts";

export interface BackupSet {
  slug: string;
  /** The set's folder name: the time of the sync that made it (ISO, `:` and `.` as `-`). */
  id: string;
  /** That time in ms since the epoch (null when the name is not a timestamp). */
  createdAt: number | null;
  files: number;
  bytes: number;
  dir: string;
}

const SET_ID = /^[0-9A-Za-z][0-9A-Za-z._-]{0,127}$/;

/** `2026-03-15T12-00-00-000Z` → its time, the inverse of BackupSession's folder naming. */
function parseSetTime(id: string): number | null {
  const match = /^(\d{4}-\d{2}-\d{2})T(\d{2})-(\d{2})-(\d{2})-(\d{3})Z$/.exec(id);
  if (match === null) return null;
  const time = Date.parse(`${match[1]}T${match[2]}:${match[3]}:${match[4]}.${match[5]}Z`);
  return Number.isNaN(time) ? null : time;
}

async function listDir(path: string): Promise<string[]> {
  try {
    return await readdir(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
}

/** Every regular file under a folder, as `/`-separated paths relative to it, sorted. */
async function filesUnder(dir: string): Promise<Array<{ relative: string; size: number; mtimeMs: number }>> {
  const result: Array<{ relative: string; size: number; mtimeMs: number }> = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    const abs = join(entry.parentPath, entry.name);
    const info = await stat(abs);
    result.push({ relative: abs.slice(dir.length + 1).split(/[\\/]/).join("/"), size: info.size, mtimeMs: info.mtimeMs });
  }
  return result.sort((a, b) => (a.relative < b.relative ? -1 : a.relative > b.relative ? 1 : 0));
}

/** The backup sets of one superproject (or of all), newest first. */
export async function listBackups(state: StateStore, slug?: string): Promise<BackupSet[]> {
  const root = join(state.home, "backups");
  const slugs = slug === undefined ? (await listDir(root)).sort() : [checkSlug(slug)];
  const sets: BackupSet[] = [];
  for (const name of slugs) {
    for (const id of await listDir(join(root, name))) {
      const dir = join(root, name, id);
      if (!SET_ID.test(id) || !(await stat(dir)).isDirectory()) continue;
      const files = await filesUnder(dir);
      sets.push({ slug: name, id, createdAt: parseSetTime(id), files: files.length, bytes: files.reduce((sum, f) => sum + f.size, 0), dir });
    }
  }
  return sets.sort((a, b) => (b.createdAt ?? 0) - (a.createdAt ?? 0) || (a.id < b.id ? 1 : -1));
}

export interface RestoreBackupResult {
  slug: string;
  backupId: string;
  /** Files copied back (relative to the superproject folder). */
  restored: string[];
  /** Files left alone, with the reason. */
  skipped: Array<{ path: string; reason: string }>;
  /** Where the local files this restore replaced were backed up (null when it replaced none). */
  savedTo: string | null;
}

/** True when two files hold the same bytes. */
async function sameBytes(a: string, b: string, size: number): Promise<boolean> {
  const [ha, hb] = await Promise.all([open(a, "r"), open(b, "r")]);
  try {
    const bufferA = Buffer.allocUnsafe(1 << 20);
    const bufferB = Buffer.allocUnsafe(1 << 20);
    for (let at = 0; at < size; at += bufferA.byteLength) {
      const [ra, rb] = await Promise.all([ha.read(bufferA, 0, bufferA.byteLength, at), hb.read(bufferB, 0, bufferB.byteLength, at)]);
      if (ra.bytesRead !== rb.bytesRead || !bufferA.subarray(0, ra.bytesRead).equals(bufferB.subarray(0, rb.bytesRead))) return false;
      if (ra.bytesRead === 0) break;
    }
    return true;
  } finally {
    await Promise.all([ha.close(), hb.close()]);
  }
}

/**
 * Copies a backup set (or one file or folder of it) back into the superproject's folder.
 *
 * @throws CwsError NOT_FOUND when the set, or the path inside it, does not exist.
 */
export async function restoreBackup(state: StateStore, slug: string, backupId: string, options: { path?: string; now?: Date } = {}): Promise<RestoreBackupResult> {
  const root = state.binding(checkSlug(slug)).root;
  if (!SET_ID.test(backupId)) throw new CwsError("INVALID_ARGUMENT", `"${backupId}" is not a backup id; take one from \`cws backups list ${slug}\`.`);
  const setDir = join(state.backupsDir(slug), backupId);
  if (!(await stat(setDir).then((s) => s.isDirectory(), () => false))) {
    throw new CwsError("NOT_FOUND", `There is no backup ${backupId} of ${slug}. List them with \`cws backups list ${slug}\`.`);
  }
  let files = await filesUnder(setDir);
  if (options.path !== undefined) {
    const wanted = checkRelativePath(options.path.replace(/\\/g, "/").replace(/^files\//, "").replace(/\/+$/, ""));
    files = files.filter((f) => f.relative === wanted || f.relative.startsWith(`${wanted}/`));
    if (files.length === 0) throw new CwsError("NOT_FOUND", `Backup ${backupId} of ${slug} holds nothing at ${wanted}.`);
  }
  const result: RestoreBackupResult = { slug, backupId, restored: [], skipped: [], savedTo: null };
  const saving = new BackupSession(state.backupsDir(slug), options.now ?? new Date());
  for (const file of files) {
    if (file.relative.startsWith(`${CODEX_BACKUP_DIR}/`)) {
      result.skipped.push({ path: file.relative, reason: `a Codex thread file: copy it from ${join(setDir, file.relative)} into the Codex home yourself, with Codex closed` });
      continue;
    }
    const source = join(setDir, file.relative);
    const target = resolveInside(root, file.relative);
    const existing = await lstat(target).catch(() => null);
    if (existing !== null) {
      if (!existing.isFile()) {
        result.skipped.push({ path: file.relative, reason: "something other than a file is there now" });
        continue;
      }
      if (existing.size === file.size && (await sameBytes(source, target, file.size))) {
        result.skipped.push({ path: file.relative, reason: "the local file is already identical" });
        continue;
      }
      if (existing.mtimeMs > file.mtimeMs) {
        result.skipped.push({ path: file.relative, reason: `the local file is newer (changed ${new Date(existing.mtimeMs).toISOString()}); copy ${source} by hand if you want the old version` });
        continue;
      }
      await saving.preserve(file.relative, target);
    }
    await mkdir(dirname(target), { recursive: true });
    // Copied to a temp name beside the target, given the backed-up mtime, then renamed in, so
    // an interrupted restore never leaves a half-written file under the real name.
    const temp = join(dirname(target), `.${randomBytes(6).toString("hex")}.cws-tmp`);
    try {
      await copyFile(source, temp);
      const mtime = new Date(file.mtimeMs);
      await utimes(temp, mtime, mtime);
      await rename(temp, target);
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
    result.restored.push(file.relative);
  }
  if (saving.saved.length > 0) result.savedTo = saving.dir;
  return result;
}
