/**
 * A real OpenSSH server for tests and the benchmark: `/usr/sbin/sshd -D -e -f CONFIG` on
 * 127.0.0.1 and a free port, running as the current user, with everything it needs (host key,
 * client key pair, authorized_keys, known_hosts, pid file, log) in one temp dir that `stop()`
 * removes again.
 *
 * The remote command environment of sshd has a minimal PATH, so callers pass the agent as an
 * absolute command line; {@link agentCommandLine} builds one that runs the repo's Node 24.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, existsSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import timers from "node:timers/promises";
import type { SshSessionTarget } from "../../src/transport/ssh-session.ts";

// Command-line runs in tests must not leave a kept session behind (src/client/kept-session.ts):
// every process a test starts inherits this. The tests of the kept session turn it on themselves.
process.env.CWS_KEEP_SESSION ??= "0";

/** The sshd binary; an absolute path, because sshd refuses to re-exec itself otherwise. */
export const SSHD_PATH = "/usr/sbin/sshd";

/** The repository root (this file lives in `<repo>/test/helpers`). */
export const REPO_ROOT = path.resolve(import.meta.dirname, "..", "..");

/** The Node 24 binary that `npm ci` puts in the repo (the system node may be older). */
export const REPO_NODE = path.join(REPO_ROOT, "node_modules", ".bin", "node");

export interface SshdHandle {
  /** Always 127.0.0.1. */
  host: string;
  port: number;
  /** The login user: the user running the tests. */
  user: string;
  /** The temp dir holding config, keys, logs; removed by `stop()`. */
  dir: string;
  pid: number;
  /** An unencrypted ed25519 private key that authorized_keys accepts (unless replaced). */
  clientKeyPath: string;
  /** The client key's public line (`ssh-ed25519 AAAA… comment`). */
  clientPublicKey: string;
  /** The server's host public key line (`ssh-ed25519 AAAA…`). */
  hostPublicKey: string;
  /** A known_hosts file with the host key for `[127.0.0.1]:port`. */
  knownHostsPath: string;
  /** The host key's fingerprint as `ssh-keygen -lf` prints it (`SHA256:…`). */
  hostKeyFingerprint: string;
  /** sshd's own log (`-e` output), useful when a test fails. */
  logPath: string;
  /** Stops sshd (SIGTERM, then SIGKILL after a deadline) and removes the temp dir. */
  stop(): Promise<void>;
  /** Replaces authorized_keys with these lines. */
  setAuthorizedKeys(lines: string[]): Promise<void>;
}

export interface StartSshdOptions {
  /**
   * The lines of authorized_keys, e.g. a `command="…",restrict ssh-ed25519 …` line.
   *
   * @default {[clientPublicKey]}
   */
  authorizedKeys?: string[];
  /**
   * Milliseconds to wait for sshd to accept connections.
   *
   * @default {10000}
   */
  startTimeoutMs?: number;
  /** Extra sshd_config lines, appended after the defaults (sshd keeps the first value of a keyword). */
  extraConfig?: string[];
  /**
   * sshd's AuthorizedKeysFile instead of the temp dir's file, e.g. `.ssh/authorized_keys`
   * for each account's own (a test logging in as another account).
   */
  authorizedKeysFile?: string;
  /**
   * Accept passwords (sshd checks them against /etc/shadow itself; root only).
   *
   * @default {false}
   */
  passwordAuthentication?: boolean;
}

/** True when sshd and ssh-keygen are installed, so tests can skip with a clear message. */
export function sshdAvailable(): boolean {
  return existsSync(SSHD_PATH) && whichSync("ssh-keygen") !== undefined;
}

/** The message tests print when they skip because sshd is missing. */
export const SSHD_MISSING_MESSAGE =
  "OpenSSH server not installed: run `apt-get install -y openssh-server` (CI installs it in .ci/run)";

/**
 * Builds the command line that starts the repo's agent with the repo's Node 24, for sshd's
 * minimal PATH. Paths are single-quoted for the remote shell.
 */
export function agentCommandLine(dataDir: string, extraArgs: string[] = []): string {
  const main = path.join(REPO_ROOT, "server-agent", "agent", "main.mjs");
  return [REPO_NODE, main, "--stdio", "--data", dataDir, ...extraArgs].map(shellQuote).join(" ");
}

/** Quotes one word for a POSIX shell. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(word) ? word : `'${word.replaceAll("'", "'\\''")}'`;
}

/**
 * Makes an ed25519 key pair with ssh-keygen in `dir` and returns its paths and public line.
 * A passphrase here is a test fixture, so passing it on ssh-keygen's argv is fine.
 */
