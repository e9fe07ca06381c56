import assert from "node:assert/strict";
import { test } from "node:test";
import { FAST_LINK_BYTES_PER_SECOND, LinkMeter } from "./link-meter.ts";

const MIB = 1024 * 1024;

test("LinkMeter calls a link fast only after a few MiB came at least at FAST_LINK_BYTES_PER_SECOND", () => {
  const meter = new LinkMeter();
  assert.equal(meter.fast, false);
  // 2 MiB in 10 ms: fast, but too little to judge by.
  meter.start(0);
  meter.end(10, 2 * MIB);
  assert.equal(meter.fast, false);
  meter.start(100);
  meter.end(110, 2 * MIB);
  assert.equal(meter.fast, true);
});

test("LinkMeter measures overlapping downloads by the time any of them was under way, not each alone", () => {
  // Three 4 MiB downloads sharing one second: 12 MiB/s, though each took the whole second.
  const slow = new LinkMeter();
  for (let i = 0; i < 3; i++) slow.start(0);
  for (let i = 0; i < 3; i++) slow.end(1000, 4 * MIB);
  assert.equal(12 * MIB < FAST_LINK_BYTES_PER_SECOND, true);
  assert.equal(slow.fast, false);
  // The same three, each 0.4 s, staggered by 0.2 s: busy 0.8 s for 12 MiB is still slow; 36 MiB in 0.8 s is fast.
  const fast = new LinkMeter();
  fast.start(0);
  fast.start(200);
  fast.end(400, 12 * MIB);
  fast.start(400);
  fast.end(600, 12 * MIB);
  fast.end(800, 12 * MIB);
  assert.equal(fast.fast, true);
  // Time with nothing downloading (waiting for the disk) does not count against the link.
  const idle = new LinkMeter();
  idle.start(0);
  idle.end(100, 4 * MIB);
  idle.start(60_000);
  idle.end(60_100, 4 * MIB);
  assert.equal(idle.fast, true);
});

test("LinkMeter counts a failed download's time but no bytes", () => {
  const meter = new LinkMeter();
  meter.start(0);
  meter.end(1000, 0);
  meter.start(1000);
  meter.end(1100, 8 * MIB);
  // 8 MiB over 1.1 s of downloading: slow, though the 8 MiB alone came in 0.1 s.
  assert.equal(meter.fast, false);
});
