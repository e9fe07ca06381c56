/**
 * Crash-safe file replacement: write a temp file beside the target, fsync it, rename it over
 * the target, then fsync the folder so the rename itself survives a power cut.
 */
import { execFile, spawn, type ChildProcessByStdio } from "node:child_process";
import type { Readable, Writable } from "node:stream";
import { open, rename, rm, type FileHandle } from "node:fs/promises";
import { dirname, basename, join } from "node:path";
import { randomBytes } from "node:crypto";

/**
 * What a file is written from: text or bytes whole, or as pieces, each encoded and written before
 * the next is asked for, so that a large file (a whole tree's stat cache or base manifest) never
 * exists whole in memory, as one string or one buffer, while it is written.
 */
export type FileData = string | Uint8Array | Iterable<string | Uint8Array>;

/**
 * Replaces the file at `path` with `data` crash-safely (temp, fsync, rename, fsync the folder).
 *
 * @returns the number of bytes written
 */
export async function writeFileAtomic(path: string, data: FileData, options: { mode?: number } = {}): Promise<number> {
  const temp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString("hex")}.cws-tmp`);
  const bytes = await writeDurableTemp(temp, data, options.mode ?? 0o644);
  try {
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  await syncDir(dirname(path));
  return bytes;
}

/**
 * Creates `temp` exclusively (never through a file or symlink already there), writes `data`
 * and fsyncs it; on failure the temp file is removed. The caller renames it into place.
 *
 * @returns the number of bytes written
 */
export async function writeDurableTemp(temp: string, data: FileData, mode = 0o600): Promise<number> {
  const handle = await open(temp, "wx", mode);
  let bytes: number;
  try {
    if (typeof data === "string" || data instanceof Uint8Array) {
      await handle.writeFile(data);
      bytes = typeof data === "string" ? Buffer.byteLength(data) : data.length;
    } else {
      bytes = await writePieces(handle, data);
    }
    await handle.sync();
  } catch (error) {
    await handle.close().catch(() => {});
    await rm(temp, { force: true });
    throw error;
  }
  await handle.close();
  return bytes;
}

/** How many bytes of pieces are gathered before they are written: few writes, a small buffer. */
const PIECES_BUFFER_BYTES = 256 * 1024;

/**
 * Writes `pieces` in order through one buffer of PIECES_BUFFER_BYTES (text is encoded straight
 * into it; a piece larger than the buffer is written on its own).
 */
async function writePieces(handle: FileHandle, pieces: Iterable<string | Uint8Array>): Promise<number> {
  const buffer = Buffer.allocUnsafe(PIECES_BUFFER_BYTES);
  let used = 0;
  let total = 0;
  for (const piece of pieces) {
    const length = typeof piece === "string" ? Buffer.byteLength(piece) : piece.length;
    if (used + length > buffer.length && used > 0) {
      await writeAll(handle, buffer.subarray(0, used));
      used = 0;
    }
    if (length > buffer.length) await writeAll(handle, typeof piece === "string" ? Buffer.from(piece, "utf8") : piece);
    else if (typeof piece === "string") used += buffer.write(piece, used, "utf8");
    else used += Buffer.from(piece.buffer, piece.byteOffset, piece.length).copy(buffer, used);
    total += length;
  }
  if (used > 0) await writeAll(handle, buffer.subarray(0, used));
  return total;
}

/** Writes all of `data` at the handle's position (a write may take less than it is given). */
export async function writeAll(handle: FileHandle, data: Uint8Array): Promise<void> {
  let written = 0;
  while (written < data.length) written += (await handle.write(data, written, data.length - written)).bytesWritten;
}

/** fsyncs a folder so that renames and creations inside it are durable (no-op where unsupported). */
export async function syncDir(path: string): Promise<void> {
  let handle;
  try {
    handle = await open(path, "r");
    await handle.sync();
  } catch {
    // Windows cannot open or fsync folders; NTFS journals the rename itself.
  } finally {
    await handle?.close();
  }
}

/**
 * Makes everything written on the file system that holds `path` durable: file contents, new
 * names and renames alike (`sync -f`, syncfs(2), on Linux). One barrier costs about what a
 * handful of fsyncs cost, so a batch of many small files is made durable with two of them
 * (contents, then names) instead of two fsyncs per file. Resolves to false where it is not
 * available (the caller then fsyncs file by file); never blocks the event loop.
 */
export function syncFileSystem(path: string): Promise<boolean> {
  if (process.platform !== "linux") return Promise.resolve(false);
  return new Promise((resolve) => {
    execFile("sync", ["-f", path], { timeout: SYNC_TIMEOUT_MS }, (error) => resolve(error === null));
  });
}

/** How long one `sync -f` may take before it counts as failed (a hung file system, e.g. a lost NFS server). */
const SYNC_TIMEOUT_MS = 120_000;

/** The helper's loop: one `sync -f` of its first argument per line read, answered 0 (done) or 1 (failed). */
const SYNC_LOOP = 'while read -r _; do if sync -f -- "$1"; then echo 0; else echo 1; fi; done';

/**
 * `syncFileSystem` of one path, asked for many times, from one small helper process (a shell
 * loop that runs `sync -f` each time it is asked) instead of a new child each time. Starting a
 * child copies the parent's page tables (fork): from a pull's client, with its heap, a worker
 * thread and its buffers, that cost 30-100 ms of the main thread per barrier, and a pull asks
 * for one every few thousand files. The helper is small, so its own children start cheaply.
 * Requests are answered in order; when the helper cannot start or dies, each request not yet
 * answered falls back to `syncFileSystem`. One not answered within SYNC_TIMEOUT_MS (the limit
 * `syncFileSystem` has too) counts as failed, and the helper stuck behind it is killed.
 * `close` ends it (a pending request is still answered); a killed parent closes its pipe,
 * which ends the loop too.
 */
export class FileSystemSyncer {
  readonly #path: string;
  #child: ChildProcessByStdio<Writable, Readable, null> | undefined;
  #waiting: Array<{ resolve: (ok: boolean) => void; timer: NodeJS.Timeout }> = [];
  #output = "";
  /** Set when a request timed out: the helper's later output is ignored. */
  #broken = false;

  constructor(path: string) {
    this.#path = path;
    if (process.platform !== "linux") return;
    try {
      const child = spawn("sh", ["-c", SYNC_LOOP, "cws-sync", path], { stdio: ["pipe", "pipe", "ignore"] });
      child.stdout.setEncoding("utf8");
      child.stdout.on("data", (text: string) => this.#answer(text));
      child.on("error", () => this.#lost());
      // After its output has been read to the end (`exit` may come before the last answer).
      child.on("close", () => this.#lost());
      // A closed pipe is reported by `close` too; the write error itself needs no handling.
      child.stdin.on("error", () => {});
      this.#child = child;
    } catch {
      this.#child = undefined;
    }
  }

  /** Makes everything written on the path's file system durable; false where that failed or is not available. */
  sync(): Promise<boolean> {
    const child = this.#child;
    if (child === undefined) return syncFileSystem(this.#path);
    return new Promise((resolve) => {
      // Unanswered in time: it failed, and the helper, stuck behind it, goes (later requests
      // then fall back to their own sync, which has the same limit).
      const timer = setTimeout(() => {
        // Whatever it still says could answer another request: nothing it says counts now.
        this.#broken = true;
        this.#child = undefined;
        child.kill("SIGKILL");
        for (const waiter of this.#waiting.splice(0)) {
          clearTimeout(waiter.timer);
          if (waiter.resolve === resolve) resolve(false);
          else void syncFileSystem(this.#path).then(waiter.resolve);
        }
      }, SYNC_TIMEOUT_MS);
      this.#waiting.push({ resolve, timer });
      child.stdin.write("\n");
    });
  }

  /** Ends the helper once it has answered what it was asked. */
  close(): void {
    const child = this.#child;
    this.#child = undefined;
    child?.stdin.end();
  }

  #answer(text: string): void {
    if (this.#broken) return;
    this.#output += text;
    let end: number;
    while ((end = this.#output.indexOf("\n")) >= 0) {
      const line = this.#output.slice(0, end);
      this.#output = this.#output.slice(end + 1);
      const waiter = this.#waiting.shift();
      if (waiter === undefined) continue;
      clearTimeout(waiter.timer);
      waiter.resolve(line === "0");
    }
  }

  /** The helper is gone: what it was asked and did not answer is done the slow way. */
  #lost(): void {
    this.#child = undefined;
    for (const { resolve, timer } of this.#waiting.splice(0)) {
      clearTimeout(timer);
      void syncFileSystem(this.#path).then(resolve);
    }
  }
}
