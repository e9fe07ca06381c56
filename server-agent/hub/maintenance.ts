/**
 * Server maintenance, run inside the hub so it never races a commit:
 * - gc: apply the retention policy (src/core/retention.ts), drop the content of decided
 *   quarantine items, then repack the store without the chunks and objects nothing kept
 *   references. Files younger than the grace period are never touched, so the chunks of an
 *   upload in flight (ingested, not yet committed) survive.
 * - verify: re-hash every chunk and object, and check that every kept snapshot and open
 *   quarantine item can be read back whole.
 * - backup: the hub takes a consistent copy of the database (SQLite `VACUUM INTO`) and lists
 *   the store's packs and objects; `cws-server backup` copies them (backup-copy.ts) while gc
 *   is held off, and the hub keeps serving commits meanwhile.
 */
import { randomBytes } from "node:crypto";
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { CwsError } from "../../src/errors.ts";
import { chunkId, type ManifestEntry } from "../../src/core/manifest.ts";
import { decideRetention, resolveRetentionSettings, type RetentionSettings } from "../../src/core/retention.ts";
import type { RepackResult } from "../store/store.ts";
import { getQuarantineContent, type PolicyContext } from "./push-policy.ts";

/** The default grace period of gc: a day, far longer than any upload takes. */
export const DEFAULT_GC_GRACE_MS = 24 * 60 * 60 * 1000;

export interface GcOptions {
  /** Files younger than this, and items rejected more recently, are kept. */
  graceMs?: number;
  /** Report what would go, change nothing. */
  dryRun?: boolean;
  /** Wall-clock time for file ages (tests inject it). */
  wallNow?: number;
}

export interface GcReport {
  dryRun: boolean;
  /** Snapshots retention drops (or would drop), per superproject. */
  snapshotsDropped: Array<{ slug: string; ids: number[] }>;
  snapshotsKept: number;
  /** Decided quarantine items whose content is dropped. */
  itemsCollected: number[];
  liveChunks: number;
  liveObjects: number;
  repack: RepackResult | null;
}

/** A superproject's retention settings as stored; a damaged value stops gc with advice. */
export function superprojectRetention(json: string, slug: string): RetentionSettings {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch {
    throw new CwsError("INVALID_ARGUMENT", `The retention settings of ${slug} are not valid JSON. Reset them with \`cws-server settings ${slug} --retention '{}'\`.`);
  }
  return resolveRetentionSettings(raw);
}

/** Collects garbage. Call under the hub's maintenance lock and head lock. */
export async function runGc(ctx: PolicyContext, options: GcOptions = {}): Promise<GcReport> {
  const { db, store } = ctx;
  const graceMs = options.graceMs ?? DEFAULT_GC_GRACE_MS;
  const now = db.clock();
  const liveItems = db.liveQuarantineItems();
  const collect = liveItems.filter((item) => item.status === "rejected" && (item.resolvedAt ?? 0) <= now - graceMs);
  const collectIds = new Set(collect.map((item) => item.id));
  const keptItems = liveItems.filter((item) => !collectIds.has(item.id));

  const all = db.allSnapshots();
  const dropped: GcReport["snapshotsDropped"] = [];
  const dropIds = new Set<number>();
  for (const sp of db.listSuperprojects()) {
    const pinned = keptItems.filter((i) => i.slug === sp.slug).flatMap((i) => [i.snapshotId, i.baseSnapshot]).filter((id): id is number => id !== null);
    const decision = decideRetention({
      snapshots: all.filter((s) => s.slug === sp.slug),
      head: sp.head,
      pinned,
      settings: superprojectRetention(db.retentionSettings(sp.slug), sp.slug),
      now,
    });
    if (decision.drop.length > 0) dropped.push({ slug: sp.slug, ids: decision.drop });
    for (const id of decision.drop) dropIds.add(id);
  }
  const kept = all.filter((s) => !dropIds.has(s.id));

  // Everything kept must be readable before anything is removed: gc never collects on a guess.
  const liveObjects = new Set<string>();
  const liveChunks = new Set<string>();
  // A snapshot's manifest is a tree of folder objects: every one of them is live. Snapshots
  // share most folders, so each is read once.
  const seen = new Set<string>();
  for (const hash of new Set(kept.map((s) => s.manifestHash))) {
    liveObjects.add(hash);
    await ctx.manifests.walk(hash, (node, nodeHash) => {
      liveObjects.add(nodeHash);
      for (const entry of node.entries.values()) addChunks(liveChunks, entry);
    }, { seen });
  }
  for (const item of keptItems) {
    liveObjects.add(item.objectHash);
    const content = await getQuarantineContent(store, item.objectHash);
    for (const entry of [...Object.values(content.proposed), ...Object.values(content.previous)]) addChunks(liveChunks, entry);
  }
  const itemsCollected = [...collectIds, ...db.acceptedUncollectedIds()].sort((a, b) => a - b);
  const report: GcReport = {
    dryRun: options.dryRun === true,
    snapshotsDropped: dropped,
    snapshotsKept: kept.length,
    itemsCollected,
    liveChunks: liveChunks.size,
    liveObjects: liveObjects.size,
    repack: null,
  };
  if (options.dryRun) return report;

  db.markCollected(itemsCollected);
  db.deleteSnapshots([...dropIds]);
  report.repack = await store.repack(liveChunks, { graceMs, now: options.wallNow ?? Date.now(), liveObjects });
  ctx.log(`gc: dropped ${dropIds.size} snapshot(s), collected ${itemsCollected.length} decided item(s), ${report.repack.chunksDropped} chunk(s), ${report.repack.objectsRemoved} object(s); freed ${report.repack.bytesFreed} bytes`);
  return report;
}

