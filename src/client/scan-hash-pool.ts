/**
 * A second thread for a scan's hashing (scan-hash-worker.ts). Reading, chunking and hashing
 * the files is most of a first scan's work, and it used to run on the main thread alone while
 * the other core waited: a first push starts only once its scan is done. With this thread the
 * main thread walks the tree and hashes part of the files itself, and sends the rest here
 * while the thread has little queued (see scanner.ts), so both cores hash.
 *
 * The thread only reads files. When it fails (it could not start, crashed or ran out of
 * memory) every file it still held is answered with null, and the scan hashes those itself:
 * a failing thread costs time, never a file.
 */
import { Worker } from "node:worker_threads";
import type { HashOutcome } from "./file-hash.ts";
import { stopWorker } from "./worker-stop.ts";

/** Files to hash, in one message. */
export interface HashBatch {
  jobs: Array<{ id: number; path: string }>;
}

/** Their outcomes, in one message. */
export interface HashReply {
  results: Array<{ id: number; outcome: HashOutcome }>;
}

/**
 * Files sent to the thread in one message at most. A message per file cost about 80 µs of CPU
 * across both threads (cloning, waking the thread), more than hashing a small file; the
 * files the walk hands over within one turn of the event loop go together instead.
 */
const BATCH_FILES = 32;

/** The thread's plain-JavaScript entry, which turns on the compile cache before scan-hash-worker.ts loads. */
const WORKER_MAIN = new URL("./scan-hash-worker.mjs", import.meta.url);

/**
 * The thread's young generation, in MiB: what it allocates per file (chunk lists, hashes) is
 * small and short-lived, as in a push worker (push-pool.ts).
 */
const WORKER_YOUNG_GENERATION_MB = 4;

export class ScanHashPool {
  #worker: Worker | null;
  #next = 1;
  #waiting = new Map<number, { bytes: number; resolve: (outcome: HashOutcome | null) => void }>();
  #queuedBytes = 0;
  #batch: HashBatch["jobs"] = [];
  #flushing = false;

  constructor() {
    this.#worker = new Worker(WORKER_MAIN, { resourceLimits: { maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MB } });
    this.#worker.on("message", (reply: HashReply) => {
      for (const { id, outcome } of reply.results) this.#settle(id, outcome);
    });
    this.#worker.on("error", () => this.#fail());
    this.#worker.on("exit", () => this.#fail());
  }

  /** False once the thread failed or was closed: files then stay on the main thread. */
  get usable(): boolean {
    return this.#worker !== null;
  }

  /** Files sent and not answered yet. */
  get queuedFiles(): number {
    return this.#waiting.size;
  }

  /** Bytes (by the walk's stat) of the files sent and not answered yet. */
  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  /**
   * Hashes the file at `path` (of `bytes` bytes when the walk saw it) on the thread. Resolves
   * with null when the thread failed or closed before it answered: the caller hashes it itself.
   */
  hash(path: string, bytes: number): Promise<HashOutcome | null> {
    if (this.#worker === null) return Promise.resolve(null);
    const id = this.#next++;
    this.#queuedBytes += bytes;
    return new Promise((resolve) => {
      this.#waiting.set(id, { bytes, resolve });
      this.#batch.push({ id, path });
      if (this.#batch.length >= BATCH_FILES) this.#flush();
      else if (!this.#flushing) {
        this.#flushing = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  #flush(): void {
    this.#flushing = false;
    if (this.#batch.length === 0 || this.#worker === null) return;
    this.#worker.postMessage({ jobs: this.#batch } satisfies HashBatch);
    this.#batch = [];
  }

  /**
   * Stops the thread and waits until it has exited (asked, not terminated: see
   * worker-stop.ts); files still queued are answered with null at once.
   */
  async close(): Promise<void> {
    const worker = this.#worker;
    this.#fail();
    if (worker !== null) await stopWorker(worker);
  }

  #settle(id: number, outcome: HashOutcome | null): void {
    const waiting = this.#waiting.get(id);
    if (waiting === undefined) return;
    this.#waiting.delete(id);
    this.#queuedBytes -= waiting.bytes;
    waiting.resolve(outcome);
  }

  #fail(): void {
    this.#worker = null;
    this.#batch = [];
    for (const id of [...this.#waiting.keys()]) this.#settle(id, null);
  }
}
