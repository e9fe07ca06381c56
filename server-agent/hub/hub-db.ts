/**
 * The hub's database: devices, superprojects, snapshots, the global lease and the quarantine
 * queue, in SQLite through node:sqlite. The hub process is the only writer. Every state change
 * that matters (a new head, a lease grant) happens inside one IMMEDIATE transaction, and that
 * transaction's commit is the commit point of the operation.
 */
import { DatabaseSync } from "node:sqlite";
import { randomUUID } from "node:crypto";
import { CwsError } from "../../src/errors.ts";
import type { DeviceInfo, QuarantineItemInfo, QuarantineStatus, SnapshotInfo, SuperprojectInfo } from "../../src/protocol/messages.ts";
import type { QuarantineReason } from "../../src/core/policy.ts";
import { MIGRATIONS } from "./migrations.ts";

/** An enrolled device, revoked ones included. */
export type DeviceRecord = DeviceInfo;

/** The hub's clock, injectable so tests can move time without sleeping. */
export type Clock = () => number;

export interface LeaseState {
  deviceId: string | null;
  deviceName: string | null;
  slug: string | null;
  token: number;
  acquiredAt: number | null;
  heartbeatAt: number | null;
  expiresAt: number | null;
  /** True when a device holds the lease and it has not expired at the hub's `now`. */
  active: boolean;
  /** The hub's clock when the state was read. */
  now: number;
}

export interface CommitInput {
  slug: string;
  base: number | null;
  deviceId: string;
  kind: SnapshotInfo["kind"];
  manifestHash: string;
  files: number;
  bytes: number;
  /** The fencing token of the pusher's lease; undefined for a one-shot sync without a lease. */
  fencingToken?: number;
}

interface SnapshotRow {
  id: number;
  number: number | null;
  slug: string;
  parent: number | null;
  device_id: string;
  device_name: string | null;
  created_at: number;
  kind: SnapshotInfo["kind"];
  manifest_hash: string;
  files: number;
  bytes: number;
}

/** A quarantine item to record with a commit (see {@link HubDatabase.commitEvaluated}). */
export interface NewQuarantineItem {
  reason: QuarantineReason;
  summary: string;
  metrics: Record<string, number>;
  paths: string[];
  /** The store object holding `{proposed, previous}`; identical items share it. */
  objectHash: string;
}

/** What {@link HubDatabase.commitEvaluated} did. */
export interface EvaluatedCommit {
  /** The head after the commit: a new snapshot, or the old head when nothing landed. */
  snapshot: SnapshotInfo;
  /** Whether a new snapshot was made. */
  created: boolean;
  /** One per held item, in order: its id, and whether an identical item was already pending. */
  items: Array<{ id: number; duplicate: boolean }>;
}

/** A quarantine item as the hub keeps it: what clients see, plus where its content is. */
export interface QuarantineRecord extends QuarantineItemInfo {
  objectHash: string;
}

interface QuarantineRow {
  id: number;
  slug: string;
  snapshot_id: number | null;
  base_snapshot: number | null;
  device_id: string;
  device_name: string | null;
  created_at: number;
  reason: QuarantineReason;
  summary: string;
  metrics: string;
  paths: string;
  proposed_hash: string;
  status: QuarantineStatus;
  resolved_at: number | null;
  resolved_by_name: string | null;
  resolved_by: string | null;
  resolved_snapshot: number | null;
  collected_at: number | null;
}

/** An item whose content gc must keep (pending, or rejected and not yet collected). */
export interface LiveQuarantineItem {
  id: number;
  slug: string;
  status: QuarantineStatus;
  objectHash: string;
  snapshotId: number | null;
  baseSnapshot: number | null;
  resolvedAt: number | null;
}

export class HubDatabase {
  readonly db: DatabaseSync;
  readonly clock: Clock;
  leaseTtlMs: number;

