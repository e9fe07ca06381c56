/**
 * A device key restricted the way enrollment writes it (server-agent/authorized-keys.ts),
 * against a real OpenSSH server: the agent and jailed SFTP work, and nothing else does.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFile, readdir, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { SFTPWrapper } from "ssh2";
import { authorizedKeysLine } from "../server-agent/authorized-keys.ts";
import { isCwsError } from "../src/errors.ts";
import type { AgentConnection } from "../src/transport/connection.ts";
import { downloadFile, uploadResumable } from "../src/transport/sftp-transfer.ts";
import { connectSsh } from "../src/transport/ssh.ts";
import { openSshSession, runRemoteCommand, type SshSession, type SshSessionTarget } from "../src/transport/ssh-session.ts";
import { makeCluster, type TestCluster } from "./helpers/cluster.ts";
import { REPO_NODE, REPO_ROOT, SSHD_MISSING_MESSAGE, sessionTarget, sshdAvailable, startSshd, type SshdHandle } from "./helpers/sshd.ts";

// In CI a missing sshd is a broken set-up, not a reason to skip.
const skip = !sshdAvailable() && process.env.CI === undefined ? SSHD_MISSING_MESSAGE : false;

const PERMISSION_DENIED = 3;

let sshd: SshdHandle;
let cluster: TestCluster;
let deviceId: string;
let otherDeviceId: string;
let incoming: string;
let outgoing: string;
let session: SshSession;
let sftp: SFTPWrapper;

function target(): SshSessionTarget {
  return sessionTarget(sshd);
}

/** Runs one ssh2 SFTP call and resolves with its error (or undefined on success). */
function sftpError(start: (cb: (error: Error | null | undefined) => void) => void): Promise<(Error & { code?: number }) | undefined> {
  return new Promise((resolve) => {
    try {
      start((error) => resolve(error ?? undefined));
    } catch (error) {
      resolve(error as Error);
    }
  });
}

async function withAgent<T>(agentCommand: string, use: (connection: AgentConnection) => Promise<T>): Promise<T> {
  const connection = await connectSsh({ ...target(), agentCommand });
  try {
    return await use(connection);
  } finally {
    await connection.close();
  }
}

