/**
 * The upload half of a sync: find which chunks of the pushed files the server lacks, pack
 * them into bundles, upload each bundle and have the agent ingest it. Bundles are bounded in
 * size so an interrupted push loses at most one bundle of work: chunks of bundles already
 * ingested are in the store and are not sent again by the next run.
 *
 * The work is a pipeline: the missing chunks are planned into bundles up front (lazily), the
 * bundles are built (read, verified, compressed, written) by worker threads for a large push
 * (push-pool.ts), and each finished bundle is uploaded and ingested while the next ones are
 * built. Ingests run one at a time, in the order the bundles were finished.
 */
import { rm } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import { chunkId, MANIFEST_FORMAT, type Manifest, type ManifestEntry } from "../core/manifest.ts";
import { MAX_IDS_PER_REQUEST, MAX_MANIFEST_PIECE_ENTRIES } from "../protocol/messages.ts";
import { MAX_BUNDLE_RECORDS } from "../protocol/bundle.ts";
import type { AgentConnection } from "../transport/connection.ts";
import { buildBundle, diskSource, type BuiltBundle, type BundleSource, type DiskPart } from "./bundle-build.ts";
import { BuildPool, PoolFailure } from "./push-pool.ts";
import { CwsError, isCwsError } from "../errors.ts";
import { faultPoint } from "../fault.ts";
import { makeWorkDir } from "./leftovers.ts";
import { LinkMeter } from "./link-meter.ts";
import { diskPath } from "./pull.ts";

/** A bundle is closed once it holds this many raw bytes (its file is smaller when compressed). */
export const BUNDLE_TARGET_BYTES = 32 * 1024 * 1024;

/** Raw bytes of the first bundle (and the smallest, but for the very last). */
const FIRST_BUNDLE_BYTES = 4 * 1024 * 1024;

/** Bundles finished and waiting to upload or be ingested while the next ones are built. */
const MAX_BUNDLES_IN_FLIGHT = 2;

/** Bundles uploading at once. */
const UPLOAD_LANES = 2;

/** Most push worker threads: beyond this, the agent's ingest cannot keep up anyway. */
const MAX_PUSH_WORKERS = 4;

/**
 * Pushes with fewer missing bytes than this build their bundles on the main thread: starting
 * the workers (~0.2 s) would cost more than the compression they take over.
 */
const MIN_BYTES_FOR_WORKERS = 24 * 1024 * 1024;

/** A size that tests may shrink through `name`: a positive integer below `below`, else `fallback`. */
function shrunkByTests(name: string, fallback: number, below = Infinity): number {
  const fromEnv = Number(process.env[name]);
  return Number.isInteger(fromEnv) && fromEnv > 0 && fromEnv < below ? fromEnv : fallback;
}

/** Tests shrink the pieces of a staged manifest (CWS_MANIFEST_PIECE_ENTRIES) to stage small trees in several. */
function pieceEntries(): number {
  return shrunkByTests("CWS_MANIFEST_PIECE_ENTRIES", MAX_MANIFEST_PIECE_ENTRIES, MAX_MANIFEST_PIECE_ENTRIES);
}

/** Tests shrink bundles (CWS_BUNDLE_TARGET_BYTES) to interrupt a push between two of them. */
function bundleTargetBytes(): number {
  return shrunkByTests("CWS_BUNDLE_TARGET_BYTES", BUNDLE_TARGET_BYTES);
}

export interface PushStats {
  chunks: number;
  bytes: number;
  bundles: number;
}

export interface PushChunksOptions {
  conn: AgentConnection;
  /**
   * File entries to make available on the server, with the folder they are in on disk (the
   * superproject's root: the file's own path is made when its bundle is planned, so that a push
   * of 50,000 files does not hold 50,000 absolute paths, 8 MB, from its start to its end), or
   * with a reader for entries whose content is produced in memory (the normalized Codex threads).
   */
  files: Array<{ entry: ManifestEntry; root: string } | { entry: ManifestEntry; read: () => AsyncIterable<{ id: string; data: Uint8Array }> }>;
  signal?: AbortSignal;
  onProgress?: (done: { chunks: number; bytes: number; total: number }) => void;
}

/** Asks the server which chunk ids it lacks, in batches the protocol allows, all sent at once. */
export async function findMissing(conn: AgentConnection, ids: readonly string[], signal?: AbortSignal): Promise<Set<string>> {
  const batches: string[][] = [];
  for (let start = 0; start < ids.length; start += MAX_IDS_PER_REQUEST) batches.push(ids.slice(start, start + MAX_IDS_PER_REQUEST));
  const answers = await Promise.all(batches.map((batch) => conn.call("missingChunks", { ids: batch }, { signal })));
  return new Set(answers.flatMap((answer) => answer.missing));
}

