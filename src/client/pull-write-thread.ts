/**
 * The pull's writer thread (started by pull-write-worker.mjs, see pull-write.ts): applies the batches of
 * write operations it is sent, in order, and answers each with the files it finished. After
 * a failed batch it applies nothing more (the main thread discards the pull's temp files).
 */
import { parentPort } from "node:worker_threads";
import { initHash } from "../core/hash.ts";
import { errorToMessage } from "./push-pool.ts";
import { applyWriteBatch, closeAll, type BatchReply, type OpenFile, type WriteBatch } from "./pull-write.ts";
import { serveUntilStopped } from "./worker-stop.ts";

if (parentPort === null) throw new TypeError("pull-write-thread.ts runs only as a worker thread");
const port = parentPort;
const open = new Map<number, OpenFile>();
// Batches sent meanwhile wait in the port until the listener below is added.
await initHash();
let failed = false;

// A batch is applied in one turn, so a stop takes effect between batches; the files still
// open are closed before the thread ends.
serveUntilStopped<WriteBatch>(port, (batch) => {
  if (failed) return;
  try {
    const finished = applyWriteBatch(batch, open);
    // The buffer goes back to be filled again (its bytes are on their way to the disk).
    const buffer = batch.bytes.buffer;
    port.postMessage({ id: batch.id, finished, buffer } satisfies BatchReply, [buffer, finished.buffer]);
  } catch (error) {
    failed = true;
    closeAll(open);
    port.postMessage({ id: batch.id, error: errorToMessage(error) } satisfies BatchReply);
  }
}, () => closeAll(open));
