/**
 * What a user decides about the server's state: accept a held quarantine item (it is applied
 * to the current head as a new snapshot), reject it (the server version stays; the held
 * content is kept until gc), restore an old checkpoint (its manifest becomes the head as a new
 * snapshot, so the head it replaces stays a checkpoint too). History is never rewritten: each
 * of these only ever adds a snapshot. Call under the hub's head lock.
 */
import { CwsError } from "../../src/errors.ts";
import { emptyManifest, manifestChunkIds, type Manifest } from "../../src/core/manifest.ts";
import { applyItem } from "../../src/core/policy.ts";
import type { SnapshotInfo } from "../../src/protocol/messages.ts";
import type { QuarantineRecord } from "./hub-db.ts";
import { getQuarantineContent, type PolicyContext } from "./push-policy.ts";

export interface ActorRequest {
  deviceId: string;
  fencingToken?: number;
}

async function requireChunks(ctx: PolicyContext, manifest: Manifest, what: string): Promise<void> {
  const missing = await ctx.store.missing([...manifestChunkIds(manifest)]);
  if (missing.length > 0) {
    throw new CwsError("CORRUPT", `Cannot ${what} as the server lacks ${missing.length} chunk(s) it needs (first ${missing[0]}). Run \`cws-server verify\` on the server.`, {
      data: { missing: missing.slice(0, 20) },
    });
  }
}

function fileTotals(manifest: Manifest): { files: number; bytes: number } {
  const files = manifest.entries.filter((e) => e.kind === "file");
  return { files: files.length, bytes: files.reduce((sum, e) => sum + e.size, 0) };
}

/**
 * Applies a held item to the current head as a new snapshot of kind "accept-quarantine". A
 * rejected item whose content gc has not collected yet may still be accepted: that is how a
 * rejection is undone.
 *
 * @throws CwsError CONFLICT when the item was accepted already or the head changed its paths
 *   since it was held; NOT_FOUND when gc collected its content; LEASE_HELD / LEASE_LOST under
 *   the commit rule.
 */
export async function acceptQuarantineItem(ctx: PolicyContext, request: ActorRequest & { id: number }): Promise<{ item: QuarantineRecord; snapshot: SnapshotInfo }> {
  const { db, store } = ctx;
  const item = db.quarantineItem(request.id);
  if (item.status === "accepted") {
    throw new CwsError("CONFLICT", `Quarantine item ${item.id} was already accepted${item.resolvedBy ? ` by ${item.resolvedBy}` : ""} (snapshot ${item.resolvedSnapshot}); nothing was changed.`, {
      data: { id: item.id, snapshot: item.resolvedSnapshot },
    });
  }
  if (!item.contentAvailable) {
    throw new CwsError("NOT_FOUND", `Quarantine item ${item.id} was rejected and its content has since been removed by \`cws-server gc\`; it cannot be accepted any more.`, { data: { id: item.id } });
  }
  db.assertWriter(request.deviceId, request.fencingToken);
  const sp = db.superproject(item.slug);
  const head = sp.head === null ? null : db.snapshot(item.slug, sp.head);
  const headManifest = head === null ? emptyManifest() : await ctx.manifests.getManifest(head.manifestHash);
  const content = await getQuarantineContent(store, item.objectHash);
  const manifest = applyItem(headManifest, content);
  await requireChunks(ctx, manifest, `accept quarantine item ${item.id}`);
  const manifestHash = await ctx.manifests.putManifest(manifest);
  const snapshot = db.advanceHead({
    slug: item.slug,
    deviceId: request.deviceId,
    kind: "accept-quarantine",
    manifestHash,
    ...fileTotals(manifest),
    fencingToken: request.fencingToken,
    expectedHead: sp.head,
    also: (made) => db.markAccepted(item.id, request.deviceId, made.id),
  });
  ctx.log(`${item.slug}: quarantine item ${item.id} (${item.reason}) accepted by ${snapshot.deviceName} as snapshot ${snapshot.id}`);
  return { item: db.quarantineItem(item.id), snapshot };
}

/** Rejects a pending item: the server version stays live; the held content stays until gc. */
export function rejectQuarantineItem(ctx: PolicyContext, request: ActorRequest & { id: number }): QuarantineRecord {
  const item = ctx.db.rejectItem(request.id, request.deviceId, request.fencingToken);
  ctx.log(`${item.slug}: quarantine item ${item.id} (${item.reason}) rejected by ${item.resolvedBy}`);
  return item;
}

/**
 * Makes an old checkpoint's manifest the head again, as a new snapshot of kind "restore" whose
 * parent is the head it replaces. The quarantine policy is not applied: a restore names one
 * exact checkpoint the user chose, and the head before it stays a checkpoint, so a restore is
 * undone by restoring that one.
 */
export async function restoreCheckpoint(ctx: PolicyContext, request: ActorRequest & { slug: string; snapshotId: number }): Promise<{ snapshot: SnapshotInfo; previousHead: number | null; unchanged: boolean }> {
  const { db } = ctx;
  db.assertWriter(request.deviceId, request.fencingToken);
  const target = db.snapshot(request.slug, request.snapshotId);
  const sp = db.superproject(request.slug);
  if (sp.head === target.id) return { snapshot: target, previousHead: sp.head, unchanged: true };
  const manifest = await ctx.manifests.getManifest(target.manifestHash);
  await requireChunks(ctx, manifest, `restore checkpoint ${target.id}`);
  const snapshot = db.advanceHead({
    slug: request.slug,
    deviceId: request.deviceId,
    kind: "restore",
    manifestHash: target.manifestHash,
    ...fileTotals(manifest),
    fencingToken: request.fencingToken,
    expectedHead: sp.head,
  });
  ctx.log(`${request.slug}: checkpoint ${target.id} restored by ${snapshot.deviceName} as snapshot ${snapshot.id} (was ${sp.head ?? "empty"})`);
  return { snapshot, previousHead: sp.head, unchanged: false };
}
