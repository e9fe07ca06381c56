/**
 * The local safety net: before a sync overwrites or deletes a local file, the old version goes
 * into a timestamped backup folder of the superproject. Replaced files are hard-linked there
 * (the rename that follows leaves the old content alive under the link, at no copying cost);
 * deleted files are moved there. Where links or moves are impossible (another volume, FAT),
 * the file is copied.
 */
import { copyFile, link, mkdir, rename, rm, unlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import { resolveInside } from "../core/paths.ts";

export class BackupSession {
  readonly dir: string;
  /** Paths (relative to the superproject) saved by this session, in order. */
  readonly saved: string[] = [];

  constructor(backupsRoot: string, now: Date) {
    this.dir = join(backupsRoot, now.toISOString().replace(/[:.]/g, "-"));
  }

  private async target(relative: string): Promise<string> {
    const target = resolveInside(this.dir, relative);
    await mkdir(dirname(target), { recursive: true });
    return target;
  }

  /** Keeps a copy of a file that is about to be replaced; the file itself stays in place. */
  async preserve(relative: string, absPath: string): Promise<void> {
    const target = await this.target(relative);
    await rm(target, { force: true });
    try {
      await link(absPath, target);
    } catch {
      await copyFile(absPath, target);
    }
    this.saved.push(relative);
  }

  /** Moves a file that is about to be deleted into the backup. */
  async remove(relative: string, absPath: string): Promise<void> {
    const target = await this.target(relative);
    await rm(target, { force: true });
    try {
      await rename(absPath, target);
    } catch {
      await copyFile(absPath, target);
      await unlink(absPath);
    }
    this.saved.push(relative);
  }
}
