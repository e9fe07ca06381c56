/**
 * A promise-chain mutex: work handed to `run` runs one at a time, in the order it was handed
 * in. The hub uses two: one for everything that moves a head (commits, accept, reject,
 * restore, and gc, which must never collect a chunk a commit is about to reference), and one
 * for maintenance that must not overlap gc (verify, the copy phase of a backup).
 */
export class Serial {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(work: () => Promise<T> | T): Promise<T> {
    const result = this.#tail.then(work, work);
    // The chain continues whether this work succeeds or fails.
    this.#tail = result.catch(() => {});
    return result;
  }
}
