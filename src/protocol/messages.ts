/**
 * Every message between the client and the agent, defined once with zod. Types come from
 * `z.infer`; there are no hand-written twins. The agent validates every request and the
 * client validates every result, so a peer of another version or a corrupted stream is
 * refused with a clear error instead of being half-understood.
 *
 * Wire format: one JSON object per line (see framing.ts).
 *   agent → client, first:  Hello
 *   client → agent:         { id, method, params }
 *   agent → client:         { id, ok: true, result } | { id, ok: false, error }
 */
import { z } from "zod";
import { HashHex, ManifestDelta, ManifestEntry } from "../core/manifest.ts";
import { CheckedManifest } from "../core/manifest-check.ts";
import { QuarantineReason } from "../core/policy.ts";

// ---- handshake -------------------------------------------------------------------------

export const Hello = z.object({
  // type marks the handshake line among any noise a login shell prints first.
  type: z.literal("hello"),
  // magic is always "cws-agent".
  magic: z.literal("cws-agent"),
  // protocol is the integer protocol version; it must equal the client's.
  protocol: z.number().int().positive(),
  // version is the agent's package version, shown in errors and `cws doctor`.
  version: z.string().min(1).max(64),
  // capabilities name optional features, so they can be added without a version bump.
  capabilities: z.array(z.string().max(64)).max(64),
  // staging holds the absolute server paths where bundles are uploaded and downloaded.
  staging: z.object({ incoming: z.string().min(1), outgoing: z.string().min(1) }),
});
export type Hello = z.infer<typeof Hello>;

// ---- shared shapes ---------------------------------------------------------------------

/** A superproject's slug: lower-case letters, digits and dashes, as in a URL. */
export const Slug = z
  .string()
  .regex(/^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/, "use 1-64 lower-case letters, digits and dashes");
export type Slug = z.infer<typeof Slug>;

/** A snapshot id: a positive integer assigned by the hub. */
export const SnapshotId = z.number().int().positive();

export const ChunkIdString = z.string().regex(/^[0-9a-f]{16}-\d{1,7}$/, "expected <xxh64>-<length>");

/** The most chunk ids one request may carry; callers batch above this. */
export const MAX_IDS_PER_REQUEST = 50_000;

/**
 * The most entries one piece of a staged manifest (stageManifest) may carry: about 1.2 MB of
 * JSON, so neither side holds a large tree's whole manifest as one request.
 */
export const MAX_MANIFEST_PIECE_ENTRIES = 5_000;

/**
 * The most entries a staged manifest may reach over all its pieces. A whole manifest in one
 * commit is bounded by the line limit (framing.ts, about 270,000 entries); staging in pieces
 * lifts that bound, so it gets one of its own, well above any workspace the design targets.
 */
export const MAX_STAGED_MANIFEST_ENTRIES = 2_000_000;

/** A bundle file name inside a staging folder: no separators, no dots at the start. */
export const BundleName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, "not a bundle name");

export const DeviceId = z.string().regex(/^[0-9a-f-]{36}$/, "expected a device UUID");

export const SnapshotKind = z.enum(["push", "override", "restore", "accept-quarantine"]);

export const SnapshotInfo = z.object({
  id: SnapshotId,
  // number counts the superproject's own snapshots (1, 2, 3, …): what people see and type.
  number: z.number().int().positive().optional(),
  parent: SnapshotId.nullable(),
  deviceId: z.string(),
  deviceName: z.string(),
  createdAt: z.number(),
  kind: SnapshotKind,
  manifestHash: HashHex,
  files: z.number().int().nonnegative(),
  bytes: z.number().int().nonnegative(),
});
export type SnapshotInfo = z.infer<typeof SnapshotInfo>;

// In its own module so that printing a sync summary does not load zod (src/cli/sync-output.ts).
export { snapshotNumber } from "./snapshot-number.ts";

