/**
 * The flags that answer the first-join question for scripts (docs/first-join.md). Kept apart
 * from first-join-prompt.ts so that building the program, which every command does, loads
 * nothing but these option definitions.
 */
import type { Command } from "commander";

/** The flags of every command whose run may be a binding's first sync. */
export interface FirstJoinFlags {
  adopt?: boolean;
  merge?: boolean;
  replace?: boolean;
  prefer?: string;
}

/** Adds the first-join flags to a command. */
export function addFirstJoinOptions(command: Command): Command {
  return command
    .option("--adopt", "first sync of a folder that already holds files: take the server's state (this folder's other files are backed up, then removed or replaced)")
    .option("--merge", "first sync of a folder that already holds files: upload what is only here, download what is only on the server")
    .option("--prefer <side>", "with --merge, what to keep of a file both sides hold differently: server, local or both (default: both, this device's copy renamed beside it)")
    .option("--replace", "first sync of a folder that already holds files: make this folder the server's state (the server keeps a checkpoint)");
}