  constructor(path: string, options: { clock?: Clock; leaseTtlMs?: number } = {}) {
    this.db = new DatabaseSync(path);
    this.clock = options.clock ?? Date.now;
    this.leaseTtlMs = options.leaseTtlMs ?? 120_000;
    // WAL lets readers (backup, status) run beside the writer; synchronous=FULL makes every
    // commit durable before it is acknowledged, because the commit is the sync's commit point.
    this.db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;");
    this.migrate();
  }

  close(): void {
    this.db.close();
  }

  private migrate(): void {
    const { user_version: version } = this.db.prepare("PRAGMA user_version").get() as { user_version: number };
    if (version > MIGRATIONS.length) {
      throw new CwsError("PROTOCOL_MISMATCH", `The hub database has schema version ${version}, newer than this cws knows (${MIGRATIONS.length}). Update cws on the server.`);
    }
    for (let v = version; v < MIGRATIONS.length; v++) {
      this.transaction(() => {
        this.db.exec(MIGRATIONS[v]);
        this.db.exec(`PRAGMA user_version = ${v + 1}`);
      });
    }
  }

  /** Runs `work` in one IMMEDIATE transaction: all of it commits, or none of it. */
  transaction<T>(work: () => T): T {
    this.db.exec("BEGIN IMMEDIATE");
    try {
      const result = work();
      this.db.exec("COMMIT");
      return result;
    } catch (error) {
      this.db.exec("ROLLBACK");
      throw error;
    }
  }

  // ---- devices ---------------------------------------------------------------------------

  /**
   * Records a new device, or re-enrolls `replaces` (a device enrolling again with --force)
   * under its old id, so a re-enrolled device leaves no second record behind and its history
   * keeps its name. A revoked or unknown `replaces` gets a new id.
   */
  registerDevice(name: string, keyFingerprint: string | undefined, replaces?: string): string {
    const now = this.clock();
    if (replaces !== undefined) {
      const updated = this.db.prepare("UPDATE devices SET name = ?, key_fingerprint = ?, enrolled_at = ?, last_seen_at = ? WHERE id = ? AND revoked_at IS NULL").run(name, keyFingerprint ?? null, now, now, replaces);
      if (Number(updated.changes) === 1) return replaces;
    }
    const id = randomUUID();
    this.db.prepare("INSERT INTO devices (id, name, key_fingerprint, enrolled_at, last_seen_at) VALUES (?, ?, ?, ?, ?)").run(id, name, keyFingerprint ?? null, now, now);
    return id;
  }

  device(id: string): { id: string; name: string; keyFingerprint: string | null; enrolledAt: number } {
    const row = this.db.prepare("SELECT id, name, key_fingerprint, enrolled_at, revoked_at FROM devices WHERE id = ?").get(id) as { id: string; name: string; key_fingerprint: string | null; enrolled_at: number; revoked_at: number | null } | undefined;
    if (row === undefined) {
      throw new CwsError("NOT_ENROLLED", `This device (${id}) is not enrolled on the server. Run \`cws enroll-device\` again.`);
    }
    if (row.revoked_at !== null) {
      throw new CwsError("NOT_ENROLLED", `This device (${row.name}, ${id}) was revoked on the server at ${new Date(row.revoked_at).toISOString()}. Enroll it again with \`cws enroll-device --force\` if that was a mistake.`, { data: { revokedAt: row.revoked_at } });
    }
    this.db.prepare("UPDATE devices SET last_seen_at = ? WHERE id = ?").run(this.clock(), id);
    return { id: row.id, name: row.name, keyFingerprint: row.key_fingerprint, enrolledAt: row.enrolled_at };
  }

  listDevices(): DeviceRecord[] {
    const rows = this.db.prepare("SELECT id, name, key_fingerprint, enrolled_at, last_seen_at, revoked_at FROM devices ORDER BY enrolled_at").all() as Array<{ id: string; name: string; key_fingerprint: string | null; enrolled_at: number; last_seen_at: number; revoked_at: number | null }>;
    return rows.map((r) => ({ id: r.id, name: r.name, keyFingerprint: r.key_fingerprint, enrolledAt: r.enrolled_at, lastSeenAt: r.last_seen_at, revokedAt: r.revoked_at }));
  }

