#!/usr/bin/env node
/**
 * `cws-server`: the server-side administration commands. Thin wiring only: each command
 * parses its flags and calls a function of the hub, store or config modules.
 */
import { Command } from "commander";
import { mkdir, open } from "node:fs/promises";
import { join, resolve } from "node:path";
import { CwsError, isCwsError } from "../src/errors.ts";
import { PACKAGE_VERSION } from "../src/version.ts";
import { askSecret, readSecretFile } from "../src/terminal/prompt.ts";
import { defaultServerDataDir, hashPassphrase, readServerConfig, serverConfigPath, writeServerConfig } from "./server-config.ts";
import { startHub } from "./hub/hub-server.ts";
import { connectHub, type HubClient } from "./hub/hub-client.ts";
import { Store } from "./store/store.ts";
import { checkBackupDir, copyBackup } from "./hub/backup-copy.ts";
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { writeFileAtomic } from "../src/fs-atomic.ts";
import { removeAuthorizedKeys, shellQuote, thisInstall } from "./authorized-keys.ts";

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
    const launcher = await writeAgentLauncher(resolve(dataDir));
    process.stdout.write(
      `Initialised cws server data in ${resolve(dataDir)}.\n` +
        `Devices enroll with \`cws enroll-device\`; when it asks for the agent command on this server, give:\n` +
        `  ${shellQuote(launcher)} --stdio\n`,
    );
  });

/**
 * Writes `<data>/bin/cws-agent`, a small shell launcher that runs this checkout's agent with
 * its Node 24 on this data dir, so the agent command exists right after `init` (without
 * scripts/server/install.sh) and devices need not know where the checkout is. Written again by
 * every `init --force`, e.g. after the checkout moved.
 */
async function writeAgentLauncher(dataDir: string): Promise<string> {
  const { repoDir, nodePath } = thisInstall();
  const file = join(dataDir, "bin", "cws-agent");
  await mkdir(join(dataDir, "bin"), { recursive: true, mode: 0o700 });
  const script = [
    "#!/bin/sh",
    "# The cws agent for this data dir, written by `cws-server init`; devices run it over SSH.",
    `exec ${shellQuote(nodePath)} ${shellQuote(join(repoDir, "server-agent", "agent", "main.mjs"))} --data ${shellQuote(dataDir)} "$@"`,
    "",
  ].join("\n");
  await writeFileAtomic(file, script, { mode: 0o700 });
  return file;
}

/** Runs one command's requests on the hub of a data dir and closes the connection however they end. */
async function withHub<T>(dataDir: string, work: (hub: HubClient) => Promise<T>, options: { autoStart?: boolean } = {}): Promise<T> {
  const hub = await connectHub(dataDir, options);
  try {
    return await work(hub);
  } finally {
    await hub.close();
  }
}

const devicesCommand = program
  .command("devices")
  .description("List enrolled devices (name, id, enrolled, last seen, revoked); `devices revoke <id or name>` stops one.")
  .option(dataOption, dataHelp)
  .option("--json", "print machine-readable output")
  .action(async (flags: { data?: string; json?: boolean }) => {
    const dataDir = flags.data ?? defaultServerDataDir();
    await withHub(dataDir, async (hub) => {
      const { devices } = await hub.call("listDevices", {});
      const lease = await hub.call("leaseStatus", {});
      if (flags.json) {
        process.stdout.write(JSON.stringify({ devices, lease }, null, 2) + "\n");
        return;
      }
      if (devices.length === 0) process.stdout.write("no device is enrolled yet; devices enroll with `cws enroll-device`\n");
      for (const d of devices) {
        const state = d.revokedAt !== null ? `REVOKED ${iso(d.revokedAt)}` : lease.active && lease.deviceId === d.id ? `live-syncing ${lease.slug}` : "enrolled";
        process.stdout.write(`${d.name}  ${d.id}  ${state}; enrolled ${iso(d.enrolledAt)}, last seen ${iso(d.lastSeenAt)}${d.keyFingerprint ? `, key ${d.keyFingerprint}` : ""}\n`);
      }
    });
  });

