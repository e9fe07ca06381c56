/**
 * The upload half of a sync: find which chunks of the pushed files the server lacks, pack
 * them into bundles, upload each bundle and have the agent ingest it. Bundles are bounded in
 * size so an interrupted push loses at most one bundle of work: chunks of bundles already
 * ingested are in the store and are not sent again by the next run.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import { chunkId, type ManifestEntry } from "../core/manifest.ts";
import { MAX_IDS_PER_REQUEST } from "../protocol/messages.ts";
import { BundleWriter, MAX_BUNDLE_RECORDS } from "../protocol/bundle.ts";
import type { AgentConnection } from "../transport/connection.ts";
import { readFileChunks } from "./scanner.ts";
import { CwsError } from "../errors.ts";
import { faultPoint } from "../fault.ts";

/** A bundle is closed and uploaded once it holds this many bytes. */
export const BUNDLE_TARGET_BYTES = 32 * 1024 * 1024;

/** Tests shrink bundles (CWS_BUNDLE_TARGET_BYTES) to interrupt a push between two of them. */
function bundleTargetBytes(): number {
  const fromEnv = Number(process.env.CWS_BUNDLE_TARGET_BYTES);
  return Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : BUNDLE_TARGET_BYTES;
}

/** File extensions whose content is already compressed: zstd is not even tried on them. */
const INCOMPRESSIBLE = /\.(zst|gz|tgz|zip|7z|xz|bz2|png|jpe?g|gif|webp|mp[34]|mov|pdf|woff2?)$/i;

export interface PushStats {
  chunks: number;
  bytes: number;
  bundles: number;
}

export interface PushChunksOptions {
  conn: AgentConnection;
  /**
   * File entries to make available on the server, with where each is on disk, or with a
   * reader for entries whose content is produced in memory (the normalized Codex threads).
   */
  files: Array<{ entry: ManifestEntry; absPath: string } | { entry: ManifestEntry; read: () => AsyncIterable<{ id: string; data: Uint8Array }> }>;
  signal?: AbortSignal;
  onProgress?: (done: { chunks: number; bytes: number; total: number }) => void;
}

/** Asks the server which chunk ids it lacks, in batches the protocol allows. */
export async function findMissing(conn: AgentConnection, ids: readonly string[], signal?: AbortSignal): Promise<Set<string>> {
  const missing = new Set<string>();
  for (let start = 0; start < ids.length; start += MAX_IDS_PER_REQUEST) {
    const batch = ids.slice(start, start + MAX_IDS_PER_REQUEST);
    const answer = await conn.call("missingChunks", { ids: batch }, { signal });
    for (const id of answer.missing) missing.add(id);
  }
  return missing;
}

export async function pushChunks(options: PushChunksOptions): Promise<PushStats> {
  const { conn, files, signal } = options;
  const wanted = new Set<string>();
  for (const { entry } of files) for (const ref of entry.chunks) wanted.add(chunkId(ref));
  const missing = await findMissing(conn, [...wanted], signal);
  const stats: PushStats = { chunks: 0, bytes: 0, bundles: 0 };
  if (missing.size === 0) return stats;
  let total = 0;
  for (const id of missing) total += Number(id.slice(17));

  const targetBytes = bundleTargetBytes();
  const workDir = await mkdtemp(join(tmpdir(), "cws-push-"));
  let writer: BundleWriter | undefined;
  let rawInBundle = 0;
  // Upload and ingest of one bundle overlap with building the next one.
  let inFlight: Promise<void> = Promise.resolve();

  const ship = async (bundle: BundleWriter, chunks: number, raw: number) => {
    await bundle.finish();
    const name = `push-${randomUUID()}.bundle`;
    const previous = inFlight;
    inFlight = (async () => {
      await previous;
      try {
        await conn.upload(bundle.path, name, { signal });
        await conn.call("ingestBundle", { name }, { signal });
      } finally {
        await rm(bundle.path, { force: true });
      }
      stats.bundles++;
      if (stats.bundles === 1) faultPoint("client-after-first-bundle");
      stats.chunks += chunks;
      stats.bytes += raw;
      options.onProgress?.({ chunks: stats.chunks, bytes: stats.bytes, total });
    })();
    // Surface a failure of this upload on the next await instead of as an unhandled rejection.
    inFlight.catch(() => {});
  };

  try {
    let chunksInBundle = 0;
    for (const file of files) {
      const { entry } = file;
      if (!entry.chunks.some((ref) => missing.has(chunkId(ref)))) continue;
      const compress = !INCOMPRESSIBLE.test(entry.path);
      for await (const chunk of "read" in file ? file.read() : readFileChunks(file.absPath, entry)) {
        if (signal?.aborted) throw new CwsError("CANCELLED", "The push was cancelled; chunks already uploaded are kept on the server");
        if (!missing.has(chunk.id)) continue;
        // A chunk shared by two files is sent once.
        missing.delete(chunk.id);
        writer ??= await BundleWriter.create(join(workDir, `b${stats.bundles}-${randomUUID()}.bundle`));
        await writer.add(chunk.id, chunk.data, { compress });
        rawInBundle += chunk.data.byteLength;
        chunksInBundle++;
        if (writer.bytes >= targetBytes || writer.records >= MAX_BUNDLE_RECORDS) {
          await ship(writer, chunksInBundle, rawInBundle);
          writer = undefined;
          rawInBundle = 0;
          chunksInBundle = 0;
          // Keep at most one bundle uploading while the next is built: bounded disk and memory.
          await inFlight;
        }
      }
    }
    if (writer !== undefined) {
      await ship(writer, chunksInBundle, rawInBundle);
      writer = undefined;
    }
    await inFlight;
    if (missing.size > 0) {
      throw new CwsError("CORRUPT", `${missing.size} chunk(s) could not be read back from the local files: they changed during the sync. Run the sync again.`);
    }
    return stats;
  } catch (error) {
    await writer?.abort().catch(() => {});
    await inFlight.catch(() => {});
    throw error;
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}
