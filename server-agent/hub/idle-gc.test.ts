import { test } from "node:test";
import assert from "node:assert/strict";
import { collectWhenIdle, GC_GROWTH_BYTES } from "./idle-gc.ts";

test("the hub collects once after work stops, not while it works nor while it stays idle", () => {
  let traffic = 0;
  let collections = 0;
  let tick: () => void = () => {};
  let stopped = false;
  const { stop, settled } = collectWhenIdle(() => traffic, { collect: () => collections++, memory: () => 0, schedule: (fn) => { tick = fn; return () => { stopped = true; }; } });
  tick();
  assert.equal(collections, 0, "idle from the start: nothing to give back");
  traffic += 100;
  tick();
  traffic += 100;
  tick();
  assert.equal(collections, 0, "no collection while bytes move");
  tick();
  assert.equal(collections, 1, "one collection on the first quiet tick after work");
  tick();
  tick();
  assert.equal(collections, 1, "and none while the hub stays idle");
  traffic += 1;
  tick();
  tick();
  assert.equal(collections, 2, "new work, new collection");
  traffic += 1;
  tick();
  settled();
  assert.equal(collections, 3, "the end of a sync collects at once");
  tick();
  tick();
  assert.equal(collections, 3, "and not once more when the next tick finds the hub quiet");
  stop();
  assert.ok(stopped);
});

test("the real collection is V8's full collection, reachable without --expose-gc at start-up", () => {
  let tick: () => void = () => {};
  let traffic = 0;
  collectWhenIdle(() => traffic, { schedule: (fn) => { tick = fn; return () => {}; } });
  traffic = 1;
  tick();
  // Runs gc(): throws if the flag did not take.
  tick();
});

test("in the middle of work the hub collects when its memory has grown by the set amount since the last collection", () => {
  let traffic = 0;
  let resident = 100 * 2 ** 20;
  const collected: number[] = [];
  let tick: () => void = () => {};
  collectWhenIdle(() => traffic, {
    // A collection gives back all but 10 MiB of what was gained.
    collect: () => { collected.push(resident); resident = 100 * 2 ** 20 + 10 * 2 ** 20; },
    memory: () => resident,
    schedule: (fn) => { tick = fn; return () => {}; },
  });
  for (let step = 0; step < 10; step++) {
    traffic += 1;
    resident += 5 * 2 ** 20;
    tick();
  }
  assert.ok(collected.length >= 1, "work that keeps growing the hub is collected before it ends");
  for (const at of collected) assert.ok(at <= 100 * 2 ** 20 + 10 * 2 ** 20 + GC_GROWTH_BYTES + 5 * 2 ** 20, "never more than the growth allowed plus one tick's gain");
});
