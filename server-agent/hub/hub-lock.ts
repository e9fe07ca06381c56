/**
 * One hub per data dir, whoever starts it (systemd, an agent, an operator by hand, root or the
 * service account). The hub holds an exclusive SQLite lock on `<data>/hub.lock` for as long as
 * it runs. SQLite locks are byte-range locks the kernel drops when the process dies, so a crash
 * never leaves a stale lock behind and no PID file has to be trusted.
 *
 * A second hub therefore fails here, before it touches the socket: the old check ("does the
 * socket answer?") let a hub of another account, whose 0600 socket cannot be connected to,
 * look absent, and the newcomer removed its socket and served the same database beside it.
 *
 * The hub also refuses a data dir owned by another account: a hub started by root in the
 * service account's data dir would leave root-owned files the service cannot write.
 */
import { DatabaseSync } from "node:sqlite";
import { stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { CwsError } from "../../src/errors.ts";

/** Data dirs locked by this process: POSIX locks do not exclude the process that holds them. */
const lockedHere = new Set<string>();

export interface HubLock {
  release(): void;
}

/** The lock file's path in a data dir. */
export function hubLockPath(dataDir: string): string {
  return join(dataDir, "hub.lock");
}

/**
 * Takes the data dir's hub lock or throws ALREADY_EXISTS (another hub holds it) or
 * INVALID_ARGUMENT (the data dir belongs to another account).
 */
export async function acquireHubLock(dataDir: string): Promise<HubLock> {
  const key = resolve(dataDir);
  await checkOwner(dataDir);
  if (lockedHere.has(key)) throw alreadyRunning(dataDir, `this process (pid ${process.pid})`);
  const lockPath = hubLockPath(dataDir);
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(lockPath);
  } catch (error) {
    // The lock file of a hub run by another account cannot even be opened.
    throw alreadyRunning(dataDir, "another account", error);
  }
  try {
    // A write transaction that is never committed holds SQLite's EXCLUSIVE lock until close;
    // with no busy timeout, a second taker fails at once with "database is locked".
    db.exec("BEGIN EXCLUSIVE");
  } catch (error) {
    db.close();
    throw alreadyRunning(dataDir, "another process", error);
  }
  lockedHere.add(key);
  return {
    release() {
      if (!lockedHere.delete(key)) return;
      db.close();
    },
  };
}

async function checkOwner(dataDir: string): Promise<void> {
  if (typeof process.getuid !== "function") return;
  const uid = process.getuid();
  const info = await stat(dataDir);
  if (info.uid !== uid) {
    throw new CwsError("INVALID_ARGUMENT", `Cannot start the hub as account ${uid} as the data dir ${dataDir} belongs to account ${info.uid}: files it creates would be unwritable for the service. Run it as the owner, e.g. \`sudo -u <owner> cws-server serve\`, or through \`systemctl start codex-workspace-sync\`.`);
  }
}

function alreadyRunning(dataDir: string, holder: string, cause?: unknown): CwsError {
  return new CwsError("ALREADY_EXISTS", `Cannot start a hub for ${dataDir} as ${holder} already runs one (it holds ${hubLockPath(dataDir)}). Use \`cws-server status --data ${dataDir}\` to see it, or stop it first (\`systemctl stop codex-workspace-sync\` or \`cws-server stop\`).`, cause === undefined ? {} : { cause });
}
