/**
 * The kept session (src/client/kept-session.ts) over a real OpenSSH server: a one-shot
 * `cws sync` starts it, the next syncs go through it and converge with another device, it sees
 * what commands run directly changed, a kept session killed in the middle of a pull leaves the
 * command to finish the sync itself (no temp file left), a stale socket is ignored, it exits
 * by itself after its idle time, its socket admits only its owner, and a live sync stops it.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { agentCommandLine, sshdAvailable, SSHD_MISSING_MESSAGE, startSshd, type SshdHandle } from "./helpers/sshd.ts";
import { makeCluster, PASSPHRASE, REPO, type TestCluster } from "./helpers/cluster.ts";
import { StateStore } from "../src/client/state.ts";
import { enrollDevice } from "../src/client/commands/enroll.ts";
import { attachSuperproject, createSuperproject } from "../src/client/commands/superprojects.ts";
import { connectAsDevice } from "../src/client/connect.ts";
import { syncSuperproject } from "../src/client/sync.ts";
import { runLiveSync } from "../src/client/live-sync.ts";
import { keptLockPath, keptLogPath, keptSessionPid, keptSocketPath } from "../src/client/kept-session-wire.ts";

const skip = !sshdAvailable() && !process.env.CI ? SSHD_MISSING_MESSAGE : false;

let sshd: SshdHandle;
let cluster: TestCluster;

before(async () => {
  if (skip) return;
  sshd = await startSshd();
  cluster = await makeCluster();
});
after(async () => {
  await cluster?.close();
  await sshd?.stop();
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A device enrolled over SSH, with a superproject bound to its own folder. */
async function device(name: string, slug: string, create: boolean): Promise<{ home: string; root: string; cli(args: string[], env?: NodeJS.ProcessEnv): Promise<Run> }> {
  const home = join(cluster.dir, `home-${name}`);
  const state = await StateStore.open(home);
  await enrollDevice(state, {
    target: {
      transport: "ssh", host: sshd.host, port: sshd.port, user: sshd.user, identityFiles: [sshd.clientKeyPath], identitiesOnly: true,
      useAgents: false, knownHostsPath: sshd.knownHostsPath, agentCommand: agentCommandLine(cluster.dataDir),
    },
    deviceName: name,
    passphrase: PASSPHRASE,
  });
  const root = await cluster.folder(name);
  const conn = await connectAsDevice(state);
  try {
    if (create) await createSuperproject(conn, state, { slug, root });
    else await attachSuperproject(conn, state, { slug, root });
  } finally {
    await conn.close();
  }
  const cli = (args: string[], env: NodeJS.ProcessEnv = {}) => new Promise<Run>((resolve) => {
    const child = spawn(process.execPath, [join(REPO, "src", "cli", "cws.mjs"), ...args], {
      env: { ...process.env, CWS_HOME: home, SSH_AUTH_SOCK: "", CWS_KEEP_SESSION: "600", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (piece) => { stdout += piece; });
    child.stderr.on("data", (piece) => { stderr += piece; });
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
  return { home, root, cli };
}

/** Syncs a device in-process, on its own session (never through a kept session). */
async function syncDirectly(home: string, slug: string) {
  const state = await StateStore.open(home);
  const conn = await connectAsDevice(state);
  try {
    return await syncSuperproject({ conn, state, slug });
  } finally {
    await conn.close();
  }
}

/** Waits until `check` holds (a process starting or ending); fails after 30 s. */
async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  for (let waited = 0; waited < 30_000; waited += 50) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.fail(`timed out waiting until ${what}`);
}

async function status(cli: (args: string[]) => Promise<Run>): Promise<{ running: boolean; pid: number | null; status: { syncs: number; idleExitAt: number | null } | null }> {
  const run = await cli(["session", "status", "--json"]);
  assert.equal(run.code, 0, run.stderr);
  return JSON.parse(run.stdout);
}

function json(run: Run): Record<string, any> {
  assert.equal(run.code, 0, `exit ${run.code}: ${run.stderr}${run.stdout}`);
  return JSON.parse(run.stdout);
}

async function leftovers(root: string): Promise<string[]> {
  return (await readdir(root, { recursive: true })).filter((name) => name.endsWith(".cws-tmp"));
}

test("a sync starts the kept session; the next syncs go through it and converge with another device, and it sees direct commands", { skip, timeout: 180_000 }, async () => {
  const a = await device("kept-a", "kept", true);
  const b = await device("kept-b", "kept", false);
  await writeFile(join(a.root, "one.md"), "# one\n");

  const first = json(await a.cli(["sync", "kept", "--json"]));
  assert.equal(first.via, undefined, "the first sync runs in the command");
  await until("the kept session answers", async () => (await status(a.cli)).running);

  // Only this account may connect to it or read its lock.
  assert.equal((await stat(keptSocketPath(a.home))).mode & 0o777, 0o600);
  assert.equal((await stat(keptLockPath(a.home))).mode & 0o777, 0o600);

  await writeFile(join(a.root, "two.md"), "# two\n");
  const second = json(await a.cli(["sync", "kept", "--json"]));
  assert.equal(second.via, "kept-session");
  assert.equal(second.pushed.files, 1);
  assert.equal(second.firstJoin, null);

  // The other device gets both files, changes one, and the kept session pulls the change.
  await syncDirectly(b.home, "kept");
  assert.equal(await readFile(join(b.root, "two.md"), "utf8"), "# two\n");
  await writeFile(join(b.root, "one.md"), "# one, edited on b\n");
  await syncDirectly(b.home, "kept");
  const third = json(await a.cli(["sync", "kept", "--json"]));
  assert.equal(third.via, "kept-session");
  assert.equal(third.pulled.files, 1);
  assert.equal(await readFile(join(a.root, "one.md"), "utf8"), "# one, edited on b\n");

  // A command run directly moves the base; the kept session reads it afresh and finds nothing to do.
  await writeFile(join(b.root, "three.md"), "# three\n");
  await syncDirectly(b.home, "kept");
  const direct = json(await a.cli(["update-from-server", "kept", "--json"], { CWS_KEEP_SESSION: "0" }));
  assert.equal(direct.via, undefined);
  assert.equal(direct.pulled.files, 1);
  const after = json(await a.cli(["sync", "kept", "--json"]));
  assert.equal(after.via, "kept-session");
  assert.deepEqual([after.pushed.files, after.pulled.files, after.conflicts.length], [0, 0, 0]);

  // Text output is the command's own summary.
  const text = await a.cli(["sync", "kept"]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /^kept: now at snapshot \d+\n {2}scanned 3 files/);

  // A binding this device forgot is not the kept session's to sync: the command says so itself.
  assert.equal((await a.cli(["disconnect-superproject", "kept"])).code, 0);
  const forgotten = await a.cli(["sync", "kept"]);
  assert.equal(forgotten.code, 1);
  assert.match(forgotten.stderr, /Superproject kept is not bound to a folder on this device/);

  const stopped = await a.cli(["session", "stop"]);
  assert.match(stopped.stdout, /Kept session \(pid \d+\) stopped/);
  assert.equal((await status(a.cli)).running, false);
  await assert.rejects(stat(keptSocketPath(a.home)), { code: "ENOENT" });
  await assert.rejects(stat(keptLockPath(a.home)), { code: "ENOENT" });
});

test("through the kept session's file watcher, every kind of change is synced, and a sync with no change recalls the folders' listings", { skip, timeout: 180_000 }, async () => {
  const a = await device("watch-a", "watched", true);
  const b = await device("watch-b", "watched", false);
  await mkdir(join(a.root, "notes", "deep"), { recursive: true });
  await mkdir(join(a.root, "configs"), { recursive: true });
  await writeFile(join(a.root, "notes", "deep", "idea.md"), "an idea\n");
  await writeFile(join(a.root, "notes", "plan.md"), "- one\n");
  await writeFile(join(a.root, "configs", "a.json"), "{}\n");
  await writeFile(join(a.root, "gone.md"), "to be deleted\n");
  json(await a.cli(["sync", "watched", "--json"]));
  /** Waits until the kept session is idle: its warm-up and the watcher's set-up are done. */
  const idle = () => until("the kept session is idle", async () => (await status(a.cli)).status?.idleExitAt != null);
  await idle();
  const log = async () => readFile(keptLogPath(a.home), "utf8");
  assert.match(await log(), /watching 4 folder\(s\) of watched, 4 listed/);

  const noop = json(await a.cli(["sync", "watched", "--json"]));
  assert.equal(noop.via, "kept-session");
  assert.match(await log(), /sync of watched: 0 pushed, 0 pulled, \d+ ms \(scan \d+ ms, plan \d+ ms\); folders recalled 4, listed 0\n/);

  // An edit, a new file, a deleted file, a renamed file, a new sub-folder with files.
  await writeFile(join(a.root, "notes", "deep", "idea.md"), "an idea, edited\n");
  await writeFile(join(a.root, "configs", "b.json"), "[]\n");
  await rm(join(a.root, "gone.md"));
  await rename(join(a.root, "notes", "plan.md"), join(a.root, "configs", "plan.md"));
  await mkdir(join(a.root, "fresh", "inner"), { recursive: true });
  await writeFile(join(a.root, "fresh", "inner", "x.md"), "x\n");
  await writeFile(join(a.root, "fresh", "y.md"), "y\n");
  const changed = json(await a.cli(["sync", "watched", "--json"]));
  assert.equal(changed.via, "kept-session");
  // Changed right after a sync, while the kept session sets the new folders' watches up.
  await writeFile(join(a.root, "fresh", "inner", "during-setup.md"), "z\n");
  await rename(join(a.root, "notes", "deep"), join(a.root, "notes", "moved"));
  await idle();
  const next = json(await a.cli(["sync", "watched", "--json"]));
  assert.equal(next.via, "kept-session");

  await syncDirectly(b.home, "watched");
  const files = async (root: string) => (await readdir(root, { recursive: true })).map((name) => name.split("\\").join("/")).sort();
  assert.deepEqual(await files(b.root), await files(a.root));
  assert.deepEqual(await files(b.root), [
    "configs", "configs/a.json", "configs/b.json", "configs/plan.md", "fresh", "fresh/inner", "fresh/inner/during-setup.md", "fresh/inner/x.md", "fresh/y.md",
    "notes", "notes/moved", "notes/moved/idea.md",
  ]);
  assert.equal(await readFile(join(b.root, "notes", "moved", "idea.md"), "utf8"), "an idea, edited\n");
  const quiet = json(await a.cli(["sync", "watched", "--json"]));
  assert.deepEqual([quiet.pushed.files, quiet.pushed.deleted, quiet.pulled.files], [0, 0, 0]);
  assert.equal((await a.cli(["session", "stop"])).code, 0);
});

test("a kept session killed in the middle of a pull: the command runs the sync itself, leaves no temp file, and the next sync converges", { skip, timeout: 180_000 }, async () => {
  const a = await device("killed-a", "killed", true);
  const b = await device("killed-b", "killed", false);
  await writeFile(join(a.root, "start.md"), "# start\n");
  json(await a.cli(["sync", "killed", "--json"], { CWS_KEEP_SESSION: "0" }));
  await syncDirectly(b.home, "killed");
  for (let i = 0; i < 6; i++) await writeFile(join(b.root, `from-b-${i}.md`), `# from b ${i}\n`);
  await syncDirectly(b.home, "killed");

  // A kept session whose pull kills itself halfway through renaming its files into place.
  const keeper = spawn(process.execPath, [join(REPO, "src", "cli", "cws.mjs"), "session", "run"], {
    env: { ...process.env, CWS_HOME: a.home, SSH_AUTH_SOCK: "", CWS_KEEP_SESSION: "600", CWS_FAULT: "client-pull-mid-rename" },
    stdio: "ignore",
  });
  const exited = new Promise<NodeJS.Signals | null>((resolve) => keeper.on("exit", (_code, signal) => resolve(signal)));
  await until("the kept session answers", async () => (await status(a.cli)).running);

  const run = await a.cli(["sync", "killed", "--json"]);
  assert.equal(await exited, "SIGKILL");
  assert.match(run.stderr, /the kept session of this device stopped during the sync; running the sync here/);
  const result = json(run);
  assert.equal(result.via, undefined, "the command ran the sync itself");
  for (let i = 0; i < 6; i++) assert.equal(await readFile(join(a.root, `from-b-${i}.md`), "utf8"), `# from b ${i}\n`);
  assert.deepEqual(await leftovers(a.root), []);

  // The command started a new kept session over the dead one's socket and lock.
  await until("a new kept session answers", async () => (await status(a.cli)).running);
  const next = json(await a.cli(["sync", "killed", "--json"]));
  assert.equal(next.via, "kept-session");
  assert.deepEqual([next.pushed.files, next.pulled.files, next.conflicts.length], [0, 0, 0]);
  assert.equal((await a.cli(["session", "stop"])).code, 0);
});

test("a stale socket is ignored, and a kept session exits by itself after its idle time", { skip, timeout: 180_000 }, async () => {
  const a = await device("idle-a", "idle", true);
  await writeFile(join(a.root, "note.md"), "# note\n");
  // A socket and a lock left by a process that died: something listened there, then was killed.
  const holder = spawn(process.execPath, ["-e", `require("node:net").createServer().listen(process.argv[1], () => process.stdout.write("up\\n"))`, keptSocketPath(a.home)], { stdio: ["ignore", "pipe", "ignore"] });
  await new Promise((resolve) => holder.stdout.once("data", resolve));
  holder.kill("SIGKILL");
  await new Promise((resolve) => holder.on("exit", resolve));
  await writeFile(keptLockPath(a.home), `${holder.pid}\n`);
  assert.ok((await stat(keptSocketPath(a.home))).isSocket());

  const first = json(await a.cli(["sync", "idle", "--json"], { CWS_KEEP_SESSION: "1" }));
  assert.equal(first.via, undefined);
  assert.equal(first.pushed.files, 1);
  // With an idle time of one second the session may start and end between two looks of a
  // `cws session status` (a process of its own) on a loaded machine, so its log is the witness:
  // "started" is written once it listens on the socket the dead process left.
  const logPath = join(a.home, "logs", "kept-session.log");
  await until("the kept session started and exited after its idle second", async () => /kept session stopped: no request for 1 s/.test(await readFile(logPath, "utf8").catch(() => "")));
  const started = /kept session started \(pid (\d+)\)/.exec(await readFile(logPath, "utf8"));
  assert.ok(started !== null && Number(started[1]) !== holder.pid, "the kept session did not take over the stale socket");
  await until("the kept session's lock is released", async () => (await keptSessionPid(a.home)) === null);
  await assert.rejects(stat(keptSocketPath(a.home)), { code: "ENOENT" });

});

test("a live sync starting on this device stops the kept session first, and a sync of that superproject then goes to the live sync", { skip, timeout: 180_000 }, async () => {
  const a = await device("live-a", "live", true);
  await writeFile(join(a.root, "note.md"), "# note\n");
  json(await a.cli(["sync", "live", "--json"]));
  await until("the kept session answers", async () => (await status(a.cli)).running);
  const keptPid = await keptSessionPid(a.home);

  const stop = new AbortController();
  const state = await StateStore.open(a.home);
  let started!: () => void;
  const startedLive = new Promise<void>((resolve) => { started = resolve; });
  const live = runLiveSync({ state, slug: "live", signal: stop.signal, connect: () => connectAsDevice(state), quietMs: 50, onEvent: (event) => { if (event.type === "started") started(); } });
  try {
    await startedLive;
    // It answered its last request (the stop) just before it exited.
    assert.equal((await status(a.cli)).running, false, "the kept session stopped before the lease was taken");
    assert.ok(keptPid !== null);
    await until("the kept session's process is gone", async () => !(await processAlive(keptPid)));
    assert.match(await readFile(join(a.home, "logs", "kept-session.log"), "utf8"), /kept session stopped: asked to stop/);

    await writeFile(join(a.root, "second.md"), "# second\n");
    const handed = json(await a.cli(["sync", "live", "--json"]));
    assert.equal(handed.via, "live-sync");
  } finally {
    stop.abort();
  }
  assert.equal((await live).stoppedBy, "interrupt");
});

async function processAlive(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
