/**
 * The bundle: a streaming binary file that carries chunks between client and agent (pushes
 * upload one into `staging/incoming/`, pulls download one from `staging/outgoing/`). The
 * server's pack files use the very same format, so one reader serves both.
 *
 * ```
 * bundle  = magic record* end
 * magic   = "CWSBNDL1"                                          8 bytes
 * record  = flags:u8 hash:u64 rawLength:u32 storedLength:u32    17-byte header, big-endian
 *           stored:storedLength bytes
 * end     = 0xFF 0x00×16 count:u32                              count = number of records
 * ```
 *
 * - `hash` is the chunk's xxh64; with `rawLength` it forms the chunk id `<hash hex>-<rawLength>`.
 * - `flags` bit 0 (FLAG_ZSTD) says `stored` is one zstd frame of the raw bytes; without it,
 *   `stored` is the raw bytes and `storedLength === rawLength`. Other bits are reserved and refused.
 * - The end record and its count make truncation detectable: a bundle cut anywhere, even at a
 *   record boundary, fails to read.
 * - A bundle that travels (not a pack) may be *streamed*: the whole of the above cut into
 *   pieces of about 1 MiB, each compressed as one zstd frame:
 *   `streamed = "CWSBNDZ1" (frameLength:u32 frame)*`, the frames' contents concatenated being
 *   a plain bundle. Small chunks are stored raw in their records (one zstd call per small
 *   chunk costs more than compressing it), so the frames compress runs of them with one
 *   context. The bytes of large chunks' records (a zstd frame already, or bytes that did not
 *   compress) pass through in *raw* frames: zstd frames of raw blocks, which any zstd decoder
 *   reads and which the reader here takes apart without zstd (see rawFrames).
 * - Every length is capped before anything is allocated for it: `rawLength <= MAX_CHUNK_BYTES`,
 *   `storedLength <= rawLength + MAX_STORED_OVERHEAD_BYTES`.
 *
 * The reader does not check hashes: hashing is the caller's decision (the store hashes every
 * record it ingests, the client every chunk it assembles). `verifyRecord` does it in one call.
 */
import { constants as fsConstants } from "node:fs";
import { open, rename, rm } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { basename } from "node:path";
import zlib from "node:zlib";
import { CwsError } from "../errors.ts";
import { xxh64Hex } from "../core/hash.ts";
import { MAX_CHUNK_BYTES, parseChunkId } from "../core/chunk-id.ts";
import { ZstdDecoder, ZstdEncoder } from "./zstd-context.ts";

/** The 8 bytes every bundle (and pack) starts with. The trailing digit is the format version. */
export const BUNDLE_MAGIC = Buffer.from("CWSBNDL1", "latin1");

/** flags bit 0: the stored bytes are a zstd frame of the raw bytes. */
export const FLAG_ZSTD = 0x01;

/** flags value of the end record. */
export const FLAG_END = 0xff;

/** Bytes of a record header: flags, hash, rawLength, storedLength. */
export const RECORD_HEADER_BYTES = 17;

/** Bytes of the end record with its record count. */
export const END_RECORD_BYTES = RECORD_HEADER_BYTES + 4;

/**
 * How much larger than its raw bytes a stored record may be. zstd never expands data by more
 * than a few dozen bytes per 128 KiB block, and the writer stores raw whenever compression does
 * not help, so this leaves room (e.g. for an encryption nonce and tag at rest) without letting a
 * peer declare huge records.
 */
export const MAX_STORED_OVERHEAD_BYTES = 1024;

/**
 * The most records one bundle (or pack) may hold. Writers refuse to add more, so a client
 * starts a new bundle first; readers refuse more, which bounds what the store keeps in memory
 * per ingested bundle (about 100 bytes per record).
 */
export const MAX_BUNDLE_RECORDS = 100_000;

/** zstd level used for metadata objects (manifests): small, compressed once, read often. */
export const ZSTD_LEVEL = 3;

/**
 * zstd level used for chunk records. Level 1 costs about 20% less CPU than level 3 on workspace
 * text for about 2.5% more bytes; compressing is the costliest step of an initial push, so the
 * cheaper level wins everywhere but on the slowest links.
 */
export const CHUNK_ZSTD_LEVEL = 1;

/**
 * Chunks below this size are stored raw in their record: a zstd call has a fixed cost (about
 * 0.1 ms here, mostly setting up its context) that exceeds compressing a few KiB, and a
 * workspace has thousands of such chunks (its small files). Streamed bundles compress them in
 * runs instead (see STREAM_FRAME_BYTES).
 */
export const MIN_COMPRESSED_CHUNK_BYTES = 32 * 1024;

/** A streamed bundle is compressed in frames of about this many bytes of records. */
const STREAM_FRAME_BYTES = 1024 * 1024;

/** zstd level of streamed bundles: the cheapest, as for chunks. */
const STREAM_ZSTD_LEVEL = 1;

/** A run of small records shorter than this is not worth a zstd call (about 0.1 ms): it goes raw. */
const MIN_STREAM_RUN_BYTES = 2048;

/** The buffer a run of records is collected in: a frame's worth and the record that ends it (any record, without pass-through). */
const STREAM_RUN_BUFFER_BYTES = STREAM_FRAME_BYTES + MAX_CHUNK_BYTES + MAX_STORED_OVERHEAD_BYTES + RECORD_HEADER_BYTES + END_RECORD_BYTES;

/** The 8 bytes a streamed bundle starts with. */
export const STREAMED_MAGIC = Buffer.from("CWSBNDZ1", "latin1");

/** The most bytes one frame of a streamed bundle may hold, compressed or not. */
const MAX_STREAM_FRAME_BYTES = 4 * 1024 * 1024;

/** The output buffer a frame is decompressed into: a usual frame (its records and one more) fits. */
const FRAME_OUTPUT_BYTES = STREAM_FRAME_BYTES + 256 * 1024;

/** Compression is kept only if it saves at least this share of the raw bytes. */
const MIN_SAVING = 0.05;

/** Size of the reader's buffer: big reads, far fewer syscalls than records. */
const READ_BUFFER_BYTES = 1024 * 1024;

/** The writer hands its buffered records to the OS once this many bytes are pending. */
const WRITE_BUFFER_BYTES = 1024 * 1024;

/** How long spare buffers are kept unused before they are let go, by default (see SpareBuffers). */
const SPARE_RELEASE_MS = 200;

/** How long spare buffers are kept unused now (see keepSpareBuffers). */
let spareReleaseMs = SPARE_RELEASE_MS;

/** Every SpareBuffers made, so that `releaseSpareBuffers` reaches them all. */
const everySpareBuffers: SpareBuffers[] = [];

