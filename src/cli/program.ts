/**
 * The commander program of `cws`, built by a function so tests and `cws shell` can run
 * commands without spawning a process.
 */
import { Command } from "commander";
import { CwsError } from "../errors.ts";
import { PACKAGE_VERSION } from "../version.ts";
import { askSecret, readSecretFile } from "../terminal/prompt.ts";
import { StateStore } from "../client/state.ts";
import type { ServerTarget } from "../client/state.ts";
import { connectAsDevice } from "../client/connect.ts";
import { enrollDevice } from "../client/commands/enroll.ts";
import { attachSuperproject, createSuperproject, disconnectSuperproject } from "../client/commands/superprojects.ts";
import { syncSuperproject, type SyncSummary } from "../client/sync.ts";
import { formatBytes, printJson, println, Progress } from "./output.ts";

/** An AbortSignal that fires on the first Ctrl+C; a second Ctrl+C exits at once. */
function interruptSignal(): AbortSignal {
  const controller = new AbortController();
  process.once("SIGINT", () => {
    process.stderr.write("\ncws: stopping after the current step (Ctrl+C again to quit now)\n");
    controller.abort();
    process.once("SIGINT", () => process.exit(130));
  });
  return controller.signal;
}

function slugArgument(positional: string | undefined, flags: { superproject?: string }): string {
  const slug = positional ?? flags.superproject;
  if (!slug) throw new CwsError("INVALID_ARGUMENT", "Name the superproject: `cws <command> <slug>` (or --superproject <slug>).");
  return slug;
}

export function printSyncSummary(summary: SyncSummary): void {
  const verb = summary.dryRun ? "would" : "";
  const p = summary.pushed;
  const q = summary.pulled;
  println(`${summary.slug}: ${summary.dryRun ? "dry run, nothing changed" : `now at snapshot ${summary.snapshot?.id ?? "(none)"}`}`);
  println(`  scanned ${summary.scanned.files} files (${summary.scanned.hashedFiles} hashed, ${formatBytes(summary.scanned.hashedBytes)})`);
  println(`  pushed ${verb ? "(would push) " : ""}${p.files} files, ${p.deleted} deletions: ${p.chunks} chunks, ${formatBytes(p.bytes)}`);
  println(`  pulled ${q.files} files, ${q.deleted} deletions: ${q.chunks} chunks, ${formatBytes(q.bytes)} (${q.reusedChunks} chunks reused from local files)`);
  println(`  wire: sent ${formatBytes(summary.wire.sent)}, received ${formatBytes(summary.wire.received)} in ${summary.durationMs} ms`);
  for (const c of summary.conflicts) println(`  CONFLICT ${c.path}: the server's version is live; yours is kept at ${c.backup ?? "(it did not exist locally)"}`);
  for (const s of q.skipped) println(`  skipped ${s.path}: ${s.reason}`);
  for (const problem of summary.problems) println(`  warning ${problem.path}: ${problem.reason}`);
  if (summary.backupDir) println(`  replaced or deleted local files were backed up in ${summary.backupDir}`);
}

