/**
 * The file writes of a pull, in batches, on a worker thread (pull-write-worker.mjs, then
 * pull-write-thread.ts) or, for a small pull, on the calling thread. A pull of many files
 * spends much of its time in the system calls that create and fill them (open with O_CREAT
 * blocks for milliseconds when the file system's journal is busy); on a worker those calls
 * overlap the main thread's share of the pull (reading the SSH connection and the next
 * bundles) instead of stalling it.
 *
 * What is written is only ever a temp file beside its target: the caller renames the files
 * into place after a durability barrier (see PullWriter in pull.ts). A batch is a list of
 * operations on such temp files (open, write, finish) with the bytes of its writes copied into
 * one buffer that is handed over to the worker, not copied again. The worker applies the
 * operations in order and answers each batch with the stat of the files it finished.
 *
 * The checks move with the bytes: a chunk downloaded from the server travels as its record's
 * stored bytes (zstd-compressed for large chunks) with its hash, and the writer decodes it and
 * checks it against its hash before writing it; it hashes each file as it writes it and
 * checks the whole file's hash before closing it. So the costliest per-byte work of a pull
 * (zstd and xxh64) runs beside the main thread, and a chunk that fails its check is never
 * written, as before: the failure ends the pull and its temp files are removed.
 */
import { closeSync, fchmodSync, fstatSync, futimesSync, mkdirSync, openSync, renameSync, writeSync } from "node:fs";
import { Worker } from "node:worker_threads";
import { CwsError } from "../errors.ts";
import { createXxh64, type Xxh64 } from "../core/hash.ts";
import { chunkId } from "../core/chunk-id.ts";
import { RecordDecoder } from "../protocol/bundle.ts";
import { faultPoint } from "../fault.ts";
import { errorFromMessage, type ErrorMessage } from "./push-pool.ts";
import { stopWorker } from "./worker-stop.ts";

/**
 * The operations of a batch on temp files, by each file's number in the pull, packed: numbers
 * in `nums`, strings joined by NUL (which no path holds) in `strs`. A batch holds hundreds of
 * them, and the structured clone of as many small objects (per batch, both ways) cost more
 * than the writes of small files on a busy main thread; two flat values copy at once.
 *
 * - open `OP_OPEN, file, mode, single` + string `temp`: creates the temp file with the
 *   target's mode (see finish). `single` (or -1): the file is one chunk of that many bytes
 *   whose hash is the file's hash; the chunk is checked (here, as a record, or by the
 *   caller), so hashing the file again would only repeat it.
 * - write `OP_WRITE, file, at, length, flags, rawLength, fault` (+ string `hash` when flags
 *   is not -1): `length` bytes at `at` of the batch's buffer go at the end of the file:
 *   verified bytes, or (flags, rawLength, hash) a downloaded record's stored bytes, decoded
 *   and checked first. `fault` 1: the crash-test point follows.
 * - finish `OP_FINISH, file, mode, mtimeMs` + strings `path`, `hash`: checks the file's whole
 *   hash, gives it its mtime (and its mode if the umask took some of it), reads its stat and
 *   closes it.
 * - mkdir `OP_MKDIR, -1` + string `path`: creates a folder (and any missing parent; an existing
 *   folder is fine), before the files the batches put in it.
 * - rename `OP_RENAME, file, fault` + strings `temp`, `target`: moves a finished temp file into
 *   place. The caller sends it only once the file's content is durable (see PullWriter in
 *   pull.ts). `fault` 1: the crash-test point follows.
 */
export interface WriteBatch {
  id: number;
  nums: Float64Array<ArrayBuffer>;
  strs: string;
  bytes: Uint8Array<ArrayBuffer>;
}

const OP_OPEN = 0;
const OP_WRITE = 1;
const OP_FINISH = 2;
const OP_MKDIR = 3;
const OP_RENAME = 4;

/** The most numbers one operation takes (a write). */
const MAX_OP_NUMBERS = 7;

/** What a downloaded record's stored bytes must decode and hash to. */
export interface RecordCheck {
  id: string;
  hash: string;
  rawLength: number;
  flags: number;
}

