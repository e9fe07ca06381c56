/**
 * The server's content-addressed store: chunks in pack files, metadata blobs (manifests) as
 * objects, and the staging folders through which bundles travel over SFTP.
 *
 * ```
 * <data>/store/packs/<id>.pack     chunks, in bundle format (src/protocol/bundle.ts)
 * <data>/store/packs/<id>.idx      sorted index of that pack (pack-index.ts); written last
 * <data>/store/objects/<h2>/<hash> one zstd-compressed object, hash = xxh64 of its raw bytes
 * <data>/staging/incoming/<name>   bundles uploaded by clients, removed once ingested
 * <data>/staging/outgoing/<name>   bundles prepared for clients to download
 * <data>/tmp/                      scratch space for other server parts; old files are removed
 * ```
 *
 * Why packs: an fsync costs about 0.5 ms here and a workspace has thousands of small files, so
 * one file per chunk would make an initial push fsync-bound. An ingested bundle's new chunks
 * become one pack and one index: two fsyncs (plus one for the folder) per bundle.
 *
 * Crash safety: a pack is written to a temp name, fsynced and renamed; then its index, the same
 * way; then the folder is fsynced. A pack only counts once its index exists, so a crash leaves
 * at worst an orphan pack or temp file, which `repack` removes once older than its grace period.
 *
 * Several agent processes (one per SSH session) may share one store. Packs are immutable and
 * named randomly, so writers never collide; readers pick up other processes' packs by listing
 * the index files again before they answer "missing" or "not found". A chunk stored twice by
 * two concurrent pushes costs space until the next repack, never correctness.
 *
 * Encryption at rest: every payload written or read passes through an AtRestCodec (codec.ts);
 * the plain codec is the identity.
 */
import { randomBytes } from "node:crypto";
import { close as fsClose, closeSync, fstatSync, lstatSync, open as fsOpen, openSync, readSync, renameSync, write as fsWrite } from "node:fs";
import { lstat, mkdir, readdir, readFile, realpath, rm, stat } from "node:fs/promises";
import { sep } from "node:path";
import zlib from "node:zlib";
import { CwsError } from "../../src/errors.ts";
import { faultPoint } from "../../src/fault.ts";
import { initHash, xxh64Hex } from "../../src/core/hash.ts";
import {
  BundleWriter,
  compressBound,
  decodeRecordPayload,
  FrameDecoder,
  MAX_BUNDLE_RECORDS,
  RECORD_HEADER_BYTES,
  readBundle,
  RecordDecoder,
  SpareBuffers,
  verifyRecord,
  ZSTD_LEVEL,
} from "../../src/protocol/bundle.ts";
import { plainCodec } from "./codec.ts";
import type { AtRestCodec } from "./codec.ts";
import { syncFileSystem } from "../../src/fs-atomic.ts";
import { fsyncPath, randomTag, syncDir, TEMP_SUFFIX, tempNameFor, writeFileDurably } from "./durable-file.ts";
import { TimeSlice } from "./time-slice.ts";
import { ZstdDecoder, ZstdEncoder } from "../../src/protocol/zstd-context.ts";
import { HandleCache } from "./handle-cache.ts";
import { ChunkIndex } from "./chunk-index.ts";
import { encodePackIndex, PackEntries, parsePackIndex } from "./pack-index.ts";
import type { PackEntry } from "./pack-index.ts";
import { checkFileName, inside } from "./safe-path.ts";

/** The largest object (e.g. a manifest) the store accepts, in raw bytes. */
export const MAX_OBJECT_BYTES = 256 * 1024 * 1024;

/** From this many new objects on, `putObjects` uses two file-system barriers instead of fsyncs per object. */
export const OBJECT_BATCH_BARRIER = 16;

/** How many object files `putObjects` fsyncs at a time where the file system has no barrier. */
const OBJECT_WRITERS = 8;

/** The store's read buffer for object files: any folder object fits (a large one is about 20 KiB). */
const OBJECT_READ_BUFFER_BYTES = 64 * 1024;

/**
 * Objects up to this raw size go through the store's kept zstd contexts. A larger one (a
 * manifest stored whole) is compressed through them and then frees them, since zstd keeps the
 * buffers of the largest frame it has seen, and is decompressed through a one-off context.
 */
const KEPT_OBJECT_CONTEXT_BYTES = 1024 * 1024;

/** The first bytes of every object file; followed by the raw length (u32) and the payload. */
const OBJECT_MAGIC = Buffer.from("CWSOBJ01", "latin1");
const OBJECT_HEADER_BYTES = OBJECT_MAGIC.byteLength + 4;

const PACK_ID = /^[0-9a-f]{16}$/;
const INDEX_FILE = /^([0-9a-f]{16})\.idx$/;
const PACK_FILE = /^([0-9a-f]{16})\.pack$/;
const CHUNK_ID = /^([0-9a-f]{16})-(\d{1,7})$/;
const OBJECT_HASH = /^[0-9a-f]{16}$/;
const SHARD = /^[0-9a-f]{2}$/;

export interface StoreOptions {
  /**
   * The at-rest codec for pack records and objects.
   *
   * @default {plainCodec}
   */
  codec?: AtRestCodec;
  /**
   * How many pack files are kept open between reads.
   *
   * @default {32}
   */
  maxOpenPacks?: number;
  /** Receives one line for each anomaly the store works around (e.g. a damaged index skipped). */
  log?: (message: string) => void;
}

/** The folders of a store, absolute and resolved. */
export interface StorePaths {
  root: string;
  packs: string;
  objects: string;
  incoming: string;
  outgoing: string;
  tmp: string;
}

/** One finding of `verifyAll`. */
export interface StoreProblem {
  /** What is affected. */
  kind: "pack" | "index" | "chunk" | "object";
  /** The pack id, chunk id or object hash. */
  name: string;
  /** What is wrong, for people. */
  message: string;
}

export interface VerifyResult {
  /** Packs read through. */
  packs: number;
  /** Chunks whose hash checked out. */
  chunks: number;
  /** Objects whose hash checked out. */
  objects: number;
  problems: StoreProblem[];
}

export interface RepackOptions {
  /** Files (packs, objects, staging) younger than this are never touched, in milliseconds. */
  graceMs: number;
  /** The current time, in milliseconds since the epoch (injected, so tests need no clock). */
  now: number;
  /** Object hashes still referenced. Without it, no object is removed. */
  liveObjects?: Set<string>;
  /**
   * Size at which a rewritten pack is closed and a new one started.
   *
   * @default {1 GiB}
   */
  maxPackBytes?: number;
}

