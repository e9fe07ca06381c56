/**
 * Worker threads asked to end (worker-stop.ts): the job under way sees its signal, the
 * clean-up runs, and the thread exits by itself with code 0, where `terminate()` ends it with
 * code 1 wherever it is (which could crash the process in a file read or a zstd call); only a
 * thread that ignores the request past the grace period is terminated.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { Worker } from "node:worker_threads";
import { stopWorker } from "./worker-stop.ts";

const FIXTURE = new URL("../../test/fixtures/stoppable-worker.ts", import.meta.url);

/** Starts the fixture and collects its messages; resolves once it is ready to take jobs. */
async function startFixture(): Promise<{ worker: Worker; messages: Array<Record<string, unknown>>; exit: Promise<number> }> {
  const worker = new Worker(FIXTURE);
  const messages: Array<Record<string, unknown>> = [];
  worker.on("message", (message: Record<string, unknown>) => messages.push(message));
  const exit = once(worker, "exit").then(([code]) => code as number);
  while (!messages.some((m) => m.ready === true)) await once(worker, "message");
  return { worker, messages, exit };
}

async function until(messages: Array<Record<string, unknown>>, key: string, worker: Worker): Promise<void> {
  while (!messages.some((m) => key in m)) await once(worker, "message");
}

test("a thread asked to stop aborts the job under way, cleans up and exits by itself with code 0", async () => {
  const { worker, messages, exit } = await startFixture();
  worker.postMessage({ wait: 60_000 });
  await until(messages, "started", worker);
  await stopWorker(worker);
  assert.equal(await exit, 0, "it ended by itself, not terminated (code 1)");
  assert.deepEqual(messages.filter((m) => !("ready" in m)), [{ started: 60_000 }, { aborted: 60_000 }, { cleanedUp: true }]);
  assert.equal(worker.threadId, -1);
});

test("an idle thread asked to stop exits at once, and asking an ended thread again resolves", async () => {
  const { worker, messages, exit } = await startFixture();
  await stopWorker(worker);
  assert.equal(await exit, 0);
  assert.ok(messages.some((m) => m.cleanedUp === true));
  await stopWorker(worker);
});

test("jobs sent after the stop are not started", async () => {
  const { worker, messages, exit } = await startFixture();
  const stopped = stopWorker(worker);
  worker.postMessage({ wait: 10 });
  await stopped;
  assert.equal(await exit, 0);
  assert.ok(!messages.some((m) => "started" in m), JSON.stringify(messages));
});

test("a thread that ignores the stop past the grace period is terminated", async () => {
  const { worker, messages, exit } = await startFixture();
  worker.postMessage({ spin: 60_000 });
  await until(messages, "spinning", worker);
  await stopWorker(worker, 50);
  assert.equal(await exit, 1, "terminated");
  assert.ok(!messages.some((m) => m.cleanedUp === true));
});
