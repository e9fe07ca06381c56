/**
 * Bundle transfers over SFTP with many requests in flight (one request per round trip would
 * cap throughput at chunk size / RTT).
 *
 * Upload is resumable and never exposes half a file: bytes go to `<name>.part`, which is
 * renamed to `<name>` only when complete (and fsynced where the server supports it). When a
 * `.part` is already there, the upload continues near its end instead of starting again.
 *
 *   Resume point: the writer keeps every request inside a sliding window of
 *   RESUME_WINDOW_BYTES above the lowest unacknowledged offset. After a crash the `.part` may
 *   therefore hold holes only within one window below its size (servers may apply writes out
 *   of order), so resuming from `size − window` is safe on any server, whatever tuning the
 *   interrupted upload used.
 *
 *   NOTE: resuming trusts the name: a `.part` of the same name must be a prefix of the same
 *   content. Bundle names must identify their content (the agent verifies every chunk on
 *   ingest anyway, so a violation is caught as CORRUPT, not stored).
 *
 * Download writes `<localPath>.part` at the right offsets as replies arrive, fsyncs it and
 * renames it into place.
 */
import { open, rename, rm, type FileHandle } from "node:fs/promises";
import path from "node:path";
import type { SFTPWrapper, Stats } from "ssh2";
import { CwsError, isCwsError } from "../errors.ts";
import { syncDir } from "../fs-atomic.ts";
import type { TransferOptions } from "./connection.ts";

/** Options for {@link uploadResumable} and {@link downloadFile}. */
export interface SftpTransferOptions extends TransferOptions {
  /**
   * SFTP requests in flight at once.
   *
   * @default {DEFAULT_CONCURRENCY}
   */
  concurrency?: number;
  /**
   * Bytes per request. OpenSSH serves up to 255 KiB per read or write.
   *
   * @default {DEFAULT_CHUNK_BYTES}
   */
  chunkSize?: number;
  /**
   * Upload only: fsync the remote file before it is renamed into place. Off for what the
   * server copies somewhere durable itself after checking it (a bundle: the agent verifies
   * every record and writes the new chunks into fsynced packs, then removes the staged
   * file), where the fsync would only write the staged bytes to disk a second time.
   *
   * @default true
   */
  durable?: boolean;
}

/**
 * Defaults chosen by measurement over loopback (test/helpers/measure-sftp.ts): client CPU per
 * MiB falls from ~8 ms at 32 KiB requests to ~5 ms at 255 KiB (OpenSSH's largest), and 8 such
 * requests in flight fill the SSH channel window (2 MiB on both OpenSSH and ssh2), beyond
 * which more requests only wait in buffers.
 */
export const DEFAULT_CONCURRENCY = 8;
export const DEFAULT_CHUNK_BYTES = 255 * 1024;

/**
 * The most bytes an upload keeps in flight, and so how far back a resume starts from the end
 * of a `.part` (see the module comment). Equal to the SSH channel window, so it costs no speed.
 */
export const RESUME_WINDOW_BYTES = 2 * 1024 * 1024;

/** Local reads are done in blocks this large and cut into requests. */
const LOCAL_READ_BLOCK_BYTES = 1024 * 1024;

/** SFTP status codes (draft-ietf-secsh-filexfer-02) that callers may want to tell apart. */
const SFTP_NO_SUCH_FILE = 2;
const SFTP_PERMISSION_DENIED = 3;
const SFTP_FAILURE = 4;

export interface UploadResult {
  /** Size of the file. */
  bytes: number;
  /** The offset the upload started from (0 unless a `.part` was resumed). */
  resumedFrom: number;
}

/**
 * Copies `localPath` to `remotePath` through `<remotePath>.part`, resuming an existing part.
 *
 * @throws {CwsError} NOT_FOUND (local file or remote folder missing), CONNECTION_LOST, CANCELLED.
 */
