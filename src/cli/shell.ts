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

export async function runShell(build: () => Command): Promise<void> {
  const rl = createInterface({ input: process.stdin, output: process.stdout, prompt: "cws> ", terminal: process.stdin.isTTY === true });
  // Questions a command asks (the first-join choice) are answered through this interface.
  shareShellInterface(rl);
  process.stdout.write("cws shell: type a command without `cws` (e.g. `status`, `sync my-research`), `help`, or `exit`.\n");
  rl.prompt();
  for await (const line of rl) {
    const trimmed = line.trim();
    if (trimmed === "exit" || trimmed === "quit") break;
    if (trimmed === "") { rl.prompt(); continue; }
    rl.pause();
    try {
      const words = splitCommandLine(trimmed);
      if (words[0] === "shell") throw new CwsError("INVALID_ARGUMENT", "You are already in the cws shell.");
      const program = build();
      program.exitOverride();
      program.configureOutput({ writeErr: (text) => process.stderr.write(text) });
      await program.parseAsync(words[0] === "help" ? ["--help"] : words, { from: "user" });
    } catch (error) {
      // Commander signals --help and --version through exceptions with these codes.
      const code = (error as { code?: string }).code;
      if (code !== "commander.helpDisplayed" && code !== "commander.version" && code !== "commander.help" && !(typeof code === "string" && code.startsWith("commander."))) {
        await reportError(error, false);
      }
    }
    rl.resume();
    rl.prompt();
  }
  shareShellInterface(null);
  rl.close();
}
