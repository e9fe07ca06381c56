/**
 * Which snapshots (checkpoints) of a superproject the server keeps. `cws-server gc` drops the
 * others and then collects every chunk and object no kept snapshot (and no open quarantine
 * item) references. Pure: the caller passes the snapshots, the pins and the time.
 *
 * A snapshot is kept when any of these holds:
 * - it is the head (whatever its age);
 * - it is among the newest `keepLast` snapshots (by id, which is commit order);
 * - it is the newest snapshot of its UTC day, and that day began less than `keepDailyDays`
 *   days before `now` (so a superproject that is edited every day keeps one checkpoint per day
 *   for a month, and one edited rarely keeps its last state of each of those days);
 * - it is pinned: a quarantine item that is still open was held against it or created with it,
 *   and accepting or reviewing that item needs it.
 *
 * UTC days rather than the server's local days keep the answer independent of the machine's
 * time zone and of daylight-saving jumps.
 */
import { z } from "zod";
import { CwsError } from "../errors.ts";

/** Per-superproject retention settings (stored as overrides of {@link DEFAULT_RETENTION}). */
export const RetentionSettings = z.strictObject({
  // keepLast is how many of the newest snapshots are always kept (the head is kept regardless).
  keepLast: z.number().int().min(1).max(1_000_000),
  // keepDailyDays is for how many days back the newest snapshot of each UTC day is kept (0 = none).
  keepDailyDays: z.number().int().min(0).max(36_500),
});
export type RetentionSettings = z.infer<typeof RetentionSettings>;

/** What a superproject stores: only the settings it changes from the defaults. */
export const RetentionSettingsOverrides = RetentionSettings.partial();
export type RetentionSettingsOverrides = z.infer<typeof RetentionSettingsOverrides>;

/**
 * The defaults: fifty checkpoints cover several days of live sync (a push every few minutes
 * while working) and a month of daily checkpoints covers "what did this look like last week".
 */
export const DEFAULT_RETENTION: RetentionSettings = Object.freeze({ keepLast: 50, keepDailyDays: 30 });

const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * Merges overrides into the defaults and validates the result.
 *
 * @throws {CwsError} INVALID_ARGUMENT when a setting is unknown or out of range.
 */
export function resolveRetentionSettings(overrides: unknown = {}): RetentionSettings {
  const parsed = RetentionSettingsOverrides.safeParse(overrides ?? {});
  const set = parsed.success ? Object.fromEntries(Object.entries(parsed.data).filter(([, value]) => value !== undefined)) : {};
  const merged = parsed.success ? RetentionSettings.safeParse({ ...DEFAULT_RETENTION, ...set }) : parsed;
  if (!merged.success) {
    const problems = merged.error.issues.map((issue) => `${issue.path.join(".") || "settings"}: ${issue.message}`);
    throw new CwsError(
      "INVALID_ARGUMENT",
      `Cannot use the retention settings as they are invalid: ${problems.join("; ")}. Fix or remove these settings`,
      { data: { problems } },
    );
  }
  return merged.data;
}

/** The little retention needs to know about a snapshot. */
export interface RetentionSnapshot {
  id: number;
  /** Commit time, milliseconds since the epoch. */
  createdAt: number;
}

export type KeepReason = "head" | "last" | "daily" | "pinned";

export interface RetentionInput {
  snapshots: readonly RetentionSnapshot[];
  /** The superproject's head (null before the first push). */
  head: number | null;
  /** Snapshots that must stay whatever their age (open quarantine items refer to them). */
  pinned?: Iterable<number>;
  settings?: Partial<RetentionSettings>;
  /** The current time, milliseconds since the epoch. */
  now: number;
}

export interface RetentionDecision {
  /** Kept snapshot ids, newest first, each with every reason that keeps it. */
  keep: Array<{ id: number; reasons: KeepReason[] }>;
  /** Snapshot ids to drop, newest first. */
  drop: number[];
}

/**
 * Decides which snapshots to keep.
 *
 * @throws {CwsError} INVALID_ARGUMENT when the settings are invalid.
 */
export function decideRetention(input: RetentionInput): RetentionDecision {
  const settings = resolveRetentionSettings(input.settings ?? {});
  const newestFirst = [...input.snapshots].sort((a, b) => b.id - a.id);
  const reasons = new Map<number, KeepReason[]>();
  const add = (id: number, reason: KeepReason): void => {
    const list = reasons.get(id);
    if (list === undefined) reasons.set(id, [reason]);
    else if (!list.includes(reason)) list.push(reason);
  };
  const known = new Set(newestFirst.map((s) => s.id));
  if (input.head !== null && known.has(input.head)) add(input.head, "head");
  for (const snapshot of newestFirst.slice(0, settings.keepLast)) add(snapshot.id, "last");
  if (settings.keepDailyDays > 0) {
    // The oldest day still covered: today counts as the first of the `keepDailyDays` days.
    const firstDay = Math.floor(input.now / DAY_MS) - settings.keepDailyDays + 1;
    const seenDays = new Set<number>();
    for (const snapshot of newestFirst) {
      const day = Math.floor(snapshot.createdAt / DAY_MS);
      if (day < firstDay || seenDays.has(day)) continue;
      seenDays.add(day);
      add(snapshot.id, "daily");
    }
  }
  for (const id of input.pinned ?? []) if (known.has(id)) add(id, "pinned");
  const keep: RetentionDecision["keep"] = [];
  const drop: number[] = [];
  for (const snapshot of newestFirst) {
    const why = reasons.get(snapshot.id);
    if (why === undefined) drop.push(snapshot.id);
    else keep.push({ id: snapshot.id, reasons: why });
  }
  return { keep, drop };
}