export async function uploadResumable(
  sftp: SFTPWrapper,
  localPath: string,
  remotePath: string,
  options: SftpTransferOptions = {},
): Promise<UploadResult> {
  const { concurrency = DEFAULT_CONCURRENCY, signal, onProgress, durable = true } = options;
  const chunkSize = Math.min(options.chunkSize ?? DEFAULT_CHUNK_BYTES, serverLimit(sftp, "write"));
  checkTuning(concurrency, chunkSize);
  if (signal?.aborted) throw cancelled(remotePath);
  const local = await open(localPath, "r").catch((error: unknown) => {
    throw localError(error, localPath, "read");
  });
  try {
    const { size } = await local.stat();
    const partPath = `${remotePath}.part`;
    // The free space before the upload, in case a failed write leaves the SFTP channel unable to
    // answer afterwards (a pipeline that stops on the first failure may close it meanwhile).
    const freeBefore = remoteFreeBytes(sftp, parentOf(partPath));
    const existing = await sftpCall<Stats | undefined>(remotePath, (cb) =>
      sftp.stat(partPath, (error, stats) => cb(isNoSuchFile(error) ? undefined : error, isNoSuchFile(error) ? undefined : stats)),
    );
    const resumable = existing !== undefined && existing.isFile() && existing.size <= size;
    const resumedFrom = resumable ? Math.max(0, existing.size - RESUME_WINDOW_BYTES) : 0;
    // "r+" keeps the bytes already there; "w" starts a fresh part.
    const handle = await sftpCall<Buffer>(partPath, (cb) => sftp.open(partPath, resumable ? "r+" : "w", cb));
    try {
      try {
        await pipelinedWrite(sftp, handle, local, { start: resumedFrom, size, concurrency, chunkSize, signal, onProgress, remotePath: partPath });
        if (durable) await fsyncIfSupported(sftp, handle);
      } finally {
        await sftpCall<void>(partPath, (cb) => sftp.close(handle, cb)).catch(() => undefined);
      }
      await renameOver(sftp, partPath, remotePath);
    } catch (error) {
      throw await explainWriteFailure(sftp, error, partPath, size, freeBefore);
    }
    return { bytes: size, resumedFrom };
  } finally {
    await local.close();
  }
}

/**
 * Copies `remotePath` to `localPath` (through `<localPath>.part`, fsynced, renamed).
 *
 * @throws {CwsError} NOT_FOUND, CONNECTION_LOST, CORRUPT (the file changed size meanwhile), CANCELLED.
 */
export async function downloadFile(
  sftp: SFTPWrapper,
  remotePath: string,
  localPath: string,
  options: SftpTransferOptions = {},
): Promise<{ bytes: number }> {
  const { concurrency = DEFAULT_CONCURRENCY, signal, onProgress } = options;
  const chunkSize = Math.min(options.chunkSize ?? DEFAULT_CHUNK_BYTES, serverLimit(sftp, "read"));
  checkTuning(concurrency, chunkSize);
  if (signal?.aborted) throw cancelled(remotePath);
  const handle = await sftpCall<Buffer>(remotePath, (cb) => sftp.open(remotePath, "r", cb));
  const partPath = `${localPath}.part`;
  try {
    const { size } = await sftpCall<Stats>(remotePath, (cb) => sftp.fstat(handle, cb));
    const local = await open(partPath, "w").catch((error: unknown) => {
      throw localError(error, partPath, "write");
    });
    try {
      const sink = (buffer: Buffer, length: number, offset: number) => local.write(buffer, 0, length, offset).then(() => undefined);
      await pipelinedRead(sftp, handle, sink, { size, concurrency, chunkSize, signal, onProgress, remotePath });
      await local.sync();
    } finally {
      await local.close();
    }
    await rename(partPath, localPath);
    await syncDir(path.dirname(localPath));
    return { bytes: size };
  } catch (error) {
    await rm(partPath, { force: true });
    throw error;
  } finally {
    await sftpCall<void>(remotePath, (cb) => sftp.close(handle, cb)).catch(() => undefined);
  }
}

