/**
 * zstd into the caller's buffer, with one zstd context kept for many frames.
 *
 * `zlib.zstdDecompressSync` and `zstdCompressSync` make a stream object, a native zstd context
 * and an output buffer for every call. The stream keeps its output buffer, and the stream is
 * reachable from its native handle until V8 processes that handle's weak reference, which only
 * a full collection does: so the output of every call outlives the young-generation
 * collections and piles up (as memory outside V8's heap, which forces a full collection only
 * after about 64 MiB of it). Measured on Node 24, 3,000 decodes of 150–220 KiB frames: 126 MiB
 * peak RSS with `zstdDecompressSync` (58 MiB with a full collection every 16 calls), 58 MiB
 * with one kept context writing into one buffer, which also took 20% less time (no context set
 * up per call). A pull decodes every large chunk (the writer thread) and every streamed frame
 * of small files (the main thread); a push compresses every large chunk and every run of small
 * ones (the push workers).
 *
 * HACK: Node has no public call that (de)compresses into a given buffer. This drives the
 * native handle of a zstd stream as Node's own sync calls do (`_handle.writeSync` with the
 * stream's `_writeState` and `_finishFlushFlag`, lib/zlib.js `processChunkSync`), so a frame
 * comes out byte for byte as `zstdCompressSync` makes it; where those private fields are
 * missing (another Node version) it falls back to the sync calls and a copy.
 */
import zlib from "node:zlib";

/** The private parts of Node's zlib stream that the kept context is driven through. */
interface ZstdStreamInternals {
  _handle?: {
    writeSync(flush: number, input: Uint8Array, inOffset: number, inLength: number, output: Uint8Array, outOffset: number, outLength: number): void;
  } | null;
  _writeState?: Uint32Array;
  _finishFlushFlag?: number;
  destroyed: boolean;
}

/** Why a frame could not be decoded; callers turn it into their own CORRUPT error. */
export class ZstdFrameError extends Error {}

/**
 * One zstd stream kept for frame after frame, driven through its native handle. A frame that
 * did not end cleanly leaves the context mid-frame: it is then replaced, not reset, because
 * Node's reset() of a zstd stream also resets its parameters (a compressor's level), after
 * which frames would no longer be the ones the sync calls make.
 */
abstract class KeptZstd<T extends zlib.ZstdCompress | zlib.ZstdDecompress> {
  #stream: (T & ZstdStreamInternals) | undefined;
  #dirty = false;

  protected abstract open(): T;

  /**
   * Runs one whole frame's worth of `input` into `into`: how much room and input are left,
   * or undefined where Node lacks the private fields (the caller falls back to a sync call).
   * Until `clean` is called the context counts as mid-frame.
   *
   * @throws ZstdFrameError when zstd reports an error (the stream is then replaced).
   */
  protected run(input: Uint8Array, into: Uint8Array): { outLeft: number; inLeft: number } | undefined {
    if (this.#dirty) this.close();
    if (this.#stream === undefined) {
      const stream = this.open() as T & ZstdStreamInternals;
      // An error makes the stream emit "error" (on the next tick): the calls here throw instead.
      stream.on("error", () => {});
      this.#stream = stream;
    }
    const stream = this.#stream;
    const handle = stream._handle;
    const state = stream._writeState;
    if (handle === undefined || handle === null || !(state instanceof Uint32Array) || typeof stream._finishFlushFlag !== "number") return undefined;
    this.#dirty = true;
    handle.writeSync(stream._finishFlushFlag, input, 0, input.byteLength, into, 0, into.byteLength);
    if (stream.destroyed) {
      this.#stream = undefined;
      this.#dirty = false;
      throw new ZstdFrameError("the zstd data is invalid or cut short");
    }
    return { outLeft: state[0]!, inLeft: state[1]! };
  }

  /** The last frame ended cleanly: the context goes on to the next as it is. */
  protected clean(): void {
    this.#dirty = false;
  }

  /** Frees the context at once (the next call makes a new one). */
  close(): void {
    this.#stream?.close();
    this.#stream = undefined;
    this.#dirty = false;
  }
}

/**
 * Decodes zstd frames one at a time into buffers the caller owns (and so may reuse). Not for
 * concurrent use: one per thread or per reader.
 */
export class ZstdDecoder extends KeptZstd<zlib.ZstdDecompress> {
  protected open(): zlib.ZstdDecompress {
    return zlib.createZstdDecompress();
  }

  /**
   * Decompresses the one zstd frame `frame` into the start of `into` and returns its length.
   * The content must be shorter than `into`: a caller that accepts up to N bytes passes a
   * buffer of at least N + 1 (a full buffer cannot tell "exactly N" from "more").
   *
   * @throws ZstdFrameError when the frame is invalid or cut short, its content does not fit,
   *   or bytes follow it.
   */
  decode(frame: Uint8Array, into: Uint8Array): number {
    const left = this.run(frame, into);
    if (left === undefined) return fallback(frame, into);
    if (left.outLeft === 0) throw new ZstdFrameError(`the content is longer than ${into.byteLength - 1} bytes`);
    if (left.inLeft !== 0) throw new ZstdFrameError(`${left.inLeft} bytes follow the zstd frame`);
    this.clean();
    return into.byteLength - left.outLeft;
  }
}

/**
 * Compresses inputs one at a time, each into one zstd frame in a buffer the caller owns (and
 * so may reuse). Not for concurrent use; `close` frees the context at once.
 */
export class ZstdEncoder extends KeptZstd<zlib.ZstdCompress> {
  readonly #params: zlib.ZstdOptions["params"];

  constructor(level: number) {
    super();
    this.#params = { [zlib.constants.ZSTD_c_compressionLevel]: level };
  }

  protected open(): zlib.ZstdCompress {
    return zlib.createZstdCompress({ params: this.#params });
  }

  /**
   * Compresses `input` into one zstd frame at the start of `into` and returns its length, or
   * undefined when the frame does not fit in `into` (a caller that needs it whole passes
   * zstd's compress bound, which also makes zstd compress in one pass).
   */
  encode(input: Uint8Array, into: Uint8Array): number | undefined {
    const left = this.run(input, into);
    if (left === undefined) {
      const frame = zlib.zstdCompressSync(input, { params: this.#params });
      if (frame.byteLength >= into.byteLength) return undefined;
      into.set(frame);
      return frame.byteLength;
    }
    // A full buffer may hold only part of the frame: not known to fit, so not used.
    if (left.outLeft === 0 || left.inLeft !== 0) return undefined;
    this.clean();
    return into.byteLength - left.outLeft;
  }
}

/** `zstdDecompressSync` and a copy, where the kept context is not available. */
function fallback(frame: Uint8Array, into: Uint8Array): number {
  let out: Buffer;
  try {
    out = zlib.zstdDecompressSync(frame, { maxOutputLength: Math.max(1, into.byteLength - 1) });
  } catch (error) {
    throw new ZstdFrameError(`the zstd data is invalid or longer than ${into.byteLength - 1} bytes`, { cause: error });
  }
  into.set(out);
  return out.byteLength;
}
