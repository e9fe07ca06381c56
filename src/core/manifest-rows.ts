/**
 * A compact JSON form of a manifest for files a device reads on every sync (its base
 * manifest): one array per entry instead of an object, and the single chunk of a small file
 * written as `1` (it is the whole file: the file's hash, the file's length). At 50,000 entries
 * it is half the size of the plain form and parses, entries included, in about half the time.
 *
 *   { "format": 1, "rows": [ [path, mtimeMs, mode],                       a folder
 *                            [path, size, mtimeMs, mode, hash, chunks] ] } a file
 *
 * where chunks is `1` or `[hash, length, hash, length, …]`. Decoding checks every rule of the
 * Manifest schema (manifest.ts stays the definition), by hand, as the schema itself would cost
 * as much as the parse.
 */
import { MANIFEST_FORMAT, MAX_CHUNK_BYTES, MAX_PATH_LENGTH, type ChunkRef, type Manifest, type ManifestEntry } from "./manifest.ts";

export type Row = [string, number, number] | [string, number, number, number, string, 1 | Array<string | number>];

const HASH_PATTERN = /^[0-9a-f]{16}$/;

/**
 * The compact JSON text of a manifest. `fields` are stored beside the rows (the owner's own,
 * e.g. the epoch of a journal); decoding ignores them.
 */
export function encodeManifestRows(manifest: Manifest, fields: Record<string, string | number> = {}): string {
  return JSON.stringify({ format: MANIFEST_FORMAT, ...fields, rows: [...manifestRows(manifest.entries)] });
}

/** The compact rows of entries, one at a time (for a file written in pieces). */
export function* manifestRows(entries: Iterable<ManifestEntry>): Generator<Row> {
  for (const e of entries) yield encodeManifestRow(e);
}

/** The compact row of one entry. */
export function encodeManifestRow(e: ManifestEntry): Row {
  if (e.kind === "dir") return [e.path, e.mtimeMs, e.mode];
  return [e.path, e.size, e.mtimeMs, e.mode, e.hash, encodeCompactChunks(e.hash, e.size, e.chunks)];
}

/** True when parsed JSON is in the compact form (valid or not), rather than the plain one. */
export function isManifestRows(json: unknown): boolean {
  return typeof json === "object" && json !== null && Array.isArray((json as { rows?: unknown }).rows);
}

/** The manifest of parsed compact JSON, or null when it breaks any rule of the Manifest schema. */
export function decodeManifestRows(json: unknown): Manifest | null {
  if (!isManifestRows(json)) return null;
  const rows = new ManifestRowsDecoder();
  for (const row of (json as { rows: unknown[] }).rows) if (!rows.add(row)) return null;
  return rows.manifest(json);
}

/**
 * Decodes the rows of a compact manifest one at a time (a file read in pieces hands them over
 * as it parses them), checking each as decodeManifestRows does.
 */
export class ManifestRowsDecoder {
  readonly #entries: ManifestEntry[] = [];
  #previous: string | null = null;

  /** Adds the next row; false when it breaks a rule (then the manifest is not valid). */
  add(row: unknown): boolean {
    const entry = decodeManifestRow(row);
    // Sorted by code units without duplicates, as the schema demands.
    if (entry === null || (this.#previous !== null && !(this.#previous < entry.path))) return false;
    this.#entries.push(entry);
    this.#previous = entry.path;
    return true;
  }

  /** The manifest of the rows added, given the file's other fields (`head`); null when its format is not this one. */
  manifest(head: unknown): Manifest | null {
    if ((head as { format?: unknown } | null)?.format !== MANIFEST_FORMAT) return null;
    return { format: MANIFEST_FORMAT, entries: this.#entries };
  }
}

/** The entry of one parsed row, or null when it breaks any rule of the Manifest schema. */
export function decodeManifestRow(row: unknown): ManifestEntry | null {
  if (!Array.isArray(row)) return null;
  const path: unknown = row[0];
  if (typeof path !== "string" || path.length === 0 || path.length > MAX_PATH_LENGTH) return null;
  if (row.length === 3) {
    const mtimeMs: unknown = row[1];
    const mode: unknown = row[2];
    if (!isMtime(mtimeMs) || !isMode(mode)) return null;
    return { path, kind: "dir", size: 0, mtimeMs, mode, hash: "", chunks: [] };
  }
  if (row.length !== 6) return null;
  const size: unknown = row[1];
  const mtimeMs: unknown = row[2];
  const mode: unknown = row[3];
  const hash: unknown = row[4];
  const rawChunks: unknown = row[5];
  if (!isLength(size) || !isMtime(mtimeMs) || !isMode(mode) || typeof hash !== "string" || !HASH_PATTERN.test(hash)) return null;
  const chunks = decodeCompactChunks(rawChunks, hash, size);
  if (chunks === null) return null;
  return { path, kind: "file", size, mtimeMs, mode, hash, chunks };
}

/**
 * The compact form of a file's chunk list, shared by this format and the scanner's stat cache:
 * `1` when the single chunk is the whole file (its hash and length are the file's), else the
 * flat list `[hash, length, hash, length, …]`.
 */
export function encodeCompactChunks(hash: string, size: number, chunks: readonly ChunkRef[]): 1 | Array<string | number> {
  return chunks.length === 1 && chunks[0][0] === hash && chunks[0][1] === size ? 1 : chunks.flat();
}

/** The chunk list of a compact form, or null when it breaks a rule (hashes, lengths, their sum). */
export function decodeCompactChunks(raw: unknown, hash: string, size: number): ChunkRef[] | null {
  if (raw === 1) {
    // One chunk is the whole file, so it cannot be empty or longer than a chunk.
    return size === 0 || size > MAX_CHUNK_BYTES ? null : [[hash, size]];
  }
  if (!Array.isArray(raw) || raw.length % 2 !== 0) return null;
  const chunks: ChunkRef[] = [];
  let total = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const chunkHash: unknown = raw[i];
    const length: unknown = raw[i + 1];
    if (typeof chunkHash !== "string" || !HASH_PATTERN.test(chunkHash) || !isLength(length) || length > MAX_CHUNK_BYTES) return null;
    chunks.push([chunkHash, length]);
    total += length;
  }
  return total === size ? chunks : null;
}

function isLength(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

function isMtime(value: unknown): value is number {
  return typeof value === "number" && Number.isFinite(value) && value >= 0;
}

function isMode(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0 && value <= 0o7777;
}
