/**
 * A full garbage collection once the hub goes quiet after work. The hub lives for hours, and
 * its resident memory is what a server's operator (and the benchmark) sees. After a large push
 * or pull, tens of MiB of dead manifest objects and Buffers stay resident: V8 collects only when
 * JavaScript allocates, and an idle hub allocates nothing, so its memory reducer may wait
 * minutes. One collection when traffic stops gives that memory back (Buffers of 32 KiB and more
 * are then unmapped; see HUB_MALLOC_ENV in hub-client.ts) at the cost of a few tens of
 * milliseconds of CPU while nothing else is happening.
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

/** How often traffic is sampled; a collection follows the first quiet sample after traffic. */
export const IDLE_GC_INTERVAL_MS = 500;

/**
 * Resident memory the hub may gain over what it held after its last collection before it
 * collects in the middle of work. V8 frees the memory of Buffers whose objects outlived a young
 * collection (as those of a bundle being ingested or prepared do) only in a full collection,
 * which it starts on its own only after about 64 MiB of them; a push or pull would otherwise
 * reach that much above the hub's resting size.
 */
export const GC_GROWTH_BYTES = 24 * 1024 * 1024;

/**
 * V8's full collection, in its "last resort" flavour: a plain `gc()` frees objects but keeps
 * the freed pages for reuse (measured: 194 MiB resident before, 186 MiB after), while this one
 * also hands them back (56 MiB). It took 75 ms on a heap like the hub's at 50,000 files.
 * `--expose-gc` set at run time makes `gc` visible in contexts made after it.
 */
function fullCollection(): () => void {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as (options: { type: "major"; execution: "sync"; flavor: "last-resort" }) => void;
  return () => gc({ type: "major", execution: "sync", flavor: "last-resort" });
}

/**
 * Runs a full collection once `traffic()` (a count that grows while the hub works, e.g. the bytes
 * its sockets moved) has stopped changing for one interval after it last changed, at once when
 * `settled()` is called (the last connection closed: a sync has ended), and in the middle of
 * work when `memory()` (resident bytes) has grown by GC_GROWTH_BYTES since the last collection.
 * Returns the stop function and `settled`. `collect`, `memory` and `schedule` are injectable so
 * tests need no real clock.
 */
export function collectWhenIdle(
  traffic: () => number,
  options: { collect?: () => void; memory?: () => number; schedule?: (tick: () => void) => () => void } = {},
): { stop(): void; settled(): void } {
  const collect = options.collect ?? fullCollection();
  const memory = options.memory ?? (() => process.memoryUsage.rss());
  const schedule = options.schedule ?? ((tick) => {
    const timer = setInterval(tick, IDLE_GC_INTERVAL_MS);
    timer.unref();
    return () => clearInterval(timer);
  });
  let last = traffic();
  let worked = false;
  let floor = memory();
  const collectNow = () => {
    collect();
    floor = memory();
  };
  const stop = schedule(() => {
    const now = traffic();
    if (now !== last) {
      last = now;
      worked = true;
      if (memory() > floor + GC_GROWTH_BYTES) collectNow();
      return;
    }
    if (!worked) return;
    worked = false;
    collectNow();
  });
  return {
    stop,
    settled() {
      last = traffic();
      worked = false;
      collectNow();
    },
  };
}