/**
 * Makes every chunk of `files` available on the server: asks which ones it lacks, then builds,
 * uploads and has the agent ingest bundles of them until none is missing.
 *
 * @throws CwsError CORRUPT / NOT_FOUND when a file changed or vanished since the scan (nothing
 *   of it is committed; bundles already ingested stay and are not sent again), CANCELLED on
 *   `signal`, and whatever the connection throws.
 */
export async function pushChunks(options: PushChunksOptions): Promise<PushStats> {
  const { conn, files, signal } = options;
  const wanted = new Map<string, number>();
  for (const { entry } of files) for (const ref of entry.chunks) wanted.set(chunkId(ref), ref[1]);
  let wantedBytes = 0;
  for (const length of wanted.values()) wantedBytes += length;
  // Workers start while the agent answers which chunks it lacks (they take ~0.2 s to load).
  const planned = pushWorkerCount(wantedBytes);
  const started = planned > 0 ? new BuildPool(planned) : undefined;
  const stop = () => void started?.close(cancelled());
  signal?.addEventListener("abort", stop, { once: true });
  let workDir: string | undefined;
  // Bundles being built, waiting to upload or being ingested. Bounded, so the push holds a
  // few bundles' worth of disk whatever the size of the tree.
  const pending = new Set<Promise<void>>();
  try {
    const missing = await findMissing(conn, [...wanted.keys()], signal);
    const stats: PushStats = { chunks: 0, bytes: 0, bundles: 0 };
    if (missing.size === 0) return stats;
    let total = 0;
    for (const id of missing) total += wanted.get(id) ?? 0;
    // Most of it may have been on the server already: then the workers are not worth it.
    const workers = pushWorkerCount(total);
    // Dropped (and its jobs built on this thread) if its workers fail; `started` is still closed.
    let pool = workers > 0 ? started : undefined;
    if (pool === undefined) await started?.close();
    workDir = await makeWorkDir("push");
    // Streamed bundles (small chunks compressed in runs) for agents that read them, until the
    // uploads show a link fast enough for plain ones (see LinkMeter).
    const streams = conn.hello.capabilities.includes("bundles-stream");
    const link = new LinkMeter();

    // Finished bundles upload two at a time (the round trips that open, sync and rename one
    // overlap the data of the other) and are ingested one after another, in the order they
    // were finished; uploads and ingests overlap each other and the building of the next ones.
    const uploadLanes: Array<Promise<void>> = Array.from({ length: UPLOAD_LANES }, () => Promise.resolve());
    let shipped = 0;
    let ingestTail: Promise<void> = Promise.resolve();
    const ship = (built: BuiltBundle): Promise<void> => {
      const name = `push-${randomUUID()}.bundle`;
      const lane = shipped++ % UPLOAD_LANES;
      const uploaded = uploadLanes[lane].then(async () => {
        link.start(performance.now());
        let sent = 0;
        try {
          await conn.upload(built.path, name, { signal });
          sent = built.bytes;
        } finally {
          link.end(performance.now(), sent);
        }
      });
      uploadLanes[lane] = uploaded.catch(() => {});
      const previousIngest = ingestTail;
      const done = (async () => {
        try {
          await uploaded;
          // In order, and also after an earlier bundle failed: an uploaded bundle is either
          // ingested (its chunks are then not sent again) or removed by the failing ingest,
          // never left in the server's staging folder to fill its disk.
          await previousIngest.catch(() => {});
          await conn.call("ingestBundle", { name }, { signal });
        } finally {
          await rm(built.path, { force: true });
        }
        stats.bundles++;
        if (stats.bundles === 1) faultPoint("client-after-first-bundle");
        stats.chunks += built.chunks;
        stats.bytes += built.raw;
        options.onProgress?.({ chunks: stats.chunks, bytes: stats.bytes, total });
      })();
      ingestTail = done;
      return done;
    };

    // Small pushes, content produced in memory (the normalized Codex threads), and the rest of
    // a push whose workers failed are built on this thread, one at a time: interleaving them
    // would gain nothing.
    let inlineTail: Promise<void> = Promise.resolve();
    const buildInline = (path: string, plan: BundlePlan, stream: boolean): Promise<BuiltBundle> => {
      const building = inlineTail.then(() => buildBundle(path, plan.parts.map(toBundleSource), plan.wanted, { stream, signal }));
      inlineTail = building.then(() => {}, () => {});
      return building;
    };
    const build = async (path: string, id: number, plan: BundlePlan): Promise<BuiltBundle> => {
      const stream = streams && !link.fast;
      const onDisk = plan.parts.filter((part): part is DiskPart => "absPath" in part);
      if (pool === undefined || onDisk.length !== plan.parts.length) return buildInline(path, plan, stream);
      try {
        return await pool.build({ id, path, parts: onDisk, wanted: plan.wanted, stream });
      } catch (error) {
        if (!(error instanceof PoolFailure)) throw error;
        // Workers that cannot start or crashed (not a build error such as a changed file):
        // the push goes on without them, just slower.
        if (pool !== undefined) process.emitWarning(`cws: building the rest of the push on the main thread, as ${error.message}`);
        pool = undefined;
        await rm(`${path}.tmp`, { force: true });
        return buildInline(path, plan, stream);
      }
    };

    const limit = Math.max(1, workers) + MAX_BUNDLES_IN_FLIGHT;
    let sequence = 0;
    for (const plan of planBundles(files, missing, { target: bundleTargetBytes(), total, builders: workers })) {
      if (signal?.aborted) throw cancelled();
      const id = sequence++;
      const task = build(join(workDir, `b${id}.bundle`), id, plan).then(ship);
      pending.add(task);
      task.then(() => pending.delete(task), () => {});
      // Waits for a free place; the first failure among the pending tasks surfaces here.
      while (pending.size >= limit) await Promise.race(pending);
    }
    await Promise.all(pending);
    return stats;
  } catch (error) {
    // Stop the builds, and let uploads and ingests under way end before their files go.
    await started?.close(error instanceof Error ? error : cancelled());
    const settled = await Promise.allSettled(pending);
    // A full server disk also fails the bundle uploaded beside the one that filled it, often
    // first, and with only the SFTP server's bare "Failure" (its own check then finds space
    // again, as the other part was removed): the full disk is what the user must hear.
    const full = settled.find((result): result is PromiseRejectedResult => result.status === "rejected" && isCwsError(result.reason, "DISK_FULL"));
    throw full !== undefined && !isCwsError(error, "DISK_FULL") ? full.reason : error;
  } finally {
    signal?.removeEventListener("abort", stop);
    await started?.close();
    if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
  }
}

