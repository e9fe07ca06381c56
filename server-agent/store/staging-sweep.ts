/**
 * Leftovers in the staging folders (DESIGN §6, "Leftovers clean themselves"): bundles uploaded
 * but never ingested, half uploads (`.part`), bundles prepared for a client that never released
 * them, temp files of a killed writer. Each session's end removes what has been left untouched
 * for `STAGING_LEFTOVER_AGE_MS`, so a killed client or agent costs disk only until the next
 * session ends, not until gc's 24 h grace. The age keeps the sweep away from other sessions'
 * transfers: an upload or download under way touches its file far more often than that.
 */
import { lstat, readdir, rm } from "node:fs/promises";
import { join } from "node:path";

/** How long a staging file must be untouched before a session's end removes it. */
export const STAGING_LEFTOVER_AGE_MS = 60 * 60 * 1000;

/**
 * Removes the files and folders of `dirs` whose modification time is before `now - ageMs`.
 * Never follows a link (a planted one is itself removed), never throws.
 *
 * @returns the names removed, for the log.
 */
export async function sweepStaging(dirs: readonly string[], now: number, ageMs = STAGING_LEFTOVER_AGE_MS): Promise<string[]> {
  const removed: string[] = [];
  for (const dir of dirs) {
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const name of names) {
      const path = join(dir, name);
      try {
        const stats = await lstat(path);
        if (stats.mtimeMs > now - ageMs) continue;
        await rm(path, { recursive: true, force: true });
        removed.push(name);
      } catch {
        // Gone meanwhile (another session's sweep or ingest), or not removable: next time.
      }
    }
  }
  return removed;
}
