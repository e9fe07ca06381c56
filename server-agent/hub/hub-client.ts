/**
 * An agent's connection to the hub, starting the hub when it is not running. Two agents that
 * find no hub at the same moment race for a start lock (a file created with O_EXCL), so only
 * one hub is ever started; the loser waits for the winner's hub to answer.
 */
import { connect, type Socket } from "node:net";
import { spawn } from "node:child_process";
import { mkdir, open, readFile, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { CwsError } from "../../src/errors.ts";
import { readLines } from "../../src/protocol/framing.ts";
import { RpcCaller, type TableParams, type TableResult } from "../../src/protocol/rpc.ts";
import { HubMethods, type HubMethodName } from "./hub-protocol.ts";
import { hubSocketPath } from "../data-dir.ts";
import { serverConfigPath } from "../server-config.ts";
import { LOW_MEMORY_MALLOC_ENV } from "../../src/malloc-env.ts";

export interface HubClient {
  call<M extends HubMethodName>(method: M, params: TableParams<typeof HubMethods, M>): Promise<TableResult<typeof HubMethods, M>>;
  close(): Promise<void>;
}

/** How long an agent waits for a hub it started (or saw being started) to answer. */
const HUB_START_TIMEOUT_MS = 20_000;
/** A start lock older than this is stale: its owner died before the hub came up. */
const START_LOCK_STALE_MS = 30_000;

/**
 * Node flags of a hub started here. The hub lives for hours and is measured by its peak
 * resident memory: V8's young generation otherwise grows to 16 MiB per semi-space, and what
 * passes through it (manifest entries, request lines, bundle buffers) is collected late, so a
 * 1 MiB semi-space keeps short-lived garbage short-lived. The hub's work is I/O bound; the more
 * frequent young collections cost it little CPU.
 */
export const HUB_NODE_FLAGS = ["--max-semi-space-size=1"];


const SERVER_MAIN = join(import.meta.dirname, "..", "server-main.mjs");

export async function connectHub(dataDir: string, options: { autoStart?: boolean } = {}): Promise<HubClient> {
  return wrap(await connectHubSocket(dataDir, options));
}

/**
 * A connection to the hub's socket, starting the hub first when it is not running (unless
 * autoStart is false). The relay of a client session uses it when its own quick connect fails.
 */
export async function connectHubSocket(dataDir: string, options: { autoStart?: boolean } = {}): Promise<Socket> {
  const socketPath = hubSocketPath(dataDir);
  const first = await tryConnect(socketPath);
  if (first !== null) return first;
  // A hub started on a data dir that `cws-server init` never made would only fail in its
  // log; say so at once instead of waiting for it to come up.
  await assertInitialised(dataDir);
  if (options.autoStart === false) {
    throw new CwsError("HUB_UNAVAILABLE", `The cws hub is not running for ${dataDir}. Start it with \`cws-server serve --data ${dataDir}\` (or the systemd unit).`);
  }
  const deadline = Date.now() + HUB_START_TIMEOUT_MS;
  let startedHere = false;
  while (Date.now() < deadline) {
    if (!startedHere && (await takeStartLock(dataDir))) {
      try {
        // Another agent may have started the hub between our connect and our lock.
        const again = await tryConnect(socketPath);
        if (again !== null) return again;
        spawnHub(dataDir);
        startedHere = true;
      } catch (error) {
        await releaseStartLock(dataDir);
        throw error;
      }
    }
    await delay(50);
    const socket = await tryConnect(socketPath);
    if (socket !== null) {
      if (startedHere) await releaseStartLock(dataDir);
      return socket;
    }
  }
  if (startedHere) await releaseStartLock(dataDir);
  let logTail = "";
  try {
    logTail = (await readFile(join(dataDir, "logs", "hub.log"), "utf8")).slice(-2000);
  } catch {
    // No log yet: the hub never got far enough to write one.
  }
  throw new CwsError("HUB_UNAVAILABLE", `The cws hub did not come up within ${HUB_START_TIMEOUT_MS / 1000} s for ${dataDir}.${logTail ? ` Its log ends with:\n${logTail}` : ""} Check ${join(dataDir, "logs", "hub.log")} or start it by hand with \`cws-server serve --data ${dataDir}\`.`);
}

/**
 * @throws {CwsError} NOT_FOUND when `dataDir` holds no `server.json`: a wrong `--data`, or a
 *   server where `cws-server init` has not run.
 */
export async function assertInitialised(dataDir: string): Promise<void> {
  const present = await stat(serverConfigPath(dataDir)).then((info) => info.isFile(), () => false);
  if (!present) {
    throw new CwsError(
      "NOT_FOUND",
      `${dataDir} is not an initialised cws server data dir (it has no server.json). Run \`cws-server init --data ${dataDir}\` on the server, ` +
        "or give the data dir it was initialised with (--data for cws-server, the agent command's --data for devices).",
      { data: { dataDir } },
    );
  }
}

function tryConnect(socketPath: string): Promise<Socket | null> {
  return new Promise((resolve) => {
    const socket = connect(socketPath);
    socket.once("connect", () => { socket.removeAllListeners("error"); resolve(socket); });
    socket.once("error", () => { socket.destroy(); resolve(null); });
  });
}

async function takeStartLock(dataDir: string): Promise<boolean> {
  const lockPath = join(dataDir, "hub.start.lock");
  try {
    const handle = await open(lockPath, "wx", 0o600);
    await handle.writeFile(`${process.pid}\n`);
    await handle.close();
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    try {
      const info = await stat(lockPath);
      if (Date.now() - info.mtimeMs > START_LOCK_STALE_MS) await rm(lockPath, { force: true });
    } catch {
      // The lock vanished meanwhile: the next round will try again.
    }
    return false;
  }
}

async function releaseStartLock(dataDir: string): Promise<void> {
  await rm(join(dataDir, "hub.start.lock"), { force: true });
}

function spawnHub(dataDir: string): void {
  const logDir = join(dataDir, "logs");
  // Synchronous-enough: the log folder is created before the child opens it below.
  void mkdir(logDir, { recursive: true, mode: 0o700 });
  // A fault point meant for one session (crash tests) must not follow the hub around.
  const { CWS_FAULT: _fault, ...env } = process.env;
  const child = spawn(process.execPath, [...HUB_NODE_FLAGS, SERVER_MAIN, "serve", "--data", dataDir, "--started-by-agent"], {
    detached: true,
    stdio: "ignore",
    // The operator's own settings, if any, win.
    env: { ...LOW_MEMORY_MALLOC_ENV, ...env },
  });
  child.unref();
}

function wrap(socket: Socket): HubClient {
  socket.setNoDelay(true);
  const caller = new RpcCaller(HubMethods, readLines(socket)[Symbol.asyncIterator](), socket, {
    peer: "hub",
    lostError: (cause) => new CwsError("HUB_UNAVAILABLE", "The connection to the cws hub closed unexpectedly; run the command again.", cause === undefined ? {} : { cause }),
  });
  return {
    call: (method, params) => caller.call(method, params),
    async close() {
      socket.end();
      await caller.done.catch(() => {});
    },
  };
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
