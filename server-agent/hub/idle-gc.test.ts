import { test } from "node:test";
import assert from "node:assert/strict";
import { collectWhenIdle, GC_GROWTH_BYTES, IDLE_GROWTH_BYTES, IDLE_TICKS, MAX_IDLE_TICKS, type Collections } from "./idle-gc.ts";

const MiB = 2 ** 20;

/** What the hub holds at rest in these tests; work that leaves garbage raises it by IDLE_GROWTH_BYTES. */
const REST = 100 * MiB;

/**
 * A collector driven by hand: ticks, traffic and resident memory are the test's. By default,
 * resident memory is `state.resident`, and a collection brings it back to REST.
 */
function harness(options: { resident?: () => number; afterCollection?: () => void } = {}) {
  const state = { traffic: 0, full: 0, lastResort: 0, resident: REST, tick: () => {} };
  const afterCollection = options.afterCollection ?? (() => { state.resident = REST; });
  const collections: Collections = {
    full: () => { state.full++; afterCollection(); },
    lastResort: () => { state.lastResort++; afterCollection(); },
  };
  const collector = collectWhenIdle(() => state.traffic, {
    collections,
    memory: options.resident ?? (() => state.resident),
    schedule: (fn) => { state.tick = fn; return () => { state.tick = () => { throw new Error("ticked after stop"); }; }; },
  });
  const ticks = (n: number) => { for (let i = 0; i < n; i++) state.tick(); };
  return { state, collector, ticks };
}

test("the hub collects once after work stops, not while it works nor while it stays idle", () => {
  const { state, collector, ticks } = harness();
  ticks(IDLE_TICKS * 2);
  assert.equal(state.lastResort, 0, "idle from the start: nothing to give back");
  for (let i = 0; i < 10; i++) {
    state.traffic += 100;
    state.resident = REST + IDLE_GROWTH_BYTES;
    ticks(1);
  }
  assert.equal(state.lastResort, 0, "no collection while bytes move");
  ticks(IDLE_TICKS - 1);
  assert.equal(state.lastResort, 0, "not before the hub has been quiet long enough");
  ticks(1);
  assert.equal(state.lastResort, 1, "one collection once quiet after work");
  ticks(IDLE_TICKS * 3);
  assert.equal(state.lastResort, 1, "and none while the hub stays idle");
  state.traffic += 1;
  state.resident = REST + IDLE_GROWTH_BYTES;
  ticks(1);
  collector.settled();
  assert.equal(state.lastResort, 2, "the end of a sync collects at once");
  ticks(IDLE_TICKS * 2);
  assert.equal(state.lastResort, 2, "and not once more when the hub then stays quiet");
  assert.equal(state.full, 0, "memory never grew: no collection in the middle of work");
  collector.stop();
});

test("pauses inside one long piece of work are collected less and less often, until a sync ends", () => {
  const { state, collector, ticks } = harness();
  const pause = (quiet: number) => {
    state.traffic += 1;
    state.resident = REST + IDLE_GROWTH_BYTES;
    ticks(1);
    ticks(quiet);
  };
  pause(IDLE_TICKS);
  assert.equal(state.lastResort, 1, "the first pause is collected after the usual wait");
  pause(IDLE_TICKS);
  assert.equal(state.lastResort, 1, "a second pause of the same length is not: the wait has doubled");
  pause(IDLE_TICKS * 2);
  assert.equal(state.lastResort, 2, "a pause as long as the doubled wait is");
  for (let i = 0; i < 10; i++) pause(MAX_IDLE_TICKS);
  assert.equal(state.lastResort, 12, "the wait stops growing at its cap");
  pause(MAX_IDLE_TICKS - 1);
  assert.equal(state.lastResort, 12, "and a shorter pause than the cap is not collected");
  state.resident = REST + IDLE_GROWTH_BYTES;
  collector.settled();
  assert.equal(state.lastResort, 13);
  pause(IDLE_TICKS);
  assert.equal(state.lastResort, 14, "after a sync ended, the next pause waits the usual time again");
  collector.stop();
});

