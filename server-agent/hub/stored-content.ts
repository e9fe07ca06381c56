/**
 * Reading file content back out of the store for the quarantine policy and for `cws quarantine
 * show`: a file's bytes are its chunks in order, each verified by the store against its id,
 * and the whole checked against the file's hash. Sizes are capped, because a manifest entry
 * comes from a device and the hub must not be made to hold gigabytes in memory.
 */
import zlib from "node:zlib";
import { CwsError } from "../../src/errors.ts";
import { chunkId, type ManifestEntry } from "../../src/core/manifest.ts";
import { xxh64Hex } from "../../src/core/hash.ts";
import type { Store } from "../store/store.ts";

/** Markdown files larger than this are not read: only the size rule applies to them. */
export const MAX_MARKDOWN_READ_BYTES = 8 * 1024 * 1024;
/** The largest compressed rollout read whole to decompress it. */
export const MAX_ZST_READ_BYTES = 256 * 1024 * 1024;
/** The largest decompressed rollout compared. */
export const MAX_ZST_DECODED_BYTES = 512 * 1024 * 1024;
/** Rollouts are compared in pieces of this size, so memory stays flat. */
const COMPARE_STEP_BYTES = 1024 * 1024;

/**
 * A file's whole content, or undefined when it is larger than `maxBytes`.
 *
 * @throws CwsError NOT_FOUND when a chunk is missing, CORRUPT when the content does not hash
 *   to the entry's hash.
 */
export async function readEntry(store: Store, entry: ManifestEntry, maxBytes: number): Promise<Buffer | undefined> {
  if (entry.kind !== "file") return Buffer.alloc(0);
  if (entry.size > maxBytes) return undefined;
  const parts: Uint8Array[] = [];
  for (const ref of entry.chunks) parts.push(await store.readChunk(chunkId(ref)));
  const content = Buffer.concat(parts);
  if (content.byteLength !== entry.size || xxh64Hex(content) !== entry.hash) {
    throw new CwsError("CORRUPT", `The stored content of ${entry.path} does not match its hash; run "cws-server verify"`, { data: { path: entry.path } });
  }
  return content;
}

/** The bytes [start, end) of a file, read from the chunks that overlap that range. */
export async function readEntryRange(store: Store, entry: ManifestEntry, start: number, end: number): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  let offset = 0;
  for (const ref of entry.chunks) {
    const length = ref[1];
    const chunkEnd = offset + length;
    if (chunkEnd > start && offset < end) {
      const bytes = await store.readChunk(chunkId(ref));
      parts.push(bytes.subarray(Math.max(0, start - offset), Math.min(length, end - offset)));
    }
    offset = chunkEnd;
    if (offset >= end) break;
  }
  return Buffer.concat(parts);
}

function isZst(path: string): boolean {
  return /\.zst$/i.test(path);
}

async function decodedRollout(store: Store, entry: ManifestEntry): Promise<Buffer> {
  const stored = await readEntry(store, entry, MAX_ZST_READ_BYTES);
  if (stored === undefined) throw new CwsError("INVALID_ARGUMENT", `${entry.path} is too large to check (${entry.size} bytes)`);
  return isZst(entry.path) ? zlib.zstdDecompressSync(stored, { maxOutputLength: MAX_ZST_DECODED_BYTES }) : stored;
}

/**
 * True when the new version of a rollout starts with the whole old version (decompressed where
 * `.zst`), equal content included. False when it does not, and also when either side cannot
 * be read or decompressed, as the policy asks: an unreadable rollout is not known to be safe.
 *
 * Uncompressed rollouts are compared without reading what they share: content-defined chunks
 * of an appended file are the old file's chunks up to the old end, so only the old file's last
 * chunk or two are read and compared.
 */
export async function rolloutExtends(store: Store, old: ManifestEntry, now: ManifestEntry): Promise<boolean> {
  try {
    if (isZst(old.path) || isZst(now.path)) {
      const a = await decodedRollout(store, old);
      const b = await decodedRollout(store, now);
      return b.byteLength >= a.byteLength && b.subarray(0, a.byteLength).equals(a);
    }
    if (now.size < old.size) return false;
    let offset = 0;
    for (let i = 0; i < old.chunks.length && i < now.chunks.length; i++) {
      const [hashA, lengthA] = old.chunks[i];
      const [hashB, lengthB] = now.chunks[i];
      if (hashA !== hashB || lengthA !== lengthB) break;
      offset += lengthA;
    }
    for (let at = offset; at < old.size; at += COMPARE_STEP_BYTES) {
      const end = Math.min(old.size, at + COMPARE_STEP_BYTES);
      const [a, b] = await Promise.all([readEntryRange(store, old, at, end), readEntryRange(store, now, at, end)]);
      if (a.byteLength !== end - at || !a.equals(b)) return false;
    }
    return true;
  } catch {
    return false;
  }
}