  /**
   * Revokes a device: it can no longer open a session, and the lease it holds is released
   * (the token stays, so its next push with that token is refused). Idempotent.
   *
   * @throws {CwsError} NOT_FOUND when no device has this id or name, INVALID_ARGUMENT when a name is ambiguous.
   */
  revokeDevice(idOrName: string): DeviceRecord {
    return this.transaction(() => {
      const matches = this.listDevices().filter((d) => d.id === idOrName || (d.name === idOrName && d.revokedAt === null));
      if (matches.length === 0) throw new CwsError("NOT_FOUND", `No device is enrolled with the id or name ${JSON.stringify(idOrName)}. \`cws-server devices\` lists them.`);
      if (matches.length > 1) throw new CwsError("INVALID_ARGUMENT", `Several devices are named ${JSON.stringify(idOrName)}; name one by its id (${matches.map((d) => d.id).join(", ")}).`);
      const device = matches[0];
      if (device.revokedAt === null) {
        device.revokedAt = this.clock();
        this.db.prepare("UPDATE devices SET revoked_at = ? WHERE id = ?").run(device.revokedAt, device.id);
      }
      this.db.prepare("UPDATE lease SET device_id = NULL, slug = NULL, acquired_at = NULL, heartbeat_at = NULL, expires_at = NULL WHERE singleton = 1 AND device_id = ?").run(device.id);
      return device;
    });
  }

  // ---- superprojects ---------------------------------------------------------------------

  createSuperproject(slug: string): SuperprojectInfo {
    const now = this.clock();
    const existing = this.db.prepare("SELECT slug FROM superprojects WHERE slug = ?").get(slug);
    if (existing !== undefined) {
      throw new CwsError("ALREADY_EXISTS", `The server already has a superproject named ${slug}. Use \`cws attach-superproject ${slug}\` to bind it to a folder.`);
    }
    this.db.prepare("INSERT INTO superprojects (slug, head, created_at) VALUES (?, NULL, ?)").run(slug, now);
    return { slug, head: null, createdAt: now };
  }

  listSuperprojects(): SuperprojectInfo[] {
    const rows = this.db.prepare(`SELECT s.slug, s.head, s.created_at,
        (SELECT COUNT(*) FROM quarantine q WHERE q.slug = s.slug AND q.status = 'pending') AS pending
      FROM superprojects s ORDER BY s.slug`).all() as Array<{ slug: string; head: number | null; created_at: number; pending: number }>;
    return rows.map((r) => ({ slug: r.slug, head: r.head, createdAt: r.created_at, pendingQuarantine: Number(r.pending) }));
  }

  superproject(slug: string): { slug: string; head: number | null; createdAt: number; settings: string } {
    const row = this.db.prepare("SELECT slug, head, created_at, settings FROM superprojects WHERE slug = ?").get(slug) as { slug: string; head: number | null; created_at: number; settings: string } | undefined;
    if (row === undefined) {
      throw new CwsError("NOT_FOUND", `The server has no superproject named ${slug}. Run \`cws create-superproject ${slug}\` or check the name with \`cws status\`.`);
    }
    return { slug: row.slug, head: row.head, createdAt: row.created_at, settings: row.settings };
  }

  deleteSuperproject(slug: string): void {
    this.superproject(slug);
    this.transaction(() => {
      this.db.prepare("DELETE FROM snapshots WHERE slug = ?").run(slug);
      this.db.prepare("DELETE FROM quarantine WHERE slug = ?").run(slug);
      this.db.prepare("DELETE FROM superprojects WHERE slug = ?").run(slug);
    });
  }

  setSettings(slug: string, settingsJson: string): void {
    this.superproject(slug);
    this.db.prepare("UPDATE superprojects SET settings = ? WHERE slug = ?").run(settingsJson, slug);
  }

