/**
 * A throw-away Unix account for tests that log in as someone else over a real sshd (root
 * only): `useradd` with its own HOME and a password, removed again by `remove()`.
 */
import { execFileSync, spawn } from "node:child_process";
import { chmodSync, existsSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { sshdAvailable } from "./sshd.ts";

/** True when this process may create accounts and run sshd for them (root, useradd, OpenSSH). */
export function accountsAvailable(): boolean {
  return process.getuid?.() === 0 && sshdAvailable() && existsSync("/usr/sbin/useradd");
}

export interface TestAccount {
  name: string;
  home: string;
  password: string;
  /** Removes the account and its home; retries while processes it started (a hub) exit. */
  remove(): Promise<void>;
}

/**
 * Lets other accounts reach this checkout, whose code the tests run as a throw-away account or
 * as nobody: a clone inside a private folder (`mktemp -d` makes 0700 ones) would refuse them.
 * Only the search bit for others (o+x, never read) is added, to each folder above the checkout
 * that lacks it. It is not taken away again: test files run in parallel processes, and one
 * could take it from under another still running.
 */
export function letOthersReachCheckout(): void {
  let dir = fileURLToPath(new URL("../..", import.meta.url));
  for (;;) {
    const mode = statSync(dir).mode & 0o7777;
    if ((mode & 0o001) === 0) chmodSync(dir, mode | 0o001);
    const parent = dirname(dir);
    if (parent === dir) return;
    dir = parent;
  }
}

export function createAccount(prefix: string, home: string): TestAccount {
  letOthersReachCheckout();
  const name = `${prefix}${process.pid % 100_000}`;
  const password = `pw-${Math.random().toString(36).slice(2)}`;
  execFileSync("useradd", ["-m", "-d", home, "-s", "/bin/bash", name]);
  execFileSync("chpasswd", { input: `${name}:${password}\n` });
  return {
    name,
    home,
    password,
    async remove() {
      for (let attempt = 0; attempt < 20; attempt++) {
        try {
          execFileSync("userdel", ["-r", name], { stdio: "ignore" });
          return;
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 250));
        }
      }
      execFileSync("userdel", ["-f", "-r", name], { stdio: "ignore" });
    },
  };
}

/** Runs a command; resolves with stdout and stderr together, rejects with them on failure. */
export function runCommand(command: string, args: string[], options: { env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: options.env ?? process.env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (piece: Buffer) => { out += piece.toString(); });
    child.stderr.on("data", (piece: Buffer) => { out += piece.toString(); });
    child.on("error", reject);
    child.on("close", (code) => {
      // npm's engine warnings (the system node is older than the checkout's) are noise here.
      const shown = out.split("\n").filter((line) => !line.startsWith("npm warn EBADENGINE") && !line.startsWith("npm notice")).join("\n");
      if (code === 0) resolve(shown);
      else reject(Object.assign(new Error(`${command} ${args.join(" ")} exited with ${code}:\n${shown}`), { output: shown }));
    });
  });
}
