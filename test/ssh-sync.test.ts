/**
 * cws over a real OpenSSH server (Debian's sshd on 127.0.0.1, its own host key): enrollment
 * through the CLI, a full sync round trip between two devices, the refusals a careful user
 * expects, a dropped connection in the middle of a push, and a live-sync handoff.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readFile, readdir, writeFile, stat } from "node:fs/promises";
import { join, relative } from "node:path";
import { randomBytes } from "node:crypto";
import { agentCommandLine, sshdAvailable, SSHD_MISSING_MESSAGE, startSshd, type SshdHandle, makeClientKey } from "./helpers/sshd.ts";
import { makeCluster, PASSPHRASE, type TestCluster, type TestDevice } from "./helpers/cluster.ts";
import { StateStore, type ServerTarget } from "../src/client/state.ts";
import { enrollDevice } from "../src/client/commands/enroll.ts";
import { attachSuperproject } from "../src/client/commands/superprojects.ts";
import { connectTarget } from "../src/client/connect.ts";
import { syncSuperproject } from "../src/client/sync.ts";
import { runLiveSync } from "../src/client/live-sync.ts";
import { isCwsError } from "../src/errors.ts";

const skip = !sshdAvailable() && !process.env.CI ? SSHD_MISSING_MESSAGE : false;

let sshd: SshdHandle;
let cluster: TestCluster;
let passFile: string;

before(async () => {
  if (skip) return;
  sshd = await startSshd();
  cluster = await makeCluster();
  passFile = join(cluster.dir, "passphrase.txt");
  await writeFile(passFile, `${PASSPHRASE}\n`, { mode: 0o600 });
});
after(async () => {
  await cluster?.close();
  await sshd?.stop();
});

function sshTarget(overrides: Partial<Extract<ServerTarget, { transport: "ssh" }>> = {}): Extract<ServerTarget, { transport: "ssh" }> {
  return {
    transport: "ssh", host: sshd.host, port: sshd.port, user: sshd.user, identityFiles: [sshd.clientKeyPath], identitiesOnly: true,
    useAgents: false, knownHostsPath: sshd.knownHostsPath, agentCommand: agentCommandLine(cluster.dataDir), ...overrides,
  };
}

/** A device enrolled over SSH in-process (device B and the helpers). */
async function sshDevice(name: string): Promise<TestDevice> {
  const home = join(cluster.dir, `home-${name}`);
  await enrollDevice(await StateStore.open(home), { target: sshTarget(), deviceName: name, passphrase: PASSPHRASE });
  return deviceAt(name, home);
}

function deviceAt(name: string, home: string): TestDevice {
  const base = { name, home } as TestDevice;
  return Object.assign(base, {
    state: () => StateStore.open(home),
    async connect() {
      const { connectAsDevice } = await import("../src/client/connect.ts");
      return connectAsDevice(await StateStore.open(home));
    },
    async sync(slug: string) {
      const state = await StateStore.open(home);
      const conn = await base.connect();
      try {
        return await syncSuperproject({ conn, state, slug });
      } finally {
        await conn.close();
      }
    },
  });
}

async function tree(root: string): Promise<Record<string, string>> {
  const result: Record<string, string> = {};
  for (const name of (await readdir(root, { recursive: true })).sort()) {
    const path = join(root, name);
    if ((await stat(path)).isFile()) result[relative(root, path)] = (await readFile(path)).toString("base64");
  }
  return result;
}