  /** A superproject's retention overrides, as stored (JSON text; validated by the caller). */
  retentionSettings(slug: string): string {
    this.superproject(slug);
    const row = this.db.prepare("SELECT retention FROM superprojects WHERE slug = ?").get(slug) as { retention: string };
    return row.retention;
  }

  setRetentionSettings(slug: string, retentionJson: string): void {
    this.superproject(slug);
    this.db.prepare("UPDATE superprojects SET retention = ? WHERE slug = ?").run(retentionJson, slug);
  }

  // ---- snapshots -------------------------------------------------------------------------

  private static snapshotSelect = `SELECT s.id, s.number, s.slug, s.parent, s.device_id, d.name AS device_name, s.created_at, s.kind, s.manifest_hash, s.files, s.bytes
    FROM snapshots s LEFT JOIN devices d ON d.id = s.device_id`;

  private toInfo(row: SnapshotRow): SnapshotInfo {
    return {
      id: row.id, number: row.number ?? row.id, parent: row.parent, deviceId: row.device_id, deviceName: row.device_name ?? "(removed device)",
      createdAt: row.created_at, kind: row.kind, manifestHash: row.manifest_hash, files: row.files, bytes: row.bytes,
    };
  }

  head(slug: string): SnapshotInfo | null {
    const sp = this.superproject(slug);
    return sp.head === null ? null : this.snapshot(slug, sp.head);
  }

  snapshot(slug: string, id: number): SnapshotInfo {
    const row = this.db.prepare(`${HubDatabase.snapshotSelect} WHERE s.slug = ? AND s.id = ?`).get(slug, id) as SnapshotRow | undefined;
    if (row === undefined) throw new CwsError("NOT_FOUND", `Superproject ${slug} has no snapshot ${id}. List them with \`cws checkpoints list ${slug}\`.`);
    return this.toInfo(row);
  }

  listSnapshots(slug: string, limit = 1000): SnapshotInfo[] {
    this.superproject(slug);
    return (this.db.prepare(`${HubDatabase.snapshotSelect} WHERE s.slug = ? ORDER BY s.id DESC LIMIT ?`).all(slug, limit) as unknown as SnapshotRow[]).map((r) => this.toInfo(r));
  }

  /** Every manifest hash referenced by a snapshot of any superproject (for gc). */
  allManifestHashes(): string[] {
    return (this.db.prepare("SELECT DISTINCT manifest_hash FROM snapshots").all() as Array<{ manifest_hash: string }>).map((r) => r.manifest_hash);
  }

  /**
   * Moves a superproject's head from `base` to a new snapshot with nothing held: the
   * compare-and-swap of commitEvaluated on its own. Refused when the head moved since the
   * device's base (HEAD_MOVED), when the fencing token is stale (LEASE_LOST), or when another
   * device holds the lease.
   */
  commit(input: CommitInput): SnapshotInfo {
    return this.commitEvaluated({ ...input, newSnapshot: true, items: [] }).snapshot;
  }

  /**
   * Commits a push the quarantine policy has looked at: moves the head to the accepted
   * manifest (unless nothing landed, `created: false`) and records the held items, all in one
   * transaction. An item identical to one still pending (same reason, same held content) is
   * not recorded twice: the pending one is returned, so a device that pushes the same held
   * change again never fills the queue with copies.
   */
  commitEvaluated(input: CommitInput & { newSnapshot: boolean; items: readonly NewQuarantineItem[] }): EvaluatedCommit {
    return this.transaction(() => {
      const sp = this.superproject(input.slug);
      this.checkWriter(input.deviceId, input.fencingToken);
      if (sp.head !== input.base) {
        throw new CwsError("HEAD_MOVED", `The server's ${input.slug} moved to snapshot ${sp.head ?? "none"} while this device pushed against ${input.base ?? "none"}. Run the sync again; it will merge the new server state first.`, {
          data: { head: sp.head, base: input.base },
        });
      }
      const created = input.newSnapshot || sp.head === null;
      const snapshot = created ? this.insertSnapshot(input, sp.head) : this.snapshot(input.slug, sp.head as number);
      const now = this.clock();
      const items = input.items.map((item) => {
        const existing = this.db.prepare("SELECT id FROM quarantine WHERE slug = ? AND status = 'pending' AND reason = ? AND proposed_hash = ? ORDER BY id LIMIT 1").get(input.slug, item.reason, item.objectHash) as { id: number } | undefined;
        if (existing !== undefined) return { id: Number(existing.id), duplicate: true };
        const result = this.db.prepare(`INSERT INTO quarantine (slug, snapshot_id, base_snapshot, device_id, created_at, reason, summary, metrics, paths, proposed_hash, status)
          VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending')`).run(
          input.slug, snapshot.id, sp.head, input.deviceId, now, item.reason, item.summary, JSON.stringify(item.metrics), JSON.stringify(item.paths), item.objectHash,
        );
        return { id: Number(result.lastInsertRowid), duplicate: false };
      });
      return { snapshot, created, items };
    });
  }

