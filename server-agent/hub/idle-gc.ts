/**
 * Garbage collections that keep the hub's resident memory near its resting size. The hub lives
 * for hours, and its resident memory is what a server's operator (and the benchmark) sees.
 *
 * - After work, tens of MiB of dead manifest objects and Buffers stay resident: V8 collects only
 *   when JavaScript allocates, and an idle hub allocates nothing, so its memory reducer may wait
 *   minutes. One "last resort" collection when the work ends gives that memory back (Buffers of
 *   32 KiB and more are then unmapped; see src/malloc-env.ts).
 * - During work, the Buffers of a bundle being ingested or prepared (read blocks, decompressed
 *   chunks, zstd frames) outlive a young collection often enough, and V8 frees those only in a
 *   full collection, which it starts on its own after about 64 MiB of them. A plain full
 *   collection once resident memory has grown by GC_GROWTH_BYTES bounds that.
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

/** How often resident memory and traffic are sampled. */
export const GC_TICK_MS = 100;

/** Samples without traffic, after traffic, that make the hub idle: half a second. */
export const IDLE_TICKS = 5;

/**
 * The longest quiet wait before an idle collection. Each idle collection that work interrupts
 * again doubles the wait (from IDLE_TICKS up to this), until a sync ends (`settled`): a large push
 * pauses for half a second between bundles every few seconds (the client building the next one),
 * and a last-resort collection there costs 0.2-0.4 s of a 50,000-file hub's CPU while it frees
 * only what the next bundle allocates again. Profiled: 26 idle collections in one 50,000-file
 * push, 11 s of the hub's 31 s of CPU.
 */
export const MAX_IDLE_TICKS = 40;

/**
 * Resident memory the hub may gain over the least it held since its last collection before it
 * collects in the middle of work.
 */
export const GC_GROWTH_BYTES = 16 * 1024 * 1024;

/**
 * Resident memory the hub must have gained since its last idle (last resort) collection for the
 * next one to run (a full collection in between gives no pages back, so it does not count). A last-resort collection is V8's "collect all available garbage": up to
 * seven full collections in a row, 0.3-0.4 s of a 50,000-file hub's time (traced with
 * --trace-gc: runs of 4-7 "Mark-Compact (reduce)" of 30-120 ms each), during which the hub
 * answers nobody. After a small sync there is little to give back, and with a kept session
 * (whose connection stays open, so no sync "settles") such a collection came half a second
 * after every sync or idle check, often just as the next sync arrived.
 */
export const IDLE_GROWTH_BYTES = 8 * 1024 * 1024;

export interface Collections {
  /** A full collection: frees dead objects and the Buffers they held; keeps V8's freed pages for reuse. */
  full(): void;
  /**
   * A full collection in V8's "last resort" flavour, which also hands the freed pages back: a
   * plain one took a test heap from 194 to 186 MiB resident, this one to 56 MiB. It took 75 ms
   * on a heap like the hub's at 50,000 files.
   */
  lastResort(): void;
}

/** V8's collections; `--expose-gc` set at run time makes `gc` visible in contexts made after it. */
function v8Collections(): Collections {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as (options: { type: "major"; execution: "sync"; flavor?: "last-resort" }) => void;
  return {
    full: () => gc({ type: "major", execution: "sync" }),
    lastResort: () => gc({ type: "major", execution: "sync", flavor: "last-resort" }),
  };
}

/**
 * Collects (last resort) once `traffic()` (a count that grows while the hub works, e.g. the bytes
 * its sockets moved) has stopped changing for IDLE_TICKS samples after it last changed, and at
 * once when `settled()` is called (the last connection closed: a sync has ended), in both cases
 * only if resident memory grew by IDLE_GROWTH_BYTES since the last such collection; collects
 * (full) in the middle of work when `memory()` (resident bytes) has grown by GC_GROWTH_BYTES over
 * the least it was since the last collection. `onIdle` runs each time the hub is found idle,
 * before it decides whether to collect (the hub lets its spare buffers go there, so that the
 * collection frees them).
 * Returns the stop function and `settled`. `collections`, `memory` and `schedule` are
 * injectable so tests need no real clock.
 */
export function collectWhenIdle(
  traffic: () => number,
  options: { collections?: Collections; memory?: () => number; schedule?: (tick: () => void) => () => void; onIdle?: () => void } = {},
): { stop(): void; settled(): void } {
  const collections = options.collections ?? v8Collections();
  const onIdle = options.onIdle ?? (() => {});
  const memory = options.memory ?? (() => process.memoryUsage.rss());
  const schedule = options.schedule ?? ((tick) => {
    const timer = setInterval(tick, GC_TICK_MS);
    timer.unref();
    return () => clearInterval(timer);
  });
  let last = traffic();
  let worked = false;
  let quiet = 0;
  let wait = IDLE_TICKS;
  // Both marks are the least the hub held since the collection that set them, not what it held
  // just after it: other work can hold memory for a moment then (seen: an enrollment's scrypt,
  // 32 MiB on the thread pool, right after the collection at the end of a push: a mark of
  // 143 MiB for a hub resting at 111 MiB, which let the next pull's first 40 MiB of garbage,
  // its manifest's text and freed bundle buffers, stand for 13 s).
  // `floor`: since any collection, for the full ones in the middle of work.
  let floor = memory();
  // `rested`: since the last last-resort collection, for the next one. A full collection does
  // not give V8's pages back, so it must not move this mark: after a 50,000-file push whose
  // last full collection came during its commit, the hub stayed at 103 MiB instead of 81.
  let rested = floor;
  const collect = (kind: keyof Collections) => {
    collections[kind]();
    floor = memory();
    if (kind === "lastResort") rested = floor;
  };
  const stop = schedule(() => {
    const resident = memory();
    floor = Math.min(floor, resident);
    rested = Math.min(rested, resident);
    if (resident > floor + GC_GROWTH_BYTES) collect("full");
    const now = traffic();
    if (now !== last) {
      last = now;
      worked = true;
      quiet = 0;
      return;
    }
    if (!worked || ++quiet < wait) return;
    worked = false;
    onIdle();
    if (memory() < rested + IDLE_GROWTH_BYTES) return;
    wait = Math.min(wait * 2, MAX_IDLE_TICKS);
    collect("lastResort");
  });
  return {
    stop,
    settled() {
      last = traffic();
      worked = false;
      wait = IDLE_TICKS;
      onIdle();
      if (memory() >= rested + IDLE_GROWTH_BYTES) collect("lastResort");
    },
  };
}
