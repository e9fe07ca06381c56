/**
 * The hub: the long-lived process that owns the server's SQLite database and answers agents
 * over a Unix socket in the data dir (mode 0600). Agents come and go with SSH sessions; the
 * hub serialises every state change (heads, leases, quarantine) through one database.
 */
import { createServer, connect, type Server, type Socket } from "node:net";
import { access, chmod, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { CwsError } from "../../src/errors.ts";
import { readLines } from "../../src/protocol/framing.ts";
import { serveRpc } from "../../src/protocol/rpc.ts";
import { explainFailure } from "../failures.ts";
import { readServerConfig, verifyPassphrase } from "../server-config.ts";
import { HubDatabase, type Clock } from "./hub-db.ts";
import { HubMethods, type HubMethodName } from "./hub-protocol.ts";
import { Store } from "../store/store.ts";
import { resolvePolicySettings } from "../../src/core/policy.ts";
import { resolveRetentionSettings } from "../../src/core/retention.ts";
import { Serial } from "./serial.ts";
import { hubSocketPath } from "../data-dir.ts";
import { serveSession, takeSessionPreamble, type SessionHost } from "./hub-sessions.ts";
import { commitWithPolicy, superprojectPolicy, type PolicyContext } from "./push-policy.ts";
import { ManifestTrees } from "../store/manifest-tree.ts";
import { acceptQuarantineItem, rejectQuarantineItem, restoreCheckpoint } from "./quarantine-actions.ts";
import { BackupGuard, beginBackup, endBackup, runGc, runVerify, superprojectRetention } from "./maintenance.ts";
import { acquireHubLock } from "./hub-lock.ts";
import { collectWhenIdle } from "./idle-gc.ts";
import { keepSpareBuffers, releaseSpareBuffers } from "../../src/protocol/bundle.ts";

/**
 * How long the hub keeps spare bundle buffers unused (see keepSpareBuffers). They are let go
 * sooner when the hub is found idle (idle-gc.ts); this only bounds how long a hub that never
 * goes quiet keeps them.
 */
const HUB_SPARE_BUFFERS_MS = 10_000;

export { hubSocketPath };

export function hubDatabasePath(dataDir: string): string {
  return join(dataDir, "hub.sqlite");
}

export interface HubOptions {
  dataDir: string;
  clock?: Clock;
  /** Exit after this long without any connection (0 = never). Defaults to the server config. */
  idleExitMs?: number;
  log?: (line: string) => void;
}

export interface RunningHub {
  socketPath: string;
  db: HubDatabase;
  /** Resolves when the hub has stopped (shutdown request, idle exit or close()). */
  stopped: Promise<void>;
  close(): Promise<void>;
}

export async function startHub(options: HubOptions): Promise<RunningHub> {
  const { dataDir } = options;
  const log = options.log ?? ((line: string) => process.stderr.write(`${new Date().toISOString()} hub: ${line}\n`));
  const config = await readServerConfig(dataDir);
  const socketPath = hubSocketPath(dataDir);
  // The lock, not the socket, decides who may serve this data dir (see hub-lock.ts); once it
  // is held, a socket file left behind by a dead hub can safely be removed.
  const lock = await acquireHubLock(dataDir);
  try {
    if (await socketAnswers(socketPath)) {
      throw new CwsError("ALREADY_EXISTS", `A hub is already running for ${dataDir} (socket ${socketPath} answers).`);
    }
    await rm(socketPath, { force: true });
  } catch (error) {
    lock.release();
    throw error;
  }
  const db = new HubDatabase(hubDatabasePath(dataDir), { clock: options.clock, leaseTtlMs: config.leaseTtlMs });
  const store = await Store.open(dataDir);
  await adoptRestoredBackup(dataDir, db, log);
  const idleExitMs = options.idleExitMs ?? config.hubIdleExitMs;
  const ctx: PolicyContext = { db, store, manifests: new ManifestTrees(store), log };
  // Everything that moves a head runs one at a time under `heads`; gc takes it too, so it never
  // collects a chunk a commit is about to reference. `maintenance` keeps gc, verify and the
  // start of a backup apart (gc takes it first, then `heads`; nothing takes them the other way
  // round, so they cannot deadlock), and `backups` keeps gc away while a backup is copied.
  const heads = new Serial();
  const maintenance = new Serial();
  const backups = new BackupGuard();

  const sockets = new Set<Socket>();
  /** Bytes moved by connections that have closed (plus one per connection). */
  let closedTraffic = 0;
  let lastActivity = Date.now();
  let resolveStopped!: () => void;
  const stopped = new Promise<void>((resolve) => { resolveStopped = resolve; });
  let closing = false;
  // What the hub's sockets moved so far: once it stops growing, a collection gives back the
  // memory the work left behind (see idle-gc.ts).
  const traffic = () => {
    let bytes = closedTraffic + lastActivity;
    for (const socket of sockets) bytes += socket.bytesRead + socket.bytesWritten;
    return bytes;
  };
  // Spare bundle buffers are kept from one bundle to the next however far apart a pull asks
  // for them, and let go when the hub is found idle, before it decides whether to collect.
  keepSpareBuffers(HUB_SPARE_BUFFERS_MS);
  const collector = collectWhenIdle(traffic, { onIdle: releaseSpareBuffers });

  const handle = async (method: HubMethodName, params: unknown): Promise<unknown> => {
    lastActivity = Date.now();
    switch (method) {
      case "ping":
        return { pid: process.pid, now: db.clock() };
      case "registerDevice": {
        const p = params as { name: string; passphrase: string; keyFingerprint?: string; replaces?: string };
        const current = await readServerConfig(dataDir);
        if (!(await verifyPassphrase(p.passphrase, current.passphrase))) {
          throw new CwsError("AUTH_FAILED", "The secondary passphrase is wrong. Use the passphrase set with `cws-server init` on the server.");
        }
        const deviceId = db.registerDevice(p.name, p.keyFingerprint, p.replaces);
        log(`${deviceId === p.replaces ? "re-enrolled" : "enrolled"} device ${p.name} (${deviceId})`);
        return { deviceId };
      }
      case "device": {
        const { id, name, enrolledAt } = db.device((params as { deviceId: string }).deviceId);
        return { id, name, enrolledAt };
      }
      case "listDevices":
        return { devices: db.listDevices() };
      case "revokeDevice": {
        const device = db.revokeDevice((params as { device: string }).device);
        log(`revoked device ${device.name} (${device.id})`);
        return { device };
      }
      case "listSuperprojects":
        return { superprojects: db.listSuperprojects() };
      case "createSuperproject":
        return db.createSuperproject((params as { slug: string }).slug);
      case "deleteSuperproject":
        db.deleteSuperproject((params as { slug: string }).slug);
        return {};
      case "head":
        return { snapshot: db.head((params as { slug: string }).slug) };
      case "snapshot": {
        const p = params as { slug: string; id: number };
        return { snapshot: db.snapshot(p.slug, p.id) };
      }
      case "listSnapshots": {
        const p = params as { slug: string; limit: number };
        return { snapshots: db.listSnapshots(p.slug, p.limit) };
      }
      case "commit": {
        const p = params as { slug: string; base: number | null; deviceId: string; kind: "push" | "override" | "restore" | "accept-quarantine"; manifestHash: string; fencingToken?: number };
        // The manifest must already be in the store: the hub reads it back (so the snapshot's
        // counts come from the stored object, not from what the agent claims) and runs the
        // quarantine policy on it against the head it replaces.
        return heads.run(() => commitWithPolicy(ctx, p));
      }
      case "quarantineList": {
        const p = params as { slug?: string; status?: "pending" | "all"; ids?: number[]; limit?: number };
        return { items: db.quarantineItems(p) };
      }
      case "quarantineItem":
        return { item: db.quarantineItem((params as { id: number }).id) };
      case "quarantineAccept": {
        const p = params as { id: number; deviceId: string; fencingToken?: number };
        return heads.run(() => acceptQuarantineItem(ctx, p));
      }
      case "quarantineReject": {
        const p = params as { id: number; deviceId: string; fencingToken?: number };
        return heads.run(() => ({ item: rejectQuarantineItem(ctx, p) }));
      }
      case "restoreSnapshot": {
        const p = params as { slug: string; snapshotId: number; deviceId: string; fencingToken?: number };
        return heads.run(() => restoreCheckpoint(ctx, p));
      }
      case "settings": {
        const p = params as { slug: string; quarantine?: Record<string, unknown> | null; retention?: Record<string, unknown> | null };
        const sp = db.superproject(p.slug);
        if (p.quarantine !== undefined) {
          const overrides = p.quarantine ?? {};
          resolvePolicySettings(overrides);
          db.setSettings(p.slug, JSON.stringify(overrides));
        }
        if (p.retention !== undefined) {
          const overrides = p.retention ?? {};
          resolveRetentionSettings(overrides);
          db.setRetentionSettings(p.slug, JSON.stringify(overrides));
        }
        const quarantineJson = p.quarantine !== undefined ? JSON.stringify(p.quarantine ?? {}) : sp.settings;
        const retentionJson = db.retentionSettings(p.slug);
        if (p.quarantine !== undefined || p.retention !== undefined) log(`${p.slug}: settings changed`);
        return {
          slug: p.slug,
          quarantine: { overrides: JSON.parse(quarantineJson) as Record<string, unknown>, effective: superprojectPolicy(quarantineJson, p.slug) },
          retention: { overrides: JSON.parse(retentionJson) as Record<string, unknown>, effective: superprojectRetention(retentionJson, p.slug) },
        };
      }
      case "gc": {
        const p = params as { graceMs?: number; dryRun?: boolean };
        return maintenance.run(() => heads.run(() => {
          if (!p.dryRun) backups.assertNone(Date.now());
          return runGc(ctx, p);
        }));
      }
      case "verify":
        return maintenance.run(() => runVerify(ctx));
      case "backupBegin":
        return maintenance.run(() => beginBackup(ctx, backups));
      case "backupEnd":
        await endBackup(ctx, backups, (params as { id: string }).id);
        return {};
      case "leaseStatus":
        return db.lease();
      case "acquireLease": {
        const p = params as { deviceId: string; slug: string; takeOver?: boolean };
        db.superproject(p.slug);
        const before = db.lease();
        const lease = db.acquireLease(p.deviceId, p.slug, p.takeOver === true);
        const taken = before.active && before.deviceId !== p.deviceId ? `, taken over from ${before.deviceName}` : "";
        log(`lease granted to ${lease.deviceName} for ${p.slug} (token ${lease.token}${taken})`);
        return lease;
      }
      case "heartbeat": {
        const p = params as { deviceId: string; token: number };
        return db.heartbeat(p.deviceId, p.token);
      }
      case "releaseLease": {
        const p = params as { deviceId: string; token: number };
        return db.releaseLease(p.deviceId, p.token);
      }
      case "shutdown":
        setImmediate(() => void close());
        return {};
    }
  };

  const sessionHost: SessionHost = { dataDir, store, manifests: ctx.manifests, handle, log };
  const serveConnection = async (socket: Socket): Promise<void> => {
    // A relay's connection starts with a session preamble (hub-sessions.ts); anything else
    // speaks the hub protocol from its first line.
    const preamble = await takeSessionPreamble(socket);
    if (preamble !== null) return serveSession(socket, preamble, sessionHost);
    return serveRpc({
      table: HubMethods,
      lines: readLines(socket),
      output: socket,
      // A full disk (SQLite's "database or disk is full", ENOSPC) is the server's state, not a
      // bug; a bug's INTERNAL names the hub's log. The agent passes either on as it is.
      handle: (method, params) => handle(method, params).catch((error: unknown) => {
        throw explainFailure(error, { what: method, dataDir, logFile: `${join(dataDir, "logs", "hub.log")} (or the hub service's journal)`, log });
      }),
      onInternalError: (what, error) => log(`internal error in ${what}: ${(error as Error)?.stack ?? String(error)}`),
    });
  };

  // Half-open connections are allowed so that a session whose client has finished sending
  // still gets its last answers.
  const server: Server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    lastActivity = Date.now();
    socket.on("close", () => {
      sockets.delete(socket);
      lastActivity = Date.now();
      closedTraffic += 1 + socket.bytesRead + socket.bytesWritten;
      // The last connection gone (a sync has ended): give back what it left behind now, before
      // the next sync starts, rather than after a quiet second.
      if (sockets.size === 0 && !closing) setImmediate(() => collector.settled());
    });
    socket.on("error", () => socket.destroy());
    serveConnection(socket).catch((error: unknown) => {
      if (!socket.destroyed) log(`connection ended by an error: ${(error as Error)?.message ?? String(error)}`);
      socket.destroy();
    }).finally(() => socket.end());
  });

  // The socket is created under a restrictive umask, then chmod-ed, so no other account can
  // ever connect to it, not even in the moment between listen() and chmod().
  const previousUmask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(socketPath, () => { server.off("error", reject); resolve(); });
    });
  } catch (error) {
    collector.stop();
    throw error;
  } finally {
    process.umask(previousUmask);
  }
  await chmod(socketPath, 0o600);
  await writeFile(join(dataDir, "hub.pid"), `${process.pid}\n`, { mode: 0o600 });
  log(`listening on ${socketPath} (pid ${process.pid})`);

  const idleTimer = idleExitMs > 0
    ? setInterval(() => {
      if (sockets.size === 0 && Date.now() - lastActivity >= idleExitMs) {
        log(`idle for ${Math.round(idleExitMs / 1000)} s, exiting`);
        void close();
      }
    }, Math.min(idleExitMs, 30_000))
    : undefined;
  idleTimer?.unref();

  async function close(): Promise<void> {
    if (closing) return stopped;
    closing = true;
    clearInterval(idleTimer);
    collector.stop();
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const socket of sockets) socket.end();
      setTimeout(() => { for (const socket of sockets) socket.destroy(); }, 2000).unref();
    });
    db.close();
    await store.close?.();
    await rm(join(dataDir, "hub.pid"), { force: true });
    lock.release();
    resolveStopped();
  }

  return { socketPath, db, stopped, close };
}

/** How far ids jump when a hub first starts on a restored backup (see HubDatabase.skipIds). */
export const RESTORED_ID_SKIP = 1_000_000;

/**
 * A data dir that still holds the `backup.json` of `cws-server backup` was restored from a
 * backup (or is a backup being inspected). Devices may know snapshot and item ids made after
 * that backup, so new ids must not reuse them: they jump by RESTORED_ID_SKIP, once, and the
 * marker is renamed so it does not happen again.
 */
async function adoptRestoredBackup(dataDir: string, db: HubDatabase, log: (line: string) => void): Promise<void> {
  const marker = join(dataDir, "backup.json");
  try {
    await access(marker);
  } catch {
    return;
  }
  db.skipIds(RESTORED_ID_SKIP);
  await rename(marker, join(dataDir, `restored-from-backup-${Date.now()}.json`));
  log(`this data dir was restored from a backup: new snapshot and quarantine ids start ${RESTORED_ID_SKIP} higher, so they never repeat ids devices saw after the backup`);
}

/** True when something accepts connections on the socket. */
export function socketAnswers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(socketPath);
    socket.once("connect", () => { socket.destroy(); resolve(true); });
    socket.once("error", () => resolve(false));
  });
}