export const SuperprojectInfo = z.object({
  slug: Slug,
  head: SnapshotId.nullable(),
  createdAt: z.number(),
  // pendingQuarantine counts the items held for review (absent from older agents).
  pendingQuarantine: z.number().int().nonnegative().optional(),
});
export type SuperprojectInfo = z.infer<typeof SuperprojectInfo>;

/** The global lease as the hub sees it at the moment of the answer. */
export const LeaseState = z.object({
  // deviceId and deviceName name the holder (null when free).
  deviceId: z.string().nullable(),
  deviceName: z.string().nullable(),
  // slug is the superproject the holder live-syncs.
  slug: z.string().nullable(),
  // token is the fencing token of the latest grant; every grant increments it.
  token: z.number().int().nonnegative(),
  // acquiredAt, heartbeatAt and expiresAt are hub clock times in ms since the epoch.
  acquiredAt: z.number().nullable(),
  heartbeatAt: z.number().nullable(),
  expiresAt: z.number().nullable(),
  // active is true when a device holds the lease and it has not expired.
  active: z.boolean(),
  // now is the hub's clock when it answered, so clients can show time left without trusting their own clock.
  now: z.number(),
});
export type LeaseState = z.infer<typeof LeaseState>;

/** An enrolled device as the hub records it. */
export const DeviceInfo = z.object({
  id: z.string(),
  name: z.string(),
  // keyFingerprint is the SHA256 fingerprint of the device's SSH key, when it was known at enrollment.
  keyFingerprint: z.string().nullable(),
  // enrolledAt, lastSeenAt and revokedAt are hub clock times in ms since the epoch.
  enrolledAt: z.number(),
  lastSeenAt: z.number(),
  revokedAt: z.number().nullable(),
});
export type DeviceInfo = z.infer<typeof DeviceInfo>;

// ---- quarantine and checkpoints --------------------------------------------------------

/** A quarantine item's id: a positive integer assigned by the hub, unique across superprojects. */
export const QuarantineItemId = z.number().int().positive();

export const QuarantineStatus = z.enum(["pending", "accepted", "rejected"]);
export type QuarantineStatus = z.infer<typeof QuarantineStatus>;

/** The most paths a list answer carries per item; `pathCount` tells the whole number. */
export const MAX_LISTED_PATHS = 20;

/** One held change set as `cws quarantine list/show` present it. */
export const QuarantineItemInfo = z.object({
  id: QuarantineItemId,
  slug: Slug,
  // status is pending until a device accepts or rejects the item.
  status: QuarantineStatus,
  // reason names the rule that held it (see src/core/policy.ts).
  reason: QuarantineReason,
  // summary is one line for people, e.g. "deletes 80 of 100 files (80% > 50%)".
  summary: z.string(),
  // metrics are the numbers that triggered the rule.
  metrics: z.record(z.string(), z.number()),
  // paths are the files the rule is about, sorted (at most MAX_LISTED_PATHS in a list answer).
  paths: z.array(z.string()),
  // pathCount is how many paths the item has in all.
  pathCount: z.number().int().nonnegative(),
  // deviceId and deviceName name the device whose push was held.
  deviceId: z.string(),
  deviceName: z.string(),
  // baseSnapshot is the head the push was checked against; its version stays live while held.
  baseSnapshot: SnapshotId.nullable(),
  // snapshotId is the snapshot the rest of that push made (the head itself when nothing else landed).
  snapshotId: SnapshotId.nullable(),
  createdAt: z.number(),
  // resolvedAt, resolvedBy (a device name) and resolvedSnapshot (made by accepting) after a decision.
  resolvedAt: z.number().nullable(),
  resolvedBy: z.string().nullable(),
  resolvedSnapshot: SnapshotId.nullable(),
  // contentAvailable is false once `cws-server gc` dropped the held content of a decided item.
  contentAvailable: z.boolean(),
});
export type QuarantineItemInfo = z.infer<typeof QuarantineItemInfo>;

