/**
 * What this device remembers about the Codex threads of one binding, beside the client state:
 *
 * - `cache/<slug>.codex.json`: a stat cache for rollouts (keyed by the raw file's size, mtime,
 *   ctime and inode), so an unchanged thread is neither read nor normalized again; whether each
 *   rollout belongs to the superproject; a few facts for `cws threads`; and the per-thread
 *   overrides (see overrides.ts). Losing it costs a re-read of every rollout, and for
 *   threads this device materialized with another device's root spelling, a conflict at worst.
 * - `codex/<slug>.conflicts.json`: the local copies of diverged rollouts that were set aside,
 *   shown by `cws status` and `cws threads` until their backup file is deleted.
 *
 * Both are written crash-safely and validated on every read; an unreadable cache is an empty one.
 */
import { mkdir, readFile, rm, stat } from "node:fs/promises";
import { CwsError } from "../../errors.ts";
import { dirname, join } from "node:path";
import { z } from "zod";
import { ChunkRef, HashHex, ManifestEntry } from "../../core/manifest.ts";
import { writeFileAtomic } from "../../fs-atomic.ts";
import { RolloutOverride } from "./overrides.ts";

// 2: every path value under the root is normalized (Codex 0.169 fields), not only the cwd
// fields of format 1, so a format-1 cache's normalized hashes are stale.
export const CODEX_CACHE_FORMAT = 2;

/** Facts about a thread kept for `cws threads`, read from its rollout. */
export const ThreadFacts = z.object({
  // id is the thread's UUID (session_meta.payload.id).
  id: z.string().min(1).max(200),
  // name is the last thread_name_updated of the rollout, if any.
  name: z.string().max(4096).nullable(),
  // preview is the start of the first user message.
  preview: z.string().max(4096).nullable(),
  // provider is session_meta.model_provider.
  provider: z.string().max(200).nullable(),
  // cwd is the creation cwd relative to the superproject root ("" for the root itself), or the absolute cwd when outside it.
  cwd: z.string().max(32 * 1024),
  // lines is the number of complete lines synced.
  lines: z.number().int().nonnegative(),
});
export type ThreadFacts = z.infer<typeof ThreadFacts>;

export const CachedRollout = z.object({
  // size, mtimeMs, ctimeMs and ino identify the version of the raw file this record describes.
  size: z.number().int().nonnegative(),
  mtimeMs: z.number(),
  ctimeMs: z.number(),
  ino: z.number(),
  // belongs says whether the thread is the superproject's; the rest is only kept when it is.
  belongs: z.boolean(),
  // normalized is the synced content: size, xxh64 and chunks of the normalized complete lines.
  normalized: z.object({ size: z.number().int().nonnegative(), hash: HashHex, chunks: z.array(ChunkRef) }).optional(),
  // rawLength is how many bytes of the (uncompressed) local rollout the normalized content covers.
  rawLength: z.number().int().nonnegative().optional(),
  facts: ThreadFacts.optional(),
  // problem is why this version of the file cannot be synced (reported again without reading it).
  problem: z.string().max(4096).optional(),
});
export type CachedRollout = z.infer<typeof CachedRollout>;

export const CodexCacheFile = z.object({
  // format is this file's format version; another version is ignored (everything is read again).
  format: z.literal(CODEX_CACHE_FORMAT),
  // root and style are what the normalization used; a change of either invalidates the file.
  root: z.string(),
  style: z.enum(["windows", "posix"]),
  // rollouts maps a rollout's path below CODEX_HOME (`sessions/…`) to what was found in it.
  rollouts: z.record(z.string().max(4096), CachedRollout),
  // overrides maps a thread id to the lines whose normalized form comes from the server.
  overrides: z.record(z.string().max(200), z.array(RolloutOverride)),
});
export type CodexCacheFile = z.infer<typeof CodexCacheFile>;

export function codexCachePath(stateHome: string, slug: string): string {
  return join(stateHome, "cache", `${slug}.codex.json`);
}

/**
 * Loads the cache of a binding; a missing, unreadable or foreign one (other root or style) is
 * an empty cache. `onWarning` hears about damaged files, not about missing ones.
 */
export async function loadCodexCache(
  path: string,
  root: string,
  style: "windows" | "posix",
  onWarning: (message: string) => void,
): Promise<CodexCacheFile> {
  const empty: CodexCacheFile = { format: CODEX_CACHE_FORMAT, root, style, rollouts: {}, overrides: {} };
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") {
      // When the cache exists but cannot be read.
      onWarning(`Cannot read the Codex cache "${path}" as ${(error as Error).message}: every rollout will be read again`);
    }
    return empty;
  }
  let parsed;
  try {
    const value = JSON.parse(text) as { format?: unknown } | null;
    // An older cws's cache is simply read again, without a warning.
    if (typeof value?.format === "number" && value.format < CODEX_CACHE_FORMAT) return empty;
    parsed = CodexCacheFile.safeParse(value);
  } catch {
    parsed = null;
  }
  if (parsed === null || !parsed.success) {
    // When the file is damaged or was written by another cws version.
    onWarning(`Cannot use the Codex cache "${path}" as it is damaged or of another format: every rollout will be read again`);
    return empty;
  }
  if (parsed.data.root !== root || parsed.data.style !== style) return empty;
  return parsed.data;
}