export async function makeClientKey(
  dir: string,
  name: string,
  options: { passphrase?: string; type?: "ed25519" | "ecdsa" | "rsa" } = {},
): Promise<{ keyPath: string; publicKey: string }> {
  const { passphrase = "", type = "ed25519" } = options;
  const keyPath = path.join(dir, name);
  const args = ["-q", "-t", type, "-N", passphrase, "-C", `cws-test-${name}`, "-f", keyPath];
  if (type === "rsa") args.push("-b", "2048");
  // A lower bcrypt round count keeps encrypted-key tests fast; the format is unchanged.
  if (passphrase !== "") args.push("-a", "2");
  execFileSync("ssh-keygen", args, { stdio: ["ignore", "ignore", "pipe"] });
  const publicKey = (await readFile(`${keyPath}.pub`, "utf8")).trim();
  return { keyPath, publicKey };
}

/** Asks ssh-keygen for a public key file's SHA256 fingerprint (an independent reference). */
export function sshKeygenFingerprint(publicKeyPath: string): string {
  const out = execFileSync("ssh-keygen", ["-l", "-E", "sha256", "-f", publicKeyPath], { encoding: "utf8" });
  const match = /\b(SHA256:[A-Za-z0-9+/]+)/.exec(out);
  if (match === null) throw new Error(`Cannot read fingerprint from ssh-keygen output: ${JSON.stringify(out)}`);
  return match[1];
}

