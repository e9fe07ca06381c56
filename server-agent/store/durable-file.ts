/**
 * Crash-safe file writes: a temp file written exclusively, fsynced, then renamed over the
 * final name, and the folder fsynced so the rename itself survives a power cut.
 */
import { randomBytes } from "node:crypto";
import { constants as fsConstants } from "node:fs";
import { open, rename, rm } from "node:fs/promises";
import { writeDurableTemp } from "../../src/fs-atomic.ts";

/** The suffix of every temp file the store writes; `repack` removes old ones. */
export const TEMP_SUFFIX = ".tmp";

/** Writes `bytes` to `path` atomically and durably (except for the folder entry: see syncDir). */
export async function writeFileDurably(path: string, bytes: Uint8Array): Promise<void> {
  const temp = tempNameFor(path);
  await writeDurableTemp(temp, bytes);
  try {
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

/**
 * Fsyncs a file or folder by name (opened read-only, which Linux allows for both): a file's
 * content, or the renames and unlinks inside a folder, become durable.
 */
export async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, fsConstants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Fsyncs a folder, making the renames and unlinks inside it durable. */
export const syncDir = fsyncPath;

/**
 * A temp name beside `path` for a file that will be renamed onto it. `tag` (12 hex digits) may
 * be one random value shared by a batch of different paths: the paths keep their temps apart.
 */
export function tempNameFor(path: string, tag = randomTag()): string {
  // A random part keeps two processes writing the same content-addressed name apart.
  return `${path}.${tag}${TEMP_SUFFIX}`;
}

/** The random part of a temp name (see tempNameFor). */
export function randomTag(): string {
  return randomBytes(6).toString("hex");
}
