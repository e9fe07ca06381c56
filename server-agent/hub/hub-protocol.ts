/**
 * Messages between an agent and the hub over the hub's local socket. Same envelopes and
 * framing as the client protocol (src/protocol/rpc.ts); only the method table differs. The
 * hub trusts the agent for identity (the agent ran under the server account after SSH
 * authentication) but still validates every value.
 */
import { z } from "zod";
import { HashHex } from "../../src/core/manifest.ts";
import { DeviceId, DeviceInfo, HeldItem, LeaseState, QuarantineItemId, QuarantineItemInfo, QuarantineQuery, SnapshotId, SnapshotInfo, SnapshotKind, Slug, SuperprojectInfo } from "../../src/protocol/messages.ts";

/** A quarantine item as the hub reports it to agents: with the store object of its content. */
export const QuarantineRecordSchema = QuarantineItemInfo.extend({ objectHash: HashHex });

const FencingToken = z.number().int().nonnegative().optional();

const RepackReport = z.object({
  packsKept: z.number(), packsYoung: z.number(), packsRewritten: z.number(), packsRemoved: z.number(), packsWritten: z.number(),
  chunksDropped: z.number(), bytesFreed: z.number(), objectsRemoved: z.number(), filesRemoved: z.number(),
});

/** Overrides as stored and the settings in effect, for one group of settings. */
const SettingsView = z.object({ overrides: z.record(z.string(), z.unknown()), effective: z.record(z.string(), z.unknown()) });

export const LeaseStateSchema = LeaseState;

