import { test } from "node:test";
import assert from "node:assert/strict";
import { TimeSlice } from "./time-slice.ts";

test("a time slice lets the event loop have a turn only once its budget is spent, then starts a new one", async () => {
  let clock = 1000;
  const slice = new TimeSlice(8, () => clock);
  let turns = 0;
  // Twice: the second budget starts from the first turn.
  for (const round of [1, 2]) {
    const pending = new Promise<void>((resolve) => setImmediate(() => { turns++; resolve(); }));
    // Within the budget: no turn of the event loop, so the callback queued above does not run.
    clock += 7;
    await slice.pause();
    assert.equal(turns, round - 1);
    // Spent: the queued callback runs before the pause resolves.
    clock += 1;
    await slice.pause();
    assert.equal(turns, round);
    await pending;
  }
});
