/**
 * The manifest model: what a tree holds, entry by entry, with the content-defined chunks of
 * every file. Manifests are exchanged between client and agent and stored as objects on the
 * server, so their zod schema is the single definition and every manifest read from disk or
 * the wire goes through it.
 *
 * Paths are relative, `/`-separated and NFC, and live in one of two namespaces: `files/…`
 * for the superproject folder and `codex/…` for the superproject's Codex artifacts.
 */
import { z } from "zod";
import { chunkId, MAX_CHUNK_BYTES } from "./chunk-id.ts";

/** xxh64 of some bytes, as 16 lower-case hex digits. */
export const HashHex = z.string().regex(/^[0-9a-f]{16}$/, "expected 16 hex digits of xxh64");
export type HashHex = z.infer<typeof HashHex>;

// Defined without zod, for the worker threads (see chunk-id.ts); exported here as before.
export { chunkId, MAX_CHUNK_BYTES, parseChunkId } from "./chunk-id.ts";

/** One chunk reference: its xxh64 and its length in bytes. */
export const ChunkRef = z.tuple([HashHex, z.number().int().min(0).max(MAX_CHUNK_BYTES)]);
export type ChunkRef = z.infer<typeof ChunkRef>;

export const EntryKind = z.enum(["file", "dir"]);
export type EntryKind = z.infer<typeof EntryKind>;

/** The largest path accepted in a manifest, in UTF-16 code units. */
export const MAX_PATH_LENGTH = 4096;

export const ManifestEntry = z
  .object({
    // path is relative, `/`-separated, NFC, and starts with a namespace (`files/` or `codex/`).
    path: z.string().min(1).max(MAX_PATH_LENGTH),
    // kind says whether the entry is a regular file or a folder (symlinks are never synced).
    kind: EntryKind,
    // size is the file's length in bytes (0 for folders).
    size: z.number().int().nonnegative(),
    // mtimeMs is the modification time in milliseconds since the epoch, kept on every device.
    mtimeMs: z.number().nonnegative(),
    // mode holds the permission bits (0o777 mask); Windows devices report 0o644/0o755.
    mode: z.number().int().min(0).max(0o7777),
    // hash is the xxh64 of the whole content ("" for folders), checked after assembly.
    hash: z.union([HashHex, z.literal("")]),
    // chunks lists the content-defined chunks in order (empty for folders and empty files).
    chunks: z.array(ChunkRef),
  })
  .refine((e) => e.kind === "file" || (e.size === 0 && e.hash === "" && e.chunks.length === 0), {
    message: "A folder entry has no size, hash or chunks",
  })
  .refine((e) => e.kind === "dir" || e.chunks.reduce((sum, [, len]) => sum + len, 0) === e.size, {
    message: "Chunk lengths must add up to the file size",
  })
  .refine((e) => e.kind === "dir" || e.hash !== "", { message: "A file entry needs a content hash" });
export type ManifestEntry = z.infer<typeof ManifestEntry>;

export const MANIFEST_FORMAT = 1;

export const Manifest = z
  .object({
    // format is the manifest format version.
    format: z.literal(MANIFEST_FORMAT),
    // entries are sorted by path (code-unit order) with no duplicates.
    entries: z.array(ManifestEntry),
  })
  .refine((m) => m.entries.every((e, i) => i === 0 || m.entries[i - 1].path < e.path), {
    message: "Manifest entries must be sorted by path without duplicates",
  });
export type Manifest = z.infer<typeof Manifest>;

export function emptyManifest(): Manifest {
  return { format: MANIFEST_FORMAT, entries: [] };
}

/** Builds a manifest from entries in any order; throws on duplicate paths. */
export function makeManifest(entries: Iterable<ManifestEntry>): Manifest {
  const sorted = [...entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i - 1].path === sorted[i].path) throw new TypeError(`Duplicate manifest path ${sorted[i].path}`);
  }
  return { format: MANIFEST_FORMAT, entries: sorted };
}

export function manifestIndex(manifest: Manifest): Map<string, ManifestEntry> {
  return new Map(manifest.entries.map((e) => [e.path, e]));
}

/** True when two entries describe the same content (mtime and mode are metadata, not content). */
export function sameContent(a: ManifestEntry, b: ManifestEntry): boolean {
  return a.kind === b.kind && a.size === b.size && a.hash === b.hash;
}

/** Every distinct chunk id a manifest references. */
export function manifestChunkIds(manifest: Manifest): Set<string> {
  const ids = new Set<string>();
  for (const entry of manifest.entries) for (const ref of entry.chunks) ids.add(chunkId(ref));
  return ids;
}

