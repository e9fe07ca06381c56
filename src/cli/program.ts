/**
 * The commander program of `cws`, built by a function so tests and `cws shell` can run
 * commands without spawning a process.
 *
 * Each command loads its code when it runs (`await import(…)` in its action), not when the
 * program is built: a `cws sync` then loads the sync and nothing of enrollment, SSH config
 * parsing, skills or recovery, which kept a tenth of a second off every command's start-up.
 * Only types are imported statically from the client.
 */
import { Command } from "commander";
import { CwsError } from "../errors.ts";
import { PACKAGE_VERSION } from "../version.ts";
import { homedir, userInfo } from "node:os";
import { join } from "node:path";
import { readFile } from "node:fs/promises";
import type { ServerTarget, StateStore } from "../client/state.ts";
import type { ConnectOptions } from "../client/connect.ts";
import type { SyncSummary } from "../client/sync.ts";
import type { AgentConnection } from "../transport/connection.ts";
import { snapshotNumber, type LeaseState } from "../protocol/messages.ts";
import { DEFAULT_HEARTBEAT_MS, DEFAULT_QUIET_MS, DEFAULT_RESCAN_MS } from "../client/live-sync-defaults.ts";
import { formatBytes, printJson, println, processInterruptSignal, Progress } from "./output.ts";
import { changeLines, conflictLine, printSyncSummary, quarantineLines } from "./sync-output.ts";
import { registerToolCommands } from "./tool-commands.ts";
import { registerRecoveryCommands } from "./recovery-commands.ts";
import { registerSessionCommands } from "./session-commands.ts";
import { registerCodexCommands } from "./codex-commands.ts";
import { addFirstJoinOptions, type FirstJoinFlags } from "./first-join-options.ts";
import type { FirstJoinRecord } from "../client/first-join.ts";

/** Opens the client state (the first thing nearly every command does). */
async function openState(): Promise<StateStore> {
  const { StateStore } = await import("../client/state.ts");
  return StateStore.open();
}

/** Opens a session as this device (see connect.ts). */
async function connect(state: StateStore, options: ConnectOptions = {}): Promise<AgentConnection> {
  const { connectAsDevice } = await import("../client/connect.ts");
  return connectAsDevice(state, options);
}

interface EnrollFlags {
  host?: string;
  port?: string;
  user?: string;
  identity?: string;
  knownHosts?: string;
  agentCommand?: string;
  sshAgent: boolean;
  passwordFile?: string;
  trustHostKey?: string;
  restrictKey?: boolean;
  yes?: boolean;
  serverData?: string;
  deviceName?: string;
  passphraseFile?: string;
  force?: boolean;
  json?: boolean;
}

/** Turns enroll-device's flags (and answers) into a server target and the enrollment-only connect options. */
async function enrollTarget(flags: EnrollFlags): Promise<{ target: ServerTarget; connectOptions: ConnectOptions; fingerprint: { value?: string } }> {
  const fingerprint: { value?: string } = {};
  if (flags.serverData) return { target: { transport: "local", dataDir: flags.serverData }, connectOptions: {}, fingerprint };
  const { ask, askSecret, confirm, readSecretFile } = await import("../terminal/prompt.ts");
  const { readSshConfigText, resolveSshTarget } = await import("../transport/ssh-config.ts");
  const host = flags.host ?? (await ask("Server host (name, address or ~/.ssh/config alias)"));
  if (!host) throw new CwsError("INVALID_ARGUMENT", "Say where the server is: --host <host> (SSH) or --server-data <dir> (a data dir on this machine).");
  const configText = await readSshConfigText(homedir());
  const resolved = resolveSshTarget(
    { host, port: flags.port === undefined ? undefined : Number(flags.port), user: flags.user, identityFiles: flags.identity ? [flags.identity] : undefined, knownHostsPath: flags.knownHosts },
    { configText, homeDir: homedir(), localUser: userInfo().username },
  );
  const agentCommand = flags.agentCommand ?? (await ask("Agent command on the server, as `cws-server init` printed it", DEFAULT_AGENT_COMMAND));
  const target: ServerTarget = {
    transport: "ssh",
    host: resolved.host,
    port: resolved.port,
    user: resolved.user,
    identityFiles: resolved.defaultIdentityFiles ? [] : resolved.identityFiles,
    identitiesOnly: resolved.identitiesOnly,
    useAgents: flags.sshAgent,
    knownHostsPath: resolved.knownHostsFiles[0] ?? join(homedir(), ".ssh", "known_hosts"),
    agentCommand,
  };
  // Like ssh, the password is asked only once every key was refused; after a password login
  // enrollment installs the device's key, so it is needed only this once.
  const password = flags.passwordFile
    ? await readSecretFile(flags.passwordFile)
    : process.stdin.isTTY
      ? () => askSecret(`Password of ${resolved.user}@${resolved.host} (used once, to install this device's key; Enter to skip)`, { allowEmpty: true })
      : undefined;
  const connectOptions: ConnectOptions = {
    password,
    trustOnFirstUse: async (presented, details) => {
      fingerprint.value = presented;
      if (flags.trustHostKey) {
        if (flags.trustHostKey === presented) return true;
        throw new CwsError("HOST_KEY_MISMATCH", `The server ${details.host}:${details.port} presented ${presented}, not the expected ${flags.trustHostKey}. Nothing was recorded.`);
      }
      if (flags.yes) return true;
      process.stderr.write(`The server ${details.host}:${details.port} is not in ${target.transport === "ssh" ? target.knownHostsPath : "known_hosts"} yet.\nIts ${details.algorithm} key fingerprint is ${presented}.\nCompare it with \`ssh-keygen -lf /etc/ssh/ssh_host_${details.algorithm.replace(/^ssh-/, "")}_key.pub\` on the server.\n`);
      return confirm("Trust this key and continue?", false);
    },
  };
  return { target, connectOptions, fingerprint };
}

