/**
 * `cws shell` as a person uses it, through the real launcher in a child process with a local
 * server: type-ahead, live sync in the background of the prompt, and Ctrl+C stopping it cleanly.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { REPO_ROOT } from "./helpers/sshd.ts";

const CWS = path.join(REPO_ROOT, "bin", "cws.mjs");
const CWS_SERVER = path.join(REPO_ROOT, "bin", "cws-server.mjs");
const NODE = path.join(REPO_ROOT, "node_modules", ".bin", "node");

function run(bin: string, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(NODE, [bin, ...args], { env, timeout: 60_000 }, (error, stdout, stderr) => (error ? reject(new Error(`${args.join(" ")}: ${stderr}`)) : resolve(stdout)));
  });
}

/** A device enrolled on a local server, with one superproject bound to a folder. */
async function device(t: { after(fn: () => Promise<void>): void }) {
  const dir = await mkdtemp(path.join(os.tmpdir(), "cws-shell-"));
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: dir, CWS_KEEP_SESSION: "0" };
  const data = path.join(dir, "data");
  await writeFile(path.join(dir, "pass"), "a long passphrase\n");
  await run(CWS_SERVER, ["init", "--data", data, "--passphrase-file", path.join(dir, "pass")], env);
  t.after(async () => {
    await run(CWS_SERVER, ["stop", "--data", data], env).catch(() => "");
    await rm(dir, { recursive: true, force: true });
  });
  await run(CWS, ["enroll-device", "--server-data", data, "--passphrase-file", path.join(dir, "pass"), "--device-name", "laptop"], env);
  const root = path.join(dir, "notes");
  await mkdir(root);
  await writeFile(path.join(root, "a.md"), "# a\n");
  await run(CWS, ["create-superproject", "notes", "--root", root, "--no-codex"], env);
  await run(CWS, ["sync", "notes"], env);
  return { env, root };
}

/** A running shell whose output can be waited on. */
function shell(env: NodeJS.ProcessEnv) {
  const child: ChildProcessWithoutNullStreams = spawn(NODE, [CWS, "shell"], { env, stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  const waiters: Array<() => void> = [];
  const poke = () => waiters.splice(0).forEach((w) => w());
  child.stdout.on("data", (piece: Buffer) => { stdout += piece.toString(); poke(); });
  child.stderr.on("data", (piece: Buffer) => { stderr += piece.toString(); poke(); });
  const exited = new Promise<number | null>((resolve) => child.on("close", (code) => { poke(); resolve(code); }));
  return {
    child,
    exited,
    out: () => stdout,
    err: () => stderr,
    /** Resolves once stdout, after `from`, matches `pattern`. */
    async until(pattern: RegExp, from = 0): Promise<number> {
      for (;;) {
        const at = stdout.slice(from).search(pattern);
        if (at >= 0) return from + at;
        if (child.exitCode !== null) throw new Error(`shell exited before ${pattern}: ${stdout}\n${stderr}`);
        await new Promise<void>((resolve) => waiters.push(resolve));
      }
    },
  };
}

test("shell: lines typed ahead run in order, and the end of input ends the shell without a use-after-close error", async (t) => {
  const { env } = await device(t);
  const sh = shell(env);
  sh.child.stdin.end("status\nno-such-command\nstatus\n");
  assert.equal(await sh.exited, 0, sh.err());
  assert.equal(sh.out().match(/device: laptop/g)?.length, 2, sh.out());
  assert.match(sh.err(), /unknown command 'no-such-command'/);
  assert.doesNotMatch(sh.err(), /ERR_USE_AFTER_CLOSE|at .*\(/);
});

test("shell: live sync runs in the background while the prompt takes commands, and Ctrl+C stops it with the lease released", async (t) => {
  const { env, root } = await device(t);
  const sh = shell(env);
  sh.child.stdin.write("turn-on-sync notes --quiet-ms 50\n");
  const on = await sh.until(/live sync of notes is on/);
  sh.child.stdin.write("status\n");
  const held = await sh.until(/lease: this device live-syncs notes/, on);
  await sh.until(/cws> /, held);
  // A change made meanwhile is pushed by the background live sync.
  await writeFile(path.join(root, "b.md"), "# b\n");
  const pushed = await sh.until(/pushed 1 files/, held);
  sh.child.kill("SIGINT");
  const stopped = await sh.until(/live sync stopped; lease released/, pushed);
  sh.child.stdin.write("status\n");
  await sh.until(/lease: free/, stopped);
  sh.child.stdin.end("exit\n");
  assert.equal(await sh.exited, 0, sh.err());
  assert.doesNotMatch(sh.err(), /ERR_USE_AFTER_CLOSE/);
});