test("enroll-device over SSH, then a full sync A → server → B gives byte-identical trees", { skip }, async () => {
  // Device A enrolls through the real CLI, trusting the host key by its fingerprint.
  const emptyKnownHosts = join(cluster.dir, "known_hosts_a");
  await writeFile(emptyKnownHosts, "");
  const homeA = join(cluster.dir, "home-cli-a");
  // Asynchronous on purpose: sshd's log is piped through this process, and a blocking spawn
  // would let that pipe fill and stall sshd's handshakes.
  const { spawn } = await import("node:child_process");
  const cli = (args: string[]) => new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [join(import.meta.dirname, "..", "src", "cli", "cws.mjs"), ...args], { env: { ...process.env, CWS_HOME: homeA, SSH_AUTH_SOCK: "" }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (piece) => { stdout += piece; });
    child.stderr.on("data", (piece) => { stderr += piece; });
    child.on("close", (status) => resolve({ status, stdout, stderr }));
  });
  const enrolled = await cli(["enroll-device", "--host", sshd.host, "--port", String(sshd.port), "--user", sshd.user, "--identity", sshd.clientKeyPath,
    "--known-hosts", emptyKnownHosts, "--trust-host-key", sshd.hostKeyFingerprint, "--agent-command", agentCommandLine(cluster.dataDir),
    "--device-name", "ssh-a", "--passphrase-file", passFile, "--json"]);
  assert.equal(enrolled.status, 0, enrolled.stderr);
  assert.equal(JSON.parse(enrolled.stdout).hostKeyFingerprint, sshd.hostKeyFingerprint);
  assert.match(await readFile(emptyKnownHosts, "utf8"), new RegExp(`\\[127\\.0\\.0\\.1\\]:${sshd.port}`));
  const rootA = await cluster.folder("ssh-a");
  await mkdir(join(rootA, "notes"), { recursive: true });
  for (let i = 0; i < 30; i++) await writeFile(join(rootA, "notes", `n${i}.md`), `# Note ${i}\n${"words ".repeat(100 * i)}\n`);
  await writeFile(join(rootA, "blob.bin"), randomBytes(2_000_000));
  assert.equal((await cli(["create-superproject", "over-ssh", "--root", rootA])).status, 0);
  const syncA = await cli(["sync", "over-ssh", "--json"]);
  assert.equal(syncA.status, 0, syncA.stderr);
  const summaryA = JSON.parse(syncA.stdout);
  assert.equal(summaryA.pushed.files, 31);
  assert.ok(summaryA.wire.sent > 2_000_000, "bundles crossed the SSH connection");

  const b = await sshDevice("ssh-b");
  const rootB = await cluster.folder("ssh-b");
  const conn = await b.connect();
  await attachSuperproject(conn, await b.state(), { slug: "over-ssh", root: rootB });
  await conn.close();
  const pulled = await b.sync("over-ssh");
  assert.equal(pulled.pulled.files, 31);
  assert.deepEqual(await tree(rootB), await tree(rootA));
});

test("a changed host key is refused with both fingerprints", { skip }, async () => {
  const otherKey = await makeClientKey(cluster.dir, "not-the-host-key");
  const wrongKnownHosts = join(cluster.dir, "known_hosts_wrong");
  await writeFile(wrongKnownHosts, `[127.0.0.1]:${sshd.port} ${otherKey.publicKey.split(" ").slice(0, 2).join(" ")}\n`);
  await assert.rejects(connectTarget(sshTarget({ knownHostsPath: wrongKnownHosts })), (error: unknown) => {
    assert.ok(isCwsError(error, "HOST_KEY_MISMATCH"), String(error));
    assert.ok((error as Error).message.includes(sshd.hostKeyFingerprint), "names the presented fingerprint");
    return true;
  });
});

test("an unenrolled device and a wrong secondary passphrase are refused", { skip }, async () => {
  const home = join(cluster.dir, "home-stranger");
  const state = await StateStore.open(home);
  await assert.rejects(enrollDevice(state, { target: sshTarget(), deviceName: "stranger", passphrase: "not the passphrase" }), (error: unknown) => isCwsError(error, "AUTH_FAILED"));
  assert.equal((await StateStore.open(home)).data.device, null, "nothing was recorded");
  await state.update((s) => { s.device = { id: "11111111-2222-4333-8444-555555555555", name: "stranger" }; s.server = sshTarget(); });
  await assert.rejects(deviceAt("stranger", home).connect(), (error: unknown) => isCwsError(error, "NOT_ENROLLED") && /enroll-device/.test((error as Error).message));
});

test("a connection dropped in the middle of a push is resumed without re-sending stored chunks", { skip }, async () => {
  const c = await sshDevice("ssh-c");
  const root = await cluster.folder("ssh-c");
  let conn = await c.connect();
  await conn.call("createSuperproject", { slug: "dropped" });
  await conn.close();
  await (await c.state()).update((s) => { s.superprojects.dropped = { root, base: null, lastSyncAt: null }; });
  for (let i = 0; i < 6; i++) await writeFile(join(root, `part-${i}.bin`), randomBytes(700_000));
  const state = await c.state();
  // The agent dies right after storing its first bundle: the SSH channel closes under the client.
  process.env.CWS_BUNDLE_TARGET_BYTES = "1000000";
  const dropping = await connectTarget(sshTarget({ agentCommand: `CWS_FAULT=agent-after-first-ingest ${agentCommandLine(cluster.dataDir)}` }));
  await dropping.call("open", { deviceId: state.data.device!.id });
  await assert.rejects(syncSuperproject({ conn: dropping, state, slug: "dropped" }), (error: unknown) => isCwsError(error, "CONNECTION_LOST") || isCwsError(error));
  await dropping.close();
  delete process.env.CWS_BUNDLE_TARGET_BYTES;
  conn = await c.connect();
  assert.equal((await conn.call("head", { slug: "dropped" })).snapshot, null, "nothing was committed");
  await conn.close();
  const resumed = await c.sync("dropped");
  assert.equal(resumed.pushed.files, 6);
  assert.ok(resumed.pushed.bytes < 6 * 700_000 - 600_000, `the resumed push sent ${resumed.pushed.bytes} bytes; the first bundle was already stored`);
});

