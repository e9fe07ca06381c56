#!/usr/bin/env node
/**
 * `cws-agent --stdio`: what `cws` runs on the server for each session (over SSH, or as a child of
 * the local transport). It is a relay (relay.ts): the hub serves the session, so this process
 * loads almost nothing and starts in tens of milliseconds. It speaks nothing on stdout itself,
 * so everything it has to say to a human goes to stderr.
 *
 * Its start-up is part of every sync, so the arguments `cws` and the forced command pass are
 * read directly; commander (and its help, version and errors) is loaded only for anything else.
 */
import { defaultServerDataDir } from "../data-dir.ts";
import { relaySession } from "./relay.ts";

interface AgentFlags {
  stdio?: boolean;
  data?: string;
  device?: string;
  authorizedKeys?: string;
}

async function run(flags: AgentFlags): Promise<void> {
  if (!flags.stdio) {
    process.stderr.write("cws-agent is started by `cws` over SSH; run it with --stdio.\n");
    process.exitCode = 2;
    return;
  }
  const dataDir = flags.data ?? defaultServerDataDir();
  // Without a device pin from the command line, the forced-command dispatcher may pass one.
  const pinned = flags.device ?? (process.env.CWS_PINNED_DEVICE || undefined);
  const code = await relaySession({
    dataDir,
    input: process.stdin,
    output: process.stdout,
    ...(pinned === undefined ? {} : { pinnedDeviceId: pinned }),
    ...(flags.authorizedKeys === undefined ? {} : { authorizedKeysFile: flags.authorizedKeys }),
    ...(process.env.CWS_FAULT ? { fault: process.env.CWS_FAULT } : {}),
  });
  // Crash tests: a fault point ends the session in the hub; this process then ends the way the
  // agent process itself used to at that point, killed, so clients see the same failure.
  if (code !== 0 && process.env.CWS_FAULT) process.kill(process.pid, "SIGKILL");
  // The session is over once the hub's side closed, even if the client has not closed stdin.
  process.exit(code);
}

/**
 * The flags of the usual invocations (`--stdio` with `--data`, `--device`, `--authorized-keys`,
 * each once, values not starting with "-"), or null for anything commander must look at.
 */
function usualFlags(args: readonly string[]): AgentFlags | null {
  const flags: AgentFlags = {};
  const valued = new Map<string, "data" | "device" | "authorizedKeys">([["--data", "data"], ["--device", "device"], ["--authorized-keys", "authorizedKeys"]]);
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--stdio" && !flags.stdio) {
      flags.stdio = true;
      continue;
    }
    const key = valued.get(arg);
    const value = args[i + 1];
    if (key === undefined || flags[key] !== undefined || value === undefined || value === "" || value.startsWith("-")) return null;
    flags[key] = value;
    i++;
  }
  return flags.stdio ? flags : null;
}

async function main(): Promise<void> {
  const quick = usualFlags(process.argv.slice(2));
  if (quick !== null) return run(quick);
  const [{ Command }, { PACKAGE_VERSION }] = await Promise.all([import("commander"), import("../../src/version.ts")]);
  await new Command("cws-agent")
    .description("Relay one client session on stdin/stdout to the cws hub, starting the hub when it is not running (started over SSH by `cws`).")
    .version(PACKAGE_VERSION)
    .option("--stdio", "speak the protocol on stdin/stdout (the only mode)")
    .option("--data <dir>", "server data dir (default: $CWS_DATA_DIR or ~/.local/share/cws-server)")
    .option("--device <id>", "only accept this enrolled device (set by the forced command of its SSH key)")
    .option("--authorized-keys <file>", "the authorized_keys file that enrollment with --restrict-key edits (default: ~/.ssh/authorized_keys; set it when sshd's AuthorizedKeysFile differs)")
    .action(run)
    .parseAsync();
}

main().catch(async (error: unknown) => {
  // A CwsError (e.g. the hub did not come up) carries a message for people; anything else its stack.
  const { isCwsError } = await import("../../src/errors.ts");
  process.stderr.write(`cws-agent: ${isCwsError(error) ? error.message : (error as Error)?.stack ?? String(error)}\n`);
  process.exitCode = 1;
});
