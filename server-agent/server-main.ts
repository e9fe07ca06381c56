#!/usr/bin/env node
/**
 * `cws-server`: the server-side administration commands. Thin wiring only: each command
 * parses its flags and calls a function of the hub, store or config modules.
 */
import { Command } from "commander";
import { mkdir, open } from "node:fs/promises";
import { join } from "node:path";
import { CwsError, isCwsError } from "../src/errors.ts";
import { PACKAGE_VERSION } from "../src/version.ts";
import { askSecret, readSecretFile } from "../src/terminal/prompt.ts";
import { defaultServerDataDir, hashPassphrase, readServerConfig, serverConfigPath, writeServerConfig } from "./server-config.ts";
import { startHub } from "./hub/hub-server.ts";
import { connectHub } from "./hub/hub-client.ts";
import { Store } from "./store/store.ts";
import { existsSync, readFileSync } from "node:fs";

const program = new Command("cws-server")
  .description("Administer a cws server: its data dir, the hub process, and the store.")
  .version(PACKAGE_VERSION)
  .showHelpAfterError();

const dataOption = "--data <dir>";
const dataHelp = "server data dir (default: $CWS_DATA_DIR or ~/.local/share/cws-server)";

program
  .command("init")
  .description("Create the server data dir and set the secondary passphrase devices must give to enroll.")
  .option(dataOption, dataHelp)
  .option("--passphrase-file <file>", "read the secondary passphrase from this file (- for stdin) instead of asking")
  .option("--force", "replace the passphrase of an existing data dir (devices stay enrolled)")
  .action(async (flags: { data?: string; passphraseFile?: string; force?: boolean }) => {
    const dataDir = flags.data ?? defaultServerDataDir();
    if (existsSync(serverConfigPath(dataDir)) && !flags.force) {
      throw new CwsError("ALREADY_EXISTS", `${dataDir} is already initialised. Use --force to set a new secondary passphrase.`);
    }
    const passphrase = flags.passphraseFile
      ? await readSecretFile(flags.passphraseFile)
      : await askAndConfirm();
    if (passphrase.length < 8) throw new CwsError("INVALID_ARGUMENT", "The secondary passphrase must have at least 8 characters.");
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    await mkdir(join(dataDir, "logs"), { recursive: true, mode: 0o700 });
    const previous = existsSync(serverConfigPath(dataDir)) ? await readServerConfig(dataDir) : undefined;
    await writeServerConfig(dataDir, {
      format: 1,
      passphrase: await hashPassphrase(passphrase),
      leaseTtlMs: previous?.leaseTtlMs ?? 120_000,
      hubIdleExitMs: previous?.hubIdleExitMs ?? 600_000,
    });
    const store = await Store.open(dataDir);
    await store.close?.();
    process.stdout.write(`Initialised cws server data in ${dataDir}.\nDevices enroll with \`cws enroll-device\`; the agent command on this server is:\n  cws-agent --stdio --data ${dataDir}\n`);
  });

program
  .command("serve")
  .description("Run the hub in the foreground (systemd runs this; agents also start it on demand).")
  .option(dataOption, dataHelp)
  .option("--idle-exit-ms <ms>", "exit after this long without connections (0 = never)")
  .option("--started-by-agent", "internal: log to <data>/logs/hub.log and exit when idle")
  .action(async (flags: { data?: string; idleExitMs?: string; startedByAgent?: boolean }) => {
    const dataDir = flags.data ?? defaultServerDataDir();
    let log: ((line: string) => void) | undefined;
    if (flags.startedByAgent) {
      await mkdir(join(dataDir, "logs"), { recursive: true, mode: 0o700 });
      const handle = await open(join(dataDir, "logs", "hub.log"), "a", 0o600);
      log = (line) => { void handle.write(`${new Date().toISOString()} ${line}\n`); };
    }
    const idleExitMs = flags.idleExitMs !== undefined ? Number(flags.idleExitMs) : flags.startedByAgent ? undefined : 0;
    if (idleExitMs !== undefined && !(Number.isInteger(idleExitMs) && idleExitMs >= 0)) {
      throw new CwsError("INVALID_ARGUMENT", "--idle-exit-ms takes a whole number of milliseconds");
    }
    const hub = await startHub({ dataDir, idleExitMs, log, clock: testClock() });
    const stop = () => void hub.close();
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
    await hub.stopped;
  });

program
  .command("status")
  .description("Show the hub's state: devices, superprojects, the lease.")
  .option(dataOption, dataHelp)
  .option("--json", "print machine-readable output")
  .action(async (flags: { data?: string; json?: boolean }) => {
    const dataDir = flags.data ?? defaultServerDataDir();
    const hub = await connectHub(dataDir, { autoStart: false });
    try {
      const ping = await hub.call("ping", {});
      const lease = await hub.call("leaseStatus", {});
      const { superprojects } = await hub.call("listSuperprojects", {});
      if (flags.json) {
        process.stdout.write(JSON.stringify({ hub: ping, lease, superprojects }, null, 2) + "\n");
        return;
      }
      process.stdout.write(`hub: running (pid ${ping.pid})\n`);
      process.stdout.write(lease.active
        ? `lease: ${lease.deviceName} on ${lease.slug}, token ${lease.token}, expires ${new Date(lease.expiresAt ?? 0).toISOString()}\n`
        : "lease: free\n");
      for (const sp of superprojects) process.stdout.write(`superproject ${sp.slug}: head ${sp.head ?? "(empty)"}\n`);
    } finally {
      await hub.close();
    }
  });

program
  .command("stop")
  .description("Stop a running hub (agents start it again when needed).")
  .option(dataOption, dataHelp)
  .action(async (flags: { data?: string }) => {
    const dataDir = flags.data ?? defaultServerDataDir();
    const hub = await connectHub(dataDir, { autoStart: false });
    await hub.call("shutdown", {});
    await hub.close();
  });

/**
 * A test facility: when CWS_HUB_CLOCK_OFFSET_FILE names a file, the hub's clock is the real
 * clock plus the milliseconds written in that file, read at every tick. End-to-end tests use
 * it to let a lease expire without waiting two minutes. Never set it in production.
 */
function testClock(): (() => number) | undefined {
  const file = process.env.CWS_HUB_CLOCK_OFFSET_FILE;
  if (!file) return undefined;
  return () => {
    let offset = 0;
    try {
      offset = Number(readFileSync(file, "utf8").trim()) || 0;
    } catch {
      // No file yet: no offset.
    }
    return Date.now() + offset;
  };
}

async function askAndConfirm(): Promise<string> {
  const first = await askSecret("New secondary passphrase");
  const second = await askSecret("Repeat it");
  if (first !== second) throw new CwsError("INVALID_ARGUMENT", "The two passphrases differ; nothing was changed.");
  return first;
}

program.parseAsync().catch((error: unknown) => {
  process.stderr.write(`cws-server: ${isCwsError(error) ? error.message : (error as Error)?.stack ?? String(error)}\n`);
  process.exitCode = isCwsError(error) ? 1 : 70;
});
