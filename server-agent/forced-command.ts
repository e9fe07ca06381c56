#!/usr/bin/env node
/**
 * The forced command of an enrolled device's SSH key (see authorized-keys.ts):
 *
 *   node server-agent/forced-command.mjs --data <dir> --device <id>    (the entry: runs this file)
 *
 * With `command="…"` on a key, sshd runs this for every exec *and* subsystem request and puts
 * what the client asked for in SSH_ORIGINAL_COMMAND: the exec command line, or for the sftp
 * subsystem the `Subsystem sftp` value of sshd_config (`internal-sftp`, or e.g.
 * `/usr/lib/openssh/sftp-server -l INFO`, arguments included). Checked against OpenSSH 9.2.
 *
 *   SSH_ORIGINAL_COMMAND                         runs
 *   `[node] …/cws-agent|…/agent/main.{mjs,ts} --stdio …` a session, relayed to the hub, pinned to --device
 *   `internal-sftp …`, `…/sftp-server …`          the restricted SFTP server (staging folders only)
 *   anything else, or nothing (a shell)           nothing: a refusal on stderr, exit 1
 *
 * The client's command is only classified, never run: its own `--data`/`--device` are
 * ignored, and the data dir and device always come from this command's argv, which only the
 * server account can write. Port forwarding, ptys and agent forwarding are already off
 * (`restrict`).
 */
import path from "node:path";
import type { Readable, Writable } from "node:stream";
import { parseArgs } from "node:util";

/** What the client asked for, as far as this key allows it. */
export type OriginalCommand = { kind: "agent" } | { kind: "sftp" } | { kind: "refused"; reason: string };

/** The longest SSH_ORIGINAL_COMMAND looked at; longer ones are refused. */
const MAX_COMMAND_LENGTH = 8192;

/** Decides what to run for SSH_ORIGINAL_COMMAND (undefined: the client asked for a shell). */
export function classifyOriginalCommand(command: string | undefined): OriginalCommand {
  if (command === undefined || command.trim() === "") {
    return { kind: "refused", reason: "an interactive shell" };
  }
  const shown = JSON.stringify(command.length > 200 ? `${command.slice(0, 200)}…` : command);
  if (command.length > MAX_COMMAND_LENGTH) return { kind: "refused", reason: `a command of ${command.length} characters` };
  const words = splitWords(command);
  if (words === undefined) return { kind: "refused", reason: `${shown} (shell syntax is not run here)` };
  const [first] = words;
  if (first === "internal-sftp" || path.posix.basename(first) === "sftp-server") return { kind: "sftp" };

  // `cws-agent --stdio …`, or the agent run by a Node binary (as test and bench set-ups do):
  // `/path/node [--node-options] /path/server-agent/agent/main.mjs --stdio …` (or main.ts).
  let at = 0;
  if (/^node(\d+)?(\.exe)?$/.test(path.posix.basename(first))) {
    at = 1;
    while (at < words.length && words[at].startsWith("-")) at++;
  }
  const program = words[at] ?? "";
  const isAgent = program === "cws-agent" || program.endsWith("/cws-agent") || ["agent/main.ts", "agent/main.mjs"].some((entry) => program === entry || program.endsWith(`/${entry}`));
  if (isAgent) {
    return words.slice(at + 1).includes("--stdio") ? { kind: "agent" } : { kind: "refused", reason: `${shown} (the agent runs only with --stdio)` };
  }
  return { kind: "refused", reason: shown };
}

/** The message a refused client sees on its stderr. */
export function refusalMessage(reason: string): string {
  return (
    `cws: refused ${reason}: this SSH key is restricted to the cws agent (\`cws-agent --stdio\`) ` +
    "and SFTP in the server's staging folders. Use another key or account for a shell or other commands.\n"
  );
}

export interface ForcedCommandOptions {
  /** The data dir pinned in authorized_keys. */
  dataDir: string;
  /** The device id pinned in authorized_keys. */
  deviceId: string;
  /** SSH_ORIGINAL_COMMAND. */
  originalCommand: string | undefined;
  input: Readable;
  output: Writable;
  stderr: Writable;
}