/** Pieces of a staged manifest travelling or being stored at once. */
const PIECES_IN_FLIGHT = 2;

/**
 * How a commit names a whole manifest (a first push): a manifest of more than one piece's
 * entries is staged on the agent piece by piece (capability "manifest-pieces") and named by
 * its counts, so neither side holds it as one request of megabytes (12 MB of JSON at 50,000
 * files) beside its objects; a smaller one, or one for an agent without the capability, travels
 * whole in the commit. Either way nothing is a head until the commit's database transaction.
 */
export async function wholeManifestForCommit(conn: AgentConnection, slug: string, manifest: Manifest, signal?: AbortSignal): Promise<{ manifest: Manifest } | { staged: { pieces: number; entries: number } }> {
  const { entries } = manifest;
  const size = pieceEntries();
  if (entries.length <= size || !conn.hello.capabilities.includes("manifest-pieces")) return { manifest };
  // The agent handles requests in order: the next piece travels while it stores this one.
  const calls: Array<Promise<unknown>> = [];
  let pieces = 0;
  for (let start = 0; start < entries.length; start += size) {
    if (calls.length >= PIECES_IN_FLIGHT) {
      await calls.shift();
      if (pieces === PIECES_IN_FLIGHT) faultPoint("client-after-first-piece");
    }
    const piece: Manifest = { format: MANIFEST_FORMAT, entries: entries.slice(start, start + size) };
    const call = conn.call("stageManifest", { slug, piece: pieces++, manifest: piece }, { signal });
    // Awaited in order below; a later piece refused after an earlier one failed is not news.
    call.catch(() => {});
    calls.push(call);
  }
  for (const call of calls) await call;
  return { staged: { pieces, entries: entries.length } };
}

type PushFile = PushChunksOptions["files"][number];

/** One bundle to build: its file parts, and the chunks it carries (each in one of them). */
interface BundlePlan {
  parts: Array<DiskPart | Extract<PushFile, { read: unknown }>>;
  wanted: string[];
}