/** Starts a fresh sshd; see the module comment. */
export async function startSshd(options: StartSshdOptions = {}): Promise<SshdHandle> {
  const { startTimeoutMs = 10_000, extraConfig = [] } = options;
  if (!sshdAvailable()) throw new Error(SSHD_MISSING_MESSAGE);

  const dir = await mkdtemp(path.join(os.tmpdir(), "cws-sshd-"));
  try {
    // sshd's privilege separation needs this directory when it runs as root.
    if (process.getuid?.() === 0) await mkdir("/run/sshd", { recursive: true, mode: 0o755 });

    const hostKeyPath = path.join(dir, "ssh_host_ed25519_key");
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "", "-f", hostKeyPath], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    const hostPublicKey = (await readFile(`${hostKeyPath}.pub`, "utf8")).trim().split(/\s+/).slice(0, 2).join(" ");
    const hostKeyFingerprint = sshKeygenFingerprint(`${hostKeyPath}.pub`);
    const client = await makeClientKey(dir, "client_ed25519");

    const authorizedKeysPath = path.join(dir, "authorized_keys");
    const setAuthorizedKeys = async (lines: string[]): Promise<void> => {
      await writeFile(authorizedKeysPath, lines.map((line) => `${line}\n`).join(""), { mode: 0o600 });
    };
    await setAuthorizedKeys(options.authorizedKeys ?? [client.publicKey]);

    const user = os.userInfo().username;
    const logPath = path.join(dir, "sshd.log");
    const configPath = path.join(dir, "sshd_config");
    const pidPath = path.join(dir, "sshd.pid");
    const knownHostsPath = path.join(dir, "known_hosts");

    // A port picked by the kernel can be taken by someone else before sshd binds it; sshd
    // then exits at once and another port is tried.
    let lastFailure = "";
    for (let attempt = 0; attempt < 3; attempt++) {
      const port = await freePort();
      await writeFile(
        configPath,
        sshdConfig({ port, hostKeyPath, authorizedKeysPath: options.authorizedKeysFile ?? authorizedKeysPath, pidPath, extra: extraConfig, passwords: options.passwordAuthentication ?? false }),
        { mode: 0o600 },
      );
      const started = await launch(configPath, logPath, port, startTimeoutMs);
      if ("failure" in started) {
        lastFailure = started.failure;
        continue;
      }
      const child = started.child;
      await writeFile(knownHostsPath, `[127.0.0.1]:${port} ${hostPublicKey}\n`, { mode: 0o600 });
      let stopped: Promise<void> | undefined;
      return {
        host: "127.0.0.1",
        port,
        user,
        dir,
        pid: child.pid!,
        clientKeyPath: client.keyPath,
        clientPublicKey: client.publicKey,
        hostPublicKey,
        knownHostsPath,
        hostKeyFingerprint,
        logPath,
        setAuthorizedKeys,
        stop() {
          stopped ??= (async () => {
            await terminate(child, 5_000);
            await rm(dir, { recursive: true, force: true });
          })();
          return stopped;
        },
      };
    }
    throw new Error(`Cannot start sshd as it exited during start-up three times: ${lastFailure}`);
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

function sshdConfig(settings: {
  port: number;
  hostKeyPath: string;
  authorizedKeysPath: string;
  pidPath: string;
  extra: string[];
  passwords: boolean;
}): string {
  const pathForAgent = [path.join(REPO_ROOT, "node_modules", ".bin"), "/usr/local/bin", "/usr/bin", "/bin"].join(":");
  return [
    `ListenAddress 127.0.0.1:${settings.port}`,
    `HostKey ${settings.hostKeyPath}`,
    `PidFile ${settings.pidPath}`,
    `AuthorizedKeysFile ${settings.authorizedKeysPath}`,
    // The temp dir is not owned and moded the way sshd's strict checks want.
    "StrictModes no",
    `PasswordAuthentication ${settings.passwords ? "yes" : "no"}`,
    "KbdInteractiveAuthentication no",
    "UsePAM no",
    "PermitRootLogin prohibit-password",
    "PubkeyAuthentication yes",
    "UseDNS no",
    "PrintMotd no",
    "PrintLastLog no",
    "LogLevel VERBOSE",
    "MaxStartups 64:30:128",
    "MaxSessions 32",
    // sshd's default PATH lacks the repo's Node 24; put it first so `node` and the repo's
    // bins resolve in remote commands (tests still pass absolute paths to be explicit).
    `SetEnv PATH=${pathForAgent}`,
    "Subsystem sftp internal-sftp",
    ...settings.extra,
    "",
  ].join("\n");
}

/** Spawns sshd and waits until it logs that it listens and the port accepts a connection. */
async function launch(
  configPath: string,
  logPath: string,
  port: number,
  timeoutMs: number,
): Promise<{ child: ChildProcess } | { failure: string }> {
  const log = createWriteStream(logPath, { flags: "a" });
  const child = spawn(SSHD_PATH, ["-D", "-e", "-f", configPath], { stdio: ["ignore", "ignore", "pipe"] });
  child.stderr!.pipe(log);
  // The test process must not wait for sshd to exit on its own, but sshd must not outlive it
  // either when a test forgets stop() or the runner is interrupted.
  child.unref();
  (child.stderr as unknown as { unref?: () => void }).unref?.();
  const killOnExit = (): void => void child.kill("SIGKILL");
  process.once("exit", killOnExit);
  child.once("exit", () => process.removeListener("exit", killOnExit));

  const exited = new Promise<string>((resolve) => {
    child.once("exit", (code, signal) => resolve(`sshd exited with ${signal ?? `code ${code}`}`));
    child.once("error", (error) => resolve(`sshd could not be started: ${error.message}`));
  });
  const deadline = Date.now() + timeoutMs;
  const abort = new AbortController();
  const ready = (async () => {
    // Polls with a short pause between connection attempts, bounded by the deadline.
    while (Date.now() < deadline) {
      if (await canConnect(port)) return "ready";
      await timers.setTimeout(25, undefined, { signal: abort.signal }).catch(() => undefined);
      if (abort.signal.aborted) return "aborted";
    }
    return `sshd did not accept connections on port ${port} within ${timeoutMs} ms`;
  })();
  const outcome = await Promise.race([ready, exited]);
  abort.abort();
  if (outcome === "ready") return { child };
  child.kill("SIGKILL");
  const logText = await readFile(logPath, "utf8").catch(() => "");
  return { failure: `${outcome}; log tail: ${logText.slice(-2000)}` };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/** A port on 127.0.0.1 that was free a moment ago (bound, then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** SIGTERM, then SIGKILL if the process is still there after `forceKillAfterMs`. */
async function terminate(child: ChildProcess, forceKillAfterMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const cancelTimer = new AbortController();
  const timer = timers
    .setTimeout(forceKillAfterMs, "timeout" as const, { signal: cancelTimer.signal })
    .catch(() => "cancelled" as const);
  const outcome = await Promise.race([exited.then(() => "exited" as const), timer]);
  cancelTimer.abort();
  if (outcome === "timeout") {
    child.kill("SIGKILL");
    await exited;
  }
}

function whichSync(command: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    if (dir !== "" && existsSync(path.join(dir, command))) return path.join(dir, command);
  }
  return undefined;
}

/** Makes a file private (ssh refuses keys readable by others). */
export async function makePrivate(file: string): Promise<void> {
  await chmod(file, 0o600);
}

/**
 * The SSH target of this sshd with its client key, checked against its known_hosts. The
 * developer's own ssh-agent is left out so it never decides the outcome of a test.
 */
export function sessionTarget(sshd: SshdHandle, overrides: Partial<SshSessionTarget> = {}): SshSessionTarget {
  return {
    host: sshd.host,
    port: sshd.port,
    user: sshd.user,
    identityFiles: [sshd.clientKeyPath],
    knownHostsPath: sshd.knownHostsPath,
    agents: false,
    ...overrides,
  };
}