function addChunks(into: Set<string>, entry: ManifestEntry | null): void {
  if (entry === null) return;
  for (const ref of entry.chunks) into.add(chunkId(ref));
}

export interface VerifyProblem {
  kind: "pack" | "index" | "chunk" | "object" | "snapshot" | "quarantine" | "file";
  name: string;
  message: string;
}

export interface VerifyReport {
  packs: number;
  chunks: number;
  objects: number;
  snapshots: number;
  items: number;
  problems: VerifyProblem[];
}

/** Re-hashes everything and checks that every snapshot and open item is whole. Call under the maintenance lock. */
export async function runVerify(ctx: PolicyContext): Promise<VerifyReport> {
  const { db, store } = ctx;
  const result = await store.verifyAll();
  const problems: VerifyProblem[] = result.problems.map((p) => ({ kind: p.kind, name: p.name, message: p.message }));
  const damaged = new Set(result.problems.filter((p) => p.kind === "chunk").map((p) => p.name));
  const affected = new Map<string, string[]>();
  const note = (id: string, where: string) => {
    const list = affected.get(id) ?? [];
    if (list.length < 10) list.push(where);
    affected.set(id, list);
  };

  const snapshots = db.allSnapshots();
  const checked = new Map<string, string | null>();
  for (const snapshot of snapshots) {
    const name = `${snapshot.slug}@${snapshot.id}`;
    if (!checked.has(snapshot.manifestHash)) {
      try {
        // Every folder object of the tree, with the counts each parent keeps checked against it.
        const ids = new Set<string>();
        await ctx.manifests.walk(snapshot.manifestHash, (node) => {
          for (const entry of node.entries.values()) {
            addChunks(ids, entry);
            for (const ref of entry.chunks) if (damaged.has(chunkId(ref))) note(chunkId(ref), `${name} ${entry.path}`);
          }
        }, { checkCounts: true });
        const missing = await store.missing([...ids]);
        checked.set(snapshot.manifestHash, missing.length > 0 ? `lacks ${missing.length} chunk(s), e.g. ${missing[0]}` : null);
      } catch (error) {
        checked.set(snapshot.manifestHash, `its manifest ${snapshot.manifestHash} cannot be read: ${(error as Error).message}`);
      }
    }
    const problem = checked.get(snapshot.manifestHash);
    if (problem) problems.push({ kind: "snapshot", name, message: problem });
  }
  const items = db.liveQuarantineItems();
  for (const item of items) {
    try {
      const content = await getQuarantineContent(store, item.objectHash);
      const ids = new Set<string>();
      for (const entry of Object.values(content.proposed)) addChunks(ids, entry);
      const missing = await store.missing([...ids]);
      if (missing.length > 0) problems.push({ kind: "quarantine", name: String(item.id), message: `lacks ${missing.length} chunk(s), e.g. ${missing[0]}` });
      for (const id of ids) if (damaged.has(id)) note(id, `quarantine item ${item.id}`);
    } catch (error) {
      problems.push({ kind: "quarantine", name: String(item.id), message: `its content ${item.objectHash} cannot be read: ${(error as Error).message}` });
    }
  }
  for (const [id, where] of affected) {
    problems.push({ kind: "file", name: id, message: `the damaged chunk is used by ${where.join(", ")}` });
  }
  return { packs: result.packs, chunks: result.chunks, objects: result.objects, snapshots: snapshots.length, items: items.length, problems };
}

