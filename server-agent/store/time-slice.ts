/**
 * Gives the event loop a turn during long runs of synchronous work.
 *
 * The store reads and writes its small objects (folder objects of manifests) with synchronous
 * file calls: on files in the page cache one `openSync`/`readSync`/`closeSync` costs a few
 * microseconds, where each promise-based call costs tens of microseconds of the main thread
 * and a round trip through libuv's thread pool (measured: reading 5,300 folder objects took
 * 50 ms synchronously, 250-800 ms through fs/promises, whatever the concurrency). A walk over
 * a large tree makes thousands of such calls in a row, so it pauses through a `TimeSlice`:
 * after every few milliseconds of work, one turn of the event loop lets the hub's other
 * sessions (and its sockets) go on.
 */

/** How long a run of synchronous work goes on before it lets the event loop have a turn. */
export const SLICE_MS = 8;

export class TimeSlice {
  readonly #budgetMs: number;
  readonly #now: () => number;
  #since: number;

  /** `now` reads a clock in milliseconds (tests pass a fake one). */
  constructor(budgetMs = SLICE_MS, now: () => number = () => performance.now()) {
    this.#budgetMs = budgetMs;
    this.#now = now;
    this.#since = now();
  }

  /** Resolves at once while within the budget; past it, after one turn of the event loop. */
  async pause(): Promise<void> {
    if (this.#now() - this.#since < this.#budgetMs) return;
    await new Promise((resolve) => setImmediate(resolve));
    this.#since = this.#now();
  }
}
