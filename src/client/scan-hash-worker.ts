/**
 * The entry point of a scan's hashing thread (see scan-hash-pool.ts): hashes the files it is
 * sent, one at a time, with the code the scan's main thread uses (file-hash.ts).
 */
import { parentPort } from "node:worker_threads";
import { Chunker } from "../core/chunker.ts";
import { initHash } from "../core/hash.ts";
import { READ_BUFFER_BYTES } from "./file-chunks.ts";
import { describe, hashFileSync, type HashOutcome } from "./file-hash.ts";
import type { HashBatch, HashReply } from "./scan-hash-pool.ts";
import { serveUntilStopped } from "./worker-stop.ts";

if (parentPort === null) throw new TypeError("scan-hash-worker.ts runs only as a worker thread");
const port = parentPort;
await initHash();
const buffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
const chunker = new Chunker();

// A batch is hashed in one turn, so a stop takes effect between batches.
serveUntilStopped<HashBatch>(port, (batch) => {
  const results: HashReply["results"] = [];
  for (const { id, path } of batch.jobs) results.push({ id, outcome: hashOne(path) });
  port.postMessage({ results } satisfies HashReply);
});

function hashOne(path: string): HashOutcome {
  try {
    return hashFileSync(path, buffer, chunker);
  } catch (error) {
    // hashFileSync turns file-system failures into outcomes; anything else is reported the
    // way the scan reports a file it could not read, so the path is kept, never deleted.
    chunker.finish();
    return { ok: false, reason: `it could not be read: ${describe(error)}` };
  }
}