  /**
   * Makes `manifestHash` the head as a new snapshot of `kind` (accept-quarantine, restore) if
   * the head is still `expectedHead`; the caller computed the manifest from that head. Runs
   * `also` inside the same transaction (marking an item accepted).
   */
  advanceHead(input: Omit<CommitInput, "base"> & { expectedHead: number | null; also?: (snapshot: SnapshotInfo) => void }): SnapshotInfo {
    return this.transaction(() => {
      const sp = this.superproject(input.slug);
      this.checkWriter(input.deviceId, input.fencingToken);
      if (sp.head !== input.expectedHead) {
        throw new CwsError("HEAD_MOVED", `The server's ${input.slug} moved to snapshot ${sp.head ?? "none"} meanwhile; nothing was changed. Run the command again.`, {
          data: { head: sp.head, expected: input.expectedHead },
        });
      }
      const snapshot = this.insertSnapshot(input, sp.head);
      input.also?.(snapshot);
      return snapshot;
    });
  }

  /** Throws HEAD_MOVED, as a commit would, when the head is not `base` (checked early to skip needless work). */
  assertHead(slug: string, base: number | null): void {
    const sp = this.superproject(slug);
    if (sp.head !== base) {
      throw new CwsError("HEAD_MOVED", `The server's ${slug} moved to snapshot ${sp.head ?? "none"} while this device pushed against ${base ?? "none"}. Run the sync again; it will merge the new server state first.`, {
        data: { head: sp.head, base },
      });
    }
  }

  /** Checks that a device may change a superproject's head now (the commit rule, for accept, reject and restore). */
  assertWriter(deviceId: string, fencingToken: number | undefined): void {
    this.checkWriter(deviceId, fencingToken);
  }

  /**
   * Moves the next snapshot and quarantine ids `by` past the largest ever used. Called once
   * when a hub starts on a data dir restored from a backup: devices may hold ids of snapshots
   * and items made after that backup, and a new snapshot reusing such an id would look to them
   * like the state they already have.
   */
  skipIds(by: number): void {
    this.transaction(() => {
      for (const table of ["snapshots", "quarantine"]) {
        const row = this.db.prepare("SELECT seq FROM sqlite_sequence WHERE name = ?").get(table) as { seq: number } | undefined;
        if (row === undefined) this.db.prepare("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)").run(table, by);
        else this.db.prepare("UPDATE sqlite_sequence SET seq = ? WHERE name = ?").run(Number(row.seq) + by, table);
      }
    });
  }

  /** Every snapshot of every superproject, for retention (oldest first). */
  allSnapshots(): Array<{ id: number; slug: string; createdAt: number; manifestHash: string }> {
    return (this.db.prepare("SELECT id, slug, created_at, manifest_hash FROM snapshots ORDER BY id").all() as Array<{ id: number; slug: string; created_at: number; manifest_hash: string }>).map((r) => ({
      id: Number(r.id), slug: r.slug, createdAt: r.created_at, manifestHash: r.manifest_hash,
    }));
  }

