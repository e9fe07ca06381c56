/**
 * Keeps a rollout's normalized form stable on a device that cannot reproduce it by itself.
 *
 * `normalizeRollout` is byte-exact on the device that wrote a rollout. Another device that
 * materializes the server's copy writes its own root where the writer had kept a "hint"
 * (`${CWS_ROOT:d:\Projects\X}`, a drive letter spelled differently from the configured root),
 * so normalizing its local copy again would give `${CWS_ROOT}` instead: the lines it already
 * had would look rewritten, and its next append would look like a divergent copy.
 *
 * The fix is a small per-thread list of *overrides*, computed when a device materializes a
 * rollout: for each line whose re-normalization would differ from the server's line, where
 * the line sits in the local file (offset, length, xxh64) and the server's normalized text.
 * Normalizing the local file later puts those lines back verbatim as long as the local bytes
 * are still what was written (rollouts are append-only, so they are), and normalizes
 * everything else, including what Codex appended since. Only lines with a path value under
 * the root are ever rewritten, and few of those carry a hint, so the list stays short.
 *
 * Pure: no I/O; the caller initializes the hash module (initHash) first.
 */
import { z } from "zod";
import { HashHex } from "../../core/manifest.ts";
import { xxh64Hex } from "../../core/hash.ts";
import { normalizeRollout, type PathStyle } from "../../core/codex-rollout.ts";

/** One line of a local rollout whose normalized form is the server's text, not a re-normalization. */
export const RolloutOverride = z.object({
  // offset is where the line starts in the local (materialized, uncompressed) rollout.
  offset: z.number().int().nonnegative(),
  // length is the line's length in bytes, without its `\n`.
  length: z.number().int().nonnegative().max(64 * 1024 * 1024),
  // hash is the xxh64 of the local line; the override applies only while the bytes are unchanged.
  hash: HashHex,
  // line is the server's normalized line, without its `\n`.
  line: z.string().max(64 * 1024 * 1024),
});
export type RolloutOverride = z.infer<typeof RolloutOverride>;

const NEWLINE = 0x0a;
const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true });

function view(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Length of the complete lines of `bytes`: up to and including the last `\n` (0 when none). */
export function completeLength(bytes: Uint8Array): number {
  return view(bytes).lastIndexOf(NEWLINE) + 1;
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  return Buffer.concat(parts.map((p) => view(p)));
}

/**
 * Normalizes a local rollout, putting back the server's text for every override whose local
 * bytes are unchanged. Returns the normalized bytes and the overrides that still apply.
 *
 * @throws {CwsError} INVALID_ARGUMENT from normalizeRollout (a path field already holds the placeholder).
 */
export function normalizeWithOverrides(
  raw: Uint8Array,
  root: string,
  style: PathStyle,
  overrides: readonly RolloutOverride[],
): { normalized: Uint8Array; used: RolloutOverride[] } {
  const buf = view(raw);
  const used: RolloutOverride[] = [];
  const parts: Uint8Array[] = [];
  let at = 0;
  for (const o of [...overrides].sort((a, b) => a.offset - b.offset)) {
    const end = o.offset + o.length;
    // An override covers one whole, complete line at a line start, with the bytes it was made for.
    if (o.offset < at || end >= buf.length || buf[end] !== NEWLINE) continue;
    if (o.offset > 0 && buf[o.offset - 1] !== NEWLINE) continue;
    if (xxh64Hex(raw.subarray(o.offset, end)) !== o.hash) continue;
    if (o.offset > at) parts.push(normalizeRollout(raw.subarray(at, o.offset), root, style));
    parts.push(encoder.encode(o.line));
    at = end; // the line's `\n` starts the next segment
    used.push(o);
  }
  if (used.length === 0) return { normalized: normalizeRollout(raw, root, style), used };
  if (at < raw.length) parts.push(normalizeRollout(raw.subarray(at), root, style));
  return { normalized: concat(parts), used };
}

/**
 * The overrides this device needs for a rollout it materialized: `normalized` is the server's
 * text, `materialized` what this device wrote for it. Line i of one corresponds to line i of
 * the other. Lines that are not valid UTF-8 are never rewritten, so they need none.
 */
export function computeOverrides(
  normalized: Uint8Array,
  materialized: Uint8Array,
  root: string,
  style: PathStyle,
): RolloutOverride[] {
  const n = view(normalized);
  const m = view(materialized);
  const overrides: RolloutOverride[] = [];
  let pn = 0;
  let pm = 0;
  while (pn < n.length && pm < m.length) {
    const nlN = n.indexOf(NEWLINE, pn);
    const nlM = m.indexOf(NEWLINE, pm);
    // A last line without `\n` is not synced (it may be half written), so it needs no override.
    if (nlN === -1 || nlM === -1) break;
    const lineM = m.subarray(pm, nlM);
    const lineN = n.subarray(pn, nlN);
    // normalizeRollout skips lines without the root's name or the placeholder cheaply, so
    // every line is offered: any of them may hold a path value.
    {
      let again: Uint8Array | null;
      try {
        again = normalizeRollout(lineM, root, style);
      } catch {
        again = null; // a value that looks normalized already: the override keeps the server's line
      }
      if (again === null || !view(again).equals(lineN)) {
        let text: string | null = null;
        try {
          text = strictDecoder.decode(lineN);
        } catch {
          text = null;
        }
        if (text !== null) overrides.push({ offset: pm, length: lineM.length, hash: xxh64Hex(lineM), line: text });
      }
    }
    pn = nlN + 1;
    pm = nlM + 1;
  }
  return overrides;
}
