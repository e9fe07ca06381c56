/**
 * Asking a person for values, secrets included. Secrets are read with echo off from the
 * terminal, or from a file or standard input for scripts; never from the command line, where
 * they would land in shell history and in every `ps` listing.
 */
import { readFile } from "node:fs/promises";
import { createInterface } from "node:readline";
import { CwsError } from "../errors.ts";

/** Asks a visible question on the terminal; returns the default on an empty answer. */
export async function ask(question: string, defaultValue?: string): Promise<string> {
  if (!process.stdin.isTTY) {
    if (defaultValue !== undefined) return defaultValue;
    throw new CwsError("INVALID_ARGUMENT", `Cannot ask "${question}": no terminal. Pass the value as a flag instead.`);
  }
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await new Promise<string>((resolve) => rl.question(`${question}${defaultValue ? ` [${defaultValue}]` : ""}: `, resolve));
    return answer.trim() === "" ? (defaultValue ?? "") : answer.trim();
  } finally {
    rl.close();
  }
}

/** Asks a yes/no question; without a terminal the answer is `fallback`. */
export async function confirm(question: string, fallback = false): Promise<boolean> {
  if (!process.stdin.isTTY) return fallback;
  const answer = (await ask(`${question} (y/n)`, fallback ? "y" : "n")).toLowerCase();
  return answer === "y" || answer === "yes";
}

/** Reads a secret with echo off. Empty answers are allowed only when `allowEmpty`. */
export async function askSecret(question: string, options: { allowEmpty?: boolean } = {}): Promise<string> {
  if (!process.stdin.isTTY) {
    throw new CwsError("INVALID_ARGUMENT", `Cannot ask for ${question.toLowerCase()}: no terminal. Pass it in a file with the matching --*-file flag.`);
  }
  const stdin = process.stdin;
  process.stderr.write(`${question}: `);
  stdin.setRawMode(true);
  stdin.resume();
  try {
    const value = await new Promise<string>((resolve, reject) => {
      let text = "";
      const onData = (piece: Buffer) => {
        for (const char of piece.toString("utf8")) {
          if (char === "\r" || char === "\n") {
            stdin.off("data", onData);
            resolve(text);
            return;
          }
          if (char === "\u0003") {
            stdin.off("data", onData);
            reject(new CwsError("CANCELLED", "Cancelled"));
            return;
          }
          if (char === "\u007f" || char === "\b") text = text.slice(0, -1);
          else text += char;
        }
      };
      stdin.on("data", onData);
    });
    if (value === "" && !options.allowEmpty) throw new CwsError("INVALID_ARGUMENT", `${question} must not be empty`);
    return value;
  } finally {
    stdin.setRawMode(false);
    stdin.pause();
    process.stderr.write("\n");
  }
}

/** Reads a secret from a file (first line, without its newline); `-` reads standard input. */
export async function readSecretFile(path: string): Promise<string> {
  let text: string;
  try {
    text = path === "-" ? await readStdin() : await readFile(path, "utf8");
  } catch (error) {
    throw new CwsError("INVALID_ARGUMENT", `Cannot read the secret file ${path}: ${(error as Error).message}`);
  }
  const line = text.split(/\r?\n/)[0] ?? "";
  if (line === "") throw new CwsError("INVALID_ARGUMENT", `The secret file ${path} is empty`);
  return line;
}

async function readStdin(): Promise<string> {
  const pieces: Buffer[] = [];
  for await (const piece of process.stdin) pieces.push(piece as Buffer);
  return Buffer.concat(pieces).toString("utf8");
}