  /** Removes snapshots that retention dropped. Never the head: that is checked here again. */
  deleteSnapshots(ids: readonly number[]): number {
    if (ids.length === 0) return 0;
    return this.transaction(() => {
      let deleted = 0;
      const isHead = this.db.prepare("SELECT 1 FROM superprojects WHERE head = ?");
      const remove = this.db.prepare("DELETE FROM snapshots WHERE id = ?");
      for (const id of ids) {
        if (isHead.get(id) !== undefined) throw new Error(`refusing to delete snapshot ${id}: it is a head`);
        deleted += Number(remove.run(id).changes);
      }
      return deleted;
    });
  }

  // ---- quarantine ------------------------------------------------------------------------

  private static itemSelect = `SELECT q.id, q.slug, q.snapshot_id, q.base_snapshot, q.device_id, d.name AS device_name, q.created_at, q.reason,
      q.summary, q.metrics, q.paths, q.proposed_hash, q.status, q.resolved_at, q.resolved_by, r.name AS resolved_by_name,
      q.resolved_snapshot, q.collected_at
    FROM quarantine q LEFT JOIN devices d ON d.id = q.device_id LEFT JOIN devices r ON r.id = q.resolved_by`;

  private toItem(row: QuarantineRow): QuarantineRecord {
    const paths = JSON.parse(row.paths) as string[];
    return {
      id: Number(row.id), slug: row.slug, status: row.status, reason: row.reason, summary: row.summary,
      metrics: JSON.parse(row.metrics) as Record<string, number>, paths, pathCount: paths.length,
      deviceId: row.device_id, deviceName: row.device_name ?? "(removed device)",
      baseSnapshot: row.base_snapshot, snapshotId: row.snapshot_id, createdAt: row.created_at,
      resolvedAt: row.resolved_at, resolvedBy: row.resolved_by === null ? null : row.resolved_by_name ?? "(removed device)",
      resolvedSnapshot: row.resolved_snapshot, contentAvailable: row.collected_at === null,
      objectHash: row.proposed_hash,
    };
  }

  /** One item (NOT_FOUND when there is none). */
  quarantineItem(id: number): QuarantineRecord {
    const row = this.db.prepare(`${HubDatabase.itemSelect} WHERE q.id = ?`).get(id) as QuarantineRow | undefined;
    if (row === undefined) throw new CwsError("NOT_FOUND", `There is no quarantine item ${id}. List the items with \`cws quarantine list\`.`, { data: { id } });
    return this.toItem(row);
  }

  /** Items, newest first, filtered by superproject, status and ids. */
  quarantineItems(filter: { slug?: string; status?: "pending" | "all"; ids?: readonly number[]; limit?: number }): QuarantineRecord[] {
    if (filter.slug !== undefined) this.superproject(filter.slug);
    const where: string[] = [];
    const args: Array<string | number> = [];
    if (filter.slug !== undefined) { where.push("q.slug = ?"); args.push(filter.slug); }
    if ((filter.status ?? "pending") === "pending") where.push("q.status = 'pending'");
    if (filter.ids !== undefined) {
      if (filter.ids.length === 0) return [];
      where.push(`q.id IN (${filter.ids.map(() => "?").join(", ")})`);
      args.push(...filter.ids);
    }
    const sql = `${HubDatabase.itemSelect}${where.length ? ` WHERE ${where.join(" AND ")}` : ""} ORDER BY q.id DESC LIMIT ?`;
    return (this.db.prepare(sql).all(...args, filter.limit ?? 500) as unknown as QuarantineRow[]).map((row) => this.toItem(row));
  }

  /** Marks a pending item rejected; its content stays until gc. */
  rejectItem(id: number, deviceId: string, fencingToken: number | undefined): QuarantineRecord {
    return this.transaction(() => {
      const item = this.quarantineItem(id);
      this.checkWriter(deviceId, fencingToken);
      if (item.status !== "pending") {
        throw new CwsError("CONFLICT", `Quarantine item ${id} is already ${item.status}${item.resolvedBy ? ` (by ${item.resolvedBy})` : ""}; nothing was changed.`, { data: { id, status: item.status } });
      }
      this.db.prepare("UPDATE quarantine SET status = 'rejected', resolved_at = ?, resolved_by = ? WHERE id = ?").run(this.clock(), deviceId, id);
      return this.quarantineItem(id);
    });
  }

