/**
 * Codex's thread-name index, `$CODEX_HOME/session_index.jsonl`: append-only lines
 * `{"id":"<uuid>","thread_name":"…","updated_at":"<RFC 3339>"}`, where Codex reads from the
 * end and the last line for an id wins. Listing falls back to it when the SQLite cache is
 * rebuilt, and `codex resume <name>` resolves names through it, so a thread synced without
 * its entries shows up under the wrong name.
 *
 * Each device syncs only the entries of threads its superproject owns. Merging keeps every
 * other line exactly where and as it was, and orders the owned entries by `updated_at` so the
 * newest name of each thread is its last line.
 */
import { z } from "zod";

/** One index entry. `updatedAt` is kept as written (RFC 3339, any precision). */
export interface SessionIndexEntry {
  id: string;
  threadName: string;
  updatedAt: string;
}

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|([+-])(\d{2}):(\d{2}))$/;

/**
 * An RFC 3339 time as nanoseconds since the epoch, or null when it is not one. Codex writes
 * sub-millisecond precision, which `Date.parse` would round away, and two renames within a
 * millisecond must still order correctly.
 */
export function updatedAtKey(text: string): bigint | null {
  const m = RFC3339.exec(text);
  if (m === null) return null;
  const [, y, mo, d, h, mi, s, frac, zone, sign, oh, om] = m;
  const ms = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s));
  const check = new Date(ms);
  if (check.getUTCDate() !== Number(d) || check.getUTCMonth() !== Number(mo) - 1 || Number(h) > 23) return null;
  if (Number(mi) > 59 || Number(s) > 60) return null;
  let seconds = BigInt(ms / 1000);
  if (zone !== "Z" && zone !== "z") {
    const offset = BigInt(Number(oh) * 3600 + Number(om) * 60);
    seconds = sign === "+" ? seconds - offset : seconds + offset;
  }
  const nanos = frac === undefined ? 0n : BigInt(frac.slice(1).padEnd(9, "0"));
  return seconds * 1_000_000_000n + nanos;
}

const IndexLine = z.object({
  id: z.string().min(1).max(200),
  thread_name: z.string().max(64 * 1024),
  updated_at: z.string().max(64),
});

/** An entry as it might arrive from a peer; validated before use. */
export const SessionIndexEntrySchema = z.object({
  id: z.string().min(1).max(200),
  threadName: z.string().max(64 * 1024),
  updatedAt: z.string().max(64).refine((t) => updatedAtKey(t) !== null, "expected an RFC 3339 time"),
});

interface RawLine {
  /** The line without its `\n` (a `\r` stays). */
  text: string;
  entry: SessionIndexEntry | null;
  key: bigint | null;
}

function splitLines(text: string): RawLine[] {
  const lines: RawLine[] = [];
  let pos = 0;
  while (pos < text.length) {
    const nl = text.indexOf("\n", pos);
    const end = nl === -1 ? text.length : nl;
    const line = text.slice(pos, end);
    let entry: SessionIndexEntry | null = null;
    let key: bigint | null = null;
    if (line.trim() !== "") {
      try {
        const parsed = IndexLine.safeParse(JSON.parse(line));
        if (parsed.success) {
          key = updatedAtKey(parsed.data.updated_at);
          if (key !== null) {
            entry = { id: parsed.data.id, threadName: parsed.data.thread_name, updatedAt: parsed.data.updated_at };
          }
        }
      } catch {
        // Not JSON: counted as a bad line and kept in place by the merge.
      }
    }
    lines.push({ text: line, entry, key: entry === null ? null : key });
    pos = end + 1;
  }
  return lines;
}

/**
 * Parses an index tolerantly: valid entries in file order, and how many non-blank lines were
 * skipped because they are not JSON, lack a field, or carry an unreadable time.
 */
export function parseSessionIndex(text: string): { entries: SessionIndexEntry[]; badLines: number } {
  const entries: SessionIndexEntry[] = [];
  let badLines = 0;
  for (const line of splitLines(text)) {
    if (line.entry !== null) entries.push(line.entry);
    else if (line.text.trim() !== "") badLines++;
  }
  return { entries, badLines };
}