/**
 * Reads `remotePath` into memory, refusing a file larger than `maxBytes` before reading it:
 * for bundles the client parses at once and throws away (no temp file, no fsync).
 *
 * @throws {CwsError} NOT_FOUND, CONNECTION_LOST, FRAME_TOO_LARGE, CORRUPT (the file changed size meanwhile), CANCELLED.
 */
export async function downloadToMemory(
  sftp: SFTPWrapper,
  remotePath: string,
  options: SftpTransferOptions & { maxBytes: number; into?: Buffer },
): Promise<Buffer> {
  const { concurrency = DEFAULT_CONCURRENCY, signal, onProgress, maxBytes, into } = options;
  const chunkSize = Math.min(options.chunkSize ?? DEFAULT_CHUNK_BYTES, serverLimit(sftp, "read"));
  checkTuning(concurrency, chunkSize);
  if (signal?.aborted) throw cancelled(remotePath);
  const handle = await sftpCall<Buffer>(remotePath, (cb) => sftp.open(remotePath, "r", cb));
  try {
    const { size } = await sftpCall<Stats>(remotePath, (cb) => sftp.fstat(handle, cb));
    if (size > maxBytes) {
      throw new CwsError("FRAME_TOO_LARGE", `Cannot download "${remotePath}" as it has ${size} bytes, more than the ${maxBytes} expected`);
    }
    // The replies are read straight into their place in the result (no buffer per request).
    const data = into !== undefined && into.byteLength >= size ? into.subarray(0, size) : Buffer.allocUnsafe(size);
    await pipelinedRead(sftp, handle, data, { size, concurrency, chunkSize, signal, onProgress, remotePath });
    return data;
  } finally {
    await sftpCall<void>(remotePath, (cb) => sftp.close(handle, cb)).catch(() => undefined);
  }
}

interface PipeSettings {
  size: number;
  concurrency: number;
  chunkSize: number;
  signal: AbortSignal | undefined;
  onProgress: TransferOptions["onProgress"];
  remotePath: string;
}

/**
 * Writes `[start, size)` of the local file with at most `concurrency` writes in flight, all
 * within one window above the lowest unacknowledged offset (see the module comment).
 */
