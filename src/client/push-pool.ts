/**
 * Worker threads that build push bundles (push-worker.ts), so that zstd compression, the
 * costliest step of a large push, runs beside the main thread (which uploads and talks to the
 * agent) and on several cores. Each worker builds one bundle at a time; jobs wait in a queue
 * for a free worker. The workers only read the local files and write bundle files into the
 * push's work folder: nothing they do touches the server.
 */
import { Worker } from "node:worker_threads";
import { CwsError, ERROR_CODES, type ErrorCode } from "../errors.ts";
import type { BuiltBundle, DiskPart } from "./bundle-build.ts";
import { stopWorker } from "./worker-stop.ts";

/** What a worker is asked to build. */
export interface BuildJob {
  id: number;
  /** Where the bundle is written (inside the push's work folder). */
  path: string;
  parts: DiskPart[];
  /** The chunk ids the bundle carries, each in one of `parts`. */
  wanted: string[];
  /** Write a streamed bundle (the agent reads them). */
  stream: boolean;
}

/** An error as it crosses from a worker to the main thread. */
export interface ErrorMessage {
  message: string;
  /** A CwsError's code, or a Node errno code such as ENOENT. */
  code?: string;
  cws?: boolean;
  data?: Record<string, unknown>;
  syscall?: string;
  path?: string;
  stack?: string;
}

export type BuildReply = { id: number; built: BuiltBundle } | { id: number; error: ErrorMessage };

/** The worker's plain-JavaScript entry, which turns on the compile cache before push-worker.ts loads. */
const WORKER_MAIN = new URL("./push-worker.mjs", import.meta.url);

/**
 * A worker's young generation, in MiB. Almost everything a worker allocates (read buffers,
 * compressed records) dies within one bundle; a small young generation collects it early,
 * which keeps each worker's footprint near 25 MiB instead of 60 at no measurable CPU cost.
 */
const WORKER_YOUNG_GENERATION_MB = 4;

/** Starts one push worker thread; it takes BuildJob messages (see BuildPool). */
export function startBuildWorker(): Worker {
  return new Worker(WORKER_MAIN, { resourceLimits: { maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MB } });
}

/** Turns any thrown value into a message that survives postMessage with its code and data. */
export function errorToMessage(error: unknown): ErrorMessage {
  if (error instanceof CwsError) return { cws: true, code: error.code, message: error.message, ...(error.data === undefined ? {} : { data: error.data }) };
  if (error instanceof Error) {
    const errno = error as NodeJS.ErrnoException;
    return {
      message: error.message,
      ...(typeof errno.code === "string" ? { code: errno.code } : {}),
      ...(typeof errno.syscall === "string" ? { syscall: errno.syscall } : {}),
      ...(typeof errno.path === "string" ? { path: errno.path } : {}),
      ...(error.stack === undefined ? {} : { stack: error.stack }),
    };
  }
  return { message: String(error) };
}

/** The inverse of `errorToMessage`: a CwsError again, or an Error carrying the errno fields. */
export function errorFromMessage(message: ErrorMessage): Error {
  if (message.cws && (ERROR_CODES as readonly string[]).includes(message.code ?? "")) {
    return new CwsError(message.code as ErrorCode, message.message, message.data === undefined ? {} : { data: message.data });
  }
  const error: NodeJS.ErrnoException = new Error(message.message);
  if (message.code !== undefined) error.code = message.code;
  if (message.syscall !== undefined) error.syscall = message.syscall;
  if (message.path !== undefined) error.path = message.path;
  if (message.stack !== undefined) error.stack = message.stack;
  return error;
}

/**
 * The pool itself failed (a worker could not start, crashed or ran out of memory), as opposed
 * to a bundle that could not be built (a file changed since the scan), which rejects with the
 * builder's own error. The caller may build the bundle some other way.
 */
export class PoolFailure extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "PoolFailure";
  }
}

interface Slot {
  worker: Worker;
  job?: { id: number; resolve: (built: BuiltBundle) => void; reject: (error: Error) => void };
}

export class BuildPool {
  #slots: Slot[] = [];
  #queue: Array<{ job: BuildJob; resolve: (built: BuiltBundle) => void; reject: (error: Error) => void }> = [];
  #closed: Error | undefined;

  /** Starts `size` workers. They load in the background; jobs queue until one is free. */
  constructor(size: number) {
    for (let i = 0; i < size; i++) {
      const slot: Slot = { worker: startBuildWorker() };
      slot.worker.on("message", (reply: BuildReply) => this.#onReply(slot, reply));
      slot.worker.on("error", (error) => this.#fail(new PoolFailure(`a push worker failed: ${error.message}`, { cause: error })));
      slot.worker.on("exit", (code) => {
        if (this.#closed === undefined) this.#fail(new PoolFailure(`a push worker stopped unexpectedly (exit code ${code})`));
      });
      this.#slots.push(slot);
    }
  }

  /** Builds a bundle on the next free worker. */
  build(job: BuildJob): Promise<BuiltBundle> {
    if (this.#closed !== undefined) return Promise.reject(this.#closed);
    return new Promise((resolve, reject) => {
      this.#queue.push({ job, resolve, reject });
      this.#dispatch();
    });
  }

  /**
   * Stops every worker and waits until they have exited (see worker-stop.ts: asked, not
   * terminated); jobs still queued or running are rejected with `reason` at once (a worker
   * stopped mid-bundle leaves a temp file, which the push's work folder clean-up removes).
   */
  async close(reason: Error = new CwsError("CANCELLED", "The push was stopped")): Promise<void> {
    if (this.#closed === undefined) this.#closed = reason;
    this.#rejectAll(this.#closed);
    await Promise.all(this.#slots.map((slot) => stopWorker(slot.worker)));
  }

  #dispatch(): void {
    for (const slot of this.#slots) {
      if (slot.job !== undefined) continue;
      const next = this.#queue.shift();
      if (next === undefined) return;
      slot.job = { id: next.job.id, resolve: next.resolve, reject: next.reject };
      slot.worker.postMessage(next.job);
    }
  }

  #onReply(slot: Slot, reply: BuildReply): void {
    const job = slot.job;
    if (job === undefined || job.id !== reply.id) return;
    slot.job = undefined;
    if ("built" in reply) job.resolve(reply.built);
    else job.reject(errorFromMessage(reply.error));
    this.#dispatch();
  }

  #fail(error: Error): void {
    if (this.#closed !== undefined) return;
    this.#closed = error;
    this.#rejectAll(error);
    for (const slot of this.#slots) void stopWorker(slot.worker);
  }

  #rejectAll(error: Error): void {
    for (const slot of this.#slots) {
      slot.job?.reject(error);
      slot.job = undefined;
    }
    for (const queued of this.#queue.splice(0)) queued.reject(error);
  }
}