/** What turns one manifest into another: entries added or changed, and paths removed. */
export const ManifestDelta = z.object({
  // upserts are the entries that are new or differ from the base, in any order.
  upserts: z.array(ManifestEntry),
  // removes are the paths of the base that are gone.
  removes: z.array(z.string().min(1).max(MAX_PATH_LENGTH)),
});
export type ManifestDelta = z.infer<typeof ManifestDelta>;

/** True when two entries are equal in every field (content, kind, mode and mtime alike). */
export function sameEntry(a: ManifestEntry, b: ManifestEntry): boolean {
  if (a.kind !== b.kind || a.size !== b.size || a.hash !== b.hash || a.mtimeMs !== b.mtimeMs || a.mode !== b.mode || a.chunks.length !== b.chunks.length) return false;
  for (let i = 0; i < a.chunks.length; i++) {
    if (a.chunks[i][0] !== b.chunks[i][0] || a.chunks[i][1] !== b.chunks[i][1]) return false;
  }
  return true;
}

/** The delta from `base` to `target` (both sorted): one linear pass. */
export function diffManifests(base: Manifest, target: Manifest): ManifestDelta {
  const upserts: ManifestEntry[] = [];
  const removes: string[] = [];
  let i = 0;
  let j = 0;
  while (i < base.entries.length || j < target.entries.length) {
    const b = base.entries[i];
    const t = target.entries[j];
    if (t === undefined || (b !== undefined && b.path < t.path)) {
      removes.push(b.path);
      i++;
    } else if (b === undefined || t.path < b.path) {
      upserts.push(t);
      j++;
    } else {
      // The same object (an entry carried over unchanged) needs no field-by-field comparison.
      if (b !== t && !sameEntry(b, t)) upserts.push(t);
      i++;
      j++;
    }
  }
  return { upserts, removes };
}

/**
 * Applies a delta to a base manifest (sorted, as every manifest is); throws on duplicate
 * upserts. One merge of the sorted upserts into the base: a small delta to a large manifest
 * costs a pass over it, not a sort of it.
 */
export function applyManifestDelta(base: Manifest, delta: ManifestDelta): Manifest {
  const upserts = [...delta.upserts].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  for (let i = 1; i < upserts.length; i++) {
    if (upserts[i - 1].path === upserts[i].path) throw new TypeError(`Duplicate path ${upserts[i].path} in a manifest delta`);
  }
  const removed = new Set(delta.removes);
  const entries: ManifestEntry[] = [];
  let j = 0;
  for (const entry of base.entries) {
    while (j < upserts.length && upserts[j].path < entry.path) entries.push(upserts[j++]);
    if (j < upserts.length && upserts[j].path === entry.path) entries.push(upserts[j++]);
    else if (removed.size === 0 || !removed.has(entry.path)) entries.push(entry);
  }
  while (j < upserts.length) entries.push(upserts[j++]);
  return { format: MANIFEST_FORMAT, entries };
}

/** How many `F<c>…` siblings are stepped over before a binary search is cheaper. */
const MAX_SIBLING_STEPS = 32;
const SLASH = 0x2f;

/**
 * The index of the first entry of sorted `entries` below the entry at `at` (whose path starts
 * with its path and "/"), or -1. Entries below `F` form one block of the sorted list, after any
 * names that extend `F` with a character sorting before "/" (`F-1`, `F.bak`).
 */
export function firstIndexBelow(entries: readonly ManifestEntry[], at: number): number {
  const file = entries[at].path;
  const last = file.length - 1;
  for (let j = at + 1, steps = 0; j < entries.length; j++, steps++) {
    const path = entries[j].path;
    // One character first: most neighbours (same folder, names that differ near their end)
    // are told apart without a full startsWith, which costs several times more on a large tree.
    if (path.length <= file.length || path.charCodeAt(last) !== file.charCodeAt(last) || !path.startsWith(file)) return -1;
    const next = path.charCodeAt(file.length);
    if (next === SLASH) return j;
    if (next > SLASH) return -1;
    if (steps === MAX_SIBLING_STEPS) {
      // Many names extend this one (`F-1`, `F-2`, …): find where `F/` would be instead.
      const prefix = `${file}/`;
      let lo = j;
      let hi = entries.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (entries[mid].path < prefix) lo = mid + 1;
        else hi = mid;
      }
      return lo < entries.length && entries[lo].path.startsWith(prefix) ? lo : -1;
    }
  }
  return -1;
}