/** The stat of a finished temp file: what the stat cache needs (its ctime changes with the rename). */
export interface FinishedFile {
  file: number;
  size: number;
  mtimeMs: number;
  ino: number;
}

/**
 * A batch's answer: the finished files packed as `file, size, mtimeMs, ino` each; the batch's
 * buffer comes back with it, to be filled again.
 */
export type BatchReply = { id: number; finished: Float64Array<ArrayBuffer>; buffer: ArrayBuffer } | { id: number; error: ErrorMessage };

/** Numbers per finished file in a reply. */
const FINISHED_NUMBERS = 4;

/** The finished files of a reply, one by one. */
function* finishedFiles(packed: Float64Array): Generator<FinishedFile> {
  for (let i = 0; i < packed.length; i += FINISHED_NUMBERS) yield { file: packed[i]!, size: packed[i + 1]!, mtimeMs: packed[i + 2]!, ino: packed[i + 3]! };
}

/**
 * A temp file being written: its descriptor and the hash of what it holds so far, or for a
 * one-chunk file (no hash) the bytes it must hold and the bytes written.
 */
export interface OpenFile {
  fd: number;
  hash: Xxh64 | undefined;
  single: number;
  written: number;
}

/**
 * This thread's decoder of downloaded records: one zstd context and one output buffer for the
 * whole pull instead of a new pair per chunk, which would pile up until a full collection
 * (see zstd-context.ts). Each chunk is hashed and written before the next one is decoded.
 */
const records = new RecordDecoder();

/**
 * Applies a batch. Open files stay in `open` between batches (a large file spans several);
 * on an error the caller discards every temp file. Needs `initHash()` to have completed.
 *
 * @throws CwsError CORRUPT when a record or a file does not match its hash; the errors of
 *   the system calls otherwise.
 */
export function applyWriteBatch(batch: WriteBatch, open: Map<number, OpenFile>): Float64Array<ArrayBuffer> {
  const { nums } = batch;
  const strs = batch.strs.split("\0");
  const finished: number[] = [];
  let s = 0;
  for (let n = 0; n < nums.length;) {
    const op = nums[n]!;
    const fileNumber = nums[n + 1]!;
    if (op === OP_OPEN) {
      const mode = nums[n + 2]!;
      const single = nums[n + 3]!;
      n += 4;
      // Created with the target's permissions (the umask may take some: finish checks), so
      // most files need no chmod; the content is the target's too, so nothing is exposed early.
      const fd = openSync(strs[s++]!, "wx", mode & 0o777);
      open.set(fileNumber, { fd, hash: single < 0 ? createXxh64() : undefined, single, written: 0 });
    } else if (op === OP_WRITE) {
      const at = nums[n + 2]!;
      const stored = batch.bytes.subarray(at, at + nums[n + 3]!);
      const flags = nums[n + 4]!;
      const rawLength = nums[n + 5]!;
      const fault = nums[n + 6] === 1;
      n += MAX_OP_NUMBERS;
      const file = open.get(fileNumber)!;
      let data: Uint8Array = stored;
      if (flags >= 0) {
        const hash = strs[s++]!;
        const id = chunkId([hash, rawLength]);
        data = records.verify({ id, hash, rawLength, flags, stored });
      }
      file.hash?.update(data);
      let written = 0;
      while (written < data.byteLength) written += writeSync(file.fd, data, written, data.byteLength - written);
      file.written += written;
      // Crash tests: a file half-written under its temp name (or the second file begun).
      if (fault) faultPoint("client-pull-mid-write");
    } else if (op === OP_FINISH) {
      const mode = nums[n + 2]!;
      const mtimeMs = nums[n + 3]!;
      n += 4;
      const path = strs[s++]!;
      const expected = strs[s++]!;
      const { fd, hash, single, written } = open.get(fileNumber)!;
      open.delete(fileNumber);
      try {
        if (hash === undefined ? written !== single : hash.digestHex() !== expected) {
          throw new CwsError("CORRUPT", `${path} did not assemble to its content hash; nothing was replaced. Run \`cws-server verify\` on the server.`);
        }
        const mtime = new Date(mtimeMs);
        futimesSync(fd, mtime, mtime);
        const stat = fstatSync(fd);
        // A chmod changes only the ctime, which the stat cache does not take from here.
        if (process.platform !== "win32" && (stat.mode & 0o777) !== (mode & 0o777)) fchmodSync(fd, mode & 0o777);
        finished.push(fileNumber, stat.size, stat.mtimeMs, stat.ino);
      } finally {
        closeSync(fd);
      }
    } else if (op === OP_MKDIR) {
      n += 2;
      mkdirSync(strs[s++]!, { recursive: true });
    } else if (op === OP_RENAME) {
      const fault = nums[n + 2] === 1;
      n += 3;
      const temp = strs[s++]!;
      renameSync(temp, strs[s++]!);
      // Crash tests: files placed early, the pull not finished.
      if (fault) faultPoint("client-pull-after-early-rename");
    } else {
      throw new TypeError(`Unknown write operation ${op}`);
    }
  }
  return new Float64Array(finished);
}