/** Classifies the request and serves it; resolves with the exit code. */
export async function runForcedCommand(options: ForcedCommandOptions): Promise<number> {
  const request = classifyOriginalCommand(options.originalCommand);
  switch (request.kind) {
    case "agent": {
      // The hub serves the session; the pin travels in the relay's preamble, written before
      // any byte of the client's, so the client cannot change it (see session-preamble.ts).
      const { relaySession } = await import("./agent/relay.ts");
      return relaySession({ dataDir: options.dataDir, input: options.input, output: options.output, pinnedDeviceId: options.deviceId });
    }
    case "sftp": {
      const { serveRestrictedSftp } = await import("./sftp/restricted-sftp-server.ts");
      await serveRestrictedSftp({
        dataDir: options.dataDir,
        input: options.input,
        output: options.output,
        log: (line) => void options.stderr.write(`cws-sftp: ${line}\n`),
      });
      return 0;
    }
    case "refused":
      options.stderr.write(refusalMessage(request.reason));
      return 1;
  }
}

/**
 * Splits a command line into words the way a POSIX shell would for plain words and quotes
 * (no expansion). Returns undefined for unbalanced quotes or unquoted shell operators, which a
 * cws client never sends.
 */
export function splitWords(command: string): string[] | undefined {
  const words: string[] = [];
  let word: string | undefined;
  for (let i = 0; i < command.length; i++) {
    const ch = command[i];
    if (ch === "'") {
      const end = command.indexOf("'", i + 1);
      if (end < 0) return undefined;
      word = (word ?? "") + command.slice(i + 1, end);
      i = end;
    } else if (ch === '"') {
      let text = "";
      let j = i + 1;
      for (; j < command.length && command[j] !== '"'; j++) {
        if (command[j] === "\\" && '"\\$`'.includes(command[j + 1] ?? "")) j++;
        else if (command[j] === "$" || command[j] === "`") return undefined;
        text += command[j];
      }
      if (j >= command.length) return undefined;
      word = (word ?? "") + text;
      i = j;
    } else if (ch === "\\") {
      if (i + 1 >= command.length) return undefined;
      word = (word ?? "") + command[++i];
    } else if (ch === " " || ch === "\t") {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else if (";&|<>()$`\n\r*?[]{}~#".includes(ch)) {
      return undefined;
    } else {
      word = (word ?? "") + ch;
    }
  }
  if (word !== undefined) words.push(word);
  return words.length > 0 ? words : undefined;
}

/** The forced command's process: reads its argv and SSH_ORIGINAL_COMMAND (forced-command.mjs runs it). */
export async function forcedCommandMain(): Promise<void> {
  let dataDir: string | undefined;
  let deviceId: string | undefined;
  try {
    const { values } = parseArgs({ options: { data: { type: "string" }, device: { type: "string" } }, strict: true, allowPositionals: false });
    dataDir = values.data;
    deviceId = values.device;
  } catch (error) {
    process.stderr.write(`cws forced command: ${(error as Error).message}\n`);
  }
  if (dataDir === undefined || deviceId === undefined || !path.isAbsolute(dataDir)) {
    // A broken authorized_keys line: the server's owner must fix it, the client cannot.
    process.stderr.write(
      "cws forced command: the authorized_keys line must pass --data <absolute data dir> --device <id>; " +
        "ask the server's owner to write it again with `cws enroll-device`.\n",
    );
    process.exitCode = 2;
    return;
  }
  const code = await runForcedCommand({
    dataDir,
    deviceId,
    originalCommand: process.env.SSH_ORIGINAL_COMMAND,
    input: process.stdin,
    output: process.stdout,
    stderr: process.stderr,
  });
  // A relayed session is over once the hub's side closed, even if the client has not closed
  // its side; stdout (a pipe or socket from sshd) is written synchronously, so nothing is lost.
  process.exit(code);
}

/** Runs {@link forcedCommandMain}, reporting a failure briefly on stderr. */
export function runForcedCommandProcess(): void {
  forcedCommandMain().catch((error: unknown) => {
    // Details stay on the server side of the channel only as far as sshd's stderr goes: keep it short.
    process.stderr.write(`cws forced command: ${(error as Error)?.message ?? String(error)}\n`);
    process.exitCode = 1;
  });
}

// authorized_keys lines written before forced-command.mjs name this file directly.
if (import.meta.main) runForcedCommandProcess();
