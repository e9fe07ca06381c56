/**
 * The hub's database: devices, superprojects, snapshots, the global lease and the quarantine
 * queue, in SQLite through node:sqlite. The hub process is the only writer. Every state change
 * that matters (a new head, a lease grant) happens inside one IMMEDIATE transaction, and that
 * transaction's commit is the commit point of the operation.
 */
import { DatabaseSync } from "node:sqlite";
import { randomUUID } from "node:crypto";
import { CwsError } from "../../src/errors.ts";
import type { SnapshotInfo, SuperprojectInfo } from "../../src/protocol/messages.ts";
import { MIGRATIONS } from "./migrations.ts";

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

  registerDevice(name: string, keyFingerprint: string | undefined): string {
    const id = randomUUID();
    const now = this.clock();
    this.db.prepare("INSERT INTO devices (id, name, key_fingerprint, enrolled_at, last_seen_at) VALUES (?, ?, ?, ?, ?)").run(id, name, keyFingerprint ?? null, now, now);
    return id;
  }

  device(id: string): { id: string; name: string; keyFingerprint: string | null } {
    const row = this.db.prepare("SELECT id, name, key_fingerprint FROM devices WHERE id = ?").get(id) as { id: string; name: string; key_fingerprint: string | null } | undefined;
    if (row === undefined) {
      throw new CwsError("NOT_ENROLLED", `This device (${id}) is not enrolled on the server. Run \`cws enroll-device\` again.`);
    }
    this.db.prepare("UPDATE devices SET last_seen_at = ? WHERE id = ?").run(this.clock(), id);
    return { id: row.id, name: row.name, keyFingerprint: row.key_fingerprint };
  }

  listDevices(): Array<{ id: string; name: string; enrolledAt: number; lastSeenAt: number }> {
    return (this.db.prepare("SELECT id, name, enrolled_at, last_seen_at FROM devices ORDER BY enrolled_at").all() as Array<{ id: string; name: string; enrolled_at: number; last_seen_at: number }>).map((r) => ({
      id: r.id, name: r.name, enrolledAt: r.enrolled_at, lastSeenAt: r.last_seen_at,
    }));
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
    return (this.db.prepare("SELECT slug, head, created_at FROM superprojects ORDER BY slug").all() as Array<{ slug: string; head: number | null; created_at: number }>).map((r) => ({
      slug: r.slug, head: r.head, createdAt: r.created_at,
    }));
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

  // ---- snapshots -------------------------------------------------------------------------

  private static snapshotSelect = `SELECT s.id, s.slug, s.parent, s.device_id, d.name AS device_name, s.created_at, s.kind, s.manifest_hash, s.files, s.bytes
    FROM snapshots s LEFT JOIN devices d ON d.id = s.device_id`;

  private toInfo(row: SnapshotRow): SnapshotInfo {
    return {
      id: row.id, parent: row.parent, deviceId: row.device_id, deviceName: row.device_name ?? "(removed device)",
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
   * Moves a superproject's head from `base` to a new snapshot: the compare-and-swap that
   * commits a push. Refused when the head moved since the device's base (HEAD_MOVED), when
   * the fencing token is stale (LEASE_LOST), or when another device holds the lease.
   */
  commit(input: CommitInput): SnapshotInfo {
    return this.transaction(() => {
      const sp = this.superproject(input.slug);
      this.checkWriter(input.deviceId, input.fencingToken);
      if (sp.head !== input.base) {
        throw new CwsError("HEAD_MOVED", `The server's ${input.slug} moved to snapshot ${sp.head ?? "none"} while this device pushed against ${input.base ?? "none"}. Run the sync again; it will merge the new server state first.`, {
          data: { head: sp.head, base: input.base },
        });
      }
      return this.insertSnapshot(input, sp.head);
    });
  }

  /** Adds a snapshot and makes it the head; callers hold the transaction. */
  insertSnapshot(input: Omit<CommitInput, "base" | "fencingToken">, parent: number | null): SnapshotInfo {
    const now = this.clock();
    const result = this.db.prepare("INSERT INTO snapshots (slug, parent, device_id, created_at, kind, manifest_hash, files, bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)").run(
      input.slug, parent, input.deviceId, now, input.kind, input.manifestHash, input.files, input.bytes,
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
  acquireLease(deviceId: string, slug: string): LeaseState {
    return this.transaction(() => {
      this.device(deviceId);
      const lease = this.lease();
      if (lease.active && lease.deviceId !== deviceId) {
        throw new CwsError("LEASE_HELD", `${lease.deviceName} holds the sync lease for ${lease.slug} since ${new Date(lease.acquiredAt ?? 0).toISOString()}; it expires at ${new Date(lease.expiresAt ?? 0).toISOString()} unless that device keeps sending heartbeats. Run \`cws turn-off-sync\` on ${lease.deviceName}, or wait for the expiry.`, {
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