/** Closes the files a failed or abandoned sequence of batches left open. */
export function closeAll(open: Map<number, OpenFile>): void {
  for (const { fd } of open.values()) {
    try {
      closeSync(fd);
    } catch {
      // Already closed or gone: nothing more to release.
    }
  }
  open.clear();
}

/** Bytes of file content per batch: large enough that a batch costs little, small enough to start writing early. */
const BATCH_BYTES = 1024 * 1024;

/** Room above BATCH_BYTES in a batch buffer: the chunk that fills a batch ends in it. */
const BATCH_SLACK_BYTES = 256 * 1024;

/** Operations per batch, so a run of tiny files is handed over in good time too. */
const BATCH_OPS = 768;

/** Batches handed over and not yet answered, before `write` waits: the memory this path holds. */
const BATCHES_IN_FLIGHT = 4;

/** A worker's young generation, in MiB: everything it allocates dies within one batch. */
const WORKER_YOUNG_GENERATION_MB = 2;

const WORKER_MAIN = new URL("./pull-write-worker.mjs", import.meta.url);

/**
 * Collects write operations into batches and has them applied in order, on a worker thread
 * (`threaded`) or at once on this one. At most BATCHES_IN_FLIGHT batches wait for the worker,
 * and a call that fills a batch waits until it can hand it over. The bytes written are copied
 * into the batch's buffer at once (the caller's buffers are views into downloaded bundles,
 * reused for the next ones); the buffers come back from the worker and are filled again. The
 * first failure is kept and thrown by every later call, so the caller learns of it at its
 * next step.
 */
export class BatchWriter {
  #worker: Worker | undefined;
  #open = new Map<number, OpenFile>();
  /** The operations of the batch being collected (see WriteBatch), how many numbers and operations. */
  #nums = new Float64Array(BATCH_OPS * MAX_OP_NUMBERS);
  #n = 0;
  #ops = 0;
  #strs: string[] = [];
  /** The bytes of the batch being collected (copied in as they are written), and how many. */
  #current: Uint8Array<ArrayBuffer> | undefined;
  #bytes = 0;
  #nextId = 0;
  #waiting = new Map<number, { resolve: () => void; reject: (error: Error) => void }>();
  #failure: Error | undefined;
  #idle: Array<() => void> = [];
  /** Batch buffers back from the worker: a pull reuses a handful instead of allocating one per batch. */
  #spare: ArrayBuffer[] = [];
  readonly #onFinished: (file: FinishedFile) => void;

