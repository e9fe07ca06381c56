#!/usr/bin/env node
/**
 * `cws-agent --stdio`: the server-side agent, started once per SSH session (or as a child of
 * the local transport). It speaks the protocol on stdin/stdout; stdout carries nothing else,
 * so everything it has to say to a human goes to stderr.
 *
 * Its start-up is part of every sync, so the arguments `cws` and the forced command pass are
 * read directly; commander (and its help, version and errors) is loaded only for anything else.
 */
import { serveAgent } from "./agent.ts";
import { defaultServerDataDir } from "../server-config.ts";
import { PACKAGE_VERSION } from "../../src/version.ts";
import { isCwsError } from "../../src/errors.ts";

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
  await serveAgent({ dataDir, input: process.stdin, output: process.stdout, pinnedDeviceId: pinned, authorizedKeysFile: flags.authorizedKeys });
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
  const { Command } = await import("commander");
  await new Command("cws-agent")
    .description("Serve the cws protocol on stdin/stdout for one client session (started over SSH by `cws`).")
    .version(PACKAGE_VERSION)
    .option("--stdio", "speak the protocol on stdin/stdout (the only mode)")
    .option("--data <dir>", "server data dir (default: $CWS_DATA_DIR or ~/.local/share/cws-server)")
    .option("--device <id>", "only accept this enrolled device (set by the forced command of its SSH key)")
    .option("--authorized-keys <file>", "the authorized_keys file that enrollment with --restrict-key edits (default: ~/.ssh/authorized_keys; set it when sshd's AuthorizedKeysFile differs)")
    .action(run)
    .parseAsync();
}

main().catch((error: unknown) => {
  process.stderr.write(`cws-agent: ${isCwsError(error) ? error.message : (error as Error)?.stack ?? String(error)}\n`);
  process.exitCode = 1;
});
