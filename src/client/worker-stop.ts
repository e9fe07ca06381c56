/**
 * Ending a worker thread by asking it, not by terminating it. The push's bundle builders
 * (push-pool.ts), the scan's hashing thread (scan-hash-pool.ts) and the pull's writer
 * (pull-write.ts) all used `worker.terminate()` when their work was cancelled or failed. A
 * thread terminated while a file read or a zstd call of its own was under way could take the
 * whole process down with it: Node 24 aborted with V8's "Check failed: (location_) != nullptr"
 * (`npm run soak:workers -- --terminate`: 3 of 20 processes, 400 stops of push workers at
 * random moments of their bundles; the same stops of workers started without `resourceLimits`
 * never crashed, but every thread here runs with a small young generation). A push that met a
 * file changed since its scan, or that the user stopped with Ctrl+C, then died with a V8
 * trace instead of its one sentence; so did CI's run of test/push-pipeline.test.ts once.
 *
 * So the owner posts `STOP_MESSAGE`; the thread (through `serveUntilStopped`) stops taking
 * work, lets the job under way end (a job that takes an AbortSignal ends at its next check),
 * cleans up and closes its port, after which its event loop is empty and it exits by itself.
 * `terminate()` is only the last resort, for a thread that has not ended after a grace period.
 *
 * This module is loaded by the worker threads too, so it imports nothing but Node.
 */
import { type MessagePort, type Worker } from "node:worker_threads";

/** What a thread's owner posts to have it end by itself. */
export const STOP_MESSAGE = { cwsStopWorker: true } as const;

/**
 * How long a thread asked to stop may take before it is terminated. A job checks its signal
 * at least every chunk or batch, so a healthy thread ends in milliseconds; a thread still
 * busy after this is stuck (e.g. a read on a dead network share) and terminating it is the
 * lesser risk.
 */
export const STOP_GRACE_MS = 10_000;

function isStopMessage(message: unknown): boolean {
  return typeof message === "object" && message !== null && (message as { cwsStopWorker?: unknown }).cwsStopWorker === true;
}

/**
 * Asks `worker` to end and resolves once it has exited. Safe to call again, and on a thread
 * that has already ended (its `threadId` is then -1).
 */
export function stopWorker(worker: Worker, graceMs = STOP_GRACE_MS): Promise<void> {
  if (worker.threadId === -1) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => void worker.terminate(), graceMs);
    worker.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    worker.postMessage(STOP_MESSAGE);
  });
}

/**
 * The thread's side: calls `handle` for every message but the stop, until the stop comes.
 * Then `signal` (given to every call) is aborted, no further message is handled, and once no
 * job is under way (`handle`'s promise, when it returns one, has settled) `onStop` runs and
 * the port closes, which lets the thread exit.
 */
export function serveUntilStopped<T>(port: MessagePort, handle: (message: T, signal: AbortSignal) => void | Promise<unknown>, onStop?: () => void): void {
  const stopping = new AbortController();
  let running = 0;
  const closeIfIdle = () => {
    if (!stopping.signal.aborted || running > 0) return;
    try {
      onStop?.();
    } finally {
      port.close();
    }
  };
  port.on("message", (message: T) => {
    if (isStopMessage(message)) {
      stopping.abort();
      closeIfIdle();
      return;
    }
    if (stopping.signal.aborted) return;
    const result = handle(message, stopping.signal);
    if (!(result instanceof Promise)) return;
    running++;
    const settled = () => {
      running--;
      closeIfIdle();
    };
    result.then(settled, settled);
  });
}
