/**
 * A throw-away cws installation for end-to-end tests: a server data dir (initialised as
 * `cws-server init` would) and any number of devices, each with its own client state dir and
 * superproject folders, talking to the server through the local transport. `close()` stops
 * the hub the agents started (by the PID it wrote) and removes everything.
 */
import { mkdtemp, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { hashPassphrase, writeServerConfig } from "../../server-agent/server-config.ts";
import { Store } from "../../server-agent/store/store.ts";
import { StateStore } from "../../src/client/state.ts";
import { enrollDevice } from "../../src/client/commands/enroll.ts";
import { attachSuperproject, createSuperproject } from "../../src/client/commands/superprojects.ts";
import { connectAsDevice } from "../../src/client/connect.ts";
import { syncSuperproject, type SyncOptions, type SyncSummary } from "../../src/client/sync.ts";
import type { AgentConnection } from "../../src/transport/connection.ts";

// Command-line runs in tests must not leave a kept session behind (src/client/kept-session.ts):
// every process a test starts inherits this. The tests of the kept session turn it on themselves.
process.env.CWS_KEEP_SESSION ??= "0";

export const REPO = join(import.meta.dirname, "..", "..");
export const PASSPHRASE = "correct horse battery staple";

export interface TestDevice {
  name: string;
  home: string;
  /** Opens the client state fresh from disk (a CLI child may have changed it). */
  state(): Promise<StateStore>;
  connect(): Promise<AgentConnection>;
  sync(slug: string, options?: Partial<SyncOptions>): Promise<SyncSummary>;
  /** Runs the real `cws` CLI as a child process with this device's state dir. */
  cli(args: string[], env?: NodeJS.ProcessEnv): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
}

export interface TestCluster {
  dir: string;
  /** Moves the hub's clock forward (only with fakeHubClock). */
  advanceHubClock(ms: number): Promise<void>;
  dataDir: string;
  device(name: string): Promise<TestDevice>;
  /** A folder for a device's superproject. */
  folder(name: string): Promise<string>;
  /** Two new devices, `<slug>-a` creating the superproject and `<slug>-b` attaching it, each in its own folder. */
  pair(slug: string): Promise<{ a: TestDevice; b: TestDevice; rootA: string; rootB: string }>;
  close(): Promise<void>;
}

export async function makeCluster(options: { leaseTtlMs?: number; fakeHubClock?: boolean } = {}): Promise<TestCluster> {
  const dir = await mkdtemp(join(tmpdir(), "cws-test-"));
  if (options.fakeHubClock) {
    // Inherited by the agents this process starts, and by the hub they start (see server-main.ts).
    process.env.CWS_HUB_CLOCK_OFFSET_FILE = join(dir, "hub-clock-offset");
  }
  // Syncs start the real Codex CLI to register arrived threads only in the tests that ask for
  // it (SyncOptions.codexCommand); everywhere else that would only cost time.
  process.env.CWS_CODEX ??= "off";
  // Tests never read the machine's real ~/.codex: an empty Codex home unless a test sets its own.
  if (!process.env.CODEX_HOME) {
    process.env.CODEX_HOME = join(dir, "codex-home");
    await mkdir(process.env.CODEX_HOME, { recursive: true });
  }
  const dataDir = join(dir, "server");
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  await writeServerConfig(dataDir, { format: 1, passphrase: await hashPassphrase(PASSPHRASE), leaseTtlMs: options.leaseTtlMs ?? 120_000, hubIdleExitMs: 120_000 });
  await (await Store.open(dataDir)).close();

  let clockOffset = 0;
  const cluster: TestCluster = {
    dir,
    dataDir,
    async advanceHubClock(ms) {
      if (!options.fakeHubClock) throw new Error("makeCluster({ fakeHubClock: true }) is needed to move the hub's clock");
      clockOffset += ms;
      await writeFile(join(dir, "hub-clock-offset"), String(clockOffset));
    },
    async folder(name) {
      const path = join(dir, name);
      await mkdir(path, { recursive: true });
      return path;
    },
    async pair(slug) {
      const a = await cluster.device(`${slug}-a`);
      const b = await cluster.device(`${slug}-b`);
      const rootA = await cluster.folder(`${slug}-a`);
      const rootB = await cluster.folder(`${slug}-b`);
      const connA = await a.connect();
      await createSuperproject(connA, await a.state(), { slug, root: rootA });
      await connA.close();
      const connB = await b.connect();
      await attachSuperproject(connB, await b.state(), { slug, root: rootB });
      await connB.close();
      return { a, b, rootA, rootB };
    },
    async device(name) {
      const home = join(dir, `home-${name}`);
      const state = await StateStore.open(home);
      await enrollDevice(state, { target: { transport: "local", dataDir }, deviceName: name, passphrase: PASSPHRASE });
      return makeDevice(name, home);
    },
    async close() {
      await stopHub(dataDir);
      await rm(dir, { recursive: true, force: true });
    },
  };
  return cluster;
}

function makeDevice(name: string, home: string): TestDevice {
  const device: TestDevice = {
    name,
    home,
    state: () => StateStore.open(home),
    async connect() {
      return connectAsDevice(await device.state());
    },
    async sync(slug, options = {}) {
      const state = await device.state();
      const conn = await connectAsDevice(state);
      try {
        return await syncSuperproject({ conn, state, slug, ...options });
      } finally {
        await conn.close();
      }
    },
    cli(args, env = {}) {
      return new Promise((resolve) => {
        const child = spawn(process.execPath, [join(REPO, "src", "cli", "cws.mjs"), ...args], {
          env: { ...process.env, CWS_HOME: home, ...env },
          stdio: ["ignore", "pipe", "pipe"],
        });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (piece) => { stdout += piece; });
        child.stderr.on("data", (piece) => { stderr += piece; });
        child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
      });
    },
  };
  return device;
}

/** Stops the hub of a data dir by the PID in hub.pid and waits until it is gone. */
export async function stopHub(dataDir: string): Promise<void> {
  let pid: number;
  try {
    pid = Number((await readFile(join(dataDir, "hub.pid"), "utf8")).trim());
  } catch {
    return;
  }
  if (!Number.isInteger(pid) || pid <= 0) return;
  try {
    process.kill(pid, "SIGTERM");
  } catch {
    return;
  }
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // Already gone.
  }
}
