/**
 * The SSH transport against a real OpenSSH server (test/helpers/sshd.ts): host keys, key and
 * agent authentication, classified failures, SFTP transfers with resume, and the agent over
 * an exec channel.
 */
import assert from "node:assert/strict";
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { isCwsError, type CwsError, type ErrorCode } from "../src/errors.ts";
import { downloadFile, uploadResumable, RESUME_WINDOW_BYTES } from "../src/transport/sftp-transfer.ts";
import { connectSsh } from "../src/transport/ssh.ts";
import { connectHub } from "../server-agent/hub/hub-client.ts";
import { hashPassphrase, writeServerConfig } from "../server-agent/server-config.ts";
import { openSshSession, runRemoteCommand, type SshSessionTarget } from "../src/transport/ssh-session.ts";
import { keyForms } from "../src/transport/ssh2-key-objects.ts";
import {
  agentCommandLine,
  freePort,
  makeClientKey,
  sessionTarget,
  shellQuote,
  SSHD_MISSING_MESSAGE,
  sshdAvailable,
  startSshd,
  type SshdHandle,
} from "./helpers/sshd.ts";

// In CI a missing sshd is a broken set-up, not a reason to skip.
const skip = !sshdAvailable() && process.env.CI === undefined ? SSHD_MISSING_MESSAGE : false;

let sshd: SshdHandle;
let work: string;
/** Server data dirs made by the tests, whose hubs are stopped at the end. */
const dataDirs: string[] = [];

/** A server data dir with its config, ready for the hub a session starts (agent/relay.ts). */
async function serverDataDir(name: string): Promise<string> {
  const dataDir = path.join(work, name);
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  await writeServerConfig(dataDir, { format: 1, passphrase: await hashPassphrase("ssh transport test"), leaseTtlMs: 120_000, hubIdleExitMs: 60_000 });
  dataDirs.push(dataDir);
  return dataDir;
}

function baseTarget(overrides: Partial<SshSessionTarget> = {}): SshSessionTarget {
  return sessionTarget(sshd, overrides);
}

async function rejectsWith(promise: Promise<unknown>, code: ErrorCode): Promise<CwsError> {
  const error = await promise.then(
    async (value) => {
      // A connection that wrongly succeeded must still be closed, or the test run hangs.
      await (value as { close?: () => Promise<void> } | undefined)?.close?.();
      assert.fail(`expected ${code}, but it succeeded`);
    },
    (caught: unknown) => caught,
  );
  assert.ok(isCwsError(error, code), `expected ${code}, got ${String((error as Error)?.stack ?? error)}`);
  return error;
}

