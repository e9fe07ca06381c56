/**
 * A fast path for validating a manifest read from JSON. The zod schema of manifest.ts stays
 * the single definition; this hand-written check accepts only what that schema accepts
 * unchanged (no keys to strip), in one allocation-free pass, and sends everything else to the
 * schema itself, so the result is always exactly `Manifest.safeParse`'s. It exists because the
 * schema checks and copies every entry: about 0.3 s for a 50,000-entry base manifest, read on
 * every sync, against a few milliseconds here.
 */
import { z } from "zod";
import { Manifest, MANIFEST_FORMAT, MAX_CHUNK_BYTES, MAX_PATH_LENGTH } from "./manifest.ts";

const HASH_PATTERN = /^[0-9a-f]{16}$/;

/** Validates `json` as `Manifest.safeParse` does (same result), quickly when it is well-formed. */
export function safeParseManifest(json: unknown): ReturnType<typeof Manifest.safeParse> {
  if (isPlainManifest(json)) return { success: true, data: json };
  return Manifest.safeParse(json);
}

/** True when `json` is a valid manifest with no key the schema would strip. */
function isPlainManifest(json: unknown): json is Manifest {
  if (!isObject(json) || keyCount(json) !== 2) return false;
  const { format, entries } = json as { format?: unknown; entries?: unknown };
  if (format !== MANIFEST_FORMAT || !Array.isArray(entries)) return false;
  let previous: string | null = null;
  for (const entry of entries as unknown[]) {
    if (!isPlainManifestEntry(entry)) return false;
    const path = (entry as { path: string }).path;
    // Sorted by code units without duplicates, as the schema's refinement demands.
    if (previous !== null && !(previous < path)) return false;
    previous = path;
  }
  return true;
}

/** True when `value` is a valid manifest entry with no key the schema would strip. */
export function isPlainManifestEntry(value: unknown): boolean {
  if (!isObject(value)) return false;
  const { path } = value as { path?: unknown };
  if (typeof path !== "string" || path.length === 0 || path.length > MAX_PATH_LENGTH) return false;
  return hasPlainEntryFields(value);
}

/**
 * True when `value` has seven keys and six of them are a valid manifest entry's fields other
 * than its path (kind, size, mtimeMs, mode, hash, chunks): what isPlainManifestEntry checks
 * besides the path, which is the seventh key's job. The store's folder objects hold entries
 * with a `name` in place of the path; a walk over them checks each where it lies, with this.
 */
export function hasPlainEntryFields(value: object): boolean {
  if (keyCount(value) !== 7) return false;
  const { kind, size, mtimeMs, mode, hash, chunks } = value as Record<string, unknown>;
  if (!isNonNegativeInteger(size)) return false;
  if (typeof mtimeMs !== "number" || !Number.isFinite(mtimeMs) || mtimeMs < 0) return false;
  if (!isNonNegativeInteger(mode) || mode > 0o7777) return false;
  if (typeof hash !== "string" || (hash !== "" && !HASH_PATTERN.test(hash))) return false;
  if (!Array.isArray(chunks)) return false;
  if (kind === "dir") return size === 0 && hash === "" && chunks.length === 0;
  if (kind !== "file" || hash === "") return false;
  let total = 0;
  for (const ref of chunks as unknown[]) {
    if (!Array.isArray(ref) || ref.length !== 2) return false;
    const [chunkHash, length] = ref as unknown[];
    if (typeof chunkHash !== "string" || !HASH_PATTERN.test(chunkHash)) return false;
    if (!isNonNegativeInteger(length) || length > MAX_CHUNK_BYTES) return false;
    total += length;
  }
  return total === size;
}

function isObject(value: unknown): value is object {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isNonNegativeInteger(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

/** The number of own enumerable keys, without allocating the array Object.keys would. */
function keyCount(value: object): number {
  let count = 0;
  for (const key in value) if (Object.hasOwn(value, key)) count++;
  return count;
}

/**
 * The `Manifest` schema for messages: it accepts and rejects exactly what `Manifest` does, with
 * the same issues, but a well-formed manifest passes through as the very object that was
 * parsed from JSON instead of a checked copy. A 50,000-entry manifest (a first push's commit, a
 * fetched manifest) is then held once, not twice, and checked in milliseconds.
 */
export const CheckedManifest = z.unknown().transform((json, ctx): Manifest => {
  const checked = safeParseManifest(json);
  if (checked.success) return checked.data;
  for (const issue of checked.error.issues) ctx.addIssue({ code: "custom", message: issue.message, path: issue.path });
  return z.NEVER;
});
