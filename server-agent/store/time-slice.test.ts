import { test } from "node:test";
import assert from "node:assert/strict";
import { TimeSlice } from "./time-slice.ts";

test("a time slice lets the event loop have a turn only once its budget is spent, then starts a new one", async () => {
  let clock = 1000;
  const slice = new TimeSlice(8, () => clock);
  let turns = 0;
  const turn = () => new Promise<void>((resolve) => setImmediate(() => { turns++; resolve(); }));

  // Within the budget: no turn of the event loop, so a callback queued before does not run.
  let pending = turn();
  clock += 7;
  await slice.pause();
  assert.equal(turns, 0);

  // Spent: the queued callback runs before the pause resolves.
  clock += 1;
  await slice.pause();
  assert.equal(turns, 1);
  await pending;

  // The budget starts again from that turn.
  pending = turn();
  clock += 7;
  await slice.pause();
  assert.equal(turns, 1);
  clock += 1;
  await slice.pause();
  assert.equal(turns, 2);
  await pending;
});