test("handoff over SSH: A live-syncs, turns off; B updates and takes the lease", { skip }, async () => {
  const a = await sshDevice("hand-a");
  const b = await sshDevice("hand-b");
  const rootA = await cluster.folder("hand-a");
  const rootB = await cluster.folder("hand-b");
  let conn = await a.connect();
  await conn.call("createSuperproject", { slug: "ssh-handoff" });
  await conn.close();
  await (await a.state()).update((s) => { s.superprojects["ssh-handoff"] = { root: rootA, base: null, lastSyncAt: null }; });
  conn = await b.connect();
  await attachSuperproject(conn, await b.state(), { slug: "ssh-handoff", root: rootB });
  await conn.close();

  const controller = new AbortController();
  let pushedResolve!: () => void;
  const pushed = new Promise<void>((resolve) => { pushedResolve = resolve; });
  let firstSync!: () => void;
  const synced = new Promise<void>((resolve) => { firstSync = resolve; });
  const liveA = runLiveSync({
    state: await a.state(), slug: "ssh-handoff", connect: () => a.connect(), signal: controller.signal, quietMs: 30, heartbeatMs: 300,
    onEvent: (event) => {
      if (event.type === "synced") firstSync();
      if (event.type === "synced" && event.summary.pushed.files > 0) pushedResolve();
    },
  });
  await synced;
  await writeFile(join(rootA, "from-a.md"), "# written on A while live\n");
  await pushed;
  controller.abort();
  assert.equal((await liveA).released, true);

  const state = await b.state();
  conn = await b.connect();
  try {
    const update = await syncSuperproject({ conn, state, slug: "ssh-handoff", mode: "pull" });
    assert.equal(update.pulled.files, 1);
  } finally {
    await conn.close();
  }
  assert.equal(await readFile(join(rootB, "from-a.md"), "utf8"), "# written on A while live\n");
  const controllerB = new AbortController();
  let startedB!: (token: number) => void;
  const started = new Promise<number>((resolve) => { startedB = resolve; });
  const liveB = runLiveSync({ state: await b.state(), slug: "ssh-handoff", connect: () => b.connect(), signal: controllerB.signal, quietMs: 30, heartbeatMs: 300, onEvent: (e) => { if (e.type === "started") startedB(e.lease.token); } });
  assert.ok((await started) > 0);
  controllerB.abort();
  assert.equal((await liveB).released, true);
});

test("enroll-device --restrict-key locks the device key to cws, and syncs keep working through the forced command", { skip }, async () => {
  const key = await makeClientKey(cluster.dir, "restricted-device");
  const authorizedKeys = join(sshd.dir, "authorized_keys");
  await sshd.setAuthorizedKeys([sshd.clientPublicKey, key.publicKey]);
  const home = join(cluster.dir, "home-restricted");
  const state = await StateStore.open(home);
  const target = sshTarget({ identityFiles: [key.keyPath], agentCommand: agentCommandLine(cluster.dataDir, ["--authorized-keys", authorizedKeys]) });
  const publicKey = (await readFile(`${key.keyPath}.pub`, "utf8")).trim();
  const result = await enrollDevice(state, { target, deviceName: "restricted", passphrase: PASSPHRASE, publicKey, restrictKey: true });
  assert.equal(result.keyInstalled?.file, authorizedKeys);
  const lines = (await readFile(authorizedKeys, "utf8")).trim().split("\n");
  const restricted = lines.find((line) => line.includes(publicKey.split(" ")[1]))!;
  assert.match(restricted, /^restrict,command="exec .*forced-command\.mjs --data .* --device '?[0-9a-f-]{36}'?" ssh-ed25519 /);
  assert.ok(lines.includes(sshd.clientPublicKey), "other keys are kept");
  // The same key now reaches only the agent: a sync round trip works, a shell command does not.
  const device = deviceAt("restricted", home);
  const conn = await device.connect();
  await conn.call("createSuperproject", { slug: "restricted" });
  await conn.close();
  const root = await cluster.folder("restricted");
  await (await device.state()).update((s) => { s.superprojects.restricted = { root, base: null, lastSyncAt: null }; });
  await writeFile(join(root, "note.md"), "# through the forced command\n");
  const summary = await device.sync("restricted");
  assert.equal(summary.pushed.files, 1);
  const { openSshSession, runRemoteCommand } = await import("../src/transport/ssh-session.ts");
  const session = await openSshSession({ host: sshd.host, port: sshd.port, user: sshd.user, identityFiles: [key.keyPath], identitiesOnly: true, agents: false, knownHostsPath: sshd.knownHostsPath });
  try {
    const shell = await runRemoteCommand(session, "id");
    assert.notEqual(shell.code, 0);
    assert.match(shell.stderr, /restricted/);
  } finally {
    await session.close();
  }
});