/** The agent command when none is given: the wrapper `scripts/server/install.sh` puts on the PATH. */
const DEFAULT_AGENT_COMMAND = "cws-agent --stdio";

/**
 * The device's SSH key whose public half enrollment sends: the first key file to be tried
 * (named, or OpenSSH's defaults in its order) that has its `.pub` beside it, as ssh-copy-id
 * picks one. Undefined when there is none.
 */
async function deviceKey(target: ServerTarget): Promise<{ file: string; publicKey: string; fingerprint: string } | undefined> {
  if (target.transport !== "ssh") return undefined;
  const [{ identityFilesOf }, { DEFAULT_IDENTITY_FILE_NAMES }, { fingerprintSha256 }] = await Promise.all([
    import("../client/connect.ts"), import("../transport/ssh-config.ts"), import("../transport/known-hosts.ts"),
  ]);
  for (const file of identityFilesOf(target, DEFAULT_IDENTITY_FILE_NAMES)) {
    const text = await readFile(`${file}.pub`, "utf8").catch(() => undefined);
    const words = text?.trim().split(/\s+/);
    if (words === undefined || words.length < 2) continue;
    return { file, publicKey: text!.trim(), fingerprint: fingerprintSha256(Buffer.from(words[1], "base64")) };
  }
  return undefined;
}

/**
 * A session being opened while the command does local work first. `close()` closes it once
 * it is open; when the command failed before it was, the attempt is abandoned instead of
 * awaited (a connection nobody will use should not delay the error).
 */
function openSession(state: StateStore, signal: AbortSignal): { connecting: Promise<AgentConnection>; close(): Promise<void> } {
  // Before anything else looks at bindings: a device that is not enrolled is told to enroll
  // first, not to attach a superproject it could not sync anyway.
  state.enrolled();
  const abandon = new AbortController();
  const connecting = connect(state, { signal: AbortSignal.any([signal, abandon.signal]) });
  connecting.catch(() => {}); // seen by whoever awaits it; never an unhandled rejection
  let settled = false;
  void connecting.then(() => { settled = true; }, () => { settled = true; });
  return {
    connecting,
    async close() {
      if (!settled) abandon.abort();
      const conn = await connecting.catch(() => null);
      await conn?.close();
    },
  };
}

export function slugArgument(positional: string | undefined, flags: { superproject?: string }): string {
  if (positional !== undefined && flags.superproject !== undefined && positional !== flags.superproject) {
    throw new CwsError("INVALID_ARGUMENT", `Two superprojects were named: ${positional} and --superproject ${flags.superproject}. Name one.`);
  }
  const slug = positional ?? flags.superproject;
  if (!slug) throw new CwsError("INVALID_ARGUMENT", "Name the superproject: `cws <command> <slug>` (or --superproject <slug>).");
  return slug;
}

/** The Codex options of create-superproject and attach-superproject. */
function codexFlags(flags: { codexHome?: string; codexRoot?: string; codex: boolean }): { codexHome?: string | null; codexRoot?: string } {
  if (!flags.codex && flags.codexHome !== undefined) throw new CwsError("INVALID_ARGUMENT", "--no-codex and --codex-home contradict each other; give one of them");
  const result: { codexHome?: string | null; codexRoot?: string } = {};
  if (!flags.codex) result.codexHome = null;
  else if (flags.codexHome !== undefined) result.codexHome = flags.codexHome;
  if (flags.codexRoot !== undefined) result.codexRoot = flags.codexRoot;
  return result;
}

function countPulls(summary: SyncSummary): number {
  return summary.pulled.files + summary.pulled.deleted;
}