/**
 * How many raw bytes the next bundle gets. Bundles start small and grow (the pipeline fills
 * quickly: nothing uploads before the first bundle is built), and shrink again towards the end
 * (the last upload and ingest, which nothing overlaps, stay short); in between they are
 * `targetBytes`, which bounds what an interrupted push loses and what waits on disk.
 */
export function nextBundleBytes(targetBytes: number, sequence: number, remaining: number, builders: number): number {
  const ramp = FIRST_BUNDLE_BYTES * 2 ** Math.min(sequence, 16);
  // Each builder gets an equal share of what is left, so they finish together.
  const tail = Math.ceil(remaining / Math.max(1, builders));
  return Math.min(targetBytes, Math.max(FIRST_BUNDLE_BYTES, Math.min(ramp, tail)));
}

/**
 * Splits the missing chunks into bundles (sized by `nextBundleBytes`, at most
 * MAX_BUNDLE_RECORDS records), each chunk in the bundle of the first file that holds it. A file
 * on disk too big for the rest of a bundle is split at a chunk boundary, and each bundle reads
 * only the chunks from the first to the last it wants of a file; content produced in memory is
 * split only at the record limit. Lazy, so only
 * the plans being built are in memory. Deletes what it plans from `missing`.
 */
function* planBundles(files: readonly PushFile[], missing: Set<string>, sizes: { target: number; total: number; builders: number }): Generator<BundlePlan> {
  let plan: BundlePlan = { parts: [], wanted: [] };
  let raw = 0;
  let planned = 0;
  let sequence = 0;
  let limit = nextBundleBytes(sizes.target, sequence, sizes.total, sizes.builders);
  for (const file of files) {
    const { chunks } = file.entry;
    // The part of the file this bundle reads: from its first missing chunk to its last, so a
    // file that only grew (its old chunks are on the server) is read from where it grew.
    let from = -1;
    let to = 0;
    for (let i = 0; i < chunks.length; i++) {
      const id = chunkId(chunks[i]);
      if (!missing.delete(id)) continue;
      plan.wanted.push(id);
      raw += chunks[i][1];
      if (from < 0) from = i;
      to = i + 1;
      const full = plan.wanted.length >= MAX_BUNDLE_RECORDS || ("root" in file && raw >= limit);
      if (full) {
        plan.parts.push(part(file, from, to));
        yield plan;
        planned += raw;
        limit = nextBundleBytes(sizes.target, ++sequence, sizes.total - planned, sizes.builders);
        plan = { parts: [], wanted: [] };
        raw = 0;
        from = -1;
      }
    }
    if (from >= 0) plan.parts.push(part(file, from, to));
  }
  if (plan.wanted.length > 0) yield plan;
}

/** A file, or the chunks `from` to `to` of it when that is not the whole file. */
function part(file: PushFile, from: number, to: number): BundlePlan["parts"][number] {
  if ("read" in file) return file;
  const absPath = diskPath(file.root, file.entry.path);
  return from === 0 && to === file.entry.chunks.length ? { absPath, entry: file.entry } : { absPath, entry: file.entry, from, to };
}

function toBundleSource(part: BundlePlan["parts"][number]): BundleSource {
  return "read" in part ? { entry: part.entry, read: part.read } : diskSource(part);
}

function cancelled(): CwsError {
  return new CwsError("CANCELLED", "The push was cancelled; chunks already uploaded are kept on the server");
}

/**
 * Worker threads for a push of `total` missing bytes: none for a small push, else one per core
 * but one, at least one and at most MAX_PUSH_WORKERS. The main thread needs a core of its own:
 * it encrypts every byte that leaves (ssh2's cipher path) and writes it to the socket, which
 * kept it about 90% busy while the workers compressed. On 2 cores one worker finished a
 * 5,000-file push sooner than two (which only took turns with the main thread, sshd and the
 * hub) or none, and each worker costs about 45 MiB. CWS_PUSH_WORKERS overrides all of this (0:
 * everything on the main thread; tests set it to run small pushes through the workers).
 */
function pushWorkerCount(total: number): number {
  const fromEnv = Number(process.env.CWS_PUSH_WORKERS);
  if (process.env.CWS_PUSH_WORKERS !== undefined && Number.isInteger(fromEnv) && fromEnv >= 0) return Math.min(fromEnv, 16);
  if (total < MIN_BYTES_FOR_WORKERS) return 0;
  return Math.max(1, Math.min(MAX_PUSH_WORKERS, availableParallelism() - 1));
}