export const HubMethods = {
  // ping proves the hub is alive and tells its pid and clock.
  ping: { params: z.object({}), result: z.object({ pid: z.number().int(), now: z.number() }) },
  // registerDevice enrolls a device after checking the secondary passphrase.
  registerDevice: {
    params: z.object({ name: z.string().min(1).max(128), passphrase: z.string().min(1).max(1024), keyFingerprint: z.string().max(256).optional(), replaces: DeviceId.optional() }),
    result: z.object({ deviceId: DeviceId }),
  },
  // device looks an enrolled device up (NOT_ENROLLED when unknown or revoked).
  device: { params: z.object({ deviceId: DeviceId }), result: z.object({ id: DeviceId, name: z.string(), enrolledAt: z.number() }) },
  // listDevices lists every device ever enrolled, revoked ones included.
  listDevices: { params: z.object({}), result: z.object({ devices: z.array(DeviceInfo) }) },
  // revokeDevice stops a device (by id or name) from opening sessions and releases its lease.
  revokeDevice: { params: z.object({ device: z.string().min(1).max(128) }), result: z.object({ device: DeviceInfo }) },
  listSuperprojects: { params: z.object({}), result: z.object({ superprojects: z.array(SuperprojectInfo) }) },
  createSuperproject: { params: z.object({ slug: Slug }), result: SuperprojectInfo },
  deleteSuperproject: { params: z.object({ slug: Slug }), result: z.object({}) },
  head: { params: z.object({ slug: Slug }), result: z.object({ snapshot: SnapshotInfo.nullable() }) },
  snapshot: { params: z.object({ slug: Slug, id: SnapshotId }), result: z.object({ snapshot: SnapshotInfo }) },
  listSnapshots: { params: z.object({ slug: Slug, limit: z.number().int().positive().max(10_000).default(100) }), result: z.object({ snapshots: z.array(SnapshotInfo) }) },
  // commit moves the head by compare-and-swap; the manifest object is already in the store.
  commit: {
    params: z.object({
      slug: Slug,
      base: SnapshotId.nullable(),
      deviceId: DeviceId,
      kind: SnapshotKind,
      manifestHash: HashHex,
      fencingToken: z.number().int().nonnegative().optional(),
    }),
    // held lists what the quarantine policy kept back; snapshot may then be the old head.
    result: z.object({ snapshot: SnapshotInfo, held: z.array(HeldItem) }),
  },
  leaseStatus: { params: z.object({}), result: LeaseStateSchema },
  acquireLease: { params: z.object({ deviceId: DeviceId, slug: Slug, takeOver: z.boolean().optional() }), result: LeaseStateSchema },
  heartbeat: { params: z.object({ deviceId: DeviceId, token: z.number().int().nonnegative() }), result: LeaseStateSchema },
  releaseLease: { params: z.object({ deviceId: DeviceId, token: z.number().int().nonnegative() }), result: LeaseStateSchema },
  // quarantineList lists items, newest first (pending only unless status is "all").
  quarantineList: {
    params: QuarantineQuery,
    result: z.object({ items: z.array(QuarantineRecordSchema) }),
  },
  // quarantineItem tells one item.
  quarantineItem: { params: z.object({ id: QuarantineItemId }), result: z.object({ item: QuarantineRecordSchema }) },
  // quarantineAccept applies an item as a new snapshot (the commit rule for the lease applies).
  quarantineAccept: {
    params: z.object({ id: QuarantineItemId, deviceId: DeviceId, fencingToken: FencingToken }),
    result: z.object({ item: QuarantineRecordSchema, snapshot: SnapshotInfo }),
  },
  // quarantineReject marks an item rejected.
  quarantineReject: {
    params: z.object({ id: QuarantineItemId, deviceId: DeviceId, fencingToken: FencingToken }),
    result: z.object({ item: QuarantineRecordSchema }),
  },
  // restoreSnapshot makes a checkpoint's manifest the head as a new snapshot.
  restoreSnapshot: {
    params: z.object({ slug: Slug, snapshotId: SnapshotId, deviceId: DeviceId, fencingToken: FencingToken }),
    result: z.object({ snapshot: SnapshotInfo, previousHead: SnapshotId.nullable(), unchanged: z.boolean() }),
  },
  // settings reads a superproject's quarantine and retention settings, and replaces either when given (null resets it).
  settings: {
    params: z.object({
      slug: Slug,
      quarantine: z.record(z.string(), z.unknown()).nullable().optional(),
      retention: z.record(z.string(), z.unknown()).nullable().optional(),
    }),
    result: z.object({ slug: Slug, quarantine: SettingsView, retention: SettingsView }),
  },
  // gc applies retention and removes unreferenced chunks and objects older than the grace period.
  gc: {
    params: z.object({ graceMs: z.number().int().nonnegative().optional(), dryRun: z.boolean().optional() }),
    result: z.object({
      dryRun: z.boolean(),
      snapshotsDropped: z.array(z.object({ slug: Slug, ids: z.array(SnapshotId) })),
      snapshotsKept: z.number().int(),
      itemsCollected: z.array(QuarantineItemId),
      liveChunks: z.number().int(),
      liveObjects: z.number().int(),
      repack: RepackReport.nullable(),
    }),
  },
  // verify re-hashes every chunk and object and checks every snapshot and open item.
  verify: {
    params: z.object({}),
    result: z.object({
      packs: z.number().int(), chunks: z.number().int(), objects: z.number().int(), snapshots: z.number().int(), items: z.number().int(),
      problems: z.array(z.object({ kind: z.string(), name: z.string(), message: z.string() })),
    }),
  },
  // backupBegin copies the database into <data>/tmp as of one instant, lists the packs and
  // objects present, and keeps gc away until backupEnd (see maintenance.ts).
  backupBegin: {
    params: z.object({}),
    result: z.object({
      id: z.string(),
      database: z.string(),
      packs: z.array(z.string().regex(/^[0-9a-f]{16}\.(?:pack|idx)$/)),
      objects: z.array(z.string().regex(/^[0-9a-f]{2}\/[0-9a-f]{16}$/)),
      createdAt: z.number(),
    }),
  },
  // backupEnd removes what the copier left of the database copy and lets gc run again.
  backupEnd: { params: z.object({ id: z.string().max(64) }), result: z.object({}) },
  // shutdown asks the hub to exit after answering (used by `cws-server stop` and tests).
  shutdown: { params: z.object({}), result: z.object({}) },
} as const;

export type HubMethodName = keyof typeof HubMethods;
