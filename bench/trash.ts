/**
 * Trees the benchmark is done with (a tool's server copy, a second device, a data set) are set
 * aside here instead of deleted, and deleted only when every measurement is over.
 *
 * Why: on ext4, a file system without a journal skips recently deleted inodes when it
 * allocates a new one (`recently_deleted()` in the kernel's inode allocator; 60 s after the
 * deletion, 300 s while the inode table block is still dirty). Seen with `perf record -g`:
 * after the harness deleted rsync's three trees of a 50,000-file set (150,000 inodes), every
 * file that the next tool created scanned past them, and cws's pull, which came next, took
 * 45 s where the same pull took 22 s a few minutes later (creating 50,000 files in a
 * plain Python loop: 26 s right after such a deletion, far less on a settled file system). So
 * the tool that ran after a deletion paid for it; a rename costs nothing of the kind.
 */
import { mkdirSync } from "node:fs";
import { rename, rm } from "node:fs/promises";
import path from "node:path";

let trashDir: string | undefined;
let count = 0;

/** Sets where discarded trees go: a folder on the same file system as the trees (the work folder). */
export function useTrash(dir: string): void {
  mkdirSync(dir, { recursive: true });
  trashDir = dir;
}

/** Removes `target` from where it was: moved into the trash, or deleted if there is none (or it cannot be moved). */
export async function discard(target: string): Promise<void> {
  if (trashDir !== undefined) {
    try {
      await rename(target, path.join(trashDir, String(count++)));
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
      // Another file system, say: deleting it is the only way left.
    }
  }
  await rm(target, { recursive: true, force: true });
}

/** Deletes everything discarded so far (after the last measurement). */
export async function emptyTrash(): Promise<void> {
  if (trashDir !== undefined) await rm(trashDir, { recursive: true, force: true });
  trashDir = undefined;
}