function pipelinedWrite(
  sftp: SFTPWrapper,
  handle: Buffer,
  local: FileHandle,
  settings: PipeSettings & { start: number },
): Promise<void> {
  const { start, size, concurrency, chunkSize, signal, onProgress, remotePath } = settings;
  const windowBytes = Math.max(chunkSize, Math.min(concurrency * chunkSize, RESUME_WINDOW_BYTES));
  const inflight: { offset: number; done: boolean }[] = [];
  let next = start;
  let done = start;
  let failure: CwsError | undefined;
  // Local reads run one block ahead of the writes, so the pipe never waits for the disk.
  let block: Buffer = Buffer.alloc(0);
  let blockOffset = start;
  let prefetch: Promise<Buffer> | undefined;
  // A whole number of requests per block, so no request straddles two blocks.
  const blockBytes = chunkSize * Math.max(1, Math.floor(LOCAL_READ_BLOCK_BYTES / chunkSize));
  // Two blocks are in use at a time (the one being sent and the one read ahead), and a block
  // whose requests are all sent is read into again: ssh2 copies each write into its request
  // packet at once. A fresh block per MiB sent outlived the young generation and piled up
  // until a full collection.
  const spare: Buffer[] = [];
  const readBlock = async (offset: number): Promise<Buffer> => {
    const want = Math.min(blockBytes, size - offset);
    const fresh = (spare.pop() ?? Buffer.allocUnsafeSlow(blockBytes)).subarray(0, want);
    const { bytesRead } = await local.read(fresh, 0, want, offset);
    if (bytesRead < want) {
      throw new CwsError("CORRUPT", `Cannot upload "${remotePath}" as the local file shrank while it was read`);
    }
    return fresh;
  };

  return new Promise((resolve, reject) => {
    let pumping = false;
    let again = false;
    let finished = false;
    const finishIfIdle = (): void => {
      if (finished || inflight.length > 0 || (failure === undefined && next < size)) return;
      finished = true;
      // A read-ahead still running must end before the caller closes the local file.
      void Promise.resolve(prefetch)
        .catch(() => undefined)
        .then(() => (failure !== undefined ? reject(failure) : resolve()));
    };
    const pump = async (): Promise<void> => {
      again = true;
      if (pumping) return;
      pumping = true;
      try {
        while (again) {
          again = false;
          while (
            failure === undefined &&
            next < size &&
            inflight.length < concurrency &&
            (inflight.length === 0 || next + Math.min(chunkSize, size - next) <= inflight[0].offset + windowBytes)
          ) {
            if (signal?.aborted) {
              failure = cancelled(remotePath);
              break;
            }
            const length = Math.min(chunkSize, size - next);
            if (next + length > blockOffset + block.length) {
              // The current block is used up exactly, so the next one starts at `next`.
              const sent = block;
              block = await (prefetch ?? readBlock(next));
              if (sent.buffer.byteLength === blockBytes) spare.push(Buffer.from(sent.buffer, 0, blockBytes));
              blockOffset = next;
              const following = next + block.length;
              prefetch = following < size ? readBlock(following) : undefined;
              // A failed read-ahead is reported when its block is needed, not before.
              prefetch?.catch(() => undefined);
            }
            const entry = { offset: next, done: false };
            inflight.push(entry);
            const piece = block.subarray(next - blockOffset, next - blockOffset + length);
            next += length;
            sftp.write(handle, piece, 0, length, entry.offset, (error?: Error | null) => {
              entry.done = true;
              while (inflight.length > 0 && inflight[0].done) inflight.shift();
              if (error) {
                failure ??= sftpError(error, remotePath);
              } else if (signal?.aborted) {
                // Writes already sent cannot be recalled; they finish, and the .part keeps them.
                failure ??= cancelled(remotePath);
              } else if (failure === undefined) {
                done += length;
                onProgress?.({ bytes: done, total: size });
              }
              finishIfIdle();
              if (failure === undefined) void pump();
            });
          }
        }
      } catch (error) {
        failure ??= localError(error, remotePath, "read");
      } finally {
        pumping = false;
      }
      finishIfIdle();
    };
    if (size === start) {
      onProgress?.({ bytes: size, total: size });
      resolve();
      return;
    }
    void pump();
  });
}

/** Where {@link pipelinedRead} puts each piece: `length` bytes of `buffer` belong at `offset`. */
type ReadSink = (buffer: Buffer, length: number, offset: number) => Promise<void>;

/**
 * Reads the remote file with at most `concurrency` reads in flight, handing each piece to
 * `sink`, or reading each piece straight into its place when `sink` is the whole file's buffer.
 */
function pipelinedRead(sftp: SFTPWrapper, handle: Buffer, sink: ReadSink | Buffer, settings: PipeSettings): Promise<void> {
  const { size, concurrency, chunkSize, signal, onProgress, remotePath } = settings;
  let next = 0;
  let done = 0;
  let inflight = 0;
  let failure: CwsError | undefined;
  // Request buffers are reused once their bytes are on disk, rather than allocated per reply.
  const spare: Buffer[] = [];
  const release = (buffer: Buffer): void => {
    if (!Buffer.isBuffer(sink)) spare.push(buffer);
  };

  return new Promise((resolve, reject) => {
    const finishIfIdle = (): void => {
      if (inflight > 0) return;
      if (failure !== undefined) reject(failure);
      else if (done >= size) resolve();
    };
    const readAt = (offset: number, length: number): void => {
      inflight++;
      const buffer = Buffer.isBuffer(sink) ? sink.subarray(offset, offset + length) : (spare.pop() ?? Buffer.allocUnsafe(chunkSize));
      sftp.read(handle, buffer, 0, length, offset, (error: Error | undefined, bytesRead: number) => {
        if (!error && signal?.aborted) failure ??= cancelled(remotePath);
        if (error || bytesRead === 0) {
          release(buffer);
          inflight--;
          failure ??= error
            ? sftpError(error, remotePath)
            : new CwsError("CORRUPT", `Cannot download "${remotePath}" as it shrank while it was read: try again`);
          finishIfIdle();
          return;
        }
        (Buffer.isBuffer(sink) ? Promise.resolve() : sink(buffer, bytesRead, offset)).then(
          () => {
            release(buffer);
            inflight--;
            done += bytesRead;
            if (failure === undefined) onProgress?.({ bytes: done, total: size });
            // A short read leaves a gap; ask for the rest of this piece.
            if (failure === undefined && bytesRead < length) readAt(offset + bytesRead, length - bytesRead);
            else fill();
            finishIfIdle();
          },
          (writeError: unknown) => {
            release(buffer);
            inflight--;
            failure ??= localError(writeError, remotePath, "write");
            finishIfIdle();
          },
        );
      });
    };
    const fill = (): void => {
      while (failure === undefined && next < size && inflight < concurrency) {
        if (signal?.aborted) {
          failure = cancelled(remotePath);
          break;
        }
        const length = Math.min(chunkSize, size - next);
        readAt(next, length);
        next += length;
      }
    };
    if (size === 0) {
      onProgress?.({ bytes: 0, total: 0 });
      resolve();
      return;
    }
    fill();
    finishIfIdle();
  });
}