/** Shows who holds the lease and since when it is silent, and asks whether to take it over. */
async function confirmTakeOver(holder: LeaseState, yes: boolean): Promise<boolean> {
  const silent = holder.heartbeatAt === null ? "never sent a heartbeat" : `last heartbeat ${Math.round((holder.now - holder.heartbeatAt) / 1000)} s ago (${new Date(holder.heartbeatAt).toLocaleString()})`;
  const text = `${holder.deviceName} (${holder.deviceId}) holds the sync lease for ${holder.slug} since ${new Date(holder.acquiredAt ?? 0).toLocaleString()}; ${silent}; it expires in ${Math.max(0, Math.round(((holder.expiresAt ?? 0) - holder.now) / 1000))} s.\n` +
    `Taking it over stops that device's pushes (its next one is refused; its files stay on that device).`;
  process.stderr.write(`${text}\n`);
  if (yes) return true;
  if (!process.stdin.isTTY) throw new CwsError("CANCELLED", "Nothing was changed: there is no terminal to confirm the take-over on. Add --yes to take the lease over.");
  const { confirm } = await import("../terminal/prompt.ts");
  return confirm(`Take the lease over from ${holder.deviceName}?`, false);
}

/** Shows what override-current-state would replace and asks; without a terminal, asks for --yes. */
async function confirmOverride(preview: SyncSummary): Promise<boolean> {
  const head = preview.snapshot;
  const lines = [
    head === null
      ? `The server has no state of ${preview.slug} yet.`
      : `This replaces the server's state of ${preview.slug}: snapshot ${snapshotNumber(head)} (${head.files} files), written by ${head.deviceName} on ${new Date(head.createdAt).toLocaleString()}. It stays as a checkpoint (\`cws restore ${preview.slug} --checkpoint ${snapshotNumber(head)}\`).`,
    `${preview.pushed.files} file(s) would be written and ${preview.pushed.deleted} deleted on the server:`,
    ...changeLines(preview.changes.push, preview.pushed.files + preview.pushed.deleted),
  ];
  if (!process.stdin.isTTY) {
    throw new CwsError("CANCELLED", `${lines.join("\n")}\nNothing was changed: there is no terminal to confirm on. Run it again with --yes to go ahead.`);
  }
  process.stderr.write(lines.join("\n") + "\n");
  const { confirm } = await import("../terminal/prompt.ts");
  return confirm("Replace the server's state with this folder?", false);
}

/** The flags of a command that runs one sync. */
type SyncFlags = FirstJoinFlags & { dryRun?: boolean; json?: boolean };

/**
 * One sync for a command (`sync`, `update-from-server`, `attach-superproject --sync`, the
 * first sync of `turn-on-sync`), with progress on a terminal and the first-join question
 * when the binding has no base yet (see first-join-prompt.ts).
 */
async function runSync(state: StateStore, slug: string, flags: SyncFlags, mode: "sync" | "pull", signal: AbortSignal): Promise<{ summary: SyncSummary; firstJoin: FirstJoinRecord }> {
  const progress = new Progress({ json: flags.json });
  // The connection opens while the folder is scanned (see sync.ts).
  const session = openSession(state, signal);
  try {
    const { syncSuperproject } = await import("../client/sync.ts");
    const { firstJoinFor } = await import("./first-join-prompt.ts");
    const firstJoin = firstJoinFor(state, slug, flags, { beforeAsk: () => progress.done() });
    const summary = await syncSuperproject({
      conn: session.connecting, state, slug, mode, dryRun: flags.dryRun, signal, firstJoin: firstJoin.hook,
      onEvent: (event) => progress.syncEvent(event),
    });
    progress.done();
    return { summary, firstJoin: firstJoin.record };
  } finally {
    progress.done();
    await session.close();
  }
}

/**
 * After a one-shot sync that ran on its own: starts this device's kept session in the
 * background (kept-session.ts), so that the next `cws sync` hands its work to it.
 */
async function keepSession(state: StateStore): Promise<void> {
  const { startKeptSession } = await import("../client/kept-session-wire.ts");
  await startKeptSession(state.home);
}

/** Prints what runSync did (a dry run's first-join plan was printed when it was made). */
async function printSyncResult(result: { summary: SyncSummary; firstJoin: FirstJoinRecord }, json: boolean | undefined): Promise<void> {
  const { summary, firstJoin } = result;
  if (json) return printJson({ ok: true, ...summary, firstJoin: firstJoin.question === null ? null : firstJoin });
  if (firstJoin.question !== null && firstJoin.answer === null) return;
  printSyncSummary(summary);
  const { firstJoinOutcomeLines } = await import("./first-join-prompt.ts");
  for (const line of firstJoinOutcomeLines(firstJoin, summary.root, summary.dryRun)) println(line);
}

/** How a program is built: `cws shell` hands each command its own interrupt signal. */
export interface BuildOptions {
  /**
   * The signal that stops a command cleanly (live sync: final push, lease released). Without
   * it, the first Ctrl+C of the process stops the command and a second one exits at once.
   */
  interrupt?: AbortSignal;
}

