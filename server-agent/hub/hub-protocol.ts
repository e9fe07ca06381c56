/**
 * Messages between an agent and the hub over the hub's local socket. Same envelopes and
 * framing as the client protocol (src/protocol/rpc.ts); only the method table differs. The
 * hub trusts the agent for identity (the agent ran under the server account after SSH
 * authentication) but still validates every value.
 */
import { z } from "zod";
import { HashHex } from "../../src/core/manifest.ts";
import { DeviceId, LeaseState, SnapshotId, SnapshotInfo, SnapshotKind, Slug, SuperprojectInfo } from "../../src/protocol/messages.ts";

export const LeaseStateSchema = LeaseState;

export const HubMethods = {
  // ping proves the hub is alive and tells its pid and clock.
  ping: { params: z.object({}), result: z.object({ pid: z.number().int(), now: z.number() }) },
  // registerDevice enrolls a device after checking the secondary passphrase.
  registerDevice: {
    params: z.object({ name: z.string().min(1).max(128), passphrase: z.string().min(1).max(1024), keyFingerprint: z.string().max(256).optional() }),
    result: z.object({ deviceId: DeviceId }),
  },
  // device looks an enrolled device up (NOT_ENROLLED when unknown).
  device: { params: z.object({ deviceId: DeviceId }), result: z.object({ id: DeviceId, name: z.string() }) },
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
    result: z.object({ snapshot: SnapshotInfo }),
  },
  leaseStatus: { params: z.object({}), result: LeaseStateSchema },
  acquireLease: { params: z.object({ deviceId: DeviceId, slug: Slug }), result: LeaseStateSchema },
  heartbeat: { params: z.object({ deviceId: DeviceId, token: z.number().int().nonnegative() }), result: LeaseStateSchema },
  releaseLease: { params: z.object({ deviceId: DeviceId, token: z.number().int().nonnegative() }), result: LeaseStateSchema },
  // shutdown asks the hub to exit after answering (used by `cws-server stop` and tests).
  shutdown: { params: z.object({}), result: z.object({}) },
} as const;

export type HubMethodName = keyof typeof HubMethods;