async function fsyncIfSupported(sftp: SFTPWrapper, handle: Buffer): Promise<void> {
  await new Promise<void>((resolve) => {
    try {
      sftp.ext_openssh_fsync(handle, () => resolve());
    } catch {
      // The server lacks fsync@openssh.com; the agent verifies the bundle on ingest anyway.
      resolve();
    }
  });
}

/**
 * OpenSSH's SFTP server answers a write on a full disk with a bare "Failure": when a write
 * fails so, the free space of the remote folder (statvfs@openssh.com) tells whether the disk
 * is full. Then the part is removed, since resuming it cannot help and it holds the space.
 */
async function explainWriteFailure(sftp: SFTPWrapper, error: unknown, partPath: string, size: number, freeBefore: Promise<number | undefined>): Promise<unknown> {
  if (!isCwsError(error, "INTERNAL") || (error.cause as { code?: unknown } | undefined)?.code !== SFTP_FAILURE) return error;
  const free = (await remoteFreeBytes(sftp, parentOf(partPath))) ?? (await freeBefore);
  if (free === undefined || free >= size) return error;
  await sftpCall<void>(partPath, (cb) => sftp.unlink(partPath, cb)).catch(() => undefined);
  return new CwsError("DISK_FULL", `The server's disk is full: "${partPath}" could not be written (${free} bytes free, ${size} needed). Free space on the server (\`cws-server gc\` removes old snapshots and leftovers) and sync again.`, { cause: error });
}

/** The bytes free in a remote folder (statvfs@openssh.com), or undefined when the server cannot say. */
function remoteFreeBytes(sftp: SFTPWrapper, folder: string): Promise<number | undefined> {
  return new Promise<number | undefined>((resolve) => {
    try {
      sftp.ext_openssh_statvfs(folder, (statError, info: { f_bavail?: number; f_frsize?: number; f_bsize?: number } | undefined) => {
        const blocks = info?.f_bavail;
        resolve(statError || typeof blocks !== "number" ? undefined : blocks * (info?.f_frsize || info?.f_bsize || 0));
      });
    } catch {
      resolve(undefined); // The server has no statvfs extension.
    }
  });
}

function parentOf(remotePath: string): string {
  return remotePath.slice(0, Math.max(1, remotePath.lastIndexOf("/")));
}

/** Renames, replacing an existing target (posix-rename@openssh.com, else unlink + rename). */
async function renameOver(sftp: SFTPWrapper, from: string, to: string): Promise<void> {
  const posixRename = await new Promise<Error | null | undefined | "unsupported">((resolve) => {
    try {
      sftp.ext_openssh_rename(from, to, (error) => resolve(error));
    } catch {
      resolve("unsupported");
    }
  });
  if (posixRename !== "unsupported") {
    if (posixRename) throw sftpError(posixRename, to);
    return;
  }
  await sftpCall<void>(to, (cb) => sftp.unlink(to, (error) => cb(isNoSuchFile(error) ? undefined : error)));
  await sftpCall<void>(to, (cb) => sftp.rename(from, to, cb));
}

