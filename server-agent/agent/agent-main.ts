#!/usr/bin/env node
/**
 * `cws-agent --stdio`: the server-side agent, started once per SSH session (or as a child of
 * the local transport). It speaks the protocol on stdin/stdout; stdout carries nothing else,
 * so everything it has to say to a human goes to stderr.
 */
import { Command } from "commander";
import { serveAgent } from "./agent.ts";
import { defaultServerDataDir } from "../server-config.ts";
import { PACKAGE_VERSION } from "../../src/version.ts";
import { isCwsError } from "../../src/errors.ts";

const program = new Command("cws-agent")
  .description("Serve the cws protocol on stdin/stdout for one client session (started over SSH by `cws`).")
  .version(PACKAGE_VERSION)
  .option("--stdio", "speak the protocol on stdin/stdout (the only mode)")
  .option("--data <dir>", "server data dir (default: $CWS_DATA_DIR or ~/.local/share/cws-server)")
  .option("--device <id>", "only accept this enrolled device (set by the forced command of its SSH key)")
  .option("--authorized-keys <file>", "the authorized_keys file that enrollment with --restrict-key edits (default: ~/.ssh/authorized_keys; set it when sshd's AuthorizedKeysFile differs)")
  .action(async (flags: { stdio?: boolean; data?: string; device?: string; authorizedKeys?: string }) => {
    if (!flags.stdio) {
      process.stderr.write("cws-agent is started by `cws` over SSH; run it with --stdio.\n");
      process.exitCode = 2;
      return;
    }
    const dataDir = flags.data ?? defaultServerDataDir();
    // Without a device pin from the command line, the forced-command dispatcher may pass one.
    const pinned = flags.device ?? (process.env.CWS_PINNED_DEVICE || undefined);
    await serveAgent({ dataDir, input: process.stdin, output: process.stdout, pinnedDeviceId: pinned, authorizedKeysFile: flags.authorizedKeys });
  });

program.parseAsync().catch((error: unknown) => {
  process.stderr.write(`cws-agent: ${isCwsError(error) ? error.message : (error as Error)?.stack ?? String(error)}\n`);
  process.exitCode = 1;
});
