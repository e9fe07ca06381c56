/**
 * Crash-safe file replacement: write a temp file beside the target, fsync it, rename it over
 * the target, then fsync the folder so the rename itself survives a power cut.
 */
import { execFile } from "node:child_process";
import { open, rename, rm } from "node:fs/promises";
import { dirname, basename, join } from "node:path";
import { randomBytes } from "node:crypto";

export async function writeFileAtomic(path: string, data: string | Uint8Array, options: { mode?: number } = {}): Promise<void> {
  const temp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString("hex")}.cws-tmp`);
  await writeDurableTemp(temp, data, options.mode ?? 0o644);
  try {
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  await syncDir(dirname(path));
}

/**
 * Creates `temp` exclusively (never through a file or symlink already there), writes `data`
 * and fsyncs it; on failure the temp file is removed. The caller renames it into place.
 */
export async function writeDurableTemp(temp: string, data: string | Uint8Array, mode = 0o600): Promise<void> {
  const handle = await open(temp, "wx", mode);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } catch (error) {
    await handle.close().catch(() => {});
    await rm(temp, { force: true });
    throw error;
  }
  await handle.close();
}

/** fsyncs a folder so that renames and creations inside it are durable (no-op where unsupported). */
export async function syncDir(path: string): Promise<void> {
  let handle;
  try {
    handle = await open(path, "r");
    await handle.sync();
  } catch {
    // Windows cannot open or fsync folders; NTFS journals the rename itself.
  } finally {
    await handle?.close();
  }
}

/**
 * Makes everything written on the file system that holds `path` durable: file contents, new
 * names and renames alike (`sync -f`, syncfs(2), on Linux). One barrier costs about what a
 * handful of fsyncs cost, so a batch of many small files is made durable with two of them
 * (contents, then names) instead of two fsyncs per file. Resolves to false where it is not
 * available (the caller then fsyncs file by file); never blocks the event loop.
 */
export function syncFileSystem(path: string): Promise<boolean> {
  if (process.platform !== "linux") return Promise.resolve(false);
  return new Promise((resolve) => {
    execFile("sync", ["-f", path], { timeout: 120_000 }, (error) => resolve(error === null));
  });
}
