import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { chown, mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { once } from "node:events";
import { hashPassphrase, writeServerConfig } from "../server-config.ts";
import { Store } from "../store/store.ts";
import { connectHub } from "./hub-client.ts";
import { startHub } from "./hub-server.ts";
import { isCwsError } from "../../src/errors.ts";

const SERVER_MAIN = join(import.meta.dirname, "..", "server-main.ts");

async function dataDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "cws-hub-lock-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const data = join(dir, "data");
  await mkdir(data, { mode: 0o700 });
  await writeServerConfig(data, { format: 1, passphrase: await hashPassphrase("passphrase-1"), leaseTtlMs: 120_000, hubIdleExitMs: 0 });
  await (await Store.open(data)).close();
  return data;
}

function serve(data: string): { child: ChildProcess; exit: Promise<{ code: number | null; stderr: string }> } {
  const child = spawn(process.execPath, [SERVER_MAIN, "serve", "--data", data, "--idle-exit-ms", "0"], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (piece) => { stderr += piece; });
  // A hub that should have been refused but serves would never exit: give up after 20 s.
  const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  const exit = once(child, "close").then(([code]) => { clearTimeout(timer); return { code: code as number | null, stderr }; });
  return { child, exit };
}

/** The error startHub() fails with, or null when it started (the hub is closed again at once). */
async function startRefused(data: string): Promise<unknown> {
  try {
    const hub = await startHub({ dataDir: data, log: () => {} });
    await hub.close();
    return null;
  } catch (error) {
    return error;
  }
}

/** The pid the running hub reports, waiting (bounded) for it to come up. */
async function hubPid(data: string): Promise<number> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      const hub = await connectHub(data, { autoStart: false });
      try {
        return (await hub.call("ping", {})).pid;
      } finally {
        await hub.close();
      }
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

test("a second hub on a data dir is refused while the first runs, and a killed hub leaves no stale lock", async (t) => {
  const data = await dataDir(t);
  const first = serve(data);
  t.after(() => { first.child.kill("SIGKILL"); });
  assert.equal(await hubPid(data), first.child.pid);

  const second = serve(data);
  const refused = await second.exit;
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /already runs one/);
  const inProcess = await startRefused(data);
  assert.ok(isCwsError(inProcess) && inProcess.code === "ALREADY_EXISTS", String(inProcess));
  assert.equal(await hubPid(data), first.child.pid, "the first hub still serves");

  // A hub whose socket cannot be reached (removed here; another account's 0600 socket looks the
  // same) is still running: the lock, not the socket, keeps a second one out.
  await rm(join(data, "hub.sock"));
  const hidden = await serve(data).exit;
  assert.equal(hidden.code, 1);
  assert.match(hidden.stderr, /already runs one/);

  // SIGKILL leaves the socket file behind, but the kernel drops the lock with the process.
  first.child.kill("SIGKILL");
  await first.exit;
  const third = serve(data);
  t.after(() => { third.child.kill("SIGKILL"); });
  assert.equal(await hubPid(data), third.child.pid);
  third.child.kill("SIGTERM");
  assert.equal((await third.exit).code, 0);
});

test("startHub() refuses a data dir owned by another account", { skip: process.getuid?.() !== 0 && "needs root to give the data dir to another account" }, async (t) => {
  const data = await dataDir(t);
  await chown(data, 65534, 65534);
  const refused = await startRefused(data);
  assert.ok(isCwsError(refused) && /belongs to account 65534/.test(refused.message), String(refused));
});
