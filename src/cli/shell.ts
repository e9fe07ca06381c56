/**
 * `cws shell`: an interactive prompt that runs cws commands without typing `cws` each time,
 * e.g. `turn-on-sync my-research` in one window and `status` in another. Each line is parsed
 * like a command line (quotes and backslash escapes), run by a fresh commander program, and
 * its failure reported without leaving the shell.
 */
import { createInterface } from "node:readline";
import { shareShellInterface } from "../terminal/line-questions.ts";
import type { Command } from "commander";
import { reportError } from "./output.ts";
import { CwsError } from "../errors.ts";

/** Splits a line into words the way a POSIX shell would for plain words and quotes. */
export function splitCommandLine(line: string): string[] {
  const words: string[] = [];
  let current = "";
  let quote: '"' | "'" | null = null;
  let inWord = false;
  for (let i = 0; i < line.length; i++) {
    const char = line[i];
    if (quote !== null) {
      if (char === quote) quote = null;
      else if (char === "\\" && quote === '"' && i + 1 < line.length && (line[i + 1] === '"' || line[i + 1] === "\\")) current += line[++i];
      else current += char;
      continue;
    }
    if (char === '"' || char === "'") { quote = char; inWord = true; continue; }
    if (char === "\\" && i + 1 < line.length) { current += line[++i]; inWord = true; continue; }
    if (/\s/.test(char)) {
      if (inWord) { words.push(current); current = ""; inWord = false; }
      continue;
    }
    current += char;
    inWord = true;
  }
  if (quote !== null) throw new CwsError("INVALID_ARGUMENT", `Unclosed ${quote} quote`);
  if (inWord) words.push(current);
  return words;
}

/** Builds a fresh program for one command, with the signal that interrupts it. */
export type ShellProgramBuilder = (options: { interrupt?: AbortSignal }) => Command;

export interface ShellIo {
  input: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };
  output: NodeJS.WritableStream;
}

/**
 * Runs the prompt until `exit` or the end of input.
 *
 * - Lines are queued and run one after another, so lines typed (or piped) ahead of a running
 *   command wait their turn; nothing is written to the prompt once input has ended.
 * - `turn-on-sync` runs in the background: the prompt comes back at once and takes other
 *   commands (`status`, `sync` of another superproject, `turn-off-sync`).
 * - Ctrl+C stops the command in the foreground; at the prompt, it stops the background live
 *   syncs (each makes its final push and releases the lease). `exit` and the end of input stop
 *   them the same way before the shell returns.
 */
export async function runShell(build: ShellProgramBuilder, io: ShellIo = { input: process.stdin, output: process.stdout }): Promise<void> {
  const terminal = io.input.isTTY === true;
  const rl = createInterface({ input: io.input, output: io.output, prompt: "cws> ", terminal });
  // Questions a command asks (the first-join choice) are answered through this interface.
  shareShellInterface(rl);
  const say = (text: string): void => void io.output.write(text);
  const queue: string[] = [];
  const background = new Map<string, { controller: AbortController; done: Promise<void> }>();
  let foreground: AbortController | undefined;
  let inputEnded = false;
  let leaving = false;
  let wake: (() => void) | undefined;

  const prompt = (): void => {
    if (!inputEnded && !leaving) rl.prompt();
  };
  const stopBackground = (): void => {
    for (const [slug, job] of background) {
      say(`stopping live sync of ${slug}…\n`);
      job.controller.abort();
    }
  };
  const onInterrupt = (): void => {
    if (foreground !== undefined) {
      say("\ncws: stopping the command…\n");
      foreground.abort();
    } else if (background.size > 0) {
      say("\n");
      stopBackground();
    } else if (terminal) {
      say("\n(type `exit` to leave)\n");
      prompt();
    } else {
      leaving = true;
      wake?.();
    }
  };

  rl.on("line", (line) => {
    queue.push(line);
    wake?.();
  });
  rl.on("close", () => {
    inputEnded = true;
    wake?.();
  });
  // On a terminal readline reads Ctrl+C as a key; otherwise it arrives as SIGINT. Either way
  // the shell decides what it stops, and it never kills the process under a live sync.
  rl.on("SIGINT", onInterrupt);
  process.on("SIGINT", onInterrupt);

  say("cws shell: type a command without `cws` (e.g. `status`, `sync my-research`), `help`, or `exit`.\n" +
    "`turn-on-sync <slug>` runs in the background; Ctrl+C at the prompt or `turn-off-sync` stops it.\n");
  prompt();
  try {
    while (!leaving) {
      const line = queue.shift();
      if (line === undefined) {
        if (inputEnded) break;
        await new Promise<void>((resolve) => { wake = resolve; });
        wake = undefined;
        continue;
      }
      const trimmed = line.trim();
      if (trimmed === "exit" || trimmed === "quit") break;
      if (trimmed !== "") await runLine(trimmed);
      prompt();
    }
  } finally {
    leaving = true;
    stopBackground();
    await Promise.all([...background.values()].map((job) => job.done));
    process.removeListener("SIGINT", onInterrupt);
    shareShellInterface(null);
    rl.close();
  }

  async function runLine(trimmed: string): Promise<void> {
    let words: string[];
    try {
      words = splitCommandLine(trimmed);
      if (words[0] === "shell") throw new CwsError("INVALID_ARGUMENT", "You are already in the cws shell.");
    } catch (error) {
      await reportError(error, false);
      return;
    }
    const controller = new AbortController();
    const run = (): Promise<void> => {
      const program = build({ interrupt: controller.signal });
      program.exitOverride();
      program.configureOutput({ writeErr: (text) => process.stderr.write(text) });
      return program.parseAsync(words[0] === "help" ? ["--help"] : words, { from: "user" }).then(() => undefined, async (error: unknown) => {
        // Commander signals --help, --version and usage errors (already printed) through exceptions.
        const code = (error as { code?: string }).code;
        if (!(typeof code === "string" && code.startsWith("commander."))) await reportError(error, words.includes("--json"));
      });
    };
    if (words[0] === "turn-on-sync" && !words.includes("--help")) {
      const slug = words.slice(1).find((w) => !w.startsWith("-")) ?? words[words.indexOf("--superproject") + 1] ?? "?";
      if (background.has(slug)) {
        say(`live sync of ${slug} already runs in this shell; \`turn-off-sync ${slug}\` stops it\n`);
        return;
      }
      const done = run().finally(() => {
        background.delete(slug);
        if (!leaving) prompt();
      });
      background.set(slug, { controller, done });
      return;
    }
    // A foreground command may ask questions on the terminal itself: the shell lets go of
    // the input meanwhile (typed-ahead lines wait in it), and Ctrl+C reaches it as SIGINT.
    foreground = controller;
    rl.pause();
    if (terminal) io.input.setRawMode?.(false);
    try {
      await run();
    } finally {
      foreground = undefined;
      if (terminal) io.input.setRawMode?.(true);
      if (!inputEnded) rl.resume();
    }
  }
}