  /** Marks an item accepted by the snapshot that applied it; the caller holds the transaction. */
  markAccepted(id: number, deviceId: string, snapshotId: number): void {
    this.db.prepare("UPDATE quarantine SET status = 'accepted', resolved_at = ?, resolved_by = ?, resolved_snapshot = ? WHERE id = ?").run(this.clock(), deviceId, snapshotId, id);
  }

  /** Accepted items whose content object gc has not dropped yet (a snapshot holds what they applied). */
  acceptedUncollectedIds(): number[] {
    return (this.db.prepare("SELECT id FROM quarantine WHERE status = 'accepted' AND collected_at IS NULL").all() as Array<{ id: number }>).map((r) => Number(r.id));
  }

  /** Items whose content gc must keep: pending ones, and rejected ones not collected yet. */
  liveQuarantineItems(): LiveQuarantineItem[] {
    return (this.db.prepare("SELECT id, slug, status, proposed_hash, snapshot_id, base_snapshot, resolved_at FROM quarantine WHERE status = 'pending' OR (status = 'rejected' AND collected_at IS NULL) ORDER BY id").all() as Array<{
      id: number; slug: string; status: QuarantineStatus; proposed_hash: string; snapshot_id: number | null; base_snapshot: number | null; resolved_at: number | null;
    }>).map((r) => ({ id: Number(r.id), slug: r.slug, status: r.status, objectHash: r.proposed_hash, snapshotId: r.snapshot_id, baseSnapshot: r.base_snapshot, resolvedAt: r.resolved_at }));
  }

  /** Records that gc dropped the content of these decided items. */
  markCollected(ids: readonly number[]): void {
    if (ids.length === 0) return;
    this.transaction(() => {
      const now = this.clock();
      const mark = this.db.prepare("UPDATE quarantine SET collected_at = ? WHERE id = ? AND status != 'pending'");
      for (const id of ids) mark.run(now, id);
    });
  }

  /** Adds a snapshot and makes it the head; callers hold the transaction. */
  insertSnapshot(input: Omit<CommitInput, "base" | "fencingToken">, parent: number | null): SnapshotInfo {
    const now = this.clock();
    const result = this.db.prepare("INSERT INTO snapshots (slug, number, parent, device_id, created_at, kind, manifest_hash, files, bytes) VALUES (?, (SELECT COALESCE(MAX(number), 0) + 1 FROM snapshots WHERE slug = ?), ?, ?, ?, ?, ?, ?, ?)").run(
      input.slug, input.slug, parent, input.deviceId, now, input.kind, input.manifestHash, input.files, input.bytes,
    );
    const id = Number(result.lastInsertRowid);
    this.db.prepare("UPDATE superprojects SET head = ? WHERE slug = ?").run(id, input.slug);
    return this.snapshot(input.slug, id);
  }

  /**
   * A device may write when it presents the current, unexpired token of the lease it holds,
   * or, without a token, when no other device holds an active lease.
   */
  private checkWriter(deviceId: string, fencingToken: number | undefined): void {
    const lease = this.lease();
    if (fencingToken !== undefined) {
      if (!lease.active || lease.deviceId !== deviceId || lease.token !== fencingToken) {
        throw new CwsError("LEASE_LOST", `This device's sync lease (token ${fencingToken}) is no longer valid${lease.active ? `: ${lease.deviceName} holds it now (token ${lease.token})` : ": it expired"}. Nothing was committed. Run \`cws update-from-server\` and then \`cws turn-on-sync\` again.`, {
          data: { token: fencingToken, current: lease.token, holder: lease.deviceId },
        });
      }
      return;
    }
    if (lease.active && lease.deviceId !== deviceId) {
      throw new CwsError("LEASE_HELD", `${lease.deviceName} is live-syncing (lease until ${new Date(lease.expiresAt ?? 0).toISOString()}), so other devices cannot push. Run \`cws turn-off-sync\` there, or wait until its lease expires.`, {
        data: { holder: lease.deviceId, holderName: lease.deviceName, expiresAt: lease.expiresAt },
      });
    }
  }