/** The entries of the given threads, in file order: what a device pushes for its superproject. */
export function selectIndexEntries(text: string, ids: ReadonlySet<string>): SessionIndexEntry[] {
  return parseSessionIndex(text).entries.filter((e) => ids.has(e.id));
}

/** The name Codex would show for each id: the last line for the id wins. */
export function effectiveThreadNames(text: string): Map<string, SessionIndexEntry> {
  const names = new Map<string, SessionIndexEntry>();
  for (const e of parseSessionIndex(text).entries) names.set(e.id, e);
  return names;
}

/** Serializes an entry the way Codex does (serde field order, no escaping of `/` or non-ASCII). */
export function formatIndexEntry(entry: SessionIndexEntry): string {
  return JSON.stringify({ id: entry.id, thread_name: entry.threadName, updated_at: entry.updatedAt });
}

interface Placed {
  text: string;
  /** Sort key; null sorts first. Lines without a time of their own inherit the previous line's. */
  key: bigint | null;
  /** Position in the local file, or past its end (in arrival order) for incoming entries. */
  order: number;
}

function before(a: Placed, b: Placed): boolean {
  if (a.key !== b.key) {
    if (a.key === null) return true;
    if (b.key === null) return false;
    return a.key < b.key;
  }
  return a.order < b.order;
}

/**
 * Merges incoming entries of the owned threads into a local index and returns the new text.
 *
 * - Lines of threads not in `ownedIds` (and blank or unreadable lines) keep their bytes and
 *   their order; incoming entries for such threads are ignored, since another superproject
 *   (or no one) owns them.
 * - For owned threads the result is the union of local and incoming entries (an incoming
 *   entry equal to one already present is not added again), ordered by `updated_at`, so the
 *   newest entry of each id is its last line and wins. On equal times a local line comes first.
 * - Local lines keep their exact bytes (including `\r\n`); when nothing needs to change the
 *   input is returned as it was. New lines are written in Codex's format, and every line of
 *   a rewritten index ends with `\n`.
 *
 * Incoming entries are validated; invalid ones are skipped.
 */
export function mergeSessionIndex(
  localText: string,
  incoming: readonly SessionIndexEntry[],
  ownedIds: ReadonlySet<string>,
): string {
  const lines = splitLines(localText);
  const others: Placed[] = [];
  const owned: Placed[] = [];
  const present = new Set<string>();
  let inheritedKey: bigint | null = null;
  lines.forEach((line, order) => {
    const key = line.key ?? inheritedKey;
    inheritedKey = key;
    const placed = { text: line.text, key, order };
    if (line.entry !== null && ownedIds.has(line.entry.id)) {
      owned.push(placed);
      present.add(formatIndexEntry(line.entry));
    } else {
      others.push(placed);
    }
  });

  let added = 0;
  for (const candidate of incoming) {
    const parsed = SessionIndexEntrySchema.safeParse(candidate);
    if (!parsed.success || !ownedIds.has(parsed.data.id)) continue;
    const text = formatIndexEntry(parsed.data);
    if (present.has(text)) continue;
    present.add(text);
    owned.push({ text, key: updatedAtKey(parsed.data.updatedAt), order: lines.length + added });
    added++;
  }
  owned.sort((a, b) => (before(a, b) ? -1 : before(b, a) ? 1 : 0));

  // A stable merge of two sequences: the other threads' lines stay in their own order even
  // if that order is not sorted, and the owned entries slot in by time.
  const merged: Placed[] = [];
  let i = 0;
  let j = 0;
  while (i < others.length || j < owned.length) {
    if (j < owned.length && (i >= others.length || before(owned[j], others[i]))) merged.push(owned[j++]);
    else merged.push(others[i++]);
  }

  if (added === 0 && merged.every((p, index) => p.order === index)) return localText;
  // Every line ends with `\n` in a rewritten index: Codex appends `line + "\n"` without
  // looking, so a last line without one would be glued to its next entry.
  return merged.map((p) => p.text + "\n").join("");
}