  constructor(threaded: boolean, onFinished: (file: FinishedFile) => void) {
    this.#onFinished = onFinished;
    if (!threaded) return;
    const worker = new Worker(WORKER_MAIN, { resourceLimits: { maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MB } });
    worker.on("message", (reply: BatchReply) => this.#onReply(reply));
    worker.on("error", (error) => this.#fail(new Error(`the pull's writer thread failed: ${error.message}`, { cause: error })));
    worker.on("exit", (code) => {
      if (this.#worker !== undefined) this.#fail(new Error(`the pull's writer thread stopped unexpectedly (exit code ${code})`));
    });
    this.#worker = worker;
  }

  /**
   * Starts a temp file with mode `mode`. `single`: the file is one chunk of that many bytes
   * whose hash is the file's hash, and every write to it is checked (see WriteOp).
   */
  open(file: number, temp: string, mode = 0o600, single?: number): void {
    this.#op(OP_OPEN, file, mode, single ?? -1);
    this.#strs.push(temp);
  }

  /**
   * Appends `data` to the file: verified bytes, or a downloaded record's stored bytes to be
   * decoded and checked against `record`. The bytes are copied at once, so `data` may be reused on return.
   */
  async write(file: number, data: Uint8Array, fault: boolean, record?: RecordCheck): Promise<void> {
    if (this.#current !== undefined && this.#bytes + data.byteLength > this.#current.byteLength) await this.flush();
    this.#current ??= this.#buffer(data.byteLength);
    this.#current.set(data, this.#bytes);
    const nums = this.#room();
    const n = this.#n;
    nums[n] = OP_WRITE;
    nums[n + 1] = file;
    nums[n + 2] = this.#bytes;
    nums[n + 3] = data.byteLength;
    nums[n + 4] = record === undefined ? -1 : record.flags;
    nums[n + 5] = record === undefined ? 0 : record.rawLength;
    nums[n + 6] = fault ? 1 : 0;
    this.#n += MAX_OP_NUMBERS;
    this.#ops++;
    if (record !== undefined) this.#strs.push(record.hash);
    this.#bytes += data.byteLength;
    if (this.#bytes >= BATCH_BYTES || this.#ops >= BATCH_OPS) await this.flush();
  }

  /** Ends the file: its whole content must hash to `hash` (`path` names it in the error). */
  async finish(file: number, expected: { path: string; hash: string; mode: number; mtimeMs: number }): Promise<void> {
    this.#op(OP_FINISH, file, expected.mode, expected.mtimeMs);
    this.#strs.push(expected.path, expected.hash);
    if (this.#ops >= BATCH_OPS) await this.flush();
  }

  /**
   * Creates a folder (and its missing parents) before anything later in the batches is
   * written. Not awaited: a batch of nothing but folders is handed over at once when there is
   * room, so the writer makes a pull's folders while the first bundles are on their way.
   */
  mkdir(path: string): void {
    this.#op2(OP_MKDIR, -1);
    this.#strs.push(path);
    if (this.#ops >= BATCH_OPS && this.#bytes === 0) this.offer();
  }

  /**
   * Renames a finished file into place, after everything given before. Only for a file whose
   * content is durable already (the caller's barrier). `fault`: the crash-test point follows.
   */
  rename(file: number, temp: string, target: string, fault = false): void {
    const nums = this.#room();
    const n = this.#n;
    nums[n] = OP_RENAME;
    nums[n + 1] = file;
    nums[n + 2] = fault ? 1 : 0;
    this.#n += 3;
    this.#ops++;
    this.#strs.push(temp, target);
  }

  /** Hands the current batch over if there is room among the batches in flight, without waiting. */
  offer(): void {
    if (this.#ops > 0 && this.#waiting.size < BATCHES_IN_FLIGHT && this.#failure === undefined) this.#handOver();
  }

  /** Hands the current batch over, after waiting for room among the batches in flight. */
  async flush(): Promise<void> {
    this.#throwIfFailed();
    if (this.#ops === 0) return;
    while (this.#waiting.size >= BATCHES_IN_FLIGHT) {
      await new Promise<void>((resolve) => this.#idle.push(resolve));
      this.#throwIfFailed();
    }
    this.#handOver();
  }

  /** Hands the current batch over now: to the worker, or applied here without one. */
  #handOver(): void {
    // The batch's buffer is moved to the worker, not copied (transferred).
    const bytes = this.#current ?? new Uint8Array(0);
    const batch: WriteBatch = { id: this.#nextId++, nums: this.#nums.slice(0, this.#n), strs: this.#strs.join("\0"), bytes };
    this.#n = 0;
    this.#ops = 0;
    this.#strs = [];
    this.#current = undefined;
    this.#bytes = 0;
    if (this.#worker === undefined) {
      let finished: Float64Array;
      try {
        finished = applyWriteBatch(batch, this.#open);
      } catch (error) {
        this.#fail(error as Error);
        throw error;
      }
      for (const file of finishedFiles(finished)) this.#onFinished(file);
      this.#reuse(bytes.buffer);
      return;
    }
    const done = new Promise<void>((resolve, reject) => this.#waiting.set(batch.id, { resolve, reject }));
    done.catch(() => {}); // the failure is also kept in #failure and thrown by the next call
    this.#worker.postMessage(batch, [bytes.buffer, batch.nums.buffer]);
  }

  /** Hands over what is left and waits until every batch is applied. */
  async drain(): Promise<void> {
    await this.flush();
    while (this.#waiting.size > 0) {
      await new Promise<void>((resolve) => this.#idle.push(resolve));
      this.#throwIfFailed();
    }
    this.#throwIfFailed();
  }

  /**
   * Stops the worker after the batch it is applying (asked, not terminated: see
   * worker-stop.ts; it closes the files it holds) and closes what is open here; the temp
   * files stay for the caller.
   */
  async close(): Promise<void> {
    const worker = this.#worker;
    this.#worker = undefined;
    if (worker !== undefined) await stopWorker(worker);
    closeAll(this.#open);
    this.#fail(new Error("the pull's writer was closed"));
  }

  /** Adds an operation of two numbers (mkdir). */
  #op2(op: number, file: number): void {
    const nums = this.#room();
    nums[this.#n] = op;
    nums[this.#n + 1] = file;
    this.#n += 2;
    this.#ops++;
  }

  /** Adds an operation of four numbers (open, finish). */
  #op(op: number, file: number, a: number, b: number): void {
    const nums = this.#room();
    const n = this.#n;
    nums[n] = op;
    nums[n + 1] = file;
    nums[n + 2] = a;
    nums[n + 3] = b;
    this.#n += 4;
    this.#ops++;
  }

  /** The numbers' array, grown if one more operation would not fit (opens are not flushed after: they may add up). */
  #room(): Float64Array {
    if (this.#n + MAX_OP_NUMBERS > this.#nums.length) {
      const grown = new Float64Array(this.#nums.length * 2);
      grown.set(this.#nums);
      this.#nums = grown;
    }
    return this.#nums;
  }

  #onReply(reply: BatchReply): void {
    const waiter = this.#waiting.get(reply.id);
    this.#waiting.delete(reply.id);
    if ("error" in reply) this.#fail(errorFromMessage(reply.error));
    else {
      for (const file of finishedFiles(reply.finished)) this.#onFinished(file);
      this.#reuse(reply.buffer);
      waiter?.resolve();
    }
    this.#wake();
  }

  /** A batch buffer of at least `length` bytes: a spare one, or a new one. */
  #buffer(length: number): Uint8Array<ArrayBuffer> {
    const index = this.#spare.findIndex((buffer) => buffer.byteLength >= length);
    if (index >= 0) return new Uint8Array(this.#spare.splice(index, 1)[0]!);
    return new Uint8Array(new ArrayBuffer(Math.max(length, BATCH_BYTES + BATCH_SLACK_BYTES)));
  }

  /** Keeps a buffer that came back for the next batch: those of the usual size, a few of them. */
  #reuse(buffer: ArrayBuffer): void {
    if (buffer.byteLength === BATCH_BYTES + BATCH_SLACK_BYTES && this.#spare.length <= BATCHES_IN_FLIGHT) this.#spare.push(buffer);
  }

  #fail(error: Error): void {
    this.#failure ??= error;
    for (const waiter of this.#waiting.values()) waiter.reject(this.#failure);
    this.#waiting.clear();
    this.#wake();
  }

  #wake(): void {
    for (const resolve of this.#idle.splice(0)) resolve();
  }

  #throwIfFailed(): void {
    if (this.#failure !== undefined) throw this.#failure;
  }
}