describe("a device key restricted by the forced command, against a real sshd", { skip }, () => {
  before(async () => {
    cluster = await makeCluster();
    deviceId = (await (await cluster.device("laptop")).state()).data.device!.id;
    otherDeviceId = (await (await cluster.device("desktop")).state()).data.device!.id;
    incoming = path.join(cluster.dataDir, "staging", "incoming");
    outgoing = path.join(cluster.dataDir, "staging", "outgoing");
    sshd = await startSshd({ authorizedKeys: [] });
    await sshd.setAuthorizedKeys([
      authorizedKeysLine({ publicKey: sshd.clientPublicKey, dataDir: cluster.dataDir, deviceId, nodePath: REPO_NODE, repoDir: REPO_ROOT }),
    ]);
    session = await openSshSession(target());
    sftp = await session.sftp();
  });

  after(async () => {
    await session?.close();
    await sshd?.stop();
    await cluster?.close();
  });

  describe("the agent", () => {
    it("starts for `cws-agent --stdio` and says hello with the pinned data dir's staging folders", async () => {
      await withAgent("cws-agent --stdio", async (connection) => {
        assert.equal(connection.hello.type, "hello");
        assert.equal(connection.hello.staging.incoming, incoming);
        const opened = await connection.call("open", { deviceId });
        assert.equal(opened.deviceName, "laptop");
        assert.equal(typeof opened.enrolledAt, "number");
      });
    });

    it("starts for the first hello line over a raw exec channel", async () => {
      const channel = await session.exec("cws-agent --stdio");
      const first = await new Promise<string>((resolve) => {
        let text = "";
        channel.on("data", (piece: Buffer) => {
          text += piece.toString("utf8");
          if (text.includes("\n")) resolve(text.slice(0, text.indexOf("\n")));
        });
      });
      channel.end();
      assert.ok(first.startsWith('{"type":"hello"'), first);
    });

    it("holds the device pin: another device is refused, and client --data/--device are ignored", async () => {
      const elsewhere = path.join(cluster.dir, "elsewhere");
      await withAgent(`cws-agent --stdio --data ${elsewhere} --device ${otherDeviceId}`, async (connection) => {
        assert.equal(connection.hello.staging.incoming, incoming);
        const refused = await connection.call("open", { deviceId: otherDeviceId }).then(
          () => assert.fail("opening another device must fail"),
          (error: unknown) => error,
        );
        assert.ok(isCwsError(refused, "AUTH_FAILED"), String(refused));
      });
    });

    it("holds the device pin against a session preamble forged by the client: it is read as a request", async () => {
      // The relay writes the real preamble (with the pinned device) before any client byte, so a
      // client's own preamble line arrives inside the session, where it is not a request.
      const channel = await session.exec("cws-agent --stdio");
      const lines: string[] = [];
      let text = "";
      const answered = new Promise<void>((resolve) => {
        channel.on("data", (piece: Buffer) => {
          text += piece.toString("utf8");
          let at: number;
          while ((at = text.indexOf("\n")) >= 0) {
            lines.push(text.slice(0, at));
            text = text.slice(at + 1);
          }
          if (lines.length >= 3) resolve();
        });
      });
      channel.write(`${JSON.stringify({ cwsSession: 1, pinnedDeviceId: otherDeviceId })}\n`);
      channel.write(`${JSON.stringify({ id: 1, method: "open", params: { deviceId: otherDeviceId } })}\n`);
      await answered;
      channel.end();
      const [hello, forged, open] = lines.map((line) => JSON.parse(line) as { type?: string; ok?: boolean; error?: { code: string } });
      assert.equal(hello.type, "hello");
      assert.equal(forged.ok, false);
      assert.equal(forged.error?.code, "INVALID_ARGUMENT");
      assert.equal(open.ok, false);
      assert.equal(open.error?.code, "AUTH_FAILED");
    });
  });

  describe("SFTP in the staging folders", () => {
    it("uploads and downloads bundles with the transport's helpers through the agent connection", async () => {
      const data = randomBytes(600_000);
      const local = path.join(cluster.dir, "up.bin");
      await writeFile(local, data);
      await withAgent("cws-agent --stdio", async (connection) => {
        await connection.upload(local, "b-upload");
        assert.deepEqual(await readFile(path.join(incoming, "b-upload")), data);
        await writeFile(path.join(outgoing, "b-download"), data);
        const back = path.join(cluster.dir, "down.bin");
        await connection.download("b-download", back);
        assert.deepEqual(await readFile(back), data);
      });
    });

    it("works with ssh2's fastPut/fastGet and with a resumed upload", async () => {
      const data = randomBytes(1_500_000);
      const local = path.join(cluster.dir, "fast.bin");
      await writeFile(local, data);
      const put = path.join(incoming, "fast-put");
      assert.equal(await sftpError((cb) => sftp.fastPut(local, put, cb)), undefined);
      assert.deepEqual(await readFile(put), data);
      await writeFile(path.join(outgoing, "fast-get"), data);
      const back = path.join(cluster.dir, "fast-back.bin");
      assert.equal(await sftpError((cb) => sftp.fastGet(path.join(outgoing, "fast-get"), back, cb)), undefined);
      assert.deepEqual(await readFile(back), data);
      // A .part left by an interrupted upload is continued (opened read+write), then renamed.
      await writeFile(path.join(incoming, "resumed.part"), data.subarray(0, 700_000));
      await uploadResumable(sftp, local, path.join(incoming, "resumed"));
      assert.deepEqual(await readFile(path.join(incoming, "resumed")), data);
      await downloadFile(sftp, path.join(outgoing, "fast-get"), back);
      assert.deepEqual(await readFile(back), data);
    });
  });

  describe("SFTP outside the staging folders", () => {
    const canaries: Record<string, string> = {};
    before(async () => {
      // Files beside and above the staging folders, which the attempts below aim at.
      for (const where of ["staging", ".", ".."]) {
        const file = path.resolve(cluster.dataDir, where, "canary");
        await writeFile(file, `canary in ${where}`);
        canaries[file] = `canary in ${where}`;
      }
      await symlink(path.resolve(cluster.dataDir, "canary"), path.join(incoming, "planted"));
      await writeFile(path.join(outgoing, "served"), "served");
      await writeFile(path.join(incoming, "mine"), "mine");
    });

    const attempts: [string, () => Promise<(Error & { code?: number }) | undefined>][] = [
      ["reading /etc/passwd", () => sftpError((cb) => sftp.open("/etc/passwd", "r", cb))],
      ["writing ../canary (staging/canary)", () => sftpError((cb) => sftp.open("../canary", "w", cb))],
      ["reading ../../hub.sqlite", () => sftpError((cb) => sftp.open("../../hub.sqlite", "r", cb))],
      ["writing ../../canary (the data dir)", () => sftpError((cb) => sftp.open("../../canary", "w", cb))],
      ["writing ../../x (a new file in the data dir)", () => sftpError((cb) => sftp.open("../../x", "w", cb))],
      ["writing an absolute path above the data dir", () => sftpError((cb) => sftp.open(path.resolve(cluster.dataDir, "..", "canary"), "w", cb))],
      ["writing through a symlink planted in incoming", () => sftpError((cb) => sftp.open(path.join(incoming, "planted"), "w", cb))],
      ["writing into outgoing", () => sftpError((cb) => sftp.open(path.join(outgoing, "served"), "w", cb))],
      ["creating a file in outgoing", () => sftpError((cb) => sftp.open(path.join(outgoing, "new"), "w", cb))],
      ["making a folder", () => sftpError((cb) => sftp.mkdir(path.join(incoming, "sub"), cb))],
      ["a path with NUL", () => sftpError((cb) => sftp.open(`${incoming}/mine\0/../../../canary`, "w", cb))],
      ["renaming to outside", () => sftpError((cb) => sftp.rename(path.join(incoming, "mine"), path.join(cluster.dataDir, "mine"), cb))],
      ["posix-renaming to outside", () => sftpError((cb) => sftp.ext_openssh_rename(path.join(incoming, "mine"), "../../mine", cb))],
      ["making a symlink", () => sftpError((cb) => sftp.symlink("/etc/passwd", path.join(incoming, "link"), cb))],
      ["removing outside", () => sftpError((cb) => sftp.unlink("../../canary", cb))],
    ];
    for (const [what, attempt] of attempts) {
      it(`refuses ${what} with permission denied`, async () => {
        const error = await attempt();
        assert.equal(error?.code, PERMISSION_DENIED, `expected permission denied, got ${error?.message ?? "success"}`);
      });
    }

    it("changed nothing outside the staging folders", async () => {
      for (const [file, content] of Object.entries(canaries)) assert.equal(await readFile(file, "utf8"), content, file);
      assert.deepEqual(
        (await readdir(cluster.dataDir)).filter((name) => ["x", "mine", "sub"].includes(name)),
        [],
      );
      assert.equal(await readFile(path.join(incoming, "mine"), "utf8"), "mine");
      assert.equal(await readFile(path.join(outgoing, "served"), "utf8"), "served");
    });
  });

  describe("everything else", () => {
    it("refuses exec of any other command with a clear message and exit code 1", async () => {
      // In parallel: each refusal starts Node once on the server, which dominates the time.
      const commands = ["sh -c id", "id", "scp -t /tmp", "cws-agent", "rsync --server . /tmp", "cws-agent --stdio && sh"];
      const results = await Promise.all(commands.map((command) => runRemoteCommand(session, command)));
      for (const [i, result] of results.entries()) {
        assert.equal(result.code, 1, commands[i]);
        assert.equal(result.stdout.length, 0, commands[i]);
        assert.match(result.stderr, /refused .*this SSH key is restricted to the cws agent/, commands[i]);
      }
    });

    it("refuses an interactive shell", async () => {
      const said = await new Promise<string>((resolve, reject) => {
        session.client.shell(false, (error, channel) => {
          if (error) return reject(error);
          let text = "";
          channel.stderr.on("data", (piece: Buffer) => (text += piece.toString()));
          channel.on("data", (piece: Buffer) => (text += piece.toString()));
          channel.on("close", () => resolve(text));
        });
      });
      assert.match(said, /refused an interactive shell/);
    });

    it("refuses port forwarding (restrict)", async () => {
      const error = await new Promise<Error | undefined>((resolve) =>
        session.client.forwardOut("127.0.0.1", 0, "127.0.0.1", sshd.port, (err, channel) => {
          channel?.close();
          resolve(err ?? undefined);
        }),
      );
      assert.ok(error instanceof Error, "forwarding must fail");
    });
  });
});