test("work that left the hub about as big as it was is not followed by a collection, idle or at the end of a sync", () => {
  const { state, collector, ticks } = harness();
  // A kept session's small syncs and idle checks: bytes move, memory barely grows.
  for (let sync = 0; sync < 5; sync++) {
    state.traffic += 1000;
    state.resident = REST + IDLE_GROWTH_BYTES - MiB;
    ticks(1);
    ticks(MAX_IDLE_TICKS * 2);
  }
  collector.settled();
  assert.equal(state.lastResort, 0, "nothing worth a collection of all available garbage");
  // Once the growth adds up to the threshold, the next quiet moment collects.
  state.traffic += 1000;
  state.resident = REST + IDLE_GROWTH_BYTES;
  ticks(1);
  ticks(IDLE_TICKS);
  assert.equal(state.lastResort, 1);
  collector.stop();
});

test("in the middle of work the hub collects when its memory has grown by the set amount since the last collection", () => {
  let resident = 100 * MiB;
  const seen: number[] = [];
  // A collection gives back all but 4 MiB of what was gained.
  const { state, ticks } = harness({ resident: () => resident, afterCollection: () => { seen.push(resident); resident = 104 * MiB; } });
  for (let step = 0; step < 20; step++) {
    state.traffic += 1;
    resident += 3 * MiB;
    ticks(1);
  }
  assert.ok(state.full >= 2, "work that keeps growing the hub is collected before it ends");
  for (const at of seen) assert.ok(at <= 104 * MiB + GC_GROWTH_BYTES + 3 * MiB, "never more than the growth allowed plus one tick's gain");
});

test("the real collections are V8's, reachable without --expose-gc at start-up", () => {
  let resident = 0;
  let tick: () => void = () => {};
  let traffic = 0;
  const collector = collectWhenIdle(() => traffic, { memory: () => resident, schedule: (fn) => { tick = fn; return () => {}; } });
  // gc() throws if the flag did not take.
  resident = 10 * GC_GROWTH_BYTES;
  traffic = 1;
  tick();
  collector.settled();
});

test("resident memory that is high for a moment after a collection does not raise the mark the next one is measured from", () => {
  let resident = REST;
  // A compacting collection: for the first sample after it, old and new pages are both resident.
  const { state, collector, ticks } = harness({ resident: () => resident, afterCollection: () => { resident = REST + 2 * GC_GROWTH_BYTES; } });
  resident = REST + IDLE_GROWTH_BYTES;
  collector.settled();
  assert.equal(state.lastResort, 1);
  ticks(1);
  resident = REST;
  ticks(1);
  // The next sync's work grows the hub by a little more than allowed over what it really rested at.
  state.traffic += 1;
  resident = REST + GC_GROWTH_BYTES + MiB;
  ticks(1);
  assert.equal(state.full, 1, "collected, though the hub is still below what it held just after the last collection");
  collector.stop();
});

test("a full collection in the middle of work does not keep the end of the sync from giving pages back", () => {
  let resident = REST;
  // A full collection frees objects but keeps V8's pages; the last-resort one gives them back.
  const { state, collector, ticks } = harness({
    resident: () => resident,
    afterCollection: () => { resident = state.lastResort > 0 ? REST : resident - MiB; },
  });
  state.traffic += 1;
  resident = REST + GC_GROWTH_BYTES + MiB;
  ticks(1);
  assert.equal(state.full, 1, "collected in the middle of work");
  collector.settled();
  assert.equal(state.lastResort, 1, "and the end of the sync still gives back what the hub grew by");
  assert.equal(resident, REST);
  collector.stop();
});

test("onIdle runs each time the hub is found idle, before it decides whether to collect", () => {
  const calls: string[] = [];
  let resident = REST;
  let tick: () => void = () => {};
  let traffic = 0;
  const collector = collectWhenIdle(() => traffic, {
    collections: { full: () => calls.push("full"), lastResort: () => { calls.push("lastResort"); resident = REST; } },
    memory: () => resident,
    schedule: (fn) => { tick = fn; return () => {}; },
    // What the hub lets go here is still resident until the collection frees it.
    onIdle: () => { calls.push("idle"); resident += IDLE_GROWTH_BYTES; },
  });
  traffic = 1;
  tick();
  for (let i = 0; i < IDLE_TICKS; i++) tick();
  assert.deepEqual(calls, ["idle", "lastResort"]);
  collector.settled();
  assert.deepEqual(calls, ["idle", "lastResort", "idle", "lastResort"]);
  collector.stop();
});