function sftpCall<T>(remotePath: string, start: (cb: (error: Error | null | undefined, value?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    try {
      start((error, value) => (error ? reject(sftpError(error, remotePath)) : resolve(value as T)));
    } catch (error) {
      reject(sftpError(error as Error, remotePath));
    }
  });
}

function isNoSuchFile(error: unknown): boolean {
  return error instanceof Error && (error as { code?: unknown }).code === SFTP_NO_SUCH_FILE;
}

/** Maps an ssh2 SFTP error to a CwsError naming the remote path. */
function sftpError(error: Error, remotePath: string): CwsError {
  if (isCwsError(error)) return error;
  const code = (error as { code?: unknown }).code;
  if (code === SFTP_NO_SUCH_FILE) {
    return new CwsError("NOT_FOUND", `Cannot find "${remotePath}" on the server: ${error.message}`, { cause: error });
  }
  if (code === SFTP_PERMISSION_DENIED) {
    return new CwsError(
      "INTERNAL",
      `Cannot access "${remotePath}" on the server as permission was denied: check that the SSH user owns the cws data dir`,
      { cause: error },
    );
  }
  // The restricted SFTP server says so in words (OpenSSH's says only "Failure", status 4).
  if (typeof code === "number" && /disk is full|no space left|quota/i.test(error.message)) {
    return new CwsError("DISK_FULL", `The server's disk is full: "${remotePath}" could not be written. Free space on the server (\`cws-server gc\` removes old snapshots and leftovers) and sync again.`, { cause: error });
  }
  if (typeof code === "number") {
    const hint = code === SFTP_FAILURE ? "; if the server's disk is full, free space there and run the command again" : "";
    return new CwsError("INTERNAL", `Cannot transfer "${remotePath}": the server said "${error.message}" (SFTP status ${code})${hint}`, {
      cause: error,
    });
  }
  return new CwsError(
    "CONNECTION_LOST",
    `Cannot transfer "${remotePath}" as the connection failed (${error.message}): run the command again to resume`,
    { cause: error },
  );
}

function localError(error: unknown, file: string, action: "read" | "write"): CwsError {
  if (isCwsError(error)) return error;
  const code = (error as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return new CwsError("NOT_FOUND", `Cannot ${action} "${file}" as it does not exist`, { cause: error });
  return new CwsError("INTERNAL", `Cannot ${action} "${file}": ${(error as Error).message}`, { cause: error });
}

function cancelled(remotePath: string): CwsError {
  return new CwsError("CANCELLED", `Cancelled the transfer of "${remotePath}"`);
}

/**
 * The largest read or write the server serves in one request (its limits@openssh.com
 * answer). ssh2 splits a larger request into a serial chain, which would undo the
 * pipelining, so requests are never made larger than this.
 *
 * HACK: ssh2 keeps the limits in private fields; without them (another ssh2 version) the
 * SFTP default of 32 KiB minus framing, which every server accepts, is used.
 */
function serverLimit(sftp: SFTPWrapper, kind: "read" | "write"): number {
  const limits = sftp as unknown as { _maxReadLen?: unknown; _maxWriteLen?: unknown };
  const value = kind === "read" ? limits._maxReadLen : limits._maxWriteLen;
  return typeof value === "number" && Number.isInteger(value) && value >= 1024 ? value : 32 * 1024 - 1024;
}

function checkTuning(concurrency: number, chunkSize: number): void {
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 1024) {
    throw new RangeError(`concurrency must be an integer from 1 to 1024, got ${concurrency}`);
  }
  if (!Number.isInteger(chunkSize) || chunkSize < 1024 || chunkSize > 1024 * 1024) {
    throw new RangeError(`chunkSize must be an integer from 1024 to 1048576, got ${chunkSize}`);
  }
}
