import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isCwsError } from "../errors.ts";
import { DEFAULT_RETENTION, decideRetention, resolveRetentionSettings } from "./retention.ts";
import type { RetentionSnapshot } from "./retention.ts";

const DAY = 24 * 60 * 60 * 1000;
// Noon UTC on 2026-03-15, so "a day ago" never straddles two days by accident.
const NOW = Date.UTC(2026, 2, 15, 12, 0, 0);

/** `count` snapshots with ids 1..count, one every `everyMs`, the last at `lastAt`. */
function history(count: number, everyMs: number, lastAt = NOW): RetentionSnapshot[] {
  return Array.from({ length: count }, (_, i) => ({ id: i + 1, createdAt: lastAt - (count - 1 - i) * everyMs }));
}

function keptIds(decision: ReturnType<typeof decideRetention>): number[] {
  return decision.keep.map((k) => k.id);
}

describe("decideRetention()", () => {
  const cases: Array<{
    name: string;
    snapshots: RetentionSnapshot[];
    head: number | null;
    pinned?: number[];
    settings?: { keepLast?: number; keepDailyDays?: number };
    keep: number[];
  }> = [
    { name: "keeps everything when there are fewer snapshots than keepLast", snapshots: history(5, 60_000), head: 5, keep: [5, 4, 3, 2, 1] },
    { name: "keeps the newest keepLast snapshots of one busy day", snapshots: history(10, 60_000), head: 10, settings: { keepLast: 3, keepDailyDays: 0 }, keep: [10, 9, 8] },
    {
      name: "keeps one snapshot per day (the newest of that day) for keepDailyDays days",
      // Two snapshots a day for ten days: ids 2k-1 (morning) and 2k (evening) of day k.
      snapshots: Array.from({ length: 20 }, (_, i) => ({ id: i + 1, createdAt: NOW - (9 - Math.floor(i / 2)) * DAY - (i % 2 === 0 ? 6 : 1) * 3600_000 })),
      head: 20,
      settings: { keepLast: 1, keepDailyDays: 3 },
      keep: [20, 18, 16],
    },
    { name: "always keeps the head, even when it is old and not the newest", snapshots: history(10, DAY, NOW - 100 * DAY), head: 2, settings: { keepLast: 1, keepDailyDays: 5 }, keep: [10, 2] },
    { name: "keeps snapshots pinned by open quarantine items", snapshots: history(10, DAY, NOW - 100 * DAY), head: 10, pinned: [3, 4, 99], settings: { keepLast: 1, keepDailyDays: 1 }, keep: [10, 4, 3] },
    { name: "drops nothing when the superproject has no snapshot", snapshots: [], head: null, keep: [] },
    {
      name: "counts today as the first of keepDailyDays days",
      snapshots: [{ id: 1, createdAt: NOW - 2 * DAY }, { id: 2, createdAt: NOW - DAY }, { id: 3, createdAt: NOW - 60_000 }, { id: 4, createdAt: NOW }],
      head: 4,
      settings: { keepLast: 1, keepDailyDays: 2 },
      keep: [4, 2],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const decision = decideRetention({ snapshots: c.snapshots, head: c.head, pinned: c.pinned, settings: c.settings, now: NOW });
      assert.deepEqual(keptIds(decision), c.keep);
      const all = new Set([...decision.keep.map((k) => k.id), ...decision.drop]);
      assert.equal(all.size, c.snapshots.length, "every snapshot is either kept or dropped");
    });
  }

  it("names every reason a snapshot is kept", () => {
    const decision = decideRetention({ snapshots: history(3, DAY), head: 3, pinned: [3], settings: { keepLast: 1, keepDailyDays: 1 }, now: NOW });
    assert.deepEqual(decision.keep[0], { id: 3, reasons: ["head", "last", "daily", "pinned"] });
    assert.deepEqual(decision.drop, [2, 1]);
  });

  it("uses the documented defaults: the last 50 and one per day for 30 days", () => {
    assert.deepEqual(DEFAULT_RETENTION, { keepLast: 50, keepDailyDays: 30 });
    // 100 snapshots a day apart: the newest 50 by count, and days 0..29 are within them.
    const decision = decideRetention({ snapshots: history(100, DAY), head: 100, now: NOW });
    assert.equal(decision.keep.length, 50);
    // 200 snapshots six hours apart (50 days): the newest 50 cover 12.5 days; daily adds the rest of 30 days.
    const busy = decideRetention({ snapshots: history(200, DAY / 4), head: 200, now: NOW });
    assert.equal(busy.keep.length, 50 + (30 - 13));
  });
});

describe("resolveRetentionSettings()", () => {
  it("merges overrides into the defaults", () => {
    assert.deepEqual(resolveRetentionSettings({ keepLast: 7 }), { keepLast: 7, keepDailyDays: 30 });
  });
  for (const bad of [{ keepLast: 0 }, { keepDailyDays: -1 }, { keepLast: 1.5 }, { other: 1 }]) {
    it(`refuses ${JSON.stringify(bad)} with INVALID_ARGUMENT`, () => {
      assert.throws(() => resolveRetentionSettings(bad), (error: unknown) => isCwsError(error, "INVALID_ARGUMENT"));
    });
  }
});