/**
 * Keeps spare buffers for `ms` after their last use instead of SPARE_RELEASE_MS. For a
 * long-lived server that lets them go itself when it goes idle (`releaseSpareBuffers`): a
 * pull's bundles are asked for a second or so apart at 50,000 files (the client writes files
 * meanwhile), so spares kept 200 ms were let go between two bundles nearly every time, and
 * each bundle took fresh ones (7 MiB) that stayed resident as garbage until the next full
 * collection.
 */
export function keepSpareBuffers(ms: number): void {
  spareReleaseMs = ms;
}

/** Lets every spare buffer go now (a server that has gone idle, before it collects). */
export function releaseSpareBuffers(): void {
  for (const spares of everySpareBuffers) spares.release();
}

/**
 * Large buffers kept between uses by work that repeats (a pull's bundles, prepared one after
 * another): a new one each time would grow resident memory until the next full collection,
 * which a long-lived server forces on growth (idle-gc.ts), so fresh buffers cost CPU as well.
 * Spares are let go shortly after the work stops (sooner than the server's idle collection),
 * so a resting process does not keep them; the hub keeps them longer and lets them go just
 * before its idle collection (keepSpareBuffers, releaseSpareBuffers).
 */
export class SpareBuffers {
  readonly size: number;
  readonly #keep: number;
  #spare: Buffer[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(size: number, keep: number) {
    this.size = size;
    this.#keep = keep;
    everySpareBuffers.push(this);
  }

  /** A buffer of `size` bytes (its content is not cleared). */
  take(): Buffer {
    return this.#spare.pop() ?? Buffer.allocUnsafeSlow(this.size);
  }

  /** Gives back a buffer from `take` that nothing uses any more. */
  give(buffer: Buffer): void {
    if (this.#spare.length < this.#keep) this.#spare.push(buffer);
    if (this.#timer === undefined) {
      this.#timer = setTimeout(() => this.release(), spareReleaseMs);
      this.#timer.unref();
    } else {
      this.#timer.refresh();
    }
  }

  /** Lets the spares go (buffers taken and not given back are not affected). */
  release(): void {
    this.#spare = [];
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

/** The run buffers of streamed bundles being written (a few at once: a pull asks for bundles ahead). */
const runBuffers = new SpareBuffers(STREAM_RUN_BUFFER_BYTES, 3);

/** The buffers a bundle's large records and a streamed bundle's frames are compressed into (see KeptEncoder). */
const recordOutBuffers = new SpareBuffers(compressBound(MAX_CHUNK_BYTES), 3);
const frameOutBuffers = new SpareBuffers(compressBound(STREAM_RUN_BUFFER_BYTES), 3);

/**
 * The buffers records and streamed frames are decompressed into (see RecordDecoder and
 * FrameDecoder): the hub makes a pair of decoders per ingested bundle, and a 4 MiB buffer per
 * bundle left that much garbage each time.
 */
const recordDecodeBuffers = new SpareBuffers(MAX_CHUNK_BYTES + 1, 3);
const frameDecodeBuffers = new SpareBuffers(MAX_STREAM_FRAME_BYTES + 1, 3);

/** Where a record landed in a bundle or pack file. */
export interface RecordLocation {
  /** Byte offset of the record's header from the start of the file. */
  offset: number;
  /** Length of the stored bytes that follow the header. */
  storedLength: number;
  /** The record's flags (FLAG_ZSTD or 0). */
  flags: number;
}

/** One record as read from a bundle. */
export interface BundleRecord {
  /** The chunk id, `<xxh64 hex>-<rawLength>`. */
  id: string;
  /** The xxh64 the record claims, 16 hex digits. */
  hash: string;
  /** Length of the raw chunk in bytes. */
  rawLength: number;
  /** The record's flags (FLAG_ZSTD or 0). */
  flags: number;
  /** The stored bytes: a private copy, or a view into a read block that is never reused (`shareBlocks`). */
  stored: Uint8Array;
  /** Byte offset of the record's header in the file. */
  offset: number;
  /** Decompresses the stored bytes (lazily: only callers that need the raw bytes pay for it). */
  raw(): Uint8Array;
}

export interface AddOptions {
  /**
   * Try zstd and keep it when it saves at least 5%. Pass false for content known not to
   * compress (already-compressed files), which saves the attempt.
   *
   * @default {true}
   */
  compress?: boolean;
}

/**
 * A kept zstd context and the buffer it compresses into (see zstd-context.ts): the result is a
 * view of `into`, valid until the next call.
 */
interface KeptEncoder {
  encoder: ZstdEncoder;
  into: Buffer;
}

/**
 * Room for a zstd frame of `length` bytes that always fits (zstd's compress bound, and more):
 * zstd then compresses in one pass, with no copies through its own buffers, and the frame
 * comes out as `zstdCompressSync` with that output size makes it.
 */
export function compressBound(length: number): number {
  return length + (length >>> 7) + 128;
}

/**
 * Encodes a raw chunk into a record's payload: zstd-compressed when it is at least
 * MIN_COMPRESSED_CHUNK_BYTES long and that saves at least 5%, else raw. Shared by the writer and the store, which must make the same choice.
 */
export function encodeRecordPayload(raw: Uint8Array, compress = true, kept?: KeptEncoder): { flags: number; stored: Uint8Array } {
  if (compress && raw.byteLength >= MIN_COMPRESSED_CHUNK_BYTES && kept !== undefined) {
    const length = kept.encoder.encode(raw, kept.into.subarray(0, compressBound(raw.byteLength)));
    return length !== undefined && length <= raw.byteLength * (1 - MIN_SAVING) ? { flags: FLAG_ZSTD, stored: kept.into.subarray(0, length) } : { flags: 0, stored: raw };
  }
  if (compress && raw.byteLength >= MIN_COMPRESSED_CHUNK_BYTES) {
    const compressed = zlib.zstdCompressSync(raw, {
      params: { [zlib.constants.ZSTD_c_compressionLevel]: CHUNK_ZSTD_LEVEL },
      // One output buffer that always fits (zstd's compress bound): no second pass, no concat.
      chunkSize: Math.max(64, compressBound(raw.byteLength)),
    });
    if (compressed.byteLength <= raw.byteLength * (1 - MIN_SAVING)) return { flags: FLAG_ZSTD, stored: compressed };
  }
  return { flags: 0, stored: raw };
}

/**
 * Turns a record's stored bytes back into the raw chunk, refusing output longer or shorter
 * than `rawLength` (a zstd frame cannot inflate beyond it: the output buffer is capped).
 *
 * @throws CwsError CORRUPT when the frame is invalid or has the wrong length.
 */
export function decodeRecordPayload(flags: number, stored: Uint8Array, rawLength: number, what = "record"): Uint8Array {
  if ((flags & FLAG_ZSTD) === 0) {
    if (stored.byteLength !== rawLength) {
      throw corrupt(`Cannot read ${what} as its stored length ${stored.byteLength} differs from its raw length ${rawLength}`);
    }
    return stored;
  }
  let raw: Buffer;
  try {
    // maxOutputLength bounds the memory a hostile frame can make us allocate.
    // One output buffer a byte longer than expected: filled in one pass, without the second
    // pass (and copy) zlib makes when the output exactly fills its buffer.
    raw = zlib.zstdDecompressSync(stored, { maxOutputLength: Math.max(1, rawLength), chunkSize: Math.max(64, rawLength + 1) });
  } catch (error) {
    throw corrupt(`Cannot decompress ${what} as its zstd data is invalid or longer than ${rawLength} bytes`, error);
  }
  if (raw.byteLength !== rawLength) {
    throw corrupt(`Cannot read ${what} as it decompresses to ${raw.byteLength} bytes instead of ${rawLength}`);
  }
  return raw;
}

/**
 * Decodes records' stored bytes one at a time into one kept buffer, with one kept zstd
 * context (see zstd-context.ts): for a reader that is done with each chunk's raw bytes before
 * it decodes the next one (the pull's writer hashes and writes them at once). A decoded
 * result is valid until the next `decode`; raw records are returned as they are.
 */
export class RecordDecoder {
  #zstd = new ZstdDecoder();
  #buffer: Buffer | undefined;

  /**
   * As `decodeRecordPayload`, into the kept buffer.
   *
   * @throws CwsError CORRUPT when the frame is invalid or has the wrong length.
   */
  decode(flags: number, stored: Uint8Array, rawLength: number, what = "record"): Uint8Array {
    if ((flags & FLAG_ZSTD) === 0) return decodeRecordPayload(flags, stored, rawLength, what);
    if (rawLength > MAX_CHUNK_BYTES) throw tooLarge(`Cannot read ${what} as it declares ${rawLength} raw bytes, more than the ${MAX_CHUNK_BYTES}-byte chunk limit`);
    // One byte more than a chunk can hold: a frame that fills it is longer than any chunk.
    this.#buffer ??= recordDecodeBuffers.take();
    let length: number;
    try {
      length = this.#zstd.decode(stored, this.#buffer.subarray(0, rawLength + 1));
    } catch (error) {
      throw corrupt(`Cannot decompress ${what} as its zstd data is invalid or longer than ${rawLength} bytes`, error);
    }
    if (length !== rawLength) throw corrupt(`Cannot read ${what} as it decompresses to ${length} bytes instead of ${rawLength}`);
    return this.#buffer.subarray(0, length);
  }

  /**
   * Decodes a record into the kept buffer and checks it as `verifyRecord` does (without a
   * closure per record); the result is valid until the next call.
   *
   * @throws CwsError CORRUPT on any mismatch.
   */
  verify(record: Pick<BundleRecord, "id" | "hash" | "rawLength" | "flags" | "stored">): Uint8Array {
    return checkRaw(record, this.decode(record.flags, record.stored, record.rawLength, `chunk "${record.id}"`));
  }

  /**
   * Frees the zstd context at once and gives the buffer back for the next decoder (a later
   * `decode` takes new ones); nothing decoded may be used afterwards.
   */
  close(): void {
    this.#zstd.close();
    if (this.#buffer !== undefined) recordDecodeBuffers.give(this.#buffer);
    this.#buffer = undefined;
  }
}

/**
 * Checks that a record's raw bytes hash to its id and have its length. Needs `initHash()` to
 * have completed.
 *
 * @returns the verified raw bytes.
 * @throws CwsError CORRUPT on any mismatch.
 */
export function verifyRecord(record: Pick<BundleRecord, "id" | "hash" | "rawLength" | "raw">): Uint8Array {
  return checkRaw(record, record.raw());
}

/** `verifyRecord` once the raw bytes are decoded. */
function checkRaw(record: Pick<BundleRecord, "id" | "hash" | "rawLength">, raw: Uint8Array): Uint8Array {
  if (raw.byteLength !== record.rawLength) {
    throw corrupt(`Cannot accept chunk "${record.id}" as it has ${raw.byteLength} bytes instead of ${record.rawLength}`, undefined, { id: record.id });
  }
  const actual = xxh64Hex(raw);
  if (actual !== record.hash) {
    throw corrupt(`Cannot accept chunk "${record.id}" as its content hashes to "${actual}"; the bundle is corrupt, send it again`, undefined, {
      id: record.id,
      actual,
    });
  }
  return raw;
}

export interface CreateBundleOptions {
  /**
   * Fsync the file before it is renamed to its final name. Only a bundle that is thrown away
   * after use (the client's copy of an upload, rebuilt by the next run after a crash) may skip it.
   *
   * @default {true}
   */
  durable?: boolean;
  /**
   * Write a streamed bundle (compressed in zstd frames, see the module comment), for bundles
   * that travel to a peer that reads them. Never for packs: the store reads their records at
   * their offsets.
   *
   * @default {false}
   */
  stream?: boolean;
  /**
   * In a streamed bundle, pass large records through in raw frames instead of compressing them
   * with the rest (see the module comment). Only for a reader that takes raw frames apart
   * itself (agent capability "bundles-raw-frames", or the client's `rawFrames` request): one
   * that decompresses every frame with zstd pays a zstd context for each of the more, smaller
   * frames this makes.
   *
   * @default {false}
   */
  passThrough?: boolean;
}

/**
 * Writes a bundle to `<path>.tmp` and renames it to `path` on `finish()`, so a reader never
 * sees a half-written bundle under its final name. Records are buffered and written in large
 * pieces. Not safe for concurrent calls: await each `add` before the next.
 *
 * @example
 * const writer = await BundleWriter.create(path);
 * await writer.add(chunkId([hash, bytes.length]), bytes);
 * const { bytes, records } = await writer.finish();
 */
export class BundleWriter {
  readonly path: string;
  #handle: FileHandle;
  #durable: boolean;
  /**
   * A plain bundle's records not written yet, copied into one buffer reused for the whole
   * bundle (so `add` is done with a chunk when it returns, see copiesChunks), and their length.
   */
  #out: Buffer | undefined;
  #outBytes = 0;
  readonly #passThrough: boolean;
  /** A streamed bundle's run of small records being collected (reused for every frame), and its length. */
  #run: Buffer | undefined;
  #runBytes = 0;
  /**
   * The bundle's zstd context, kept for all its records and frames, with the buffers they are
   * compressed into: a record's frame is copied into the write buffer or the run at once, and
   * a run's frame is written before the next is made.
   */
  #zstd: { encoder: ZstdEncoder; record: Buffer; frame: Buffer } | undefined;

  /** The kept zstd context and its buffers, made at the first use. */
  #keptZstd(): { encoder: ZstdEncoder; record: Buffer; frame: Buffer } {
    return (this.#zstd ??= { encoder: new ZstdEncoder(STREAM_ZSTD_LEVEL), record: recordOutBuffers.take(), frame: frameOutBuffers.take() });
  }
  /** A streamed bundle's bytes for raw frames not written yet (views, in order), and their length. */
  #raw: Uint8Array[] = [];
  #rawBytes = 0;
  #offset = 0;
  #records = 0;
  #state: "open" | "finished" | "aborted" = "open";

  private constructor(path: string, handle: FileHandle, durable: boolean, stream: boolean, passThrough: boolean) {
    this.path = path;
    this.#handle = handle;
    this.#durable = durable;
    this.#passThrough = passThrough;
    if (stream) {
      this.#run = runBuffers.take();
      this.#run.set(BUNDLE_MAGIC, 0);
      this.#runBytes = BUNDLE_MAGIC.byteLength;
      this.#offset = BUNDLE_MAGIC.byteLength;
    } else {
      // A run's worth of records and the one that ends it, as a streamed bundle's run buffer.
      this.#out = runBuffers.take();
      this.#push(BUNDLE_MAGIC);
    }
  }

  /**
   * Creates the temp file `<path>.tmp` exclusively: an existing file (or a symlink planted in a
   * shared staging folder) there makes this fail instead of being written through.
   */
  static async create(path: string, options: CreateBundleOptions = {}): Promise<BundleWriter> {
    const handle = await open(`${path}.tmp`, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
    return new BundleWriter(path, handle, options.durable ?? true, options.stream ?? false, options.passThrough ?? false);
  }

  /** Bytes of records written so far, counting buffered ones (before a streamed bundle's compression). */
  get bytes(): number {
    return this.#offset;
  }

  /** Records added so far. */
  get records(): number {
    return this.#records;
  }

  /**
   * Whether `add` is done with a chunk's bytes when it returns, so the caller may reuse them:
   * a plain bundle copies each record into its write buffer, a streamed one without
   * pass-through into its run (or compresses it) at once. Pass-through keeps a large record's
   * bytes until its raw frame is full.
   */
  get copiesChunks(): boolean {
    return this.#run === undefined || !this.#passThrough;
  }

  /**
   * Adds a chunk, compressed when that saves at least 5%. The id must carry the raw length;
   * the hash is not checked here (the caller computed it).
   */
  async add(id: string, raw: Uint8Array, options: AddOptions = {}): Promise<RecordLocation> {
    const { compress = true } = options;
    const [, length] = parseChunkId(id);
    if (length !== raw.byteLength) throw new RangeError(`Chunk ${id} was given ${raw.byteLength} bytes`);
    // A passed-through record waits among the raw frames' pieces: its frame must be its own.
    const zstd = this.copiesChunks ? this.#keptZstd() : undefined;
    const kept = zstd === undefined ? undefined : { encoder: zstd.encoder, into: zstd.record };
    const { flags, stored } = encodeRecordPayload(raw, compress, kept);
    return this.addStored(id, flags, stored);
  }

  /**
   * Adds a record whose payload is already encoded (e.g. copied from another bundle or a
   * pack), without recompressing it.
   */
  async addStored(id: string, flags: number, stored: Uint8Array): Promise<RecordLocation> {
    if (this.#state !== "open") throw new TypeError(`Cannot add to bundle ${basename(this.path)} as it is ${this.#state}`);
    if (this.#records >= MAX_BUNDLE_RECORDS) throw new RangeError(`Cannot add to bundle ${basename(this.path)} as it holds ${MAX_BUNDLE_RECORDS} records`);
    const [hash, rawLength] = parseChunkId(id);
    if (rawLength > MAX_CHUNK_BYTES) throw new RangeError(`Chunk ${id} is longer than ${MAX_CHUNK_BYTES} bytes`);
    if (flags !== 0 && flags !== FLAG_ZSTD) throw new RangeError(`Unknown record flags ${flags} for chunk ${id}`);
    if (flags === 0 && stored.byteLength !== rawLength) throw new RangeError(`Raw record ${id} has ${stored.byteLength} bytes`);
    if (stored.byteLength > rawLength + MAX_STORED_OVERHEAD_BYTES) throw new RangeError(`Record ${id} stores too many bytes`);
    const location = { offset: this.#offset, storedLength: stored.byteLength, flags };
    this.#records++;
    if (this.#run !== undefined) {
      await this.#addToStream(hash, rawLength, flags, stored);
      return location;
    }
    writeRecordHeader(this.#out!, this.#outBytes, flags, hash, rawLength, stored.byteLength);
    this.#outBytes += RECORD_HEADER_BYTES;
    this.#offset += RECORD_HEADER_BYTES;
    this.#push(stored);
    if (this.#outBytes >= WRITE_BUFFER_BYTES) await this.#flush();
    return location;
  }

  /**
   * A streamed bundle's record: its header joins the run of small records being collected;
   * a small record's bytes too, compressed with the run. A large record's bytes are either a
   * zstd frame already or did not compress when they were stored, so they pass through in
   * raw frames (see rawFrames) instead of being compressed a second time: the run before them
   * is ended first. That keeps zstd for the bytes it helps and spares both ends the rest.
   */
  async #addToStream(hash: string, rawLength: number, flags: number, stored: Uint8Array): Promise<void> {
    const passThrough = this.#passThrough && (flags === FLAG_ZSTD || stored.byteLength >= MIN_COMPRESSED_CHUNK_BYTES);
    const adding = RECORD_HEADER_BYTES + (passThrough ? 0 : stored.byteLength);
    if (this.#runBytes + adding > this.#run!.byteLength) await this.#endRun();
    const run = this.#run!;
    writeRecordHeader(run, this.#runBytes, flags, hash, rawLength, stored.byteLength);
    this.#runBytes += RECORD_HEADER_BYTES;
    this.#offset += RECORD_HEADER_BYTES + stored.byteLength;
    if (passThrough) {
      await this.#endRun();
      await this.#addRaw(stored);
      return;
    }
    run.set(stored, this.#runBytes);
    this.#runBytes += stored.byteLength;
    if (this.#runBytes >= STREAM_FRAME_BYTES) await this.#endRun();
  }

  /**
   * Ends the run of small records: one zstd frame for all of them (one call, one context),
   * written at once after the raw bytes before it; or, when the run is too short to pay for a
   * call or does not compress, it is written in raw frames with them (its buffer is filled
   * again next).
   */
  async #endRun(): Promise<void> {
    const length = this.#runBytes;
    if (length === 0) return;
    const run = this.#run!.subarray(0, length);
    this.#runBytes = 0;
    if (length >= MIN_STREAM_RUN_BYTES) {
      const { encoder, frame: into } = this.#keptZstd();
      const frameBytes = encoder.encode(run, into.subarray(0, compressBound(length)));
      if (frameBytes !== undefined && frameBytes <= length * (1 - MIN_SAVING)) {
        const frame = into.subarray(0, frameBytes);
        const pieces = rawFrames(this.#raw);
        this.#raw = [];
        this.#rawBytes = 0;
        pieces.push(frameLength(frame.byteLength), frame);
        await this.#writeFrames(pieces);
        return;
      }
    }
    // The run goes out in raw frames at once, so its buffer is filled again without a copy.
    this.#raw.push(run);
    this.#rawBytes += length;
    await this.#endRaw();
  }

  /** Adds bytes to the raw frames being collected; a full frame's worth is written out. */
  async #addRaw(bytes: Uint8Array): Promise<void> {
    this.#raw.push(bytes);
    this.#rawBytes += bytes.byteLength;
    if (this.#rawBytes >= STREAM_FRAME_BYTES) await this.#endRaw();
  }

  async #endRaw(): Promise<void> {
    const pieces = rawFrames(this.#raw);
    this.#raw = [];
    this.#rawBytes = 0;
    await this.#writeFrames(pieces);
  }

  #release(): void {
    if (this.#run !== undefined) runBuffers.give(this.#run);
    this.#run = undefined;
    if (this.#out !== undefined) runBuffers.give(this.#out);
    this.#out = undefined;
    if (this.#zstd !== undefined) {
      this.#zstd.encoder.close();
      recordOutBuffers.give(this.#zstd.record);
      frameOutBuffers.give(this.#zstd.frame);
    }
    this.#zstd = undefined;
  }

  /** Writes frames (the magic before the first). */
  async #writeFrames(pieces: Uint8Array[]): Promise<void> {
    if (pieces.length === 0) return;
    if (this.#frames++ === 0) pieces.unshift(STREAMED_MAGIC);
    await this.#writePieces(pieces);
  }

  /**
   * Writes the end record, fsyncs (unless created with `durable: false`), closes and renames
   * the file to its final name. `bytes` is the size of the records; `fileBytes` that of the
   * file (smaller for a streamed bundle).
   */
  async finish(): Promise<{ bytes: number; records: number; fileBytes: number }> {
    if (this.#state !== "open") throw new TypeError(`Cannot finish bundle ${basename(this.path)} as it is ${this.#state}`);
    const end = Buffer.alloc(END_RECORD_BYTES);
    end.writeUInt8(FLAG_END, 0);
    end.writeUInt32BE(this.#records, RECORD_HEADER_BYTES);
    try {
      if (this.#run !== undefined) {
        if (this.#runBytes + END_RECORD_BYTES > this.#run.byteLength) await this.#endRun();
        this.#run.set(end, this.#runBytes);
        this.#runBytes += END_RECORD_BYTES;
        this.#offset += END_RECORD_BYTES;
        await this.#endRun();
        await this.#endRaw();
      } else {
        this.#push(end);
        await this.#flush();
      }
      this.#release();
      if (this.#durable) await this.#handle.sync();
      await this.#handle.close();
      this.#state = "finished";
      await rename(`${this.path}.tmp`, this.path);
    } catch (error) {
      await this.abort();
      throw error;
    }
    return { bytes: this.#offset, records: this.#records, fileBytes: this.#fileBytes };
  }

  /** Closes and removes the temp file. Safe to call more than once, and after a failure. */
  async abort(): Promise<void> {
    if (this.#state === "aborted") return;
    const wasOpen = this.#state === "open";
    this.#state = "aborted";
    this.#outBytes = 0;
    this.#raw = [];
    // No write is under way (each add and finish is awaited): the buffers are free again.
    this.#release();
    if (wasOpen) await this.#handle.close().catch(() => {});
    await rm(`${this.path}.tmp`, { force: true });
  }

  /** Copies bytes of a plain bundle into its write buffer (which always has room for one more record and the end). */
  #push(bytes: Uint8Array): void {
    this.#out!.set(bytes, this.#outBytes);
    this.#outBytes += bytes.byteLength;
    this.#offset += bytes.byteLength;
  }

  #fileBytes = 0;
  #frames = 0;

  async #flush(): Promise<void> {
    const pending = this.#out!.subarray(0, this.#outBytes);
    this.#outBytes = 0;
    await this.#writePieces([pending]);
  }

  async #writePieces(pieces: Uint8Array[]): Promise<void> {
    for (const piece of pieces) this.#fileBytes += piece.byteLength;
    // writev may write less than asked (rarely, for files); loop until everything is out.
    while (pieces.length > 0) {
      const { bytesWritten } = await this.#handle.writev(pieces);
      pieces = dropWritten(pieces, bytesWritten);
    }
  }
}

function writeRecordHeader(into: Buffer, at: number, flags: number, hash: string, rawLength: number, storedLength: number): void {
  into[at] = flags;
  into.write(hash, at + 1, 8, "hex");
  into.writeUInt32BE(rawLength, at + 9);
  into.writeUInt32BE(storedLength, at + 13);
}

/** A streamed bundle's frame length prefix. */
function frameLength(length: number): Buffer {
  const prefix = Buffer.allocUnsafe(4);
  prefix.writeUInt32BE(length, 0);
  return prefix;
}

/** zstd's frame magic number, little-endian. */
const ZSTD_MAGIC = 0xfd2fb528;

/**
 * Frame header descriptor of a raw frame: a 4-byte content size (Frame_Content_Size_flag 2),
 * single segment (the window is the content size), no checksum, no dictionary.
 */
const RAW_FRAME_DESCRIPTOR = 0xa0;

/** Bytes of a raw frame's header: magic, descriptor, content size. */
const RAW_FRAME_HEADER_BYTES = 9;

/** The largest block of a zstd frame (Block_Maximum_Size). */
const ZSTD_BLOCK_BYTES = 128 * 1024;

/** Bytes of a zstd block header: last-block bit, block type, block size. */
const ZSTD_BLOCK_HEADER_BYTES = 3;

/**
 * `pieces` (their bytes in order) as streamed-bundle frames, length prefixes included, of
 * zstd *raw* blocks: valid zstd frames that every decoder reads (an older client decompresses
 * them like the others), made without running the compressor, whose content is a copy of the
 * input. The result is headers and views of `pieces`, which must stay unchanged until written.
 */
function rawFrames(pieces: readonly Uint8Array[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let left = 0;
  for (const piece of pieces) left += piece.byteLength;
  let index = 0;
  let at = 0;
  while (left > 0) {
    const size = Math.min(left, STREAM_FRAME_BYTES);
    const blocks = Math.ceil(size / ZSTD_BLOCK_BYTES);
    const header = Buffer.allocUnsafe(4 + RAW_FRAME_HEADER_BYTES);
    header.writeUInt32BE(RAW_FRAME_HEADER_BYTES + blocks * ZSTD_BLOCK_HEADER_BYTES + size, 0);
    header.writeUInt32LE(ZSTD_MAGIC, 4);
    header[8] = RAW_FRAME_DESCRIPTOR;
    header.writeUInt32LE(size, 9);
    out.push(header);
    for (let block = 0; block < blocks; block++) {
      const blockSize = Math.min(ZSTD_BLOCK_BYTES, size - block * ZSTD_BLOCK_BYTES);
      const blockHeader = Buffer.allocUnsafe(ZSTD_BLOCK_HEADER_BYTES);
      // Block_Type 0 (raw) in bits 1-2; bit 0 marks the last block.
      blockHeader.writeUIntLE((blockSize << 3) | (block === blocks - 1 ? 1 : 0), 0, ZSTD_BLOCK_HEADER_BYTES);
      out.push(blockHeader);
      // The block's bytes: views of the pieces, across as many as it spans.
      for (let need = blockSize; need > 0;) {
        const piece = pieces[index]!;
        const take = Math.min(need, piece.byteLength - at);
        out.push(piece.subarray(at, at + take));
        need -= take;
        at += take;
        if (at === piece.byteLength) {
          index++;
          at = 0;
        }
      }
    }
    left -= size;
  }
  return out;
}

/**
 * The content of a raw frame (see rawFrames) as views of its blocks, without zstd; undefined
 * for any other frame (zstd decompresses those).
 *
 * @throws CwsError CORRUPT for a raw frame whose blocks do not add up to its declared size.
 */
function rawFrameContent(frame: Buffer, name: string): Buffer[] | undefined {
  if (frame.byteLength < RAW_FRAME_HEADER_BYTES || frame.readUInt32LE(0) !== ZSTD_MAGIC || frame[4] !== RAW_FRAME_DESCRIPTOR) return undefined;
  const size = frame.readUInt32LE(5);
  const blocks: Buffer[] = [];
  let at = RAW_FRAME_HEADER_BYTES;
  let total = 0;
  for (;;) {
    if (at + ZSTD_BLOCK_HEADER_BYTES > frame.byteLength) return undefined;
    const header = frame.readUIntLE(at, ZSTD_BLOCK_HEADER_BYTES);
    // Another block type (compressed, RLE): zstd reads the frame.
    if (((header >>> 1) & 3) !== 0) return undefined;
    const length = header >>> 3;
    at += ZSTD_BLOCK_HEADER_BYTES;
    if (length > ZSTD_BLOCK_BYTES || at + length > frame.byteLength) throw corrupt(`Cannot read streamed bundle "${name}" as a frame's block runs past its end`);
    blocks.push(frame.subarray(at, at + length));
    at += length;
    total += length;
    if ((header & 1) === 1) break;
  }
  if (at !== frame.byteLength || total !== size) throw corrupt(`Cannot read streamed bundle "${name}" as a raw frame's blocks do not match its declared size`);
  return blocks;
}

function dropWritten(pieces: Uint8Array[], written: number): Uint8Array[] {
  let index = 0;
  while (index < pieces.length && written >= pieces[index].byteLength) {
    written -= pieces[index].byteLength;
    index++;
  }
  const rest = pieces.slice(index);
  if (written > 0 && rest.length > 0) rest[0] = rest[0].subarray(written);
  return rest;
}

export interface ReadBundleOptions {
  /**
   * Most records accepted; a bundle with more is refused with FRAME_TOO_LARGE.
   *
   * @default {MAX_BUNDLE_RECORDS}
   */
  maxRecords?: number;
  /**
   * Yield each record's stored bytes as a view into the reader's read block instead of a copy.
   * Such views stay valid (blocks are never reused), but each one keeps its whole 1 MiB block
   * alive: only for callers that drop records soon (the store's ingest writes them straight
   * into a pack), not for ones that keep a few of them for long.
   *
   * @default {false}
   */
  shareBlocks?: boolean;
  /**
   * Decompress each streamed frame into this decoder's one buffer, reused for the next frame,
   * instead of a new buffer and zstd context per frame. For a bundle held in memory
   * (`readBundleBytes`) records are then views that stay valid only until the next record is
   * asked for: for callers that are done with each record by then (a pull copies or writes it
   * at once). A bundle read from a file (`readBundle`) copies each frame's content into its
   * read blocks, so its records are as valid as without a decoder. Not for two readers at once.
   */
  frameDecoder?: FrameDecoder;
}

/**
 * Decompresses the frames of streamed bundles one after another into one kept buffer, with
 * one kept zstd context (see zstd-context.ts and `ReadBundleOptions.frameDecoder`). The buffer
 * is as large as the largest frame allowed, but only the pages a frame fills are ever touched.
 */
export class FrameDecoder {
  #zstd = new ZstdDecoder();
  #buffer: Buffer | undefined;

  /** The frame's content, a view of the kept buffer valid until the next call. */
  decode(frame: Uint8Array, name: string): Buffer {
    this.#buffer ??= frameDecodeBuffers.take();
    try {
      return this.#buffer.subarray(0, this.#zstd.decode(frame, this.#buffer));
    } catch (error) {
      throw corrupt(`Cannot read streamed bundle "${name}" as a frame's zstd data is invalid or longer than ${MAX_STREAM_FRAME_BYTES} bytes`, error);
    }
  }

  /**
   * Frees the zstd context at once and gives the buffer back for the next decoder (a later
   * `decode` takes new ones); nothing decoded may be used afterwards.
   */
  close(): void {
    this.#zstd.close();
    if (this.#buffer !== undefined) frameDecodeBuffers.give(this.#buffer);
    this.#buffer = undefined;
  }
}

/**
 * Reads a bundle record by record with bounded memory (one 1 MiB buffer plus the current
 * record; a streamed bundle adds zstd's window). Validates the structure (magic, flags, length
 * caps, end record and count) but not the hashes: see `verifyRecord`. Refuses anything but a
 * regular file, and never follows a symlink at `path` (staging folders are writable by SFTP
 * clients).
 *
 * @throws CwsError CORRUPT for a bad magic, a truncated file, a bad count or trailing data;
 *   FRAME_TOO_LARGE for a record beyond the caps or too many records.
 */
export async function* readBundle(path: string, options: ReadBundleOptions = {}): AsyncGenerator<BundleRecord> {
  const name = basename(path);
  const handle = await open(path, fsConstants.O_RDONLY | (fsConstants.O_NOFOLLOW ?? 0));
  try {
    if (!(await handle.stat()).isFile()) throw corrupt(`Cannot read bundle "${name}" as it is not a regular file`);
    let position = 0;
    const fromFile: ByteSource = async (into, offset, length) => {
      const { bytesRead } = await handle.read(into, offset, length, position);
      position += bytesRead;
      return bytesRead;
    };
    yield* readRecords(new BufferedReader(await unstreamed(fromFile, name, options.frameDecoder), options.shareBlocks), name, options);
  } finally {
    await handle.close();
  }
}

/**
 * Reads a bundle held in memory (plain or streamed), as `readBundle` reads a file. Records
 * (their stored bytes) are views into `bytes` or into the decompressed frames (as with `shareBlocks`).
 */
export async function* readBundleBytes(bytes: Uint8Array, name: string, options: ReadBundleOptions = {}): AsyncGenerator<BundleRecord> {
  const data = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const streamed = data.byteLength >= STREAMED_MAGIC.byteLength && data.subarray(0, STREAMED_MAGIC.byteLength).equals(STREAMED_MAGIC);
  yield* readRecords(new MemoryReader(streamed ? memoryFrames(data, name, options.frameDecoder) : [data].values()), name, options);
}

/** The decompressed frames of a streamed bundle held in memory, one at a time (into `decoder`'s buffer if given). */
function* memoryFrames(data: Buffer, name: string, decoder: FrameDecoder | undefined): Generator<Buffer> {
  let at = STREAMED_MAGIC.byteLength;
  while (at < data.byteLength) {
    if (at + 4 > data.byteLength) throw corrupt(`Cannot read streamed bundle "${name}" as a frame's length is cut short`);
    const frameLength = data.readUInt32BE(at);
    at += 4;
    if (frameLength > MAX_STREAM_FRAME_BYTES) throw corrupt(`Cannot read streamed bundle "${name}" as a frame's length is ${frameLength} bytes, over the ${MAX_STREAM_FRAME_BYTES}-byte limit`);
    if (at + frameLength > data.byteLength) throw corrupt(`Cannot read streamed bundle "${name}" as it ends inside a frame; it was cut short, send it again`);
    yield* frameContent(data.subarray(at, at + frameLength), name, decoder);
    at += frameLength;
  }
}

/** A frame's content: the views of a raw frame's blocks, or what zstd decompresses (into `decoder`'s buffer if given). */
function frameContent(frame: Buffer, name: string, decoder?: FrameDecoder): Buffer[] {
  return rawFrameContent(frame, name) ?? [decoder === undefined ? decompressFrame(frame, name) : decoder.decode(frame, name)];
}

function decompressFrame(compressed: Uint8Array, name: string): Buffer {
  try {
    // maxOutputLength bounds what a hostile frame can make us allocate. The output buffer
    // holds a usual frame whole: with zstd's default (128 KiB) a 1 MiB frame took eight passes
    // and a concatenation, about three times the CPU of one pass (measured on Node 24).
    return zlib.zstdDecompressSync(compressed, { maxOutputLength: MAX_STREAM_FRAME_BYTES, chunkSize: FRAME_OUTPUT_BYTES });
  } catch (error) {
    throw corrupt(`Cannot read streamed bundle "${name}" as a frame's zstd data is invalid or longer than ${MAX_STREAM_FRAME_BYTES} bytes`, error);
  }
}

/** Fills `into[offset, offset + length)` with the next bytes, returning how many (0 at the end). */
type ByteSource = (into: Buffer, offset: number, length: number) => Promise<number>;

/** Reads exactly `length` bytes, or fewer only at the end of the source. */
async function readFully(source: ByteSource, into: Buffer, length: number): Promise<number> {
  let filled = 0;
  while (filled < length) {
    const n = await source(into, filled, length - filled);
    if (n === 0) break;
    filled += n;
  }
  return filled;
}

/**
 * The plain bundle a source holds: the source itself, or for a streamed bundle (see the
 * module comment) the content of its frames, decompressed one frame at a time.
 */
async function unstreamed(source: ByteSource, name: string, decoder?: FrameDecoder): Promise<ByteSource> {
  const head = Buffer.allocUnsafe(STREAMED_MAGIC.byteLength);
  const got = await readFully(source, head, head.byteLength);
  let first: Buffer = head.subarray(0, got);
  if (!(got === head.byteLength && head.equals(STREAMED_MAGIC))) {
    // A plain bundle: its first bytes, then the rest of the source.
    return async (into, offset, length) => {
      if (first.byteLength === 0) return source(into, offset, length);
      const n = Math.min(length, first.byteLength);
      first.copy(into, offset, 0, n);
      first = first.subarray(n);
      return n;
    };
  }
  let frame: Buffer = Buffer.alloc(0);
  let rest: Buffer[] = [];
  const lengthBytes = Buffer.allocUnsafe(4);
  // With a decoder, each frame's compressed bytes are read into one kept buffer too: a frame's
  // content is copied out of the decoder's buffer before the next frame is read.
  let kept: Buffer | undefined;
  return async (into, offset, length) => {
    while (frame.byteLength === 0 && rest.length > 0) frame = rest.shift()!;
    if (frame.byteLength === 0) {
      const got = await readFully(source, lengthBytes, 4);
      if (got === 0) return 0;
      const frameLength = got === 4 ? lengthBytes.readUInt32BE(0) : -1;
      if (frameLength < 0 || frameLength > MAX_STREAM_FRAME_BYTES) {
        throw corrupt(`Cannot read streamed bundle "${name}" as a frame's length is ${got === 4 ? `${frameLength} bytes, over the ${MAX_STREAM_FRAME_BYTES}-byte limit` : "cut short"}`);
      }
      if (decoder !== undefined && (kept === undefined || kept.byteLength < frameLength)) kept = Buffer.allocUnsafeSlow(Math.max(frameLength, FRAME_OUTPUT_BYTES));
      const compressed = decoder === undefined ? Buffer.allocUnsafe(frameLength) : kept!.subarray(0, frameLength);
      if ((await readFully(source, compressed, frameLength)) !== frameLength) {
        throw corrupt(`Cannot read streamed bundle "${name}" as it ends inside a frame; it was cut short, send it again`);
      }
      [frame = Buffer.alloc(0), ...rest] = frameContent(compressed, name, decoder);
    }
    const n = Math.min(length, frame.byteLength);
    frame.copy(into, offset, 0, n);
    frame = frame.subarray(n);
    return n;
  };
}

/** What `readRecords` reads from: the next `n` bytes, or null at the end. */
interface RecordReader {
  take(n: number): Promise<Buffer | null>;
  /** Offset of the next byte `take` returns, from the start of the records. */
  readonly position: number;
}

async function* readRecords(reader: RecordReader, name: string, options: ReadBundleOptions): AsyncGenerator<BundleRecord> {
  const { maxRecords = MAX_BUNDLE_RECORDS } = options;
  const shareBlocks = options.shareBlocks === true || reader instanceof MemoryReader;
  const magic = await reader.take(BUNDLE_MAGIC.byteLength);
  if (magic === null || !BUNDLE_MAGIC.equals(magic)) {
    throw corrupt(`Cannot read bundle "${name}" as it does not start with "${BUNDLE_MAGIC.toString("latin1")}"; it is not a cws bundle or was damaged`);
  }
  let count = 0;
  for (;;) {
    const offset = reader.position;
    const header = await reader.take(RECORD_HEADER_BYTES);
    if (header === null) throw truncated(name, offset, count);
    const flags = header.readUInt8(0);
    const hash = header.toString("hex", 1, 9);
    const rawLength = header.readUInt32BE(9);
    const storedLength = header.readUInt32BE(13);
    if (flags === FLAG_END) {
      if (rawLength !== 0 || storedLength !== 0 || hash !== "0000000000000000") {
        throw corrupt(`Cannot read bundle "${name}" as its end record at offset ${offset} is malformed`);
      }
      const tail = await reader.take(4);
      if (tail === null) throw truncated(name, offset, count);
      const declared = tail.readUInt32BE(0);
      if (declared !== count) {
        throw corrupt(`Cannot read bundle "${name}" as it declares ${declared} records but holds ${count}; it is damaged, send it again`);
      }
      if (await reader.take(1)) throw corrupt(`Cannot read bundle "${name}" as it has data after its end record`);
      return;
    }
    if (flags !== 0 && flags !== FLAG_ZSTD) {
      throw corrupt(`Cannot read bundle "${name}" as record ${count} at offset ${offset} has unknown flags 0x${flags.toString(16)}`);
    }
    if (rawLength > MAX_CHUNK_BYTES) {
      throw tooLarge(`Cannot read bundle "${name}" as record ${count} declares ${rawLength} raw bytes, more than the ${MAX_CHUNK_BYTES}-byte chunk limit`);
    }
    if (storedLength > rawLength + MAX_STORED_OVERHEAD_BYTES) {
      throw tooLarge(`Cannot read bundle "${name}" as record ${count} declares ${storedLength} stored bytes for ${rawLength} raw bytes`);
    }
    if (flags === 0 && storedLength !== rawLength) {
      throw corrupt(`Cannot read bundle "${name}" as raw record ${count} stores ${storedLength} bytes for ${rawLength} raw bytes`);
    }
    if (count >= maxRecords) throw tooLarge(`Cannot read bundle "${name}" as it holds more than ${maxRecords} records`);
    const body = await reader.take(storedLength);
    if (body === null) throw truncated(name, offset, count);
    // A copy unless blocks are shared: the reader's buffer is then reused for the next records.
    const stored: Uint8Array = shareBlocks ? body : Uint8Array.prototype.slice.call(body);
    const id = `${hash}-${rawLength}`;
    let decoded: Uint8Array | undefined;
    count++;
    yield {
      id,
      hash,
      rawLength,
      flags,
      stored,
      offset,
      raw: () => (decoded ??= decodeRecordPayload(flags, stored, rawLength, `chunk "${id}" of bundle "${name}"`)),
    };
  }
}

/**
 * A forward-only reader over buffers already in memory (a bundle, or its decompressed frames):
 * `take(n)` returns a view into them, never reused, and copies only a piece that straddles two.
 */
class MemoryReader implements RecordReader {
  #pieces: Iterator<Buffer>;
  #current: Buffer = Buffer.alloc(0);
  #at = 0;
  position = 0;

  constructor(pieces: Iterator<Buffer>) {
    this.#pieces = pieces;
  }

  async take(n: number): Promise<Buffer | null> {
    if (this.#current.byteLength - this.#at >= n) {
      const view = this.#current.subarray(this.#at, this.#at + n);
      this.#at += n;
      this.position += n;
      return view;
    }
    const joined = Buffer.allocUnsafe(n);
    let filled = 0;
    for (;;) {
      const piece = Math.min(n - filled, this.#current.byteLength - this.#at);
      this.#current.copy(joined, filled, this.#at, this.#at + piece);
      filled += piece;
      this.#at += piece;
      if (filled === n) break;
      const next = this.#pieces.next();
      if (next.done) return null;
      this.#current = next.value;
      this.#at = 0;
    }
    this.position += n;
    return joined;
  }
}

/**
 * A forward-only reader over a byte source that fills a buffer with large reads. `take(n)`
 * returns a view valid until the next call, or for good when `freshBlocks` is set: the bytes
 * left over from one block are then moved into a new block instead of to the front of the old.
 */
class BufferedReader implements RecordReader {
  #source: ByteSource;
  #freshBlocks: boolean;
  #buffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
  #start = 0;
  #end = 0;
  #eof = false;
  /** Offset of the next byte `take` returns, from the start of the records. */
  position = 0;

  constructor(source: ByteSource, freshBlocks: boolean = false) {
    this.#source = source;
    this.#freshBlocks = freshBlocks;
  }

  /** Returns the next `n` bytes, or null when the source ends first. */
  async take(n: number): Promise<Buffer | null> {
    while (this.#end - this.#start < n) {
      if (this.#eof) return null;
      if (this.#buffer.byteLength < n || (this.#freshBlocks && this.#start > 0)) {
        // A bigger buffer is only needed if a caller asks for more than one; lengths were capped already.
        const grown = Buffer.allocUnsafe(Math.max(n, READ_BUFFER_BYTES));
        this.#buffer.copy(grown, 0, this.#start, this.#end);
        this.#buffer = grown;
        this.#end -= this.#start;
        this.#start = 0;
      } else if (this.#start > 0) {
        this.#buffer.copy(this.#buffer, 0, this.#start, this.#end);
        this.#end -= this.#start;
        this.#start = 0;
      }
      const bytesRead = await this.#source(this.#buffer, this.#end, this.#buffer.byteLength - this.#end);
      if (bytesRead === 0) this.#eof = true;
      this.#end += bytesRead;
    }
    const view = this.#buffer.subarray(this.#start, this.#start + n);
    this.#start += n;
    this.position += n;
    return view;
  }
}

function truncated(name: string, offset: number, count: number): CwsError {
  return corrupt(
    `Cannot read bundle "${name}" as it ends at offset ${offset} after ${count} records without its end record; it was cut short, send it again`,
  );
}

function corrupt(message: string, cause?: unknown, data?: Record<string, unknown>): CwsError {
  return new CwsError("CORRUPT", message, { ...(cause === undefined ? {} : { cause }), ...(data === undefined ? {} : { data }) });
}

function tooLarge(message: string): CwsError {
  return new CwsError("FRAME_TOO_LARGE", message);
}
