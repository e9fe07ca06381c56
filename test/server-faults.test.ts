/**
 * The server's side of issue 11, finding 5, with real failures: a real full disk (a small
 * tmpfs as the server's data dir), real symlinks planted in staging, real agent processes.
 * Each ends in one sentence with the next step, never in a stack trace; nothing a failure
 * leaves in staging outlives the next session; INTERNAL names a log that exists.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { access, mkdir, readdir, readFile, rename, rm, symlink, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { after, before, describe, it } from "node:test";
import { isCwsError } from "../src/errors.ts";
import { openRpc } from "../src/transport/rpc-client.ts";
import { AGENT_MAGIC } from "../src/version.ts";
import { agentLogPath } from "../server-agent/agent/agent-log.ts";
import { isDiskFull } from "../server-agent/failures.ts";
import { DatabaseSync } from "node:sqlite";
import { makeCluster, PASSPHRASE, stopHub, type TestCluster } from "./helpers/cluster.ts";
import { agentCommandLine, sshdAvailable, SSHD_MISSING_MESSAGE, startSshd, type SshdHandle } from "./helpers/sshd.ts";
import { StateStore } from "../src/client/state.ts";
import { enrollDevice } from "../src/client/commands/enroll.ts";
import { createSuperproject } from "../src/client/commands/superprojects.ts";
import { connectAsDevice } from "../src/client/connect.ts";
import { syncSuperproject } from "../src/client/sync.ts";
import { oneSentence } from "./helpers/one-sentence.ts";
import { verifyStore } from "./helpers/verify-store.ts";

const exists = (path: string) => access(path).then(() => true, () => false);
const STACK_LINE = /\n\s+at .*:\d+/;

/**
 * A cluster whose server data dir is a 3 MB tmpfs (a real ENOSPC, from the kernel), made
 * before the suite and unmounted and removed after it.
 */
function clusterOnSmallDisk(): () => TestCluster {
  let cluster: TestCluster | undefined;
  let mounted = false;
  before(async () => {
    cluster = await makeCluster();
    const data = cluster.dataDir;
    execFileSync("cp", ["-a", data, `${data}.orig`]);
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs", data]);
    mounted = true;
    execFileSync("cp", ["-a", `${data}.orig/.`, `${data}/`]);
  });
  after(async () => {
    if (cluster === undefined) return;
    await stopHub(cluster.dataDir);
    if (mounted) execFileSync("umount", ["-l", cluster.dataDir]);
    await cluster.close();
  });
  return () => cluster!;
}

const NOT_ROOT = process.getuid?.() !== 0 ? "mounting a tmpfs needs root" : false;