export interface RepackResult {
  /** Old packs left as they were (every chunk live and not stored elsewhere). */
  packsKept: number;
  /** Young packs not looked at. */
  packsYoung: number;
  /** Old packs whose live chunks moved into new packs and which were then removed. */
  packsRewritten: number;
  /** Old packs removed with nothing live in them. */
  packsRemoved: number;
  /** New packs written. */
  packsWritten: number;
  /** Chunk copies dropped (dead chunks and duplicates). */
  chunksDropped: number;
  /** Pack bytes removed minus pack bytes written. */
  bytesFreed: number;
  /** Objects removed. */
  objectsRemoved: number;
  /** Orphan packs, old temp files and old staging files removed. */
  filesRemoved: number;
}

interface LoadedPack {
  id: string;
  packBytes: number;
  /** Its index's entries, kept as the index holds them (see PackEntries). */
  entries: PackEntries;
}

/** A pack being written: its writer and the entries of the records added so far. */
interface PackBuilder {
  id: string;
  writer: BundleWriter;
  entries: PackEntry[];
}

/**
 * Writes a sealed record into the pack being built and notes where it went. The entry is
 * made field by field: spreading the writer's location object gave every entry a property
 * array of its own.
 */
async function addToPack(builder: PackBuilder, id: string, flags: number, sealed: Uint8Array): Promise<void> {
  const location = await builder.writer.addStored(id, flags, sealed);
  builder.entries.push({ id, pack: builder.id, offset: location.offset, storedLength: location.storedLength, flags: location.flags });
}

export class Store {
  readonly paths: StorePaths;
  #codec: AtRestCodec;
  #log: (message: string) => void;
  #handles: HandleCache;
  #packs = new Map<string, LoadedPack>();
  /** chunk id → one location (the first loaded, when a chunk is in several packs); see chunk-index.ts. */
  #index = new ChunkIndex();
  /** pack id → why its index could not be loaded; not retried until it changes. */
  #badIndexes = new Map<string, string>();
  #refreshChain: Promise<void> = Promise.resolve();
  /** zstd contexts for objects, kept from one to the next (see zstd-context.ts); calls on them never await. */
  readonly #objectEncoder = new ZstdEncoder(ZSTD_LEVEL);
  readonly #objectDecoder = new ZstdDecoder();
  /** The buffer object files are read into (see #readObjectFile). */
  readonly #objectReadBuffer = Buffer.allocUnsafe(OBJECT_READ_BUFFER_BYTES);
  /** Paces the synchronous object calls of every caller: a turn of the event loop every few ms. */
  readonly #slice = new TimeSlice();

  private constructor(paths: StorePaths, options: StoreOptions) {
    this.paths = paths;
    this.#codec = options.codec ?? plainCodec;
    this.#log = options.log ?? (() => {});
    this.#handles = new HandleCache(options.maxOpenPacks ?? 32);
  }

  /** Opens (creating if needed) the store in `dataDir` and loads its pack indexes. */
  static async open(dataDir: string, options: StoreOptions = {}): Promise<Store> {
    await initHash();
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    // The real path, so the inside-the-root checks compare like with like.
    const root = await realpath(dataDir);
    const paths: StorePaths = {
      root,
      packs: inside(root, "store", "packs"),
      objects: inside(root, "store", "objects"),
      incoming: inside(root, "staging", "incoming"),
      outgoing: inside(root, "staging", "outgoing"),
      tmp: inside(root, "tmp"),
    };
    for (const dir of [paths.packs, paths.objects, paths.incoming, paths.outgoing, paths.tmp]) {
      await mkdir(dir, { recursive: true, mode: 0o700 });
    }
    const store = new Store(paths, options);
    await store.refresh();
    return store;
  }

  /** Closes the cached pack files. The store must not be used afterwards. */
  async close(): Promise<void> {
    this.#objectEncoder.close();
    this.#objectDecoder.close();
    await this.#handles.closeAll();
  }

  // ---- chunks ------------------------------------------------------------------------------

  /**
   * Loads the indexes of packs that appeared since the last look (written by other agent
   * processes) and forgets packs whose index disappeared (removed by a repack). Calls are
   * serialized, and each one lists the folder after it starts.
   */
  refresh(): Promise<void> {
    const run = this.#refreshChain.then(() => this.#refreshNow());
    this.#refreshChain = run.catch(() => {});
    return run;
  }