describe("SSH transport against a real sshd", { skip }, () => {
  before(async () => {
    sshd = await startSshd();
    work = await mkdtemp(path.join(os.tmpdir(), "cws-ssh-test-"));
  });

  after(async () => {
    await sshd?.stop();
    for (const dataDir of dataDirs) {
      const hub = await connectHub(dataDir, { autoStart: false }).catch(() => null);
      await hub?.call("shutdown", {}).catch(() => {});
      await hub?.close();
    }
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  describe("connecting", () => {
    it("authenticates with a key, checks the host key and runs a command round trip", async () => {
      const stages: string[] = [];
      const session = await openSshSession(baseTarget(), { onProgress: (event) => stages.push(event.stage) });
      try {
        assert.equal(session.hostKey.fingerprint, sshd.hostKeyFingerprint);
        assert.equal(session.hostKey.trustedNow, false);
        const echoed = await runRemoteCommand(session, "echo hello; echo oops >&2; exit 3");
        assert.equal(echoed.stdout.toString(), "hello\n");
        assert.equal(echoed.stderr, "oops\n");
        assert.equal(echoed.code, 3);
        const piped = await runRemoteCommand(session, "cat", { stdin: "round trip\n" });
        assert.equal(piped.stdout.toString(), "round trip\n");
        const { sent, received } = session.counters();
        assert.ok(sent > 1000 && received > 1000, `the wire counters did not move: ${sent}/${received}`);
        assert.deepEqual(stages, ["connecting", "handshake", "authenticating", "ready"]);
      } finally {
        await session.close();
      }
      assert.equal(session.isClosed(), true);
    });

    it("keeps its AES-GCM keys as key objects, after a rekey too, and still round-trips", async () => {
      const session = await openSshSession(baseTarget());
      try {
        // If ssh2 renamed the fields this relies on, packets would still flow, only slower: this notices.
        assert.deepEqual(keyForms(session.client), { encrypt: "KeyObject", decrypt: "KeyObject" });
        // A new key exchange (as OpenSSH starts after its RekeyLimit) makes new cipher objects.
        const rekeyed = new Promise<void>((resolve) => session.client.once("handshake", () => resolve()));
        (session.client as unknown as { _protocol: { rekey(): void } })._protocol.rekey();
        await rekeyed;
        const piped = await runRemoteCommand(session, "cat", { stdin: "after the rekey\n" });
        assert.equal(piped.stdout.toString(), "after the rekey\n");
        assert.deepEqual(keyForms(session.client), { encrypt: "KeyObject", decrypt: "KeyObject" });
      } finally {
        await session.close();
      }
    });

    it("refuses a changed host key, naming both fingerprints and the ssh-keygen -R fix", async () => {
      const other = await makeClientKey(work, "other_host_key");
      const knownHostsPath = path.join(work, "known_hosts_changed");
      await writeFile(knownHostsPath, `[127.0.0.1]:${sshd.port} ${other.publicKey}\n`);
      const error = await rejectsWith(openSshSession(baseTarget({ knownHostsPath })), "HOST_KEY_MISMATCH");
      const otherFingerprint = execFileSync("ssh-keygen", ["-lf", `${other.keyPath}.pub`], { encoding: "utf8" }).split(" ")[1];
      assert.ok(error.message.includes(sshd.hostKeyFingerprint), error.message);
      assert.ok(error.message.includes(otherFingerprint), error.message);
      assert.ok(error.message.includes(`ssh-keygen -R '[127.0.0.1]:${sshd.port}'`), error.message);
    });

    it("refuses an unknown host without a trust-on-first-use callback, showing its fingerprint", async () => {
      const knownHostsPath = path.join(work, "known_hosts_empty");
      const error = await rejectsWith(openSshSession(baseTarget({ knownHostsPath })), "HOST_KEY_MISMATCH");
      assert.equal(error.data?.reason, "unknown");
      assert.ok(error.message.includes(sshd.hostKeyFingerprint), error.message);
      assert.equal(existsSync(knownHostsPath), false, "an unknown key was recorded without consent");
    });

    it("trusts an unknown host on first use when the callback agrees, and records its key", async () => {
      const knownHostsPath = path.join(work, "tofu", "known_hosts");
      const asked: string[] = [];
      const session = await openSshSession(
        baseTarget({ knownHostsPath, trustOnFirstUse: async (fingerprint) => (asked.push(fingerprint), true) }),
      );
      await session.close();
      assert.deepEqual(asked, [sshd.hostKeyFingerprint]);
      assert.equal(session.hostKey.trustedNow, true);
      const again = await openSshSession(baseTarget({ knownHostsPath }));
      await again.close();
      assert.equal(again.hostKey.trustedNow, false);
    });

    it("refuses when the user declines the unknown host key", async () => {
      const knownHostsPath = path.join(work, "declined_known_hosts");
      const error = await rejectsWith(
        openSshSession(baseTarget({ knownHostsPath, trustOnFirstUse: async () => false })),
        "HOST_KEY_MISMATCH",
      );
      assert.equal(error.data?.reason, "declined");
      assert.equal(existsSync(knownHostsPath), false);
    });

    it("uses an encrypted key after asking its passphrase again when the first one is wrong", async () => {
      const encrypted = await makeClientKey(work, "encrypted_key", { passphrase: "correct horse" });
      await sshd.setAuthorizedKeys([sshd.clientPublicKey, encrypted.publicKey]);
      const asked: [string, number][] = [];
      const session = await openSshSession(
        baseTarget({
          identityFiles: [encrypted.keyPath],
          passphrase: async (keyPath, attempt) => {
            asked.push([keyPath, attempt]);
            return attempt === 1 ? "wrong" : "correct horse";
          },
        }),
      );
      await session.close();
      assert.deepEqual(asked, [
        [encrypted.keyPath, 1],
        [encrypted.keyPath, 2],
      ]);
    });

    it("reports AUTH_FAILED listing every credential tried when the server refuses the key", async () => {
      const stranger = await makeClientKey(work, "stranger_key");
      const encrypted = await makeClientKey(work, "unprompted_key", { passphrase: "x" });
      const missing = path.join(work, "no_such_key");
      const error = await rejectsWith(
        openSshSession(baseTarget({ identityFiles: [stranger.keyPath, encrypted.keyPath, missing], password: "nope" })),
        "AUTH_FAILED",
      );
      assert.ok(error.message.includes(`key ${stranger.keyPath}: refused by the server`), error.message);
      assert.ok(error.message.includes(`key ${encrypted.keyPath}: encrypted, and no passphrase prompt`), error.message);
      assert.ok(error.message.includes(`key ${missing}: not found`), error.message);
      assert.ok(error.message.includes("The server accepts: publickey"), error.message);
      assert.ok(!error.message.includes("nope"), "the password leaked into the message");
    });

    it("authenticates through ssh-agent and prefers it over key files", async () => {
      const socketPath = path.join(work, "agent.sock");
      const agent = spawn("ssh-agent", ["-D", "-a", socketPath], { stdio: "ignore" });
      try {
        await waitForSocket(socketPath, agent);
        execFileSync("ssh-add", ["-q", sshd.clientKeyPath], { env: { ...process.env, SSH_AUTH_SOCK: socketPath }, stdio: "ignore" });
        const session = await openSshSession(baseTarget({ identityFiles: [], agents: [path.join(work, "dead.sock"), socketPath] }));
        await session.close();

        // With IdentitiesOnly, agent keys that belong to no configured key file stay unused.
        const stranger = await makeClientKey(work, "agent_stranger_key");
        const error = await rejectsWith(
          openSshSession(baseTarget({ identityFiles: [stranger.keyPath], identitiesOnly: true, agents: [socketPath] })),
          "AUTH_FAILED",
        );
        assert.ok(error.message.includes("no key of the configured key files loaded"), error.message);
      } finally {
        agent.kill("SIGTERM");
      }
    });

    it("reports CONNECTION_LOST with host and port when nothing listens", async () => {
      const port = await freePort();
      const error = await rejectsWith(openSshSession(baseTarget({ port })), "CONNECTION_LOST");
      assert.ok(error.message.includes(`127.0.0.1:${port}`), error.message);
      assert.match(error.message, /refused/);
    });

    it("stops with CANCELLED when the signal aborts during the handshake", async () => {
      const abort = new AbortController();
      await rejectsWith(
        openSshSession(baseTarget(), {
          signal: abort.signal,
          onProgress: (event) => {
            if (event.stage === "handshake") abort.abort();
          },
        }),
        "CANCELLED",
      );
    });

    it("reports CONNECTION_LOST when the host name does not resolve", async () => {
      const error = await rejectsWith(openSshSession(baseTarget({ host: "no-such-host.invalid" })), "CONNECTION_LOST");
      assert.match(error.message, /does not resolve/);
    });
  });

  describe("SFTP transfers", () => {
    const SIZE = 5 * 1024 * 1024;
    let source: string;
    let content: Buffer;

    before(async () => {
      content = randomBytes(SIZE);
      source = path.join(work, "bundle.bin");
      await writeFile(source, content);
    });

    it("uploads and downloads a 5 MiB file byte for byte, reporting progress", async () => {
      const session = await openSshSession(baseTarget());
      try {
        const sftp = await session.sftp();
        const remote = path.join(work, "remote", "bundle.bin");
        await mkdir(path.dirname(remote), { recursive: true });
        const progress: number[] = [];
        const result = await uploadResumable(sftp, source, remote, {
          onProgress: ({ bytes, total }) => {
            assert.equal(total, SIZE);
            progress.push(bytes);
          },
        });
        assert.deepEqual(result, { bytes: SIZE, resumedFrom: 0 });
        assert.ok((await readFile(remote)).equals(content), "the uploaded file differs");
        assert.equal(existsSync(`${remote}.part`), false, "the .part file was left behind");
        assert.ok(progress.length > 1 && progress.every((bytes, i) => i === 0 || bytes > progress[i - 1]));
        assert.equal(progress.at(-1), SIZE);

        const back = path.join(work, "downloaded.bin");
        const downloaded: number[] = [];
        await downloadFile(sftp, remote, back, { onProgress: ({ bytes }) => downloaded.push(bytes) });
        assert.ok((await readFile(back)).equals(content), "the downloaded file differs");
        assert.equal(downloaded.at(-1), SIZE);
        assert.equal(existsSync(`${back}.part`), false);
      } finally {
        await session.close();
      }
    });

    it("resumes an interrupted upload from its .part instead of starting again", async () => {
      const session = await openSshSession(baseTarget());
      try {
        const sftp = await session.sftp();
        const remote = path.join(work, "resume", "bundle.bin");
        await mkdir(path.dirname(remote), { recursive: true });
        // An upload cancelled part way leaves a .part holding a prefix of the file.
        const abort = new AbortController();
        await rejectsWith(
          uploadResumable(sftp, source, remote, {
            signal: abort.signal,
            onProgress: ({ bytes }) => {
              if (bytes >= SIZE / 2) abort.abort();
            },
          }),
          "CANCELLED",
        );
        const partSize = (await stat(`${remote}.part`)).size;
        assert.ok(partSize >= SIZE / 2 && partSize < SIZE, `unexpected .part size ${partSize}`);
        assert.ok((await readFile(`${remote}.part`)).equals(content.subarray(0, partSize)));

        const sentBefore = session.counters().sent;
        const result = await uploadResumable(sftp, source, remote);
        const sent = session.counters().sent - sentBefore;
        assert.equal(result.resumedFrom, Math.max(0, partSize - RESUME_WINDOW_BYTES));
        assert.ok(result.resumedFrom > 0, "the test file is too small to show a resume");
        assert.ok(sent < SIZE - result.resumedFrom + 256 * 1024, `resume re-sent ${sent} bytes`);
        assert.ok((await readFile(remote)).equals(content), "the resumed file differs");
        assert.equal(existsSync(`${remote}.part`), false);
      } finally {
        await session.close();
      }
    });

    it("starts over when the .part is longer than the file", async () => {
      const session = await openSshSession(baseTarget());
      try {
        const sftp = await session.sftp();
        const remote = path.join(work, "stale", "bundle.bin");
        await mkdir(path.dirname(remote), { recursive: true });
        await writeFile(`${remote}.part`, randomBytes(SIZE + 10));
        const result = await uploadResumable(sftp, source, remote);
        assert.equal(result.resumedFrom, 0);
        assert.ok((await readFile(remote)).equals(content));
      } finally {
        await session.close();
      }
    });

    it("fsyncs the uploaded file before its rename, unless the upload need not be durable", async () => {
      const session = await openSshSession(baseTarget());
      try {
        const sftp = await session.sftp();
        // Counts the fsync@openssh.com requests the upload sends, still sending them.
        let fsyncs = 0;
        const fsync = sftp.ext_openssh_fsync.bind(sftp);
        sftp.ext_openssh_fsync = (handle, callback) => {
          fsyncs++;
          return fsync(handle, callback);
        };
        const remote = path.join(work, "durable", "bundle.bin");
        await mkdir(path.dirname(remote), { recursive: true });
        await uploadResumable(sftp, source, remote);
        assert.equal(fsyncs, 1);
        await uploadResumable(sftp, source, `${remote}.2`, { durable: false });
        assert.equal(fsyncs, 1, "a bundle is made durable by the agent's pack, not by its upload");
        assert.ok((await readFile(`${remote}.2`)).equals(content));
      } finally {
        await session.close();
      }
    });

    it("reports NOT_FOUND for a missing remote file", async () => {
      const session = await openSshSession(baseTarget());
      try {
        const sftp = await session.sftp();
        await rejectsWith(downloadFile(sftp, path.join(work, "absent.bin"), path.join(work, "x.bin")), "NOT_FOUND");
        assert.equal(existsSync(path.join(work, "x.bin.part")), false);
      } finally {
        await session.close();
      }
    });
  });

  describe("connectSsh() with the agent", () => {
    it("starts the agent, round-trips a call, and moves bundles through its staging folders", async () => {
      const dataDir = await serverDataDir("agent-data");
      const connection = await connectSsh({ ...baseTarget(), agentCommand: agentCommandLine(dataDir) });
      try {
        assert.equal(connection.hello.magic, "cws-agent");
        // Not enrolled yet: the agent's answer proves the request crossed both ways.
        await rejectsWith(connection.call("listSuperprojects", {}), "NOT_ENROLLED");

        const upload = path.join(work, "up.bin");
        await writeFile(upload, randomBytes(300_000));
        await connection.upload(upload, "b-0001.bundle");
        const landed = path.join(connection.hello.staging.incoming, "b-0001.bundle");
        assert.ok((await readFile(landed)).equals(await readFile(upload)));

        const outgoing = path.join(connection.hello.staging.outgoing, "b-0002.bundle");
        await writeFile(outgoing, randomBytes(200_000));
        const fetched = path.join(work, "fetched.bin");
        await connection.download("b-0002.bundle", fetched);
        assert.ok((await readFile(fetched)).equals(await readFile(outgoing)));

        await assert.rejects(connection.upload(upload, "../escape"), (error) => isCwsError(error, "INVALID_PATH"));
        const { sent, received } = connection.counters();
        assert.ok(sent > 300_000 && received > 200_000, `counters ${sent}/${received}`);
      } finally {
        await connection.close();
        await connection.close();
      }
    });

    it("reports AGENT_MISSING with the --agent-command hint when the command does not exist", async () => {
      const error = await rejectsWith(
        connectSsh({ ...baseTarget(), agentCommand: "/nonexistent/bin/cws-agent --stdio" }),
        "AGENT_MISSING",
      );
      assert.match(error.message, /--agent-command/);
      assert.equal(error.data?.exitCode, 127);
    });

    it("reaches the agent and SFTP through a forced-command key restricted like enrollment's", async () => {
      const dataDir = await serverDataDir("forced-data");
      // SFTP on a forced-command key arrives as the forced command with the subsystem in
      // SSH_ORIGINAL_COMMAND, so the forced command dispatches between the two.
      const dispatcher = path.join(work, "cws-dispatch.sh");
      await writeFile(
        dispatcher,
        [
          "#!/bin/sh",
          'case "$SSH_ORIGINAL_COMMAND" in',
          "  internal-sftp|*/sftp-server) exec /usr/lib/openssh/sftp-server ;;",
          `  *) exec ${agentCommandLine(dataDir)} ;;`,
          "esac",
          "",
        ].join("\n"),
        { mode: 0o755 },
      );
      await sshd.setAuthorizedKeys([`command=${JSON.stringify(shellQuote(dispatcher))},restrict ${sshd.clientPublicKey}`]);
      try {
        const connection = await connectSsh({ ...baseTarget(), agentCommand: "anything: the key forces the command" });
        try {
          const upload = path.join(work, "forced.bin");
          await writeFile(upload, randomBytes(70_000));
          await connection.upload(upload, "forced.bundle");
          assert.ok(existsSync(path.join(connection.hello.staging.incoming, "forced.bundle")));
        } finally {
          await connection.close();
        }
      } finally {
        await sshd.setAuthorizedKeys([sshd.clientPublicKey]);
      }
    });
  });
});

/** Resolves once ssh-agent listens on its socket (it creates it right after start). */
async function waitForSocket(socketPath: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`ssh-agent exited with ${child.exitCode}`);
    const connected = await new Promise<boolean>((resolve) => {
      const socket = net.connect(socketPath);
      socket.once("connect", () => (socket.destroy(), resolve(true)));
      socket.once("error", () => resolve(false));
    });
    if (connected) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`ssh-agent did not listen on ${socketPath} within 5 s`);
}