export async function saveCodexCache(path: string, cache: CodexCacheFile): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await writeFileAtomic(path, JSON.stringify(cache), { mode: 0o600 });
}

// ---- conflicts ----------------------------------------------------------------------------

export const CodexConflict = z.object({
  // path is the manifest path of the rollout (`codex/sessions/…`).
  path: z.string().min(1).max(4096),
  // id is the thread's UUID.
  id: z.string().min(1).max(200),
  // backup is where the local, diverged copy was saved (raw, as Codex wrote it on this device).
  backup: z.string().min(1),
  // at is when the copy was set aside (milliseconds since the epoch).
  at: z.number(),
  // snapshot is the server snapshot whose version was kept live, when known.
  snapshot: z.number().int().positive().nullable(),
});
export type CodexConflict = z.infer<typeof CodexConflict>;

const ConflictsFile = z.object({ format: z.literal(1), conflicts: z.array(CodexConflict).max(10_000) });

export function codexConflictsPath(stateHome: string, slug: string): string {
  return join(stateHome, "codex", `${slug}.conflicts.json`);
}

/** The recorded conflicts whose backup still exists (deleting the backup dismisses one). */
export async function readCodexConflicts(stateHome: string, slug: string): Promise<CodexConflict[]> {
  let text: string;
  try {
    text = await readFile(codexConflictsPath(stateHome, slug), "utf8");
  } catch {
    return [];
  }
  let parsed;
  try {
    parsed = ConflictsFile.safeParse(JSON.parse(text));
  } catch {
    return [];
  }
  if (!parsed.success) return [];
  const alive: CodexConflict[] = [];
  for (const c of parsed.data.conflicts) {
    if (await stat(c.backup).then(() => true, () => false)) alive.push(c);
  }
  return alive;
}

export async function recordCodexConflicts(stateHome: string, slug: string, added: readonly CodexConflict[]): Promise<void> {
  if (added.length === 0) return;
  const conflicts = [...(await readCodexConflicts(stateHome, slug)), ...added].slice(-10_000);
  const path = codexConflictsPath(stateHome, slug);
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await writeFileAtomic(path, JSON.stringify({ format: 1, conflicts }), { mode: 0o600 });
}

// ---- base overlay -------------------------------------------------------------------------

const OverlayFile = z.object({
  format: z.literal(1),
  // items are base entries to plan with instead of the base manifest's (null: no entry).
  items: z.array(z.object({ path: z.string().min(1).max(4096), entry: ManifestEntry.nullable() })).max(1_000_000),
});

export function baseOverlayPath(stateHome: string, slug: string): string {
  return join(stateHome, "codex", `${slug}.base-overlay.json`);
}

/**
 * The base overlay of a binding (see codex/plan.ts): paths whose server version did not land on
 * this device (Codex threads kept locally, files the scan could not read, pulls the disk
 * refused). A missing file is an empty overlay; a damaged one is an error, since
 * dropping it could make a skipped server change look like a local one.
 */
export async function readBaseOverlay(stateHome: string, slug: string): Promise<Array<{ path: string; entry: ManifestEntry | null }>> {
  const path = baseOverlayPath(stateHome, slug);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
  let parsed;
  try {
    parsed = OverlayFile.safeParse(JSON.parse(text));
  } catch {
    parsed = null;
  }
  if (parsed === null || !parsed.success) {
    // When the overlay file was damaged outside cws.
    throw new CwsError("CORRUPT", `Cannot read "${path}" as it is damaged. Delete it and sync again: threads that did not land on this device may then show as conflicts, and both versions are kept.`);
  }
  return parsed.data.items;
}

/** Writes the overlay when it differs from `previous` (an empty overlay removes the file). */
export async function writeBaseOverlay(
  stateHome: string,
  slug: string,
  previous: ReadonlyArray<{ path: string; entry: ManifestEntry | null }>,
  next: ReadonlyArray<{ path: string; entry: ManifestEntry | null }>,
): Promise<void> {
  if (JSON.stringify(previous) === JSON.stringify(next)) return;
  const path = baseOverlayPath(stateHome, slug);
  if (next.length === 0) {
    await rm(path, { force: true });
    return;
  }
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await writeFileAtomic(path, JSON.stringify({ format: 1, items: next }), { mode: 0o600 });
}