devicesCommand
  .command("revoke")
  .description("Revoke a device: it can no longer open a session, its lease is released, and its lines in authorized_keys (pinned to it, or for its key) are removed.")
  .argument("<device>", "the device's id, or its name when no other enrolled device has it")
  .option(dataOption, dataHelp)
  .option("--authorized-keys <file>", "the authorized_keys file to remove its key from", join(homedir(), ".ssh", "authorized_keys"))
  .option("--json", "print machine-readable output")
  .action(async (device: string, flags: { data?: string; authorizedKeys: string; json?: boolean }) => {
    // `devices revoke X --data D`: commander gives --data to `devices`, which declares it too.
    const parent = devicesCommand.opts<{ data?: string; json?: boolean }>();
    const dataDir = flags.data ?? parent.data ?? defaultServerDataDir();
    flags.json ??= parent.json;
    await withHub(dataDir, async (hub) => {
      const revoked = (await hub.call("revokeDevice", { device })).device;
      const { removed } = await removeAuthorizedKeys(flags.authorizedKeys, { deviceId: revoked.id, keyFingerprint: revoked.keyFingerprint });
      if (flags.json) process.stdout.write(JSON.stringify({ device: revoked, authorizedKeysLinesRemoved: removed }, null, 2) + "\n");
      else process.stdout.write(`revoked ${revoked.name} (${revoked.id}); ${removed} line(s) removed from ${flags.authorizedKeys}\n`);
    });
  });

function iso(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d+Z$/, "Z");
}

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
    // The handlers go in before the hub starts: it answers on its socket before startHub()
    // returns, so a SIGTERM sent right after its first answer must already stop it cleanly.
    let hub: Awaited<ReturnType<typeof startHub>> | undefined;
    let stopRequested = false;
    const stop = () => {
      stopRequested = true;
      void hub?.close();
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
    hub = await startHub({ dataDir, idleExitMs, log, clock: testClock() });
    if (stopRequested) void hub.close();
    await hub.stopped;
  });

program
  .command("status")
  .description("Show the hub's state: devices, superprojects, the lease.")
  .option(dataOption, dataHelp)
  .option("--json", "print machine-readable output")
  .action(async (flags: { data?: string; json?: boolean }) => {
    const dataDir = flags.data ?? defaultServerDataDir();
    await withHub(dataDir, async (hub) => {
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
    }, { autoStart: false });
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

/** "90s", "30m", "24h", "7d", "500ms" or "0" → milliseconds. */
function parseDuration(text: string, flag: string): number {
  const match = /^(\d+)(ms|s|m|h|d)?$/.exec(text.trim());
  if (match === null || (match[2] === undefined && match[1] !== "0")) {
    throw new CwsError("INVALID_ARGUMENT", `${flag} takes a duration such as 30m, 24h or 7d (or 0), got "${text}".`);
  }
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] ?? "ms"] as number;
  return Number(match[1]) * unit;
}