/** What a commit held back, one per quarantine item (new or already pending). */
export const HeldItem = z.object({
  id: QuarantineItemId,
  reason: QuarantineReason,
  summary: z.string(),
  // paths are the files the rule is about; heldPaths every entry held with them (folders included).
  paths: z.array(z.string()),
  heldPaths: z.array(z.string()),
  // duplicate is true when an identical item was already pending (the same change pushed again).
  duplicate: z.boolean(),
});
export type HeldItem = z.infer<typeof HeldItem>;

/** One path of an item: what the head had when it was held, and what the push proposed. */
export const QuarantineChange = z.object({
  path: z.string(),
  previous: ManifestEntry.nullable(),
  proposed: ManifestEntry.nullable(),
});

/** A line diff of a held Markdown change (old live version → proposed version). */
export const QuarantineDiff = z.object({
  path: z.string(),
  // diff is unified-diff-like text from markdownDiffSummary ("" when it could not be computed).
  diff: z.string(),
  // note says why there is no diff (too large, content collected), if so.
  note: z.string().optional(),
});

/** The most changes `quarantineShow` returns; `changesTruncated` says when there were more. */
export const MAX_SHOWN_CHANGES = 10_000;

/** Which quarantine items to list; the agent passes it on to the hub unchanged. */
export const QuarantineQuery = z.object({
  // slug limits the list to one superproject.
  slug: Slug.optional(),
  // status "all" includes decided items.
  status: z.enum(["pending", "all"]).optional(),
  // ids restricts the answer to these items (a device checking on items it pushed).
  ids: z.array(QuarantineItemId).max(1000).optional(),
  limit: z.number().int().positive().max(10_000).optional(),
});

// ---- methods ---------------------------------------------------------------------------

/**
 * The method table: for each method, the schema of its params and of its result. The
 * request union, the dispatcher and the typed client are all derived from this table.
 */