export function buildProgram(): Command {
  const program = new Command("cws")
    .description("Keep Codex workspace context (superprojects and their Codex threads) in sync across your machines through your own server, over SSH.")
    .version(PACKAGE_VERSION)
    .showHelpAfterError("(run `cws --help` or `cws <command> --help` for usage)");

  program
    .command("enroll-device")
    .description("Register this device with the server (once per device).")
    .option("--server-data <dir>", "use a server data dir on this machine through a local agent (demo, tests)")
    .option("--device-name <name>", "how this device is shown (default: the host name)")
    .option("--passphrase-file <file>", "read the server's secondary passphrase from this file (- for stdin) instead of asking")
    .option("--force", "enroll again even if this device is already enrolled")
    .option("--json", "print machine-readable output")
    .action(async (flags: { serverData?: string; deviceName?: string; passphraseFile?: string; force?: boolean; json?: boolean }) => {
      const state = await StateStore.open();
      let target: ServerTarget;
      if (flags.serverData) target = { transport: "local", dataDir: flags.serverData };
      else throw new CwsError("INVALID_ARGUMENT", "Say where the server is: --host <host> (SSH) or --server-data <dir> (a data dir on this machine).");
      const passphrase = flags.passphraseFile ? await readSecretFile(flags.passphraseFile) : await askSecret("Secondary passphrase (set with `cws-server init`)");
      const result = await enrollDevice(state, { target, deviceName: flags.deviceName, passphrase, force: flags.force });
      if (flags.json) printJson({ ok: true, ...result });
      else println(`Enrolled ${result.deviceName} (${result.deviceId}); the server runs cws ${result.agentVersion}.`);
    });

  program
    .command("create-superproject")
    .description("Create a superproject on the server and bind it to a local folder.")
    .argument("[slug]", "the superproject's name: lower-case letters, digits and dashes")
    .option("--superproject <slug>", "the older way to name it")
    .requiredOption("--root <dir>", "the local folder that holds it")
    .option("--template <name>", "copy this template from templates/ into the (empty) folder first")
    .option("--json", "print machine-readable output")
    .action(async (positional: string | undefined, flags: { superproject?: string; root: string; template?: string; json?: boolean }) => {
      const state = await StateStore.open();
      const conn = await connectAsDevice(state);
      try {
        const result = await createSuperproject(conn, state, { slug: slugArgument(positional, flags), root: flags.root, template: flags.template });
        if (flags.json) printJson({ ok: true, ...result });
        else println(`Created ${result.slug} on the server, bound to ${result.root}. Run \`cws sync ${result.slug}\` to upload it.`);
      } finally {
        await conn.close();
      }
    });

  program
    .command("attach-superproject")
    .description("Bind a superproject that already exists on the server to a local folder.")
    .argument("[slug]")
    .option("--superproject <slug>", "the older way to name it")
    .requiredOption("--root <dir>", "the local folder to fill (files already there are never lost)")
    .option("--json", "print machine-readable output")
    .action(async (positional: string | undefined, flags: { superproject?: string; root: string; json?: boolean }) => {
      const state = await StateStore.open();
      const conn = await connectAsDevice(state);
      try {
        const result = await attachSuperproject(conn, state, { slug: slugArgument(positional, flags), root: flags.root });
        if (flags.json) printJson({ ok: true, ...result });
        else println(`Attached ${result.slug} to ${result.root}. Run \`cws update-from-server ${result.slug}\` or \`cws sync ${result.slug}\` to fetch it.`);
      } finally {
        await conn.close();
      }
    });

  program
    .command("disconnect-superproject")
    .description("Forget this device's binding of a superproject (local files and the server copy stay).")
    .argument("[slug]")
    .option("--superproject <slug>", "the older way to name it")
    .option("--json", "print machine-readable output")
    .action(async (positional: string | undefined, flags: { superproject?: string; json?: boolean }) => {
      const state = await StateStore.open();
      const result = await disconnectSuperproject(state, slugArgument(positional, flags));
      if (flags.json) printJson({ ok: true, ...result });
      else println(`Disconnected ${result.slug}; ${result.root} is left as it is.`);
    });

  program
    .command("sync")
    .description("Run one three-way sync: push what changed here, pull what changed on the server, keep both sides of a conflict.")
    .argument("[slug]")
    .option("--superproject <slug>", "the older way to name it")
    .option("--dry-run", "show what would move without changing anything")
    .option("--json", "print machine-readable output")
    .action(async (positional: string | undefined, flags: { superproject?: string; dryRun?: boolean; json?: boolean }) => {
      const slug = slugArgument(positional, flags);
      const state = await StateStore.open();
      const signal = interruptSignal();
      const progress = new Progress();
      const conn = await connectAsDevice(state, { signal });
      try {
        const summary = await syncSuperproject({
          conn, state, slug, dryRun: flags.dryRun, signal,
          onEvent: (event) => {
            if (event.type === "scan-progress") progress.update(`scanning: ${event.files} files, ${formatBytes(event.bytes)}`);
            else if (event.type === "push-progress") progress.update(`uploading: ${formatBytes(event.bytes)} of ${formatBytes(event.total)}`);
            else if (event.type === "pull-progress") progress.update(`writing: ${event.files} of ${event.total} files`);
            else if (event.type === "phase") progress.update(`${event.phase}…`, true);
          },
        });
        progress.done();
        if (flags.json) printJson({ ok: true, ...summary });
        else printSyncSummary(summary);
      } finally {
        progress.done();
        await conn.close();
      }
    });

  program
    .command("status")
    .description("Show this device, the server, and each bound superproject.")
    .option("--json", "print machine-readable output")
    .action(async (flags: { json?: boolean }) => {
      const state = await StateStore.open();
      const { device, server } = state.enrolled();
      const conn = await connectAsDevice(state);
      try {
        const { superprojects } = await conn.call("listSuperprojects", {});
        const rows = Object.entries(state.data.superprojects).map(([slug, bound]) => {
          const remote = superprojects.find((s) => s.slug === slug);
          return { slug, root: bound.root, base: bound.base, serverHead: remote?.head ?? null, onServer: remote !== undefined, lastSyncAt: bound.lastSyncAt };
        });
        if (flags.json) {
          printJson({ ok: true, device, server, superprojects: rows, serverOnly: superprojects.filter((s) => !state.data.superprojects[s.slug]) });
          return;
        }
        println(`device: ${device.name} (${device.id})`);
        println(`server: ${server.transport === "ssh" ? `${server.user}@${server.host}:${server.port}` : `local ${server.dataDir}`}, cws ${conn.hello.version}`);
        for (const row of rows) {
          const state = !row.onServer ? "missing on the server" : row.base === row.serverHead ? "up to date with the server" : `server at ${row.serverHead ?? "(empty)"}, this device at ${row.base ?? "(never synced)"}`;
          println(`${row.slug}: ${row.root} — ${state}`);
        }
        for (const sp of superprojects.filter((s) => !state.data.superprojects[s.slug])) println(`${sp.slug}: on the server only (attach with \`cws attach-superproject ${sp.slug} --root <dir>\`)`);
      } finally {
        await conn.close();
      }
    });

  return program;
}
