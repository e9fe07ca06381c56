/**
 * Crash-safe file replacement: write a temp file beside the target, fsync it, rename it over
 * the target, then fsync the folder so the rename itself survives a power cut.
 */
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