/** What `backupBegin` hands the copier: one consistent state of the server to copy. */
export interface BackupSnapshot {
  /** Identifies this backup to `backupEnd`. */
  id: string;
  /** A consistent copy of the database, written by the hub into `<data>/tmp`; the copier moves it out. */
  database: string;
  /** Pack and index file names in `store/packs` (pairs) that existed when the database was copied. */
  packs: string[];
  /** Object paths (`<shard>/<hash>`) in `store/objects` that existed then. */
  objects: string[];
  createdAt: number;
}

const PACK_INDEX = /^([0-9a-f]{16})\.idx$/;
const OBJECT_NAME = /^[0-9a-f]{16}$/;
const SHARD = /^[0-9a-f]{2}$/;

/** How long a started backup keeps gc away without being ended (a copier that died). */
export const BACKUP_GUARD_MS = 6 * 60 * 60 * 1000;

/**
 * Backups in progress. While one is open, gc refuses to run, so nothing the backup lists can
 * disappear before the copier has it. The guard lives in the hub's memory: if the hub
 * restarts meanwhile, the copier notices a missing file and the backup fails loudly.
 */
export class BackupGuard {
  #open = new Map<string, number>();

  open(id: string, now: number): void {
    this.#open.set(id, now + BACKUP_GUARD_MS);
  }

  close(id: string): boolean {
    return this.#open.delete(id);
  }

  /** Throws CONFLICT while a backup that has not timed out is open. */
  assertNone(now: number): void {
    for (const [id, until] of this.#open) {
      if (until <= now) this.#open.delete(id);
      else throw new CwsError("CONFLICT", `A backup (${id}) is being copied; gc waits until it has finished. Run gc again afterwards.`, { data: { backup: id } });
    }
  }
}

/**
 * Starts a backup: copies the database as of one instant (SQLite `VACUUM INTO`, a single
 * synchronous statement, so no other database work of the hub interleaves) into the data
 * dir's tmp folder, and lists the packs and objects present. Everything that copy references
 * is in those lists, because objects and packs are written before the commit that refers to
 * them. The copying itself is done by the caller (`cws-server backup`, which may write where
 * the hub's service sandbox may not), and ends with `backupEnd`. Call under the maintenance
 * lock, so no gc is halfway through.
 */
export async function beginBackup(ctx: PolicyContext, guard: BackupGuard): Promise<BackupSnapshot> {
  const id = `backup-${Date.now()}-${randomBytes(4).toString("hex")}`;
  const database = join(ctx.store.paths.tmp, `${id}.sqlite`);
  const createdAt = Date.now();
  ctx.db.db.exec(`VACUUM INTO '${database.replaceAll("'", "''")}'`);
  guard.open(id, createdAt);
  const { paths } = ctx.store;
  const packs: string[] = [];
  for (const name of (await readdir(paths.packs)).sort()) {
    const pack = PACK_INDEX.exec(name)?.[1];
    if (pack !== undefined) packs.push(`${pack}.pack`, name);
  }
  const objects: string[] = [];
  for (const shard of (await readdir(paths.objects)).filter((n) => SHARD.test(n)).sort()) {
    for (const name of (await readdir(join(paths.objects, shard))).sort()) if (OBJECT_NAME.test(name)) objects.push(`${shard}/${name}`);
  }
  ctx.log(`backup ${id} started: ${packs.length / 2} pack(s), ${objects.length} object(s)`);
  return { id, database, packs, objects, createdAt };
}

/** Ends a backup: removes the database copy if the copier left it, and lets gc run again. */
export async function endBackup(ctx: PolicyContext, guard: BackupGuard, id: string): Promise<void> {
  if (!/^backup-\d+-[0-9a-f]{8}$/.test(id)) throw new CwsError("INVALID_ARGUMENT", `"${id}" is not a backup id.`);
  guard.close(id);
  await rm(join(ctx.store.paths.tmp, `${id}.sqlite`), { force: true });
  ctx.log(`backup ${id} ended`);
}
