/**
 * The entry point of a push worker thread (see push-pool.ts): builds the bundles it is sent,
 * one at a time, with the same code the main thread uses for small pushes.
 */
import { parentPort } from "node:worker_threads";
import { initHash } from "../core/hash.ts";
import { buildBundle, diskSource } from "./bundle-build.ts";
import { errorToMessage, type BuildJob, type BuildReply } from "./push-pool.ts";
import { serveUntilStopped } from "./worker-stop.ts";

if (parentPort === null) throw new TypeError("push-worker.ts runs only as a worker thread");
const port = parentPort;
await initHash();

// A stop (the push was cancelled or failed) aborts the bundle under way at its next chunk.
serveUntilStopped<BuildJob>(port, (job, signal) =>
  buildBundle(job.path, job.parts.map(diskSource), job.wanted, { stream: job.stream, signal }).then(
    (built) => port.postMessage({ id: job.id, built } satisfies BuildReply),
    (error: unknown) => port.postMessage({ id: job.id, error: errorToMessage(error) } satisfies BuildReply),
  ),
);