describe("a full server disk", { skip: NOT_ROOT }, () => {
  const onDisk = clusterOnSmallDisk();

  it("ends each sync in one sentence, leaves nothing in staging, and the next sync after freeing space lands", async () => {
    const cluster = onDisk();
    const { a, b, rootA, rootB } = await cluster.pair("full");
    // One file larger than the disk (its upload fails) and, in a second try, one that uploads
    // but cannot be ingested into a pack (both copies do not fit).
    for (const size of [5_000_000, 1_700_000]) {
      await writeFile(join(rootA, "big.bin"), randomBytes(size));
      for (let attempt = 0; attempt < 2; attempt++) {
        const run = await a.cli(["sync", "full"]);
        assert.equal(run.code, 1, `${size}: ${run.stdout}${run.stderr}`);
        assert.doesNotMatch(run.stderr, STACK_LINE);
        assert.doesNotMatch(run.stderr, /ENOSPC|copyfile|unexpected failure/);
        assert.match(oneSentence(run), /^cws: The server's disk is full: .*Free space on the server .* and sync again\.$/);
        assert.deepEqual(await readdir(join(cluster.dataDir, "staging", "incoming")), [], `${size}: a failed upload stayed in staging`);
      }
    }
    await verifyStore(cluster.dataDir);
    // The hub's own writes fail the same way: SQLite's "database or disk is full" is a full
    // disk to the hub too (failures.ts), not an INTERNAL.
    const probe = new DatabaseSync(join(cluster.dataDir, "probe.sqlite"));
    let full: unknown;
    try {
      probe.exec("CREATE TABLE t (b BLOB)");
      for (let i = 0; i < 1000 && full === undefined; i++) {
        try {
          probe.prepare("INSERT INTO t VALUES (?)").run(randomBytes(256 * 1024));
        } catch (error) {
          full = error;
        }
      }
    } finally {
      probe.close();
      await rm(join(cluster.dataDir, "probe.sqlite"), { force: true });
    }
    assert.ok(isDiskFull(full), `not read as a full disk: ${String(full)}`);
    execFileSync("mount", ["-o", "remount,size=64m", cluster.dataDir]);
    const ok = await a.cli(["sync", "full"]);
    assert.equal(ok.code, 0, ok.stderr);
    await b.sync("full");
    assert.deepEqual(await readFile(join(rootB, "big.bin")), await readFile(join(rootA, "big.bin")));
    await verifyStore(cluster.dataDir);
  });
});

describe("a full server disk over SSH (OpenSSH's SFTP server says only \"Failure\")", { skip: NOT_ROOT || (!sshdAvailable() ? SSHD_MISSING_MESSAGE : false) }, () => {
  const onDisk = clusterOnSmallDisk();
  let sshd: SshdHandle;
  before(async () => { sshd = await startSshd(); });
  after(async () => { await sshd?.stop(); });

  it("ends the sync with DISK_FULL and removes the part upload", async () => {
    const cluster = onDisk();
    const home = join(cluster.dir, "home-ssh");
    const target = {
      transport: "ssh" as const, host: sshd.host, port: sshd.port, user: sshd.user, identityFiles: [sshd.clientKeyPath], identitiesOnly: true,
      useAgents: false, knownHostsPath: sshd.knownHostsPath, agentCommand: agentCommandLine(cluster.dataDir),
    };
    const state = await StateStore.open(home);
    await enrollDevice(state, { target, deviceName: "ssh-full", passphrase: PASSPHRASE });
    const root = await cluster.folder("ssh-full");
    const conn = await connectAsDevice(await StateStore.open(home));
    try {
      await createSuperproject(conn, await StateStore.open(home), { slug: "ssh-full", root });
    } finally {
      await conn.close();
    }
    await writeFile(join(root, "big.bin"), randomBytes(5_000_000));
    const session = await connectAsDevice(await StateStore.open(home));
    try {
      await assert.rejects(syncSuperproject({ conn: session, state: await StateStore.open(home), slug: "ssh-full" }), (error: unknown) => {
        assert.ok(isCwsError(error, "DISK_FULL"), String(error));
        assert.match((error as Error).message, /^The server's disk is full: .* Free space on the server .* and sync again\.$/);
        return true;
      });
    } finally {
      await session.close();
    }
    assert.deepEqual(await readdir(join(cluster.dataDir, "staging", "incoming")), []);
  });
});

describe("the agent's answers to what a client or an intruder in staging can do", () => {
  let cluster: TestCluster;
  before(async () => { cluster = await makeCluster(); });
  after(async () => { await cluster.close(); });

  it("refuses a symlink planted in staging with INVALID_PATH, removes it and leaves its target alone", async () => {
    const device = await cluster.device("planted");
    const target = join(cluster.dir, "secret.txt");
    await writeFile(target, "not a bundle\n");
    const incoming = join(cluster.dataDir, "staging", "incoming");
    await symlink(target, join(incoming, "push-link.bundle"));
    await mkdir(join(incoming, "push-dir.bundle"));
    const conn = await device.connect();
    try {
      for (const name of ["push-link.bundle", "push-dir.bundle"]) {
        await assert.rejects(conn.call("ingestBundle", { name }), (error: unknown) => {
          assert.ok(isCwsError(error, "INVALID_PATH"), `${name}: ${String(error)}`);
          assert.match((error as Error).message, /not a regular file.*removed/);
          return true;
        });
      }
      await assert.rejects(conn.call("ingestBundle", { name: "push-absent.bundle" }), (error: unknown) => isCwsError(error, "NOT_FOUND"));
    } finally {
      await conn.close();
    }
    assert.deepEqual(await readdir(incoming), []);
    assert.equal(await readFile(target, "utf8"), "not a bundle\n");
  });

  it("answers a real bug with INTERNAL naming the agent log, which exists and holds the detail", async () => {
    const device = await cluster.device("broken");
    const dir = await cluster.folder("broken-root");
    await writeFile(join(dir, "a.md"), "a\n");
    const conn0 = await device.connect();
    await createSuperproject(conn0, await device.state(), { slug: "broken", root: dir });
    await conn0.close();
    await device.sync("broken");
    // Sessions run in the hub, which keeps the manifests it has read: stop it, so the next
    // session's hub must read the head's manifest object, and replace that object by a folder.
    // Reading it then fails (EISDIR), a failure no client input can cause.
    await stopHub(cluster.dataDir);
    const head = (await (await device.state()).binding("broken")).base;
    const probe = await device.connect();
    const { snapshot: headSnapshot } = await probe.call("head", { slug: "broken" });
    await probe.close();
    assert.equal(headSnapshot?.id, head);
    const hash = headSnapshot!.manifestHash;
    const object = join(cluster.dataDir, "store", "objects", hash.slice(0, 2), hash);
    await rename(object, `${object}.moved`);
    await mkdir(object);
    let incident = "";
    try {
      const conn = await device.connect();
      try {
        await assert.rejects(conn.call("fetchManifest", { slug: "broken", snapshotId: headSnapshot!.id }), (error: unknown) => {
          assert.ok(isCwsError(error, "INTERNAL"), String(error));
          const log = agentLogPath(cluster.dataDir);
          assert.ok((error as Error).message.includes(log), (error as Error).message);
          assert.doesNotMatch((error as Error).message, STACK_LINE);
          incident = String((error as { data?: Record<string, unknown> }).data?.incident);
          return true;
        });
      } finally {
        await conn.close();
      }
    } finally {
      await rm(object, { recursive: true, force: true });
      await rename(`${object}.moved`, object);
    }
    const logText = await readFile(agentLogPath(cluster.dataDir), "utf8");
    assert.match(logText, new RegExp(`internal error ${incident} in fetchManifest: Error: EISDIR`));
  });

  it("removes bundles prepared and never released when the session ends", async () => {
    const { a, rootA } = await cluster.pair("unreleased");
    await writeFile(join(rootA, "x.bin"), randomBytes(100_000));
    await a.sync("unreleased");
    const conn = await a.connect();
    const { snapshot } = await conn.call("head", { slug: "unreleased" });
    const { manifest } = await conn.call("fetchManifest", { slug: "unreleased", snapshotId: snapshot!.id });
    const ids = manifest.entries.flatMap((e) => e.chunks.map(([hash, length]) => `${hash}-${length}`));
    const { name } = await conn.call("prepareBundle", { ids });
    const outgoing = join(cluster.dataDir, "staging", "outgoing");
    assert.ok(await exists(join(outgoing, name)));
    await conn.close();
    assert.equal(await exists(join(outgoing, name)), false);
  });

  it("removes staging leftovers of killed sessions by age at the next session, and spares fresh ones", async () => {
    const device = await cluster.device("sweeper");
    const incoming = join(cluster.dataDir, "staging", "incoming");
    const outgoing = join(cluster.dataDir, "staging", "outgoing");
    const old = new Date(Date.now() - 2 * 60 * 60 * 1000);
    const leftovers = [join(incoming, "push-old.bundle"), join(incoming, "push-old.bundle.part"), join(outgoing, "out-old.cwsb"), join(outgoing, "out-old.cwsb.tmp")];
    for (const path of leftovers) {
      await writeFile(path, "left over");
      await utimes(path, old, old);
    }
    const fresh = join(incoming, "push-uploading.bundle.part");
    await writeFile(fresh, "another session's upload under way");
    const conn = await device.connect();
    await conn.call("listSuperprojects", {});
    await conn.close();
    for (const path of leftovers) assert.equal(await exists(path), false, path);
    assert.ok(await exists(fresh));
    await rm(fresh);
  });
});

describe("the client's reading of an agent's hello", () => {
  it("says a protocol sent as a string is malformed, instead of '1 … this client speaks 1'", async () => {
    const input = new PassThrough();
    const output = new PassThrough();
    input.end(`${JSON.stringify({ type: "hello", magic: AGENT_MAGIC, protocol: "1", version: "0.1.0", capabilities: [], staging: { incoming: "/i", outgoing: "/o" } })}\n`);
    await assert.rejects(openRpc({ input, output }), (error: unknown) => {
      assert.ok(isCwsError(error, "PROTOCOL_MISMATCH"));
      assert.match((error as Error).message, /it speaks protocol "1" \(cws "0\.1\.0"\), this client speaks 1 .*the protocol must be a number/);
      return true;
    });
  });
});