function parseJsonOption(text: string | undefined, flag: string): Record<string, unknown> | null | undefined {
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new CwsError("INVALID_ARGUMENT", `${flag} takes a JSON object, e.g. '{"maxDeleteCount": 200}', or '{}' to reset.`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new CwsError("INVALID_ARGUMENT", `${flag} takes a JSON object.`);
  return Object.keys(value).length === 0 ? null : (value as Record<string, unknown>);
}

program
  .command("gc")
  .description("Drop snapshots the retention policy no longer keeps and the content of decided quarantine items, then remove chunks and objects nothing kept references. Files younger than the grace period are never removed. Commits wait while it runs.")
  .option(dataOption, dataHelp)
  .option("--grace <duration>", "keep files younger than this, and rejected items decided more recently (e.g. 24h, 7d, 0)", "24h")
  .option("--dry-run", "only report which snapshots and items would go")
  .option("--json", "print machine-readable output")
  .action(async (flags: { data?: string; grace: string; dryRun?: boolean; json?: boolean }) => {
    const dataDir = flags.data ?? defaultServerDataDir();
    const graceMs = parseDuration(flags.grace, "--grace");
    await withHub(dataDir, async (hub) => {
      const report = await hub.call("gc", { graceMs, dryRun: flags.dryRun });
      if (flags.json) {
        process.stdout.write(JSON.stringify(report, null, 2) + "\n");
        return;
      }
      const dropped = report.snapshotsDropped.reduce((n, d) => n + d.ids.length, 0);
      process.stdout.write(`${report.dryRun ? "would drop" : "dropped"} ${dropped} snapshot(s) (${report.snapshotsKept} kept)${report.snapshotsDropped.map((d) => `\n  ${d.slug}: ${d.ids.join(", ")}`).join("")}\n`);
      process.stdout.write(`${report.dryRun ? "would collect" : "collected"} the content of ${report.itemsCollected.length} decided quarantine item(s)\n`);
      process.stdout.write(`live: ${report.liveChunks} chunk(s), ${report.liveObjects} object(s)\n`);
      if (report.repack !== null) {
        const r = report.repack;
        process.stdout.write(`store: ${r.chunksDropped} chunk(s) and ${r.objectsRemoved} object(s) removed, ${r.packsRewritten} pack(s) rewritten, ${r.packsRemoved} removed, ${r.packsYoung} too young to touch; ${r.bytesFreed} bytes freed\n`);
      }
    });
  });

program
  .command("verify")
  .description("Re-hash every chunk and object, and check that every kept snapshot and open quarantine item is whole. Exits 1 when anything is damaged.")
  .option(dataOption, dataHelp)
  .option("--json", "print machine-readable output")
  .action(async (flags: { data?: string; json?: boolean }) => {
    const dataDir = flags.data ?? defaultServerDataDir();
    await withHub(dataDir, async (hub) => {
      const report = await hub.call("verify", {});
      if (flags.json) process.stdout.write(JSON.stringify({ ok: report.problems.length === 0, ...report }, null, 2) + "\n");
      else {
        process.stdout.write(`checked ${report.packs} pack(s), ${report.chunks} chunk(s), ${report.objects} object(s), ${report.snapshots} snapshot(s), ${report.items} open quarantine item(s)\n`);
        for (const p of report.problems) process.stdout.write(`DAMAGED ${p.kind} ${p.name}: ${p.message}\n`);
        process.stdout.write(report.problems.length === 0 ? "everything checks out\n" : `${report.problems.length} problem(s); see docs/recovery.md\n`);
      }
      if (report.problems.length > 0) process.exitCode = 1;
    });
  });

program
  .command("backup")
  .description("Write a consistent copy of the database and the store into a new or empty folder while the hub keeps serving (packs and objects are hard-linked when on the same file system; gc waits meanwhile).")
  .argument("<dir>", "the folder to create or fill")
  .option(dataOption, dataHelp)
  .option("--json", "print machine-readable output")
  .action(async (dir: string, flags: { data?: string; json?: boolean }) => {
    const dataDir = flags.data ?? defaultServerDataDir();
    const target = resolve(dir);
    await checkBackupDir(target);
    await withHub(dataDir, async (hub) => {
      const snapshot = await hub.call("backupBegin", {});
      let report;
      try {
        report = await copyBackup(dataDir, snapshot, target);
      } finally {
        await hub.call("backupEnd", { id: snapshot.id }).catch(() => {});
      }
      if (flags.json) process.stdout.write(JSON.stringify(report, null, 2) + "\n");
      else process.stdout.write(`backed up to ${report.dir}: ${report.packs} pack(s), ${report.objects} object(s), ${report.bytes} bytes (${report.linked} file(s) hard-linked)\n`);
    });
  });

program
  .command("settings")
  .description("Show a superproject's quarantine thresholds and retention policy; change them with --quarantine / --retention (JSON of the settings to override; '{}' resets to the defaults).")
  .argument("<slug>")
  .option(dataOption, dataHelp)
  .option("--quarantine <json>", "quarantine overrides, e.g. '{\"maxDeleteCount\": 200, \"shrinkRatio\": 0.1}'")
  .option("--retention <json>", "retention overrides, e.g. '{\"keepLast\": 100, \"keepDailyDays\": 90}'")
  .option("--json", "print machine-readable output")
  .action(async (slug: string, flags: { data?: string; quarantine?: string; retention?: string; json?: boolean }) => {
    const dataDir = flags.data ?? defaultServerDataDir();
    await withHub(dataDir, async (hub) => {
      const result = await hub.call("settings", { slug, quarantine: parseJsonOption(flags.quarantine, "--quarantine"), retention: parseJsonOption(flags.retention, "--retention") });
      if (flags.json) {
        process.stdout.write(JSON.stringify(result, null, 2) + "\n");
        return;
      }
      for (const group of ["quarantine", "retention"] as const) {
        process.stdout.write(`${group}:\n`);
        for (const [key, value] of Object.entries(result[group].effective)) {
          const set = Object.hasOwn(result[group].overrides, key) ? "" : "  (default)";
          process.stdout.write(`  ${key}: ${JSON.stringify(value)}${set}\n`);
        }
      }
    });
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
  // A failed system call (a folder that does not exist, no permission) is the user's to fix:
  // its message says which path and why; a stack trace would only hide that.
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const systemError = typeof code === "string" && /^E[A-Z]+$/.test(code);
  const text = isCwsError(error) || systemError ? (error as Error).message : (error as Error)?.stack ?? String(error);
  process.stderr.write(`cws-server: ${text}\n`);
  process.exitCode = isCwsError(error) || systemError ? 1 : 70;
});