export const Methods = {
  // enroll registers this device with the server, proven by the secondary passphrase.
  enroll: {
    params: z.object({
      deviceName: z.string().min(1).max(128),
      passphrase: z.string().min(1).max(1024),
      keyFingerprint: z.string().max(256).optional(),
      // publicKey is the device key's OpenSSH public line, needed with restrictKey.
      publicKey: z.string().max(16 * 1024).optional(),
      // restrictKey asks the server to replace the key's authorized_keys line by the restricted form
      // (forced command: the agent and jailed SFTP only, pinned to this device).
      restrictKey: z.boolean().optional(),
      // installKey asks the server to add the key to authorized_keys as ssh-copy-id would (sent
      // after a password login); restricted when restrictKey is also set, a plain line otherwise.
      installKey: z.boolean().optional(),
      // replacesDeviceId re-enrolls this device under its old id (enroll --force), so no orphan record stays.
      replacesDeviceId: DeviceId.optional(),
    }).refine((p) => !(p.restrictKey || p.installKey) || p.publicKey !== undefined, { message: "restrictKey and installKey need publicKey", path: ["publicKey"] }),
    result: z.object({
      deviceId: DeviceId,
      // keyInstalled tells whether an authorized_keys line was written, where, and whether it is restricted.
      keyInstalled: z.object({ file: z.string(), replaced: z.number().int().nonnegative(), restricted: z.boolean().default(true) }).optional(),
    }),
  },
  // open binds the session to an enrolled device; every other data method needs it.
  open: {
    params: z.object({ deviceId: DeviceId }),
    // enrolledAt is when the hub recorded this device (hub clock, ms since the epoch).
    result: z.object({ deviceName: z.string(), enrolledAt: z.number().optional() }),
  },
  // listSuperprojects lists what the server holds.
  listSuperprojects: {
    params: z.object({}),
    result: z.object({ superprojects: z.array(SuperprojectInfo) }),
  },
  // deleteSuperproject removes a superproject and its history from the server (its chunks go at the next gc).
  deleteSuperproject: {
    params: z.object({ slug: Slug }),
    result: z.object({}),
  },
  // createSuperproject makes an empty superproject with no snapshot yet.
  createSuperproject: {
    params: z.object({ slug: Slug }),
    result: SuperprojectInfo,
  },
  // head tells the current head snapshot of a superproject (null before the first push).
  head: {
    params: z.object({ slug: Slug }),
    result: z.object({ snapshot: SnapshotInfo.nullable() }),
  },
  // fetchManifest returns the manifest of one snapshot of a superproject.
  fetchManifest: {
    params: z.object({ slug: Slug, snapshotId: SnapshotId }),
    result: z.object({ manifest: CheckedManifest }),
  },
  // fetchManifestDelta returns what turns the manifest of snapshot `since` into that of
  // `snapshotId` (agents with the "manifest-delta" capability): a pull onto a device whose base
  // is `since` reads the folders that changed, not the whole tree.
  fetchManifestDelta: {
    params: z.object({ slug: Slug, snapshotId: SnapshotId, since: SnapshotId }),
    result: z.object({ delta: ManifestDelta }),
  },
  // missingChunks returns which of the given chunk ids the server's store lacks.
  missingChunks: {
    params: z.object({ ids: z.array(ChunkIdString).max(MAX_IDS_PER_REQUEST) }),
    result: z.object({ missing: z.array(ChunkIdString) }),
  },
  // ingestBundle verifies and stores every chunk of an uploaded bundle, then deletes it.
  ingestBundle: {
    params: z.object({ name: BundleName }),
    result: z.object({ chunks: z.number().int().nonnegative(), bytes: z.number().int().nonnegative() }),
  },
  // stageManifest adds one piece of a whole manifest to this session's staged manifest (agent
  // capability "manifest-pieces"): piece 0 starts a new one, each next piece continues it, and
  // the pieces' entries, in order, form one sorted manifest (each piece sorted, each starting
  // after the previous one's last path). The agent checks and stores each piece as it comes
  // (paths, names that travel, chunks present), as folder objects no snapshot names yet; only
  // a commit with `staged` makes them a head. A piece that fails voids the staged manifest.
  stageManifest: {
    params: z.object({
      slug: Slug,
      piece: z.number().int().nonnegative(),
      manifest: CheckedManifest.refine((m) => m.entries.length >= 1 && m.entries.length <= MAX_MANIFEST_PIECE_ENTRIES, {
        message: `a piece holds 1 to ${MAX_MANIFEST_PIECE_ENTRIES} entries`,
        path: ["entries"],
      }),
    }),
    // entries counts what is staged so far, this piece included.
    result: z.object({ entries: z.number().int().positive() }),
  },
  // commit makes a manifest the new head if the head is still `base` (compare-and-swap).
  commit: {
    params: z.object({
      slug: Slug,
      base: SnapshotId.nullable(),
      // manifest is the whole proposed manifest (first push), or
      manifest: CheckedManifest.optional(),
      // delta is what changes from the base snapshot's manifest: far smaller for a big tree, or
      delta: ManifestDelta.optional(),
      // staged names the whole manifest this session staged (stageManifest): how many pieces
      // and entries, which must be what the agent holds (a piece lost on the way is refused).
      staged: z.object({ pieces: z.number().int().positive(), entries: z.number().int().positive().max(MAX_STAGED_MANIFEST_ENTRIES) }).optional(),
      kind: z.enum(["push", "override"]),
      fencingToken: z.number().int().nonnegative().optional(),
    }).refine((p) => [p.manifest, p.delta, p.staged].filter((given) => given !== undefined).length === 1, { message: "send one of manifest, delta or staged", path: ["manifest"] })
      .refine((p) => p.delta === undefined || p.base !== null, { message: "a delta needs a base snapshot", path: ["delta"] }),
    // snapshot is the new head: the manifest minus whatever the quarantine policy held (then the
    // head may be unchanged); held lists those items (absent from older agents: nothing held).
    result: z.object({ snapshot: SnapshotInfo, held: z.array(HeldItem).optional() }),
  },
  // prepareBundle writes the requested chunks into a bundle in the outgoing staging folder, in
  // the order asked; `stream` asks for a streamed bundle (agent capability "bundles-stream"),
  // `rawFrames` for one whose large records pass through in raw frames (capability
  // "bundles-raw-frames"; older agents drop the field and compress every frame).
  prepareBundle: {
    params: z.object({ ids: z.array(ChunkIdString).min(1).max(MAX_IDS_PER_REQUEST), stream: z.boolean().optional(), rawFrames: z.boolean().optional() }),
    result: z.object({ name: BundleName, bytes: z.number().int().nonnegative() }),
  },
  // leaseStatus tells who holds the global lease, if anyone.
  leaseStatus: { params: z.object({}), result: LeaseState },
  // acquireLease grants this device the global lease for a superproject (LEASE_HELD if another holds it).
  // takeOver grants it even while another device holds it (the user saw the holder and confirmed);
  // the new token fences the old holder out.
  acquireLease: { params: z.object({ slug: Slug, takeOver: z.boolean().optional() }), result: LeaseState },
  // heartbeat extends this device's lease; LEASE_LOST when the token is stale.
  heartbeat: { params: z.object({ token: z.number().int().nonnegative() }), result: LeaseState },
  // releaseLease gives the lease up (a no-op when the token is not the current one).
  releaseLease: { params: z.object({ token: z.number().int().nonnegative() }), result: LeaseState },
  // releaseBundle deletes a downloaded bundle from the outgoing staging folder.
  releaseBundle: {
    params: z.object({ name: BundleName }),
    result: z.object({}),
  },
  // quarantineList lists held items, newest first: of one superproject or all, pending ones by default.
  quarantineList: {
    params: QuarantineQuery,
    result: z.object({ items: z.array(QuarantineItemInfo) }),
  },
  // quarantineShow tells everything about one item: all paths, each change, Markdown diffs.
  quarantineShow: {
    params: z.object({ id: QuarantineItemId }),
    result: z.object({
      item: QuarantineItemInfo,
      changes: z.array(QuarantineChange),
      changesTruncated: z.boolean(),
      diffs: z.array(QuarantineDiff),
    }),
  },
  // quarantineAccept applies a held item to the current head as a new snapshot (CONFLICT if its paths changed since).
  quarantineAccept: {
    params: z.object({ id: QuarantineItemId, fencingToken: z.number().int().nonnegative().optional() }),
    result: z.object({ item: QuarantineItemInfo, snapshot: SnapshotInfo }),
  },
  // quarantineReject drops a held item; the server version stays live (content kept until gc).
  quarantineReject: {
    params: z.object({ id: QuarantineItemId, fencingToken: z.number().int().nonnegative().optional() }),
    result: z.object({ item: QuarantineItemInfo }),
  },
  // listSnapshots lists a superproject's checkpoints, newest first.
  listSnapshots: {
    params: z.object({ slug: Slug, limit: z.number().int().positive().max(10_000).optional() }),
    result: z.object({ snapshots: z.array(SnapshotInfo) }),
  },
  // restoreSnapshot makes an old checkpoint's manifest the new head (a new snapshot of kind "restore").
  restoreSnapshot: {
    params: z.object({ slug: Slug, snapshotId: SnapshotId, fencingToken: z.number().int().nonnegative().optional() }),
    // previousHead is the head before the restore, itself a checkpoint to restore to undo it.
    result: z.object({ snapshot: SnapshotInfo, previousHead: SnapshotId.nullable(), unchanged: z.boolean() }),
  },
} as const;

export type MethodName = keyof typeof Methods;
export type Params<M extends MethodName> = z.infer<(typeof Methods)[M]["params"]>;
export type Result<M extends MethodName> = z.infer<(typeof Methods)[M]["result"]>;

export const MethodNameSchema = z.enum(Object.keys(Methods) as [MethodName, ...MethodName[]]);