export function buildProgram(options: BuildOptions = {}): Command {
  const interruptSignal = (): AbortSignal => options.interrupt ?? processInterruptSignal();
  const program = new Command("cws")
    .description("Keep Codex workspace context (superprojects and their Codex threads) in sync across your machines through your own server, over SSH.")
    .version(PACKAGE_VERSION)
    .showHelpAfterError("(run `cws --help` or `cws <command> --help` for usage)");

  program
    .command("enroll-device")
    .description("Register this device with the server (once per device). Asks for what it needs; every question has a flag for scripts.")
    .option("--host <host>", "the server: a host name, address, or a Host alias of ~/.ssh/config")
    .option("--port <port>", "SSH port (default: from ~/.ssh/config, else 22)")
    .option("--user <user>", "the account on the server (default: from ~/.ssh/config, else your user name)")
    .option("--identity <file>", "the SSH private key to use (default: ~/.ssh/config's IdentityFile, else OpenSSH's default keys and your ssh-agent)")
    .option("--known-hosts <file>", "known_hosts file to check and record the server's key in (default: ~/.ssh/known_hosts)")
    .option("--agent-command <command>", `how to start the agent on the server, as \`cws-server init\` printed it (default: asked; ${DEFAULT_AGENT_COMMAND} with scripts/server/install.sh)`)
    .option("--no-ssh-agent", "do not ask ssh-agent / Pageant for keys")
    .option("--password-file <file>", "the account's SSH password for this first login only, read from a file (- for stdin); without it, asked on a terminal when no key is accepted")
    .option("--trust-host-key <fingerprint>", "trust the server's host key if it has this SHA256:… fingerprint (for scripts)")
    .option("--yes", "trust an unknown host key without asking (only where you verified it otherwise)")
    .option("--restrict-key", "lock this device's SSH key on the server to cws (the agent and its staging folders only; no shell), also when it already logs in; the default after a password login")
    .option("--no-restrict-key", "after a password login, install the key unrestricted, as ssh-copy-id does")
    .option("--server-data <dir>", "use a server data dir on this machine through a local agent (demo, tests) instead of SSH")
    .option("--device-name <name>", "how this device is shown (default: the host name)")
    .option("--passphrase-file <file>", "read the server's secondary passphrase from this file (- for stdin) instead of asking")
    .option("--force", "enroll again even if this device is already enrolled (keeps its device id)")
    .option("--json", "print machine-readable output")
    .addHelpText("after", `
A key that logs in already is left as it is (unless --restrict-key). When no key is accepted,
the account's password is used once (asked, or --password-file) and this device's key
(--identity, else ~/.ssh/id_rsa, id_ecdsa or id_ed25519, the first with its .pub) is installed in
the account's ~/.ssh/authorized_keys, restricted to cws unless --no-restrict-key.`)
    .action(async (flags: EnrollFlags) => {
      const state = await openState();
      const { askSecret, confirm, readSecretFile } = await import("../terminal/prompt.ts");
      const { enrollDevice } = await import("../client/commands/enroll.ts");
      const { target, connectOptions, fingerprint } = await enrollTarget(flags);
      const key = await deviceKey(target);
      if (target.transport === "ssh" && key === undefined && (flags.restrictKey === true || typeof connectOptions.password === "string")) {
        throw new CwsError("NOT_FOUND", `This device has no SSH key to install on the server (looked for ${target.identityFiles.length ? target.identityFiles.map((f) => `${f}.pub`).join(", ") : "~/.ssh/id_rsa.pub, id_ecdsa.pub, id_ed25519.pub"}). Create one with \`ssh-keygen -t ed25519\` and run this again.`);
      }
      const passphrase = flags.passphraseFile ? await readSecretFile(flags.passphraseFile) : await askSecret("Secondary passphrase (set with `cws-server init`)");
      if (flags.restrictKey === true && process.stdin.isTTY && !flags.yes && !(await confirm(`After enrollment, ${key!.file} will only run cws on the server (no shell). Continue?`, false))) {
        throw new CwsError("CANCELLED", "Nothing was changed.");
      }
      const result = await enrollDevice(state, { target, deviceName: flags.deviceName, passphrase, force: flags.force, keyFingerprint: key?.fingerprint, publicKey: key?.publicKey, restrictKey: flags.restrictKey }, connectOptions);
      if (target.transport === "ssh" && fingerprint.value) {
        await state.update((s) => { if (s.server?.transport === "ssh") s.server.hostKeyFingerprint = fingerprint.value; });
      }
      if (flags.json) printJson({ ok: true, ...result, hostKeyFingerprint: fingerprint.value ?? null });
      else {
        println(`Enrolled ${result.deviceName} (${result.deviceId}); the server runs cws ${result.agentVersion}.`);
        if (result.keyInstalled) {
          println(result.keyInstalled.restricted
            ? `${key?.file ?? "The key"} is installed on the server, restricted to cws (${result.keyInstalled.file}).`
            : `${key?.file ?? "The key"} is installed on the server (${result.keyInstalled.file}), unrestricted.`);
        }
      }
    });

  program
    .command("create-superproject")
    .description("Create a superproject on the server and bind it to a local folder.")
    .argument("[slug]", "the superproject's name: lower-case letters, digits and dashes")
    .option("--superproject <slug>", "the older way to name it")
    .requiredOption("--root <dir>", "the local folder that holds it")
    .option("--template <name>", "copy this template from templates/ into the (empty) folder first")
    .option("--codex-home <dir>", "this device's CODEX_HOME for the superproject's threads (default: $CODEX_HOME, else ~/.codex)")
    .option("--codex-root <dir>", "the folder Codex records as working directory, when it is not --root (e.g. a symlink)")
    .option("--no-codex", "do not sync the superproject's Codex threads on this device")
    .option("--json", "print machine-readable output")
    .action(async (positional: string | undefined, flags: { superproject?: string; root: string; template?: string; codexHome?: string; codexRoot?: string; codex: boolean; json?: boolean }) => {
      const state = await openState();
      const { createSuperproject } = await import("../client/commands/superprojects.ts");
      const conn = await connect(state);
      try {
        const result = await createSuperproject(conn, state, { slug: slugArgument(positional, flags), root: flags.root, template: flags.template, ...codexFlags(flags) });
        if (flags.json) printJson({ ok: true, ...result });
        else println(`Created ${result.slug} on the server, bound to ${result.root}. Run \`cws sync ${result.slug}\` to upload it.`);
      } finally {
        await conn.close();
      }
    });

  const attach = program
    .command("attach-superproject")
    .description("Bind a superproject that already exists on the server to a local folder.")
    .argument("[slug]")
    .option("--superproject <slug>", "the older way to name it")
    .requiredOption("--root <dir>", "the local folder to fill (files already there are never lost)")
    .option("--codex-home <dir>", "this device's CODEX_HOME for the superproject's threads (default: $CODEX_HOME, else ~/.codex)")
    .option("--codex-root <dir>", "the folder Codex records as working directory, when it is not --root (e.g. a symlink)")
    .option("--no-codex", "do not sync the superproject's Codex threads on this device")
    .option("--rebind", "bind it again although this device has it bound already (forgets the old binding's sync base; no file is lost)")
    .option("--sync", "run the first sync right away (a folder that already holds files asks how to join, or takes --adopt, --merge or --replace)")
    .option("--json", "print machine-readable output");
  addFirstJoinOptions(attach)
    .action(async (positional: string | undefined, flags: SyncFlags & { superproject?: string; root: string; codexHome?: string; codexRoot?: string; codex: boolean; rebind?: boolean; sync?: boolean }) => {
      const state = await openState();
      const { attachSuperproject } = await import("../client/commands/superprojects.ts");
      const { answerFromFlags } = await import("./first-join-prompt.ts");
      if (!flags.sync && answerFromFlags(flags) !== undefined) throw new CwsError("INVALID_ARGUMENT", "--adopt, --merge and --replace answer the first sync: add --sync, or give them to `cws sync`.");
      const conn = await connect(state);
      let result;
      try {
        result = await attachSuperproject(conn, state, { slug: slugArgument(positional, flags), root: flags.root, rebind: flags.rebind === true, ...codexFlags(flags) });
      } finally {
        await conn.close();
      }
      if (!flags.sync) {
        if (flags.json) printJson({ ok: true, ...result });
        else println(`Attached ${result.slug} to ${result.root}. Run \`cws sync ${result.slug}\` to fetch it (a folder that already holds files is asked how to join first).`);
        return;
      }
      if (!flags.json) println(`Attached ${result.slug} to ${result.root}.`);
      const synced = await runSync(state, result.slug, flags, "sync", interruptSignal());
      await keepSession(state);
      if (flags.json) printJson({ ok: true, ...result, sync: { ...synced.summary, firstJoin: synced.firstJoin.question === null ? null : synced.firstJoin } });
      else await printSyncResult(synced, false);
    });

  program
    .command("disconnect-superproject")
    .description("Forget this device's binding of a superproject (local files and the server copy stay).")
    .argument("[slug]")
    .option("--superproject <slug>", "the older way to name it")
    .option("--json", "print machine-readable output")
    .action(async (positional: string | undefined, flags: { superproject?: string; json?: boolean }) => {
      const state = await openState();
      const { disconnectSuperproject } = await import("../client/commands/superprojects.ts");
      const result = await disconnectSuperproject(state, slugArgument(positional, flags));
      if (flags.json) printJson({ ok: true, ...result });
      else println(`Disconnected ${result.slug}; ${result.root} is left as it is.`);
    });

  const syncCommand = program
    .command("sync")
    .description("Run one three-way sync: push what changed here, pull what changed on the server, keep both sides of a conflict.")
    .argument("[slug]")
    .option("--superproject <slug>", "the older way to name it")
    .option("--dry-run", "show what would move without changing anything")
    .option("--json", "print machine-readable output")
    .addHelpText("after", `
A live sync of the superproject on this device runs the sync for this command. Otherwise the
kept session does, if one runs: after a sync, cws keeps one session with the server open in
the background, so the next sync skips the SSH handshake and start-up (\`"via": "kept-session"\`
in --json). It exits after 10 minutes without a sync; CWS_KEEP_SESSION=<seconds> sets that
time, CWS_KEEP_SESSION=0 turns kept sessions off. \`cws session status\` shows it,
\`cws session stop\` stops it.`);
  addFirstJoinOptions(syncCommand)
    .action(async (positional: string | undefined, flags: SyncFlags & { superproject?: string }) => {
      const slug = slugArgument(positional, flags);
      const state = await openState();
      const signal = interruptSignal();
      // A live sync of this superproject on this device runs the sync on its own connection
      // and lease (live-handoff.ts); without one, this command opens its own session.
      const { handOffSync, liveSocketPath } = await import("../client/live-handoff.ts");
      const handedOff = await handOffSync(liveSocketPath(state.home, slug), { type: "sync", dryRun: flags.dryRun === true }, signal);
      if (handedOff !== null) {
        if (flags.json) printJson({ ok: true, via: "live-sync", ...handedOff });
        else {
          println(`(run by the live sync of ${slug} on this device)`);
          printSyncSummary(handedOff);
        }
        return;
      }
      await printSyncResult(await runSync(state, slug, flags, "sync", signal), flags.json);
      await keepSession(state);
    });

  const syncLike = (name: string, description: string, mode: "pull" | "override") => {
    const command = program
      .command(name)
      .description(description)
      .argument("[slug]")
      .option("--superproject <slug>", "the older way to name it")
      .option("--dry-run", "show what would change without changing anything")
      .option("--json", "print machine-readable output")
      .option("--yes", mode === "override" ? "replace the server's state without asking (for scripts)" : "(accepted for symmetry; nothing is asked)");
    // update-from-server on a binding without a base asks how to join first, like sync.
    if (mode === "pull") addFirstJoinOptions(command);
    command.action(async (positional: string | undefined, flags: SyncFlags & { superproject?: string; yes?: boolean }) => {
        const slug = slugArgument(positional, flags);
        const state = await openState();
        const signal = interruptSignal();
        if (mode === "pull") {
          await printSyncResult(await runSync(state, slug, flags, "pull", signal), flags.json);
          return keepSession(state);
        }
        const session = openSession(state, signal);
        const progress = new Progress({ json: flags.json });
        try {
          const { overrideCurrentState } = await import("../client/commands/override.ts");
          const summary = await overrideCurrentState(await session.connecting, state, slug, {
            dryRun: flags.dryRun, signal, onEvent: (event) => progress.syncEvent(event),
            confirm: flags.yes ? undefined : async (preview) => {
              progress.done();
              return confirmOverride(preview);
            },
          });
          progress.done();
          if (flags.json) printJson({ ok: true, ...summary });
          else printSyncSummary(summary);
        } finally {
          progress.done();
          await session.close();
        }
      });
  };
  syncLike("update-from-server", "Bring this device up to date with the server. Local files that would be replaced or deleted are backed up first and listed; local-only changes stay and are pushed by the next sync.", "pull");
  syncLike("override-current-state", "Make this device's folder the server's new state (needs the lease; the old server state stays as a checkpoint, and quarantine rules still apply).", "override");

  const turnOn = program
    .command("turn-on-sync")
    .description("Live-sync a superproject in the foreground: hold the global lease, watch the folder, push changes after a quiet moment. Stop with Ctrl+C or `cws turn-off-sync`.")
    .argument("[slug]")
    .option("--superproject <slug>", "the older way to name it")
    .option("--quiet-ms <ms>", "push after the folder was quiet this long", String(DEFAULT_QUIET_MS))
    .option("--heartbeat-ms <ms>", "heartbeat period (the lease lives 120 s without one)", String(DEFAULT_HEARTBEAT_MS))
    .option("--rescan-ms <ms>", "full rescan period, a safety net for missed watcher events", String(DEFAULT_RESCAN_MS))
    .option("--take-over", "when another device holds the lease (e.g. it is gone), show it and take the lease over after asking")
    .option("--yes", "with --take-over: do not ask (for scripts)")
    .option("--json", "print events as JSON lines");
  addFirstJoinOptions(turnOn)
    .action(async (positional: string | undefined, flags: FirstJoinFlags & { superproject?: string; quietMs: string; heartbeatMs: string; rescanMs: string; json?: boolean; takeOver?: boolean; yes?: boolean }) => {
      const slug = slugArgument(positional, flags);
      const state = await openState();
      const { runLiveSync } = await import("../client/live-sync.ts");
      const signal = interruptSignal();
      if (state.binding(slug).base === null) {
        // This device never synced this binding: the first sync (and its question, when the
        // folder and the server both hold files) comes before the lease is taken.
        const first = await runSync(state, slug, flags, "sync", signal);
        if (flags.json) process.stdout.write(JSON.stringify({ type: "first-sync", summary: first.summary, firstJoin: first.firstJoin.question === null ? null : first.firstJoin }) + "\n");
        else await printSyncResult(first, false);
      }
      const ms = (value: string, name: string, min: number, max: number) => {
        const n = Number(value);
        if (!Number.isInteger(n) || n < min || n > max) throw new CwsError("INVALID_ARGUMENT", `${name} takes a whole number of milliseconds from ${min} to ${max}`);
        return n;
      };
      // The paths last reported as not synced, so each is announced once, not at every rescan.
      let unknownShown = new Set<string>();
      const result = await runLiveSync({
        state, slug, signal,
        connect: () => connect(state),
        takeOver: flags.takeOver ? (holder) => confirmTakeOver(holder, flags.yes === true) : undefined,
        quietMs: ms(flags.quietMs, "--quiet-ms", 10, 600_000),
        heartbeatMs: ms(flags.heartbeatMs, "--heartbeat-ms", 100, 60_000),
        rescanMs: ms(flags.rescanMs, "--rescan-ms", 100, 3_600_000),
        onEvent: (event) => {
          if (flags.json) {
            process.stdout.write(JSON.stringify(event.type === "sync-failed" ? { type: event.type, error: event.error.toWire() } : event) + "\n");
            return;
          }
          const time = new Date().toLocaleTimeString();
          if (event.type === "started") println(`${time} live sync of ${slug} is on (lease token ${event.lease.token}); Ctrl+C or \`cws turn-off-sync\` stops it`);
          else if (event.type === "synced") {
            const s = event.summary;
            if (s.pushed.files + s.pushed.deleted + s.pulled.files + s.pulled.deleted > 0 || s.conflicts.length > 0) {
              println(`${time} pushed ${s.pushed.files} files and ${s.pushed.deleted} deletions (${formatBytes(s.pushed.bytes)}), pulled ${s.pulled.files}; now at snapshot ${s.snapshot ? snapshotNumber(s.snapshot) : "-"}`);
            }
            for (const c of s.conflicts) println(`${time} ${conflictLine(s, c)}`);
            // Only new holds are announced: items still waiting were announced when they were held.
            for (const line of quarantineLines({ quarantine: { ...s.quarantine, waiting: [] } })) println(`${time} ${line}`);
            for (const u of s.unknown) if (!unknownShown.has(u.path)) println(`${time} NOT SYNCED ${u.path}: ${u.reason}; left as it is here and on the server; ${u.next}`);
            unknownShown = new Set(s.unknown.map((u) => u.path));
          } else if (event.type === "sync-failed") println(`${time} sync failed, will retry: ${event.error.message}`);
          else if (event.type === "stopping") println(`${time} stopping (${event.reason})…`);
          else if (event.type === "stopped") println(`${time} live sync stopped${event.released ? "; lease released" : ""}`);
        },
      });
      if (result.stoppedBy === "lease-lost") {
        throw new CwsError("LEASE_LOST", `${result.error?.message ?? "The lease was lost."} Local files were left as they are.`);
      }
    });

  program
    .command("turn-off-sync")
    .description("Stop live sync on this device (final push, then the lease is released).")
    .argument("[slug]", "only this superproject (default: every live sync of this device)")
    .option("--json", "print machine-readable output")
    .action(async (slug: string | undefined, flags: { json?: boolean }) => {
      const state = await openState();
      const { requestStop, runningLiveSyncs } = await import("../client/live-sync.ts");
      const running = await runningLiveSyncs(state);
      const stopped = await requestStop(state, { slug });
      // A lease this device still holds without a live process (it crashed) is released too.
      let releasedOrphan = false;
      if (running.length === 0) {
        const conn = await connect(state);
        try {
          const lease = await conn.call("leaseStatus", {});
          if (lease.active && lease.deviceId === state.enrolled().device.id) {
            await conn.call("releaseLease", { token: lease.token });
            releasedOrphan = true;
          }
        } finally {
          await conn.close();
        }
      }
      if (flags.json) printJson({ ok: true, stopped, releasedOrphanLease: releasedOrphan });
      else if (stopped.length > 0) println(`Stopped live sync of ${stopped.join(", ")}.`);
      else if (releasedOrphan) println("No live sync was running here, but this device still held the lease; it was released.");
      else println("No live sync is running on this device.");
    });

  program
    .command("status")
    .description("Show this device, the server, the lease, and each bound superproject: local changes, server head, last sync.")
    .option("--json", "print machine-readable output")
    .action(async (flags: { json?: boolean }) => {
      const state = await openState();
      const { device, server } = state.enrolled();
      const { runningLiveSyncs } = await import("../client/live-sync.ts");
      const { syncSuperproject } = await import("../client/sync.ts");
      const { readCodexConflicts } = await import("../client/codex/state.ts");
      const where = server.transport === "ssh" ? `${server.user}@${server.host}:${server.port}` : `local ${server.dataDir}`;
      let conn: AgentConnection;
      try {
        conn = await connect(state);
      } catch (error) {
        // Without the server, say what this device knows: its enrollment, its bindings and
        // when each last synced, and why the server could not be asked.
        const reason = error instanceof CwsError ? error : new CwsError("CONNECTION_LOST", (error as Error).message);
        const live = await runningLiveSyncs(state);
        const local = Object.entries(state.data.superprojects).map(([slug, b]) => ({ slug, root: b.root, base: b.base, lastSyncAt: b.lastSyncAt, live: live.some((m) => m.slug === slug) }));
        if (flags.json) printJson({ ok: false, device, server, reachable: false, error: reason.toWire(), superprojects: local });
        else {
          println(`device: ${device.name} (${device.id}), enrolled with ${where}`);
          println(`server: NOT reachable: ${reason.message}`);
          for (const row of local) println(`${row.slug}${row.live ? " [live]" : ""}: ${row.root}; last sync ${row.lastSyncAt ? new Date(row.lastSyncAt).toLocaleString() : "never"}`);
        }
        process.exitCode = 1;
        return;
      }
      try {
        const [{ superprojects }, lease, live, opened] = await Promise.all([conn.call("listSuperprojects", {}), conn.call("leaseStatus", {}), runningLiveSyncs(state), conn.call("open", { deviceId: device.id })]);
        const rows = [];
        for (const [slug, bound] of Object.entries(state.data.superprojects)) {
          const remote = superprojects.find((s) => s.slug === slug);
          let pending: { push: number; pull: number; conflicts: number } | null = null;
          let problem: string | null = null;
          let headNumber: number | null = null;
          if (remote !== undefined) {
            try {
              const plan = await syncSuperproject({ conn, state, slug, dryRun: true });
              pending = { push: plan.pushed.files + plan.pushed.deleted, pull: countPulls(plan), conflicts: plan.conflicts.length };
              headNumber = plan.snapshot === null ? null : snapshotNumber(plan.snapshot);
            } catch (error) {
              problem = (error as Error).message;
            }
          }
          rows.push({ slug, root: bound.root, base: bound.base, serverHead: remote?.head ?? null, serverHeadNumber: headNumber, onServer: remote !== undefined, lastSyncAt: bound.lastSyncAt, pending, problem, live: live.some((m) => m.slug === slug), quarantine: remote?.pendingQuarantine ?? 0, codexConflicts: await readCodexConflicts(state.home, slug) });
        }
        const serverOnly = superprojects.filter((s) => !state.data.superprojects[s.slug]);
        if (flags.json) {
          printJson({ ok: true, device: { ...device, enrolledAt: opened.enrolledAt ?? null, serverName: opened.deviceName }, server, agentVersion: conn.hello.version, lease, superprojects: rows, serverOnly });
          return;
        }
        println(`device: ${device.name} (${device.id}), enrolled on the server as ${opened.deviceName}${opened.enrolledAt ? ` since ${new Date(opened.enrolledAt).toLocaleString()}` : ""}`);
        println(`server: ${where}, reachable, cws ${conn.hello.version}${server.transport === "ssh" ? `, agent command ${JSON.stringify(server.agentCommand)}` : ""}`);
        if (lease.active) {
          const left = Math.max(0, Math.round(((lease.expiresAt ?? 0) - lease.now) / 1000));
          println(`lease: ${lease.deviceId === device.id ? "this device" : lease.deviceName} live-syncs ${lease.slug} since ${new Date(lease.acquiredAt ?? 0).toLocaleString()}, expires in ${left} s without heartbeats`);
        } else println("lease: free (no device is live-syncing)");
        for (const row of rows) {
          println(`${row.slug}${row.live ? " [live]" : ""}: ${row.root}`);
          if (!row.onServer) { println("  missing on the server"); continue; }
          const where = row.serverHead === null ? "the server holds nothing yet" : `server at snapshot ${row.serverHeadNumber ?? row.serverHead}`;
          const here = row.base === null ? "this device never synced" : row.base === row.serverHead ? "this device is there too" : "this device is at an older snapshot";
          println(`  ${where}, ${here}; last sync ${row.lastSyncAt ? new Date(row.lastSyncAt).toLocaleString() : "never"}`);
          if (row.pending) println(`  pending: ${row.pending.push} local change(s) to push, ${row.pending.pull} server change(s) to pull, ${row.pending.conflicts} conflict(s)`);
          if (row.quarantine > 0) println(`  quarantine: ${row.quarantine} item(s) held for review; see \`cws quarantine list ${row.slug}\``);
          if (row.problem) println(`  cannot compare: ${row.problem}`);
          for (const c of row.codexConflicts) println(`  Codex thread ${c.id} diverged ${new Date(c.at).toLocaleString()}: the server's version is live, yours is at ${c.backup} (delete that file to dismiss)`);
        }
        for (const sp of serverOnly) println(`${sp.slug}: on the server only (attach with \`cws attach-superproject ${sp.slug} --root <dir>\`)`);
      } finally {
        await conn.close();
      }
    });

  registerSessionCommands(program);
  registerRecoveryCommands(program);
  registerCodexCommands(program);
  registerToolCommands(program, buildProgram);
  return program;
}