  // ---- lease -----------------------------------------------------------------------------

  lease(): LeaseState {
    const row = this.db.prepare("SELECT l.device_id, d.name AS device_name, l.slug, l.token, l.acquired_at, l.heartbeat_at, l.expires_at FROM lease l LEFT JOIN devices d ON d.id = l.device_id WHERE singleton = 1").get() as {
      device_id: string | null; device_name: string | null; slug: string | null; token: number; acquired_at: number | null; heartbeat_at: number | null; expires_at: number | null;
    };
    const now = this.clock();
    return {
      deviceId: row.device_id, deviceName: row.device_name, slug: row.slug, token: row.token,
      acquiredAt: row.acquired_at, heartbeatAt: row.heartbeat_at, expiresAt: row.expires_at,
      active: row.device_id !== null && row.expires_at !== null && now < row.expires_at,
      now,
    };
  }

  /**
   * Grants the global lease to a device when it is free, expired, or already this device's.
   * Every grant increments the fencing token, so a holder that lost the lease and wakes up
   * later can never commit with its old token.
   */
  acquireLease(deviceId: string, slug: string, takeOver = false): LeaseState {
    return this.transaction(() => {
      this.device(deviceId);
      const lease = this.lease();
      // A take-over (the user confirmed it, having seen the holder and its last heartbeat)
      // grants the lease anyway; the new token fences the old holder out of every commit.
      if (lease.active && lease.deviceId !== deviceId && !takeOver) {
        throw new CwsError("LEASE_HELD", `${lease.deviceName} holds the sync lease for ${lease.slug} since ${new Date(lease.acquiredAt ?? 0).toISOString()}; it expires at ${new Date(lease.expiresAt ?? 0).toISOString()} unless that device keeps sending heartbeats. Run \`cws turn-off-sync\` on ${lease.deviceName}, wait for the expiry, or take the lease over with \`cws turn-on-sync ${slug} --take-over\` if that device is gone.`, {
          data: { holder: lease.deviceId, holderName: lease.deviceName, slug: lease.slug, acquiredAt: lease.acquiredAt, expiresAt: lease.expiresAt },
        });
      }
      const now = this.clock();
      this.db.prepare("UPDATE lease SET device_id = ?, slug = ?, token = token + 1, acquired_at = ?, heartbeat_at = ?, expires_at = ? WHERE singleton = 1").run(deviceId, slug, now, now, now + this.leaseTtlMs);
      return this.lease();
    });
  }

  heartbeat(deviceId: string, token: number): LeaseState {
    return this.transaction(() => {
      const lease = this.lease();
      if (!lease.active || lease.deviceId !== deviceId || lease.token !== token) {
        throw new CwsError("LEASE_LOST", `The sync lease (token ${token}) was lost${lease.active ? ` to ${lease.deviceName}` : ": heartbeats stopped for too long and it expired"}. Live sync stops; run \`cws turn-on-sync\` again.`, {
          data: { token, current: lease.token },
        });
      }
      const now = this.clock();
      this.db.prepare("UPDATE lease SET heartbeat_at = ?, expires_at = ? WHERE singleton = 1").run(now, now + this.leaseTtlMs);
      return this.lease();
    });
  }

  releaseLease(deviceId: string, token: number): LeaseState {
    return this.transaction(() => {
      const lease = this.lease();
      if (lease.deviceId === deviceId && lease.token === token) {
        this.db.prepare("UPDATE lease SET device_id = NULL, slug = NULL, acquired_at = NULL, heartbeat_at = NULL, expires_at = NULL WHERE singleton = 1").run();
      }
      return this.lease();
    });
  }
}
