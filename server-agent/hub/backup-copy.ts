/**
 * The copying half of `cws-server backup`: the hub hands over one consistent state (a database
 * copy it took with `VACUUM INTO`, and the packs and objects that existed at that instant, see
 * maintenance.ts) and keeps gc away; this copies it into the backup folder. It runs in the
 * `cws-server` process, not in the hub, so the backup may go where the hub's service sandbox
 * cannot write. Packs and objects are immutable, so they are hard-linked when the backup is on
 * the same file system (instant, no extra space until gc removes the originals) and copied
 * and fsynced otherwise.
 */
import { constants as fsConstants } from "node:fs";
import { copyFile, link, mkdir, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { isAbsolute, join } from "node:path";
import { CwsError } from "../../src/errors.ts";
import { syncDir, writeFileAtomic } from "../../src/fs-atomic.ts";
import { fsyncPath } from "../store/durable-file.ts";
import { PACKAGE_VERSION } from "../../src/version.ts";
import type { BackupSnapshot } from "./maintenance.ts";

export interface BackupReport {
  dir: string;
  createdAt: number;
  packs: number;
  objects: number;
  bytes: number;
  /** Files hard-linked rather than copied. */
  linked: number;
}

/** Refuses a backup folder that is relative or holds anything already. */
export async function checkBackupDir(dir: string): Promise<void> {
  if (!isAbsolute(dir)) throw new CwsError("INVALID_ARGUMENT", `The backup folder must be an absolute path, got ${JSON.stringify(dir)}.`);
  try {
    if ((await readdir(dir)).length > 0) throw new CwsError("ALREADY_EXISTS", `The backup folder ${dir} is not empty. Name a new or empty folder.`);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
}

async function copyDurably(from: string, to: string): Promise<void> {
  // Cloned where the file system can; fsynced, since a backup a power cut can lose is no backup.
  await copyFile(from, to, fsConstants.COPYFILE_FICLONE);
  await fsyncPath(to);
}

/** Copies one consistent server state into `dir` (new or empty). */
export async function copyBackup(dataDir: string, snapshot: BackupSnapshot, dir: string): Promise<BackupReport> {
  const packsDir = join(dir, "store", "packs");
  const objectsDir = join(dir, "store", "objects");
  await mkdir(packsDir, { recursive: true, mode: 0o700 });
  await mkdir(objectsDir, { recursive: true, mode: 0o700 });
  const report: BackupReport = { dir, createdAt: snapshot.createdAt, packs: snapshot.packs.length / 2, objects: snapshot.objects.length, bytes: 0, linked: 0 };

  const place = async (from: string, to: string): Promise<void> => {
    try {
      report.bytes += (await stat(from)).size;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
      throw new CwsError("CONFLICT", `${from} disappeared during the backup (the hub restarted and gc ran?). Nothing usable was written to ${dir}; remove it and run the backup again.`);
    }
    try {
      await link(from, to);
      report.linked++;
    } catch {
      await copyDurably(from, to);
    }
  };

  const database = join(dir, "hub.sqlite");
  try {
    await rename(snapshot.database, database);
    await fsyncPath(database);
  } catch {
    await copyDurably(snapshot.database, database);
    await rm(snapshot.database, { force: true });
  }
  report.bytes += (await stat(database)).size;
  for (const name of snapshot.packs) await place(join(dataDir, "store", "packs", name), join(packsDir, name));
  const shards = new Set<string>();
  for (const name of snapshot.objects) {
    const shard = name.slice(0, 2);
    if (!shards.has(shard)) {
      await mkdir(join(objectsDir, shard), { recursive: true, mode: 0o700 });
      shards.add(shard);
    }
    await place(join(dataDir, "store", "objects", name), join(objectsDir, name));
  }
  await writeFileAtomic(join(dir, "server.json"), await readFile(join(dataDir, "server.json")), { mode: 0o600 });
  for (const shard of shards) await syncDir(join(objectsDir, shard));
  await syncDir(objectsDir);
  await syncDir(packsDir);
  // Written last: a backup folder without it is incomplete.
  await writeFileAtomic(join(dir, "backup.json"), JSON.stringify({ format: 1, version: PACKAGE_VERSION, ...report }, null, 2) + "\n", { mode: 0o600 });
  return report;
}