  /** Returns the ids among `ids` that the store lacks, once each, in the order given. */
  async missing(ids: readonly string[]): Promise<string[]> {
    const unique = [...new Set(ids)];
    for (const id of unique) checkChunkId(id);
    let absent = unique.filter((id) => !this.#index.has(id));
    if (absent.length > 0) {
      // Another agent process may have stored them since we last looked.
      await this.refresh();
      absent = absent.filter((id) => !this.#index.has(id));
    }
    return absent;
  }

  /**
   * True if the store holds the chunk of this hash and length as it last looked (no look for
   * packs other processes added since, which `missing` makes before it answers "missing"): for
   * a walk over many chunk references, with no id string made for each.
   */
  holdsChunk(hash: string, length: number): boolean {
    return this.#index.holds(hash, length);
  }

  /**
   * Refuses a commit whose manifest needs chunks the store lacks.
   *
   * @throws CwsError NOT_FOUND naming how many are missing (the first 20 in `data.missing`).
   */
  async requireChunks(ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    const missing = await this.missing(ids);
    if (missing.length > 0) {
      throw new CwsError("NOT_FOUND", `Cannot commit: the server lacks ${missing.length} chunk(s) the manifest needs (first ${missing[0]}). Run the sync again to upload them.`, {
        data: { missing: missing.slice(0, 20) },
      });
    }
  }

  /** True if the store holds chunk `id`. */
  async has(id: string): Promise<boolean> {
    return (await this.missing([id])).length === 0;
  }

  /** The ids of every chunk in the loaded indexes (call `refresh()` first for other processes' packs). */
  listChunkIds(): string[] {
    return this.#index.ids();
  }

  /**
   * Verifies every record of an uploaded bundle and stores the new ones in one pack, then
   * deletes the bundle. Either all of the bundle's new chunks are stored or none is.
   *
   * @param name A bare file name in `staging/incoming`.
   * @returns the number and raw bytes of chunks newly stored.
   * @throws CwsError INVALID_PATH for a bad name or something other than a regular file (which
   *   is removed), NOT_FOUND if there is no such bundle, CORRUPT / FRAME_TOO_LARGE if any record
   *   is damaged; on any failure but NOT_FOUND the bundle is deleted at once.
   */
  async ingestBundle(name: string): Promise<{ chunks: number; bytes: number }> {
    const path = inside(this.paths.incoming, checkFileName(name, "bundle name"));
    // Only a regular file is a bundle. Anything else planted in staging (a symlink, a folder,
    // a FIFO that would block the read) is refused and removed; rm never follows a link.
    const found = await lstat(path).catch((error: unknown) => {
      if (isErrno(error, "ENOENT")) return undefined;
      throw error;
    });
    if (found === undefined) throw notStaged(name);
    if (!found.isFile()) await refuseNonFile(path, name);
    try {
      return await this.#ingest(path);
    } catch (error) {
      if (isErrno(error, "ENOENT")) throw notStaged(name);
      // A link swapped in after the check above: O_NOFOLLOW refused to open it.
      if (isErrno(error, "ELOOP") || isErrno(error, "EISDIR")) await refuseNonFile(path, name);
      // A bundle that failed to ingest (damaged, or the disk is full) is useless: the client
      // builds its chunks into a new one next time, so it goes now rather than after gc's grace.
      await rm(path, { force: true });
      throw error;
    }
  }

  async #ingest(path: string): Promise<{ chunks: number; bytes: number }> {
    await this.refresh();
    const builder = await this.#startPack();
    const added = new Set<string>();
    let bytes = 0;
    // One zstd context and output buffer for the bundle's frames and one for its records,
    // instead of a new pair for each (which left the hub's collector a buffer per record: a
    // third of its busy time in a 5,000-file push). Per ingest, as ingests of several sessions
    // run at once and a frame's content is read across awaits.
    const frames = new FrameDecoder();
    const records = new RecordDecoder();
    try {
      // Each record goes straight into the pack writer, so views into the read blocks are safe.
      for await (const record of readBundle(path, { shareBlocks: true, frameDecoder: frames })) {
        // Decompresses and hashes; a mismatch throws and the whole bundle is dropped. The raw
        // bytes are not kept (the record's stored bytes are), so the decoder's buffer may be
        // reused by the next record.
        records.verify(record);
        if (this.#index.has(record.id) || added.has(record.id)) continue;
        added.add(record.id);
        // The bundle's compressed bytes are kept as they are: the client's writer already
        // decided whether compression helps, so recompressing would only cost CPU.
        const sealed = this.#codec.seal(record.stored, { kind: "chunk", id: record.id });
        await addToPack(builder, record.id, record.flags, sealed);
        bytes += record.rawLength;
      }
    } catch (error) {
      await builder.writer.abort();
      throw error;
    } finally {
      frames.close();
      records.close();
    }
    if (builder.entries.length === 0) {
      await builder.writer.abort();
    } else {
      await this.#commitPack(builder);
    }
    await rm(path, { force: true });
    return { chunks: builder.entries.length, bytes };
  }

  /**
   * Returns a chunk's raw bytes, verified against its id.
   *
   * @throws CwsError NOT_FOUND if the store lacks it, CORRUPT if the stored copy is damaged.
   */
  async readChunk(id: string): Promise<Uint8Array> {
    const [hash, rawLength] = checkChunkId(id);
    const { entry, payload } = await this.#readPayload(id);
    const raw = decodeRecordPayload(entry.flags, payload, rawLength, `stored chunk "${id}"`);
    const actual = xxh64Hex(raw);
    if (actual !== hash) {
      throw new CwsError("CORRUPT", `Cannot read stored chunk "${id}" as its content hashes to "${actual}"; run "cws-server verify"`, {
        data: { id, pack: entry.pack },
      });
    }
    return raw;
  }

  /**
   * Writes the given chunks into a bundle in `staging/outgoing`, in the order given, copying
   * their stored bytes without recompressing them one by one (a streamed bundle compresses
   * the runs of small raw records as a whole). The client verifies every hash when it reads
   * the bundle, and a bundle lost in a crash is asked for again, so it is not fsynced.
   *
   * @param options.name A bare file name; a random one by default.
   * @param options.stream Write a streamed bundle (see bundle.ts).
   * @param options.passThrough Large records pass through in raw frames (see CreateBundleOptions).
   * @throws CwsError NOT_FOUND (with `data.missing`) if any chunk is unknown; nothing is written then.
   */
  async writeBundle(ids: readonly string[], options: { name?: string; stream?: boolean; passThrough?: boolean } = {}): Promise<{ name: string; bytes: number }> {
    const { name, stream = false, passThrough = false } = options;
    const bundleName = name === undefined ? `out-${randomBytes(12).toString("hex")}.cwsb` : checkFileName(name, "bundle name");
    const path = inside(this.paths.outgoing, bundleName);
    const unique = [...new Set(ids)];
    if (unique.length > MAX_BUNDLE_RECORDS) {
      throw new CwsError("INVALID_ARGUMENT", `Cannot prepare a bundle of ${unique.length} chunks as one bundle holds at most ${MAX_BUNDLE_RECORDS}; ask in batches`);
    }
    const absent = await this.missing(unique);
    if (absent.length > 0) {
      throw new CwsError("NOT_FOUND", `Cannot prepare bundle as the store lacks ${absent.length} of its chunks, e.g. "${absent[0]}"`, {
        data: { missing: absent.slice(0, 20), count: absent.length },
      });
    }
    if (await exists(path)) {
      throw new CwsError("ALREADY_EXISTS", `Cannot prepare bundle "${bundleName}" as a bundle of that name is already staged; release it first`);
    }
    const writer = await BundleWriter.create(path, { durable: false, stream, passThrough });
    // The runs are read one after another into one reused buffer while they fit (a pull's
    // bundles do): the writer may hold views of them until it finishes.
    const arena = readArenas.take();
    let used = 0;
    try {
      // Records stay in the requested order; neighbours in one pack are read together, which
      // matters for the thousands of small chunks of a workspace (one read each is ~5x slower).
      for (const run of contiguousRuns(unique.map((id) => this.#index.get(id)!))) {
        let payloads: Uint8Array[];
        const length = runLength(run);
        const into = used + length <= arena.byteLength ? arena.subarray(used, used + length) : undefined;
        if (into !== undefined) used += length;
        try {
          payloads = (await this.#readSealedRun(run, into)).map((sealed, i) => this.#codec.open(sealed, { kind: "chunk", id: run[i].id }));
        } catch (error) {
          if (!isErrno(error, "ENOENT")) throw error;
          // The pack was repacked away by another process; find each chunk again.
          payloads = [];
          for (const entry of run) payloads.push((await this.#readPayload(entry.id)).payload);
        }
        for (const [i, entry] of run.entries()) await writer.addStored(entry.id, entry.flags, payloads[i]);
      }
      const { fileBytes } = await writer.finish();
      return { name: bundleName, bytes: fileBytes };
    } catch (error) {
      await writer.abort();
      throw error;
    } finally {
      readArenas.give(arena);
    }
  }

  /** Deletes a bundle from `staging/outgoing` (after the client downloaded it). */
  async releaseOutgoing(name: string): Promise<void> {
    await rm(inside(this.paths.outgoing, checkFileName(name, "bundle name")), { force: true });
  }

  // ---- objects -----------------------------------------------------------------------------

  /**
   * Stores a metadata blob (e.g. a serialized manifest) under its xxh64 and returns the hash.
   * Idempotent: an object already present is not written again.
   */
  async putObject(raw: Uint8Array): Promise<string> {
    const hash = this.#checkObject(raw);
    const path = this.#objectPath(hash);
    if (await exists(path)) return hash;
    const shard = inside(this.paths.objects, hash.slice(0, 2));
    const created = await mkdir(shard, { recursive: true, mode: 0o700 });
    await writeFileDurably(path, this.#objectFile(raw, hash));
    // The hub records the hash in its database right after; the entry must survive a crash.
    await syncDir(shard);
    if (created !== undefined) await syncDir(this.paths.objects);
    return hash;
  }

  /**
   * Stores several objects as `putObject` does, and returns their hashes in order. A batch of
   * at least OBJECT_BATCH_BARRIER new objects (a commit's folder objects) is made durable with
   * two file-system barriers instead of two fsyncs per object: every object is written to its
   * temp name, the first barrier makes their contents durable, then they are renamed into
   * place and the second barrier makes the names durable. A crash before the first barrier
   * leaves only temp files (removed by `repack`); after it, any object under its final name
   * has its full content, so a later `putObject` of the same hash, which trusts an existing
   * file, never trusts a torn one. The caller records the hashes only after this resolves.
   *
   * The existence checks, shard folders and renames are synchronous calls, a few microseconds
   * each, with a turn of the event loop every few milliseconds (time-slice.ts); the files are
   * created through the thread pool, and each barrier is one `sync -f`.
   */
  async putObjects(raws: readonly Uint8Array[]): Promise<string[]> {
    const hashes = raws.map((raw) => this.#checkObject(raw));
    const unique = new Map<string, Uint8Array>();
    for (let i = 0; i < raws.length; i++) if (!unique.has(hashes[i])) unique.set(hashes[i], raws[i]);
    const fresh = new Map<string, Uint8Array>();
    const slice = this.#slice;
    for (const [hash, raw] of unique) {
      // No error object is made for an absent file (most of them, in a first push).
      if (lstatSync(this.#objectPath(hash), { throwIfNoEntry: false }) === undefined) fresh.set(hash, raw);
      await slice.pause();
    }
    if (fresh.size < OBJECT_BATCH_BARRIER) {
      await Promise.all([...fresh.values()].map((raw) => this.putObject(raw)));
      return hashes;
    }
    const shards = [...new Set([...fresh.keys()].map((hash) => hash.slice(0, 2)))];
    let madeShard = false;
    // Shard folders are looked up synchronously and only the missing ones (a new store's) made.
    const missing = shards.filter((shard) => lstatSync(inside(this.paths.objects, shard), { throwIfNoEntry: false }) === undefined);
    await eachInParallel(missing, OBJECT_WRITERS, async (shard) => {
      if ((await mkdir(inside(this.paths.objects, shard), { recursive: true, mode: 0o700 })) !== undefined) madeShard = true;
    });
    // One random tag for the batch: each temp name also holds its object's hash.
    const tag = randomTag();
    const temps = [...fresh.keys()].map((hash) => ({ hash, path: this.#objectPath(hash), temp: "" }));
    try {
      // Creating a file is the one call here that is not cheap: ext4 allocates an inode, which
      // takes hundreds of microseconds a file after a mass deletion (HELPERS.md). These calls
      // go to the thread pool, so that kernel time overlaps the hub's other work (a first
      // push writes folder objects while its bundles are ingested).
      await eachInParallel(temps, OBJECT_WRITERS, async (entry) => {
        const temp = tempNameFor(entry.path, tag);
        entry.temp = temp;
        await writeNewFile(temp, this.#objectFile(fresh.get(entry.hash)!, entry.hash));
      });
      if (!(await syncFileSystem(this.paths.objects))) await eachInParallel(temps, OBJECT_WRITERS, (entry) => fsyncPath(entry.temp));
      faultPoint("store-objects-before-rename");
      let renamed = 0;
      for (const entry of temps) {
        renameSync(entry.temp, entry.path);
        entry.temp = "";
        if (++renamed === Math.ceil(temps.length / 2)) faultPoint("store-objects-mid-rename");
        await slice.pause();
      }
    } finally {
      for (const { temp } of temps) if (temp !== "") await rm(temp, { force: true });
    }
    if (!(await syncFileSystem(this.paths.objects))) {
      await eachInParallel(shards, OBJECT_WRITERS, (shard) => syncDir(inside(this.paths.objects, shard)));
      if (madeShard) await syncDir(this.paths.objects);
    }
    return hashes;
  }

  /** The hash of an object's raw bytes, after checking its size. */
  #checkObject(raw: Uint8Array): string {
    if (raw.byteLength > MAX_OBJECT_BYTES) {
      throw new CwsError("INVALID_ARGUMENT", `Cannot store an object of ${raw.byteLength} bytes as objects are limited to ${MAX_OBJECT_BYTES} bytes`);
    }
    return xxh64Hex(raw);
  }

  /**
   * An object's file: its header (magic, raw length) and its compressed, sealed bytes. The
   * frame is made by the store's kept zstd context, straight after the header (as
   * `zstdCompressSync` would make it, without a new context per object).
   */
  #objectFile(raw: Uint8Array, hash: string): Buffer {
    const file = Buffer.allocUnsafe(OBJECT_HEADER_BYTES + compressBound(raw.byteLength));
    OBJECT_MAGIC.copy(file, 0);
    file.writeUInt32BE(raw.byteLength, OBJECT_MAGIC.byteLength);
    const length = this.#objectEncoder.encode(raw, file.subarray(OBJECT_HEADER_BYTES));
    // The compress bound always fits; the encoder only declines where Node lacks its internals
    // and the frame of the sync call came out longer (never seen).
    const compressed = length !== undefined ? file.subarray(OBJECT_HEADER_BYTES, OBJECT_HEADER_BYTES + length) : zlib.zstdCompressSync(raw, { params: { [zlib.constants.ZSTD_c_compressionLevel]: ZSTD_LEVEL } });
    if (raw.byteLength > KEPT_OBJECT_CONTEXT_BYTES) this.#objectEncoder.close();
    const sealed = this.#codec.seal(compressed, { kind: "object", id: hash });
    if (sealed === compressed && length !== undefined) return file.subarray(0, OBJECT_HEADER_BYTES + length);
    return Buffer.concat([file.subarray(0, OBJECT_HEADER_BYTES), sealed]);
  }

  /**
   * Returns an object's raw bytes, verified against its hash.
   *
   * The file is read with synchronous calls (see putObjects): opened, read into the store's
   * read buffer (which holds any folder object whole, so a short read is the whole file),
   * closed; only a larger file (a manifest stored whole by an earlier version) is measured
   * through its descriptor, capped, and read into a buffer of its own. The frame of a folder
   * object is decompressed by the store's kept zstd context into a buffer of the length the
   * header claims, so nothing longer ever comes out; a larger object (over
   * KEPT_OBJECT_CONTEXT_BYTES) goes through a one-off context capped at that length. A walk
   * over a tree calls this thousands of times in a row: every few milliseconds one call first
   * lets the event loop have a turn.
   *
   * @throws CwsError INVALID_ARGUMENT for a malformed hash, NOT_FOUND, or CORRUPT.
   */
  async getObject(hash: string): Promise<Uint8Array> {
    if (typeof hash !== "string" || !OBJECT_HASH.test(hash)) {
      throw new CwsError("INVALID_ARGUMENT", `Cannot read object ${JSON.stringify(String(hash).slice(0, 40))} as it is not 16 hex digits`);
    }
    // Before the read, not after: the read buffer's view must be used before anything awaits.
    await this.#slice.pause();
    const bytes = this.#readObjectFile(hash);
    if (bytes.byteLength < OBJECT_HEADER_BYTES || !OBJECT_MAGIC.equals(bytes.subarray(0, OBJECT_MAGIC.byteLength))) {
      throw corruptObject(hash, "its header is damaged");
    }
    const rawLength = bytes.readUInt32BE(OBJECT_MAGIC.byteLength);
    if (rawLength > MAX_OBJECT_BYTES) throw corruptObject(hash, `it claims ${rawLength} bytes`);
    const compressed = this.#codec.open(bytes.subarray(OBJECT_HEADER_BYTES), { kind: "object", id: hash });
    let raw: Buffer;
    try {
      if (rawLength > KEPT_OBJECT_CONTEXT_BYTES) {
        // A large object (a manifest stored whole) through a one-off context whose output
        // grows as the frame is read, up to the claimed length: a damaged header claiming up
        // to the cap never makes the hub allocate that much at once.
        raw = zlib.zstdDecompressSync(compressed, { maxOutputLength: rawLength });
      } else {
        // One byte more than claimed, so a frame holding more than the header says is caught.
        const into = Buffer.allocUnsafe(rawLength + 1);
        raw = into.subarray(0, this.#objectDecoder.decode(compressed, into));
      }
    } catch (error) {
      throw corruptObject(hash, "its compressed data is damaged", error);
    }
    if (raw.byteLength !== rawLength) throw corruptObject(hash, `it holds ${raw.byteLength} bytes instead of ${rawLength}`);
    const actual = xxh64Hex(raw);
    if (actual !== hash) throw corruptObject(hash, `its content hashes to "${actual}"`);
    return raw;
  }

  /**
   * An object's file bytes: a view of the store's read buffer (valid until the next read, so
   * used before anything awaits) or, for a file that does not fit, a buffer of its own.
   */
  #readObjectFile(hash: string): Buffer {
    let fd: number;
    try {
      fd = openSync(this.#objectPath(hash), "r");
    } catch (error) {
      if (isErrno(error, "ENOENT")) throw new CwsError("NOT_FOUND", `Cannot read object "${hash}" as the store does not have it`, { data: { hash } });
      throw error;
    }
    try {
      const buffer = this.#objectReadBuffer;
      const first = readSync(fd, buffer, 0, buffer.byteLength, 0);
      if (first < buffer.byteLength) return buffer.subarray(0, first);
      const size = fstatSync(fd).size;
      if (size > MAX_OBJECT_BYTES + OBJECT_HEADER_BYTES + 64 * 1024) throw corruptObject(hash, `its file has ${size} bytes`);
      const whole = Buffer.allocUnsafe(size);
      let done = 0;
      while (done < size) {
        const n = readSync(fd, whole, done, size - done, done);
        if (n === 0) break;
        done += n;
      }
      return whole.subarray(0, done);
    } finally {
      closeSync(fd);
    }
  }

  // ---- maintenance ---------------------------------------------------------------------------

  /**
   * Re-reads every pack and object and re-hashes every chunk and object. Problems are data:
   * one damaged pack does not stop the check of the others.
   */
  async verifyAll(onProblem?: (problem: StoreProblem) => void): Promise<VerifyResult> {
    await this.refresh();
    const result: VerifyResult = { packs: 0, chunks: 0, objects: 0, problems: [] };
    const report = (problem: StoreProblem) => {
      result.problems.push(problem);
      onProblem?.(problem);
    };
    for (const [pack, message] of this.#badIndexes) report({ kind: "index", name: pack, message });
    for (const pack of [...this.#packs.values()]) {
      const byOffset = new Map(pack.entries.entries().map((entry) => [entry.offset, entry]));
      try {
        for await (const record of readBundle(this.#packPath(pack.id))) {
          const entry = byOffset.get(record.offset);
          byOffset.delete(record.offset);
          if (entry !== undefined && (entry.id !== record.id || entry.flags !== record.flags || entry.storedLength !== record.stored.byteLength)) {
            report({ kind: "index", name: pack.id, message: `Index entry for "${entry.id}" does not match the record at offset ${record.offset}` });
            continue;
          }
          try {
            const payload = this.#codec.open(record.stored, { kind: "chunk", id: record.id });
            verifyRecord({ ...record, raw: () => decodeRecordPayload(record.flags, payload, record.rawLength, `chunk "${record.id}"`) });
            result.chunks++;
          } catch (error) {
            report({ kind: "chunk", name: record.id, message: `In pack "${pack.id}": ${errorMessage(error)}` });
          }
        }
        result.packs++;
      } catch (error) {
        report({ kind: "pack", name: pack.id, message: errorMessage(error) });
      }
      for (const entry of byOffset.values()) {
        report({ kind: "index", name: pack.id, message: `Index entry for "${entry.id}" points to no record (offset ${entry.offset})` });
      }
    }
    for (const hash of await this.#listObjects()) {
      try {
        await this.getObject(hash);
        result.objects++;
      } catch (error) {
        report({ kind: "object", name: hash, message: errorMessage(error) });
      }
    }
    return result;
  }

  /**
   * Garbage collection: rewrites packs without the chunks not in `liveIds` (and without
   * duplicates), and removes orphan packs, unreferenced objects and staging files older than
   * the grace period. A pack younger than the grace period is never touched, so chunks of an
   * upload in flight are never collected.
   *
   * NOTE: Not safe to run twice at once on one store; the caller (the hub's gc) serializes it.
   */
  async repack(liveIds: Set<string>, options: RepackOptions): Promise<RepackResult> {
    const { graceMs, now, liveObjects, maxPackBytes = 1024 ** 3 } = options;
    const cutoff = now - graceMs;
    const result: RepackResult = {
      packsKept: 0,
      packsYoung: 0,
      packsRewritten: 0,
      packsRemoved: 0,
      packsWritten: 0,
      chunksDropped: 0,
      bytesFreed: 0,
      objectsRemoved: 0,
      filesRemoved: 0,
    };
    await this.refresh();

    // Young packs stay; every chunk in them counts as stored.
    const kept = new Set<string>();
    // The old packs' entries as objects, for the length of the repack only.
    const old: { pack: LoadedPack; entries: PackEntry[]; dead: number }[] = [];
    for (const pack of this.#packs.values()) {
      const mtime = await mtimeOf(this.#packPath(pack.id));
      if (mtime === undefined) continue; // Removed meanwhile by another process.
      if (mtime > cutoff) {
        result.packsYoung++;
        for (let slot = 0; slot < pack.entries.count; slot++) kept.add(pack.entries.idAt(slot));
      } else {
        const entries = pack.entries.entries();
        old.push({ pack, entries, dead: entries.filter((entry) => !liveIds.has(entry.id)).length });
      }
    }
    // Packs with the fewest dead chunks first, so duplicates are dropped from the worse ones.
    old.sort((a, b) => a.dead - b.dead || (a.pack.id < b.pack.id ? -1 : 1));
    const doomed: { pack: LoadedPack; moving: PackEntry[] }[] = [];
    for (const { pack, entries } of old) {
      const moving = entries.filter((entry) => liveIds.has(entry.id) && !kept.has(entry.id));
      for (const entry of moving) kept.add(entry.id);
      if (moving.length === entries.length) {
        result.packsKept++;
      } else {
        doomed.push({ pack, moving });
        result.chunksDropped += entries.length - moving.length;
      }
    }

    // Copy the live chunks of doomed packs into new packs, and only then remove the old ones.
    let builder: PackBuilder | undefined;
    try {
      for (const { moving } of doomed) {
        for (const entry of moving) {
          builder ??= await this.#startPack();
          const sealed = await this.#readSealed(entry);
          await addToPack(builder, entry.id, entry.flags, sealed);
          if (builder.writer.bytes >= maxPackBytes || builder.entries.length >= MAX_BUNDLE_RECORDS) {
            result.bytesFreed -= (await this.#commitPack(builder)).packBytes;
            result.packsWritten++;
            builder = undefined;
          }
        }
      }
      if (builder !== undefined) {
        result.bytesFreed -= (await this.#commitPack(builder)).packBytes;
        result.packsWritten++;
        builder = undefined;
      }
    } catch (error) {
      await builder?.writer.abort();
      throw error;
    }
    // Index files first: a pack without its index is garbage, never a half-visible pack.
    for (const { pack } of doomed) await rm(this.#indexPath(pack.id), { force: true });
    await syncDir(this.paths.packs);
    for (const { pack, moving } of doomed) {
      await this.#handles.evict(this.#packPath(pack.id));
      await rm(this.#packPath(pack.id), { force: true });
      this.#packs.delete(pack.id);
      result.bytesFreed += pack.packBytes;
      if (moving.length > 0) result.packsRewritten++;
      else result.packsRemoved++;
    }
    if (doomed.length > 0) this.#rebuildIndex();

    // Orphans: packs whose index never got written (a crash) and temp files. A damaged index is
    // left alone for the operator (verifyAll reports it): its pack may still hold good data.
    const names = await readdir(this.paths.packs);
    const indexed = new Set(names.flatMap((name) => INDEX_FILE.exec(name)?.[1] ?? []));
    for (const name of names) {
      const path = inside(this.paths.packs, name);
      const packId = PACK_FILE.exec(name)?.[1];
      const orphan = (packId !== undefined && !indexed.has(packId)) || name.endsWith(TEMP_SUFFIX);
      if (orphan && (await removeIfOlder(path, cutoff))) result.filesRemoved++;
    }
    for (const dir of [this.paths.incoming, this.paths.outgoing, this.paths.tmp]) {
      for (const name of await readdir(dir)) {
        if (await removeIfOlder(inside(dir, name), cutoff)) result.filesRemoved++;
      }
    }
    for (const shard of (await readdir(this.paths.objects)).filter((name) => SHARD.test(name))) {
      const shardPath = inside(this.paths.objects, shard);
      for (const name of await readdir(shardPath)) {
        const path = inside(shardPath, name);
        if (name.endsWith(TEMP_SUFFIX)) {
          if (await removeIfOlder(path, cutoff)) result.filesRemoved++;
        } else if (liveObjects !== undefined && OBJECT_HASH.test(name) && !liveObjects.has(name)) {
          if (await removeIfOlder(path, cutoff)) result.objectsRemoved++;
        }
      }
    }
    await syncDir(this.paths.packs);
    return result;
  }

  // ---- internals -----------------------------------------------------------------------------

  async #refreshNow(): Promise<void> {
    const present = new Set<string>();
    for (const name of await readdir(this.paths.packs)) {
      const id = INDEX_FILE.exec(name)?.[1];
      if (id !== undefined) present.add(id);
    }
    let removed = false;
    for (const id of this.#packs.keys()) {
      if (!present.has(id)) {
        this.#packs.delete(id);
        removed = true;
      }
    }
    for (const id of this.#badIndexes.keys()) if (!present.has(id)) this.#badIndexes.delete(id);
    for (const id of present) {
      if (!this.#packs.has(id) && !this.#badIndexes.has(id)) await this.#loadPack(id);
    }
    if (removed) this.#rebuildIndex();
  }

  async #loadPack(id: string): Promise<void> {
    let bytes: Buffer;
    try {
      bytes = await readFile(this.#indexPath(id));
    } catch (error) {
      // Removed between the listing and now by another process's repack.
      if (isErrno(error, "ENOENT")) return;
      throw error;
    }
    try {
      const { packBytes, entries } = parsePackIndex(bytes, id);
      const size = await sizeOf(this.#packPath(id));
      if (size === undefined) {
        if (!(await exists(this.#indexPath(id)))) return; // A repack removed both meanwhile.
        throw new CwsError("CORRUPT", `Cannot load pack "${id}" as its pack file is missing`);
      }
      if (size !== packBytes) throw new CwsError("CORRUPT", `Cannot load pack "${id}" as it has ${size} bytes and its index expects ${packBytes}`);
      this.#addPack({ id, packBytes, entries });
    } catch (error) {
      if (!(error instanceof CwsError)) throw error;
      // Its chunks then count as missing, so clients upload them again: the store heals itself.
      this.#badIndexes.set(id, error.message);
      this.#log(`store: skipping pack ${id}: ${error.message}`);
    }
  }

  #addPack(pack: LoadedPack): void {
    if (this.#packs.has(pack.id)) return;
    this.#packs.set(pack.id, pack);
    this.#index.add(pack.entries);
  }

  #rebuildIndex(): void {
    this.#index.rebuild(Array.from(this.#packs.values(), (pack) => pack.entries));
  }

  async #startPack(): Promise<PackBuilder> {
    const id = randomBytes(8).toString("hex");
    return { id, writer: await BundleWriter.create(this.#packPath(id)), entries: [] };
  }

  /** Finishes a pack, writes its index, makes both durable and adds them to the in-memory index. */
  async #commitPack(builder: PackBuilder): Promise<LoadedPack> {
    const { bytes: packBytes } = await builder.writer.finish();
    let index: Buffer;
    try {
      index = encodePackIndex(builder.entries, packBytes);
      await writeFileDurably(this.#indexPath(builder.id), index);
      await syncDir(this.paths.packs);
    } catch (error) {
      await rm(this.#packPath(builder.id), { force: true });
      throw error;
    }
    // Kept as the index holds them; the builder's entry objects go with the builder.
    const pack: LoadedPack = { id: builder.id, packBytes, entries: PackEntries.ofEncoded(index, builder.id) };
    this.#addPack(pack);
    return pack;
  }

  /** Reads a chunk's payload (codec opened, still compressed if flagged), finding it again if its pack was repacked away. */
  async #readPayload(id: string): Promise<{ entry: PackEntry; payload: Uint8Array }> {
    let entry = await this.#locate(id);
    let sealed: Uint8Array;
    try {
      sealed = await this.#readSealed(entry);
    } catch (error) {
      if (!isErrno(error, "ENOENT")) throw error;
      // Another process repacked the pack away; its chunks now live in a new pack.
      await this.refresh();
      const moved = this.#index.get(id);
      if (moved === undefined || moved.pack === entry.pack) {
        throw new CwsError("NOT_FOUND", `Cannot read chunk "${id}" as its pack "${entry.pack}" is gone`, { data: { id } });
      }
      entry = moved;
      sealed = await this.#readSealed(entry);
    }
    return { entry, payload: this.#codec.open(sealed, { kind: "chunk", id }) };
  }

  async #locate(id: string): Promise<PackEntry> {
    checkChunkId(id);
    let entry = this.#index.get(id);
    if (entry === undefined) {
      await this.refresh();
      entry = this.#index.get(id);
    }
    if (entry === undefined) throw new CwsError("NOT_FOUND", `Cannot read chunk "${id}" as the store does not have it`, { data: { id } });
    return entry;
  }

  /** Reads a record's stored bytes with one positioned read, after checking its header against the index. */
  async #readSealed(entry: PackEntry): Promise<Uint8Array> {
    return (await this.#readSealedRun([entry]))[0];
  }

  /**
   * Reads the stored bytes of records that follow each other in one pack with a single
   * positioned read, checking every header against its index entry.
   */
  async #readSealedRun(run: readonly PackEntry[], into?: Buffer): Promise<Uint8Array[]> {
    const first = run[0];
    const length = runLength(run);
    const buffer = into ?? Buffer.allocUnsafe(length);
    const { bytesRead } = await this.#handles.use(this.#packPath(first.pack), (handle) => handle.read(buffer, 0, length, first.offset));
    return run.map((entry) => {
      const at = entry.offset - first.offset;
      const dash = entry.id.indexOf("-");
      if (
        at + RECORD_HEADER_BYTES + entry.storedLength > bytesRead ||
        buffer.readUInt8(at) !== entry.flags ||
        buffer.toString("hex", at + 1, at + 9) !== entry.id.slice(0, dash) ||
        buffer.readUInt32BE(at + 9) !== Number(entry.id.slice(dash + 1)) ||
        buffer.readUInt32BE(at + 13) !== entry.storedLength
      ) {
        throw new CwsError("CORRUPT", `Cannot read chunk "${entry.id}" as its record in pack "${entry.pack}" does not match the index; run "cws-server verify"`, {
          data: { id: entry.id, pack: entry.pack },
        });
      }
      return buffer.subarray(at + RECORD_HEADER_BYTES, at + RECORD_HEADER_BYTES + entry.storedLength);
    });
  }

  async #listObjects(): Promise<string[]> {
    const hashes: string[] = [];
    for (const shard of (await readdir(this.paths.objects)).filter((name) => SHARD.test(name))) {
      for (const name of await readdir(inside(this.paths.objects, shard))) {
        if (OBJECT_HASH.test(name) && name.startsWith(shard)) hashes.push(name);
      }
    }
    return hashes.sort();
  }

  #packPath(id: string): string {
    if (!PACK_ID.test(id)) throw new TypeError(`Not a pack id: ${id}`);
    return inside(this.paths.packs, `${id}.pack`);
  }

  #indexPath(id: string): string {
    if (!PACK_ID.test(id)) throw new TypeError(`Not a pack id: ${id}`);
    return inside(this.paths.packs, `${id}.idx`);
  }

  #objectPath(hash: string): string {
    // A hash is 16 hex digits, which cannot leave the folder: checked here, then joined as text
    // (path.resolve in `inside` cost a walk over 5,000 folder objects 40 ms).
    if (!OBJECT_HASH.test(hash)) throw new CwsError("INVALID_PATH", `Cannot use ${JSON.stringify(hash.slice(0, 40))} as an object's name`);
    return `${this.paths.objects}${sep}${hash.slice(0, 2)}${sep}${hash}`;
  }
}

/** Bytes of a run of neighbouring records in one pack, headers included. */
function runLength(run: readonly PackEntry[]): number {
  const last = run[run.length - 1];
  return last.offset + RECORD_HEADER_BYTES + last.storedLength - run[0].offset;
}

/**
 * The buffers bundles for download are read into (see writeBundle): a pull's bundle (4 MiB of
 * chunks, see pull.ts) and its headers fit in one. A few bundles are prepared at once.
 */
const readArenas = new SpareBuffers(6 * 1024 * 1024, 3);

/**
 * Checks a chunk id's shape and returns its hash and length.
 *
 * @throws CwsError INVALID_ARGUMENT.
 */
function checkChunkId(id: string): [string, number] {
  const match = typeof id === "string" ? CHUNK_ID.exec(id) : null;
  if (match === null) throw new CwsError("INVALID_ARGUMENT", `Cannot use chunk id ${JSON.stringify(String(id).slice(0, 40))} as it is not "<16 hex digits>-<length>"`);
  return [match[1], Number(match[2])];
}

/** Largest single read when copying neighbouring records out of a pack. */
const MAX_RUN_BYTES = 1024 * 1024;

/** Splits entries, in order, into runs of records that sit back to back in one pack. */
function* contiguousRuns(entries: readonly PackEntry[]): Generator<PackEntry[]> {
  let run: PackEntry[] = [];
  let end = 0;
  for (const entry of entries) {
    const previous = run[0];
    if (previous !== undefined && (entry.pack !== previous.pack || entry.offset !== end || end - previous.offset >= MAX_RUN_BYTES)) {
      yield run;
      run = [];
    }
    run.push(entry);
    end = entry.offset + RECORD_HEADER_BYTES + entry.storedLength;
  }
  if (run.length > 0) yield run;
}

function corruptObject(hash: string, why: string, cause?: unknown): CwsError {
  return new CwsError("CORRUPT", `Cannot read object "${hash}" as ${why}; run "cws-server verify"`, {
    data: { hash },
    ...(cause === undefined ? {} : { cause }),
  });
}

function notStaged(name: string): CwsError {
  return new CwsError("NOT_FOUND", `Cannot ingest bundle "${name}" as it is not in the incoming staging folder; upload it first`, { data: { name } });
}

/** Removes what was planted in staging under a bundle's name, and refuses it. */
async function refuseNonFile(path: string, name: string): Promise<never> {
  await rm(path, { recursive: true, force: true });
  throw new CwsError("INVALID_PATH", `Cannot ingest bundle "${name}" as it is not a regular file (a link, folder or special file was in the incoming staging folder; it was removed). Upload the bundle again.`, {
    data: { name },
  });
}

function isErrno(error: unknown, code: string): boolean {
  return typeof error === "object" && error !== null && (error as NodeJS.ErrnoException).code === code;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Runs `work` on every item, at most `limit` at a time (the thread pool runs file system calls
 * side by side). After a failure no new item starts, the ones running are waited for, and the
 * first failure is thrown.
 */
async function eachInParallel<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < items.length) {
      try {
        await work(items[next++]);
      } catch (error) {
        failed = true;
        throw error;
      }
    }
  };
  const failure = (await Promise.allSettled(Array.from({ length: Math.min(limit, items.length) }, worker))).find((result) => result.status === "rejected");
  if (failure !== undefined) throw failure.reason;
}

/**
 * Creates `path` (which must not exist) holding `bytes`; not durable by itself. Through the
 * callback calls, which cost the main thread less than fs/promises (no FileHandle object).
 */
async function writeNewFile(path: string, bytes: Uint8Array): Promise<void> {
  const fd = await new Promise<number>((resolve, reject) => fsOpen(path, "wx", 0o600, (error, fd) => (error ? reject(error) : resolve(fd))));
  try {
    let done = 0;
    while (done < bytes.byteLength) {
      done += await new Promise<number>((resolve, reject) => fsWrite(fd, bytes, done, bytes.byteLength - done, null, (error, n) => (error ? reject(error) : resolve(n))));
    }
  } finally {
    await new Promise<void>((resolve, reject) => fsClose(fd, (error) => (error ? reject(error) : resolve())));
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (error) {
    if (isErrno(error, "ENOENT")) return false;
    throw error;
  }
}

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch (error) {
    if (isErrno(error, "ENOENT")) return undefined;
    throw error;
  }
}

async function mtimeOf(path: string): Promise<number | undefined> {
  try {
    return (await lstat(path)).mtimeMs;
  } catch (error) {
    if (isErrno(error, "ENOENT")) return undefined;
    throw error;
  }
}

/** Removes a file (or a folder, or a symlink itself) last modified before `cutoff`. */
async function removeIfOlder(path: string, cutoff: number): Promise<boolean> {
  const mtime = await mtimeOf(path);
  if (mtime === undefined || mtime > cutoff) return false;
  // rm never follows a symlink: a link planted in a staging folder is removed, not its target.
  await rm(path, { recursive: true, force: true });
  return true;
}
