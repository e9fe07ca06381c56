/**
 * One authenticated SSH connection (ssh2 `Client`) with the checks cws needs around it:
 *
 * - the TCP socket is made here, with `setNoDelay(true)` (without it a request/response round
 *   trip took ~44 ms instead of ~0.3 ms on loopback), and handed to ssh2 as `sock`;
 * - the host key is checked against known_hosts; an unknown host is trusted only through the
 *   `trustOnFirstUse` callback (enrollment), which records it; a changed key is refused;
 * - AES-GCM ciphers first (Node's own crypto; ssh2's optional native addon is not built, see
 *   docs/performance.md "The SSH layer" for the measurement behind that choice);
 * - credentials from {@link createSshAuth} (agent, key files, password at enrollment);
 * - every failure becomes a CwsError: CONNECTION_LOST (DNS, refused, timeout, dropped),
 *   HOST_KEY_MISMATCH, AUTH_FAILED, CANCELLED;
 * - counters are the socket's own byte counts: bytes on the wire, encryption included.
 *
 * {@link connectSsh} in ssh.ts builds the agent connection on top of this; tests use
 * {@link runRemoteCommand} for plain commands.
 */
import net from "node:net";
import ssh2 from "ssh2";
import type { ClientChannel, SFTPWrapper } from "ssh2";
import { CwsError, isCwsError } from "../errors.ts";
import type { WireCounters } from "./connection.ts";
import {
  appendKnownHost,
  checkHostKey,
  fingerprintSha256,
  hostKeyFromBlob,
  hostKeyMismatchError,
  hostKeyUnknownError,
  knownAlgorithms,
  readKnownHosts,
  type HostKey,
} from "./known-hosts.ts";
import { createSshAuth, type SshAuthOptions } from "./ssh-auth.ts";
import { useKeyObjects } from "./ssh2-key-objects.ts";

/** Where and how to connect. */
export interface SshSessionTarget {
  host: string;
  port: number;
  user: string;
  /** Key files to try, in order. */
  identityFiles?: readonly string[];
  /** The key files are OpenSSH's defaults (missing ones are not reported). @default {false} */
  defaultIdentityFiles?: boolean;
  /** Offer only the key files' keys, also through agents. @default {false} */
  identitiesOnly?: boolean;
  /** The known_hosts file that is checked and where a newly trusted key is recorded. */
  knownHostsPath: string;
  /** More known_hosts files that are only read (e.g. `~/.ssh/known_hosts2`). */
  extraKnownHostsPaths?: readonly string[];
  /** Record newly trusted hosts hashed, like `HashKnownHosts yes`. @default {false} */
  hashKnownHosts?: boolean;
  /** Agents to ask (see {@link SshAuthOptions.agents}); `false` for none. */
  agents?: readonly string[] | false;
  /** A password (or a prompt for one, asked only once every key was refused), used only at enrollment. */
  password?: SshAuthOptions["password"];
  /** Asks for a key file's passphrase; resolve undefined to skip the key. */
  passphrase?: (keyPath: string, attempt: number) => Promise<string | undefined>;
  /**
   * Asks whether to trust an unknown host's key (shown as `SHA256:…`). Without it an
   * unknown host is refused.
   */
  trustOnFirstUse?: (fingerprint: string, details: { host: string; port: number; algorithm: string }) => Promise<boolean>;
}

/** Stages of connecting, for a progress line. */
export type SshProgressStage = "connecting" | "handshake" | "authenticating" | "ready" | "starting-agent";

export interface SshProgressEvent {
  stage: SshProgressStage;
  /** `user@host:port`. */
  target: string;
}

export interface SshSessionOptions {
  signal?: AbortSignal;
  onProgress?: (event: SshProgressEvent) => void;
  /**
   * Milliseconds for the TCP connection to open.
   *
   * @default {15000}
   */
  connectTimeoutMs?: number;
  /**
   * Milliseconds for the SSH handshake and authentication, not counting time spent waiting
   * for the user at a prompt.
   *
   * @default {30000}
   */
  handshakeTimeoutMs?: number;
  /**
   * Milliseconds between SSH keepalives; a dead peer is noticed after four missed ones.
   *
   * @default {15000}
   */
  keepaliveIntervalMs?: number;
}

/** An open, authenticated SSH connection. */
export interface SshSession {
  readonly client: InstanceType<typeof ssh2.Client>;
  /** The server's host key as checked (and, when `trustedNow`, just recorded). */
  readonly hostKey: { algorithm: string; fingerprint: string; trustedNow: boolean };
  /** How this connection logged in: `publickey` or `agent` (a key), `password` or `keyboard-interactive`. */
  readonly authMethod: string | undefined;
  /** Opens an exec channel running `command` through the user's remote shell. */
  exec(command: string): Promise<ClientChannel>;
  /** The connection's SFTP session, opened on first use and then shared. */
  sftp(): Promise<SFTPWrapper>;
  /** Bytes on the wire (encrypted SSH traffic) in each direction so far. */
  counters(): WireCounters;
  /** True once the connection has closed, for whatever reason. */
  isClosed(): boolean;
  /** Resolves when the connection has closed. */
  readonly closed: Promise<void>;
  /** Ends the connection and waits (bounded) for it to close. Safe to call more than once. */
  close(): Promise<void>;
}

/**
 * Ciphers in order of preference: AES-GCM is hardware-accelerated through Node's OpenSSL;
 * chacha20-poly1305 stays last because without ssh2's native addon it runs in JavaScript.
 */
export const PREFERRED_CIPHERS = [
  "aes128-gcm@openssh.com",
  "aes256-gcm@openssh.com",
  "aes128-ctr",
  "aes192-ctr",
  "aes256-ctr",
  "chacha20-poly1305@openssh.com",
] as const;

/** Host key algorithms ssh2 can verify, modern first; SHA-1 `ssh-rsa` signatures are left out. */
const HOST_KEY_ALGORITHMS = [
  "ssh-ed25519",
  "ecdsa-sha2-nistp256",
  "ecdsa-sha2-nistp384",
  "ecdsa-sha2-nistp521",
  "rsa-sha2-512",
  "rsa-sha2-256",
] as const;

/** Bytes of a remote command's output kept by {@link runRemoteCommand}. */
const MAX_COMMAND_OUTPUT_BYTES = 1024 * 1024;

/**
 * Connects, checks the host key and authenticates.
 *
 * @throws {CwsError} CONNECTION_LOST, HOST_KEY_MISMATCH, AUTH_FAILED or CANCELLED.
 */
export async function openSshSession(target: SshSessionTarget, options: SshSessionOptions = {}): Promise<SshSession> {
  const { signal, onProgress, connectTimeoutMs = 15_000, handshakeTimeoutMs = 30_000, keepaliveIntervalMs = 15_000 } = options;
  const where = `${target.user}@${target.host}:${target.port}`;
  const progress = (stage: SshProgressStage): void => onProgress?.({ stage, target: where });
  if (signal?.aborted) throw cancelled(where);

  const knownLines = await readKnownHosts([target.knownHostsPath, ...(target.extraKnownHostsPaths ?? [])]);

  progress("connecting");
  const sock = await openSocket(target.host, target.port, connectTimeoutMs, signal);
  // Small request/response messages must not wait for Nagle's algorithm.
  sock.setNoDelay(true);
  sock.setKeepAlive(true, keepaliveIntervalMs);
  coalesceWrites(sock);

  const client = new ssh2.Client();
  // Each SSH packet's cipher then starts from a key object instead of importing the key again.
  useKeyObjects(client);
  let failure: CwsError | undefined;
  let hostKey: SshSession["hostKey"] | undefined;
  const fail = (error: CwsError): void => {
    failure ??= error;
  };

  // The handshake deadline pauses while a prompt waits for the user.
  const watchdog = new Watchdog(handshakeTimeoutMs, () => {
    fail(
      new CwsError(
        "CONNECTION_LOST",
        `Cannot connect to ${where} as the SSH handshake did not finish within ${handshakeTimeoutMs} ms: ` +
          `check that the port belongs to an SSH server`,
      ),
    );
    sock.destroy();
  });

  const auth = createSshAuth({
    user: target.user,
    identityFiles: target.identityFiles ?? [],
    defaultIdentityFiles: target.defaultIdentityFiles,
    identitiesOnly: target.identitiesOnly,
    agents: target.agents,
    password: target.password,
    passphrase: target.passphrase,
    onInteraction: (waiting) => watchdog.pause(waiting),
  });

  const verifyHost = async (blob: Buffer): Promise<boolean> => {
    let presented: HostKey;
    try {
      presented = hostKeyFromBlob(blob);
    } catch (error) {
      fail(error as CwsError);
      return false;
    }
    const fingerprint = fingerprintSha256(presented.blob);
    const check = checkHostKey(knownLines, target.host, target.port, presented);
    if (check.status === "match") {
      hostKey = { algorithm: presented.algorithm, fingerprint, trustedNow: false };
      progress("authenticating");
      return true;
    }
    if (check.status === "mismatch") {
      fail(hostKeyMismatchError(target.host, target.port, presented, check));
      return false;
    }
    if (target.trustOnFirstUse === undefined) {
      fail(hostKeyUnknownError(target.host, target.port, presented, target.knownHostsPath));
      return false;
    }
    watchdog.pause(true);
    let trusted: boolean;
    try {
      trusted = await target.trustOnFirstUse(fingerprint, {
        host: target.host,
        port: target.port,
        algorithm: presented.algorithm,
      });
    } finally {
      watchdog.pause(false);
    }
    if (!trusted) {
      fail(
        new CwsError(
          "HOST_KEY_MISMATCH",
          `Cannot connect to ${where} as its host key ${presented.algorithm} ${fingerprint} was not trusted`,
          { data: { host: target.host, port: target.port, presented: fingerprint, reason: "declined" } },
        ),
      );
      return false;
    }
    await appendKnownHost(target.knownHostsPath, target.host, target.port, presented, {
      hashed: target.hashKnownHosts ?? false,
    });
    hostKey = { algorithm: presented.algorithm, fingerprint, trustedNow: true };
    progress("authenticating");
    return true;
  };

  const closed = new Promise<void>((resolve) => client.once("close", () => resolve()));
  let isClosed = false;
  void closed.then(() => {
    isClosed = true;
  });

  const ready = new Promise<void>((resolve, reject) => {
    const onAbort = (): void => {
      fail(cancelled(where));
      sock.destroy();
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    const settle = (error?: CwsError): void => {
      watchdog.stop();
      signal?.removeEventListener("abort", onAbort);
      client.removeListener("ready", onReady);
      client.removeListener("close", onClose);
      if (error === undefined) resolve();
      else reject(error);
    };
    const onReady = (): void => settle();
    const onClose = (): void =>
      settle(failure ?? new CwsError("CONNECTION_LOST", `Cannot connect to ${where} as the server closed the connection during the handshake`));
    client.once("ready", onReady);
    client.once("close", onClose);
    client.on("error", (error: Error & { level?: string; code?: string }) => {
      // An unreachable agent or a failed agent signature only means the next credential is tried.
      if (error.level === "agent") return;
      if (error.level === "client-authentication") {
        fail(auth.failure(target.host, target.port));
      } else if (/too many authentication failures/i.test(error.message)) {
        fail(auth.failure(target.host, target.port, "too many keys offered: set IdentitiesOnly or name one key with --identity"));
      } else {
        fail(connectionError(where, error));
      }
      // The socket closes next; `close` settles with the first failure recorded.
    });
  });

  progress("handshake");
  try {
    client.connect({
      sock,
      username: target.user,
      // The hostVerifier is asynchronous: ssh2 waits for `verify` to be called.
      hostVerifier: ((key: Buffer, verify: (valid: boolean) => void) => {
        verifyHost(key).then(verify, (error: unknown) => {
          fail(isCwsError(error) ? error : new CwsError("INTERNAL", `Cannot check the host key: ${(error as Error).message}`));
          verify(false);
        });
      }) as never,
      authHandler: auth.authHandler,
      algorithms: {
        cipher: [...PREFERRED_CIPHERS] as never,
        serverHostKey: hostKeyOrder(knownAlgorithms(knownLines, target.host, target.port)) as never,
      },
      // Our watchdog replaces ssh2's readyTimeout, which would also run during prompts.
      readyTimeout: 0,
      keepaliveInterval: keepaliveIntervalMs,
      keepaliveCountMax: 4,
    });
  } catch (error) {
    sock.destroy();
    watchdog.stop();
    throw new CwsError("INVALID_ARGUMENT", `Cannot start the SSH connection to ${where}: ${(error as Error).message}`, { cause: error });
  }
  watchdog.start();
  try {
    await ready;
  } catch (error) {
    client.end();
    sock.destroy();
    throw error;
  }
  progress("ready");

  let sftpPromise: Promise<SFTPWrapper> | undefined;
  let closing: Promise<void> | undefined;
  return {
    client,
    hostKey: hostKey!,
    authMethod: auth.acceptedMethod(),
    exec(command) {
      return new Promise((resolve, reject) => {
        if (isClosed) return reject(lostAfterReady(where));
        client.exec(command, (error, channel) => {
          if (error) reject(new CwsError("CONNECTION_LOST", `Cannot run a command on ${where}: ${error.message}`, { cause: error }));
          else resolve(channel);
        });
      });
    },
    sftp() {
      sftpPromise ??= new Promise((resolve, reject) => {
        if (isClosed) return reject(lostAfterReady(where));
        client.sftp((error, sftp) => {
          if (error) {
            sftpPromise = undefined;
            reject(
              new CwsError(
                "CONNECTION_LOST",
                `Cannot open SFTP on ${where}: ${error.message}. Check that the server's sshd_config has a "Subsystem sftp" line`,
                { cause: error },
              ),
            );
          } else resolve(sftp);
        });
      });
      return sftpPromise;
    },
    counters: () => ({ sent: sock.bytesWritten, received: sock.bytesRead }),
    isClosed: () => isClosed,
    closed,
    close() {
      closing ??= (async () => {
        if (isClosed) return;
        client.end();
        const timer = setTimeout(() => sock.destroy(), 5_000);
        await closed;
        clearTimeout(timer);
      })();
      return closing;
    },
  };
}

/** The result of {@link runRemoteCommand}. */
export interface RemoteCommandResult {
  /** The exit code, or null when the command died of a signal or sent no status. */
  code: number | null;
  signal: string | undefined;
  stdout: Buffer;
  stderr: string;
}

/**
 * Runs one command over the session and collects its output (each stream capped at 1 MiB),
 * optionally feeding it `stdin`.
 */
export async function runRemoteCommand(
  session: SshSession,
  command: string,
  options: { stdin?: string | Buffer; signal?: AbortSignal } = {},
): Promise<RemoteCommandResult> {
  const channel = await session.exec(command);
  const stdout: Buffer[] = [];
  let stdoutBytes = 0;
  let stderr = "";
  let code: number | null = null;
  let exitSignal: string | undefined;
  channel.on("data", (piece: Buffer) => {
    if (stdoutBytes < MAX_COMMAND_OUTPUT_BYTES) stdout.push(piece.subarray(0, MAX_COMMAND_OUTPUT_BYTES - stdoutBytes));
    stdoutBytes += piece.length;
  });
  channel.stderr.on("data", (piece: Buffer) => {
    if (stderr.length < MAX_COMMAND_OUTPUT_BYTES) stderr += piece.toString("utf8");
  });
  channel.on("exit", (exitCode: number | null, signalName?: string) => {
    code = exitCode;
    exitSignal = signalName ?? undefined;
  });
  const onAbort = (): void => void channel.close();
  options.signal?.addEventListener("abort", onAbort, { once: true });
  try {
    await new Promise<void>((resolve) => {
      channel.once("close", () => resolve());
      channel.end(options.stdin);
    });
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
  }
  if (options.signal?.aborted) throw new CwsError("CANCELLED", `Cancelled while running a command on the server`);
  return { code, signal: exitSignal, stdout: Buffer.concat(stdout), stderr: stderr.slice(0, MAX_COMMAND_OUTPUT_BYTES) };
}

/** Known key types first, so a server with several host keys presents one we can check. */
function hostKeyOrder(known: string[]): string[] {
  const preferred: string[] = [];
  for (const algorithm of known) {
    // An RSA key is stored as `ssh-rsa` but negotiated as rsa-sha2-512/256.
    const names = algorithm === "ssh-rsa" ? ["rsa-sha2-512", "rsa-sha2-256"] : [algorithm];
    for (const name of names) {
      if ((HOST_KEY_ALGORITHMS as readonly string[]).includes(name) && !preferred.includes(name)) preferred.push(name);
    }
  }
  return [...preferred, ...HOST_KEY_ALGORITHMS.filter((name) => !preferred.includes(name))];
}

/**
 * Hands the kernel everything written to `sock` in one tick in one `writev`. ssh2 writes each
 * SSH packet in three or four pieces (length, ciphertext, tag), and with Nagle's algorithm off
 * each piece was a system call of its own and, on loopback, often a TCP segment of its own: one
 * SFTP write of 255 KiB (eight SSH packets) cost about thirty. The socket is corked at the first
 * write of a tick and uncorked before the event loop goes on, so nothing waits any longer.
 */
export function coalesceWrites(sock: net.Socket): void {
  const write = sock.write.bind(sock);
  let corked = false;
  const uncork = (): void => {
    corked = false;
    sock.uncork();
  };
  sock.write = ((...args: Parameters<typeof write>) => {
    if (!corked) {
      corked = true;
      sock.cork();
      process.nextTick(uncork);
    }
    return write(...args);
  }) as typeof sock.write;
}

function openSocket(host: string, port: number, timeoutMs: number, signal: AbortSignal | undefined): Promise<net.Socket> {
  const where = `${host}:${port}`;
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port });
    const timer = setTimeout(() => {
      cleanup();
      sock.destroy();
      reject(
        new CwsError("CONNECTION_LOST", `Cannot connect to ${where} as it did not answer within ${timeoutMs} ms: check the host, port and firewall`, {
          data: { host, port },
        }),
      );
    }, timeoutMs);
    const onAbort = (): void => {
      cleanup();
      sock.destroy();
      reject(cancelled(where));
    };
    const onError = (error: NodeJS.ErrnoException): void => {
      cleanup();
      reject(connectionError(where, error, { host, port }));
    };
    const onConnect = (): void => {
      cleanup();
      resolve(sock);
    };
    function cleanup(): void {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      sock.removeListener("error", onError);
      sock.removeListener("connect", onConnect);
    }
    signal?.addEventListener("abort", onAbort, { once: true });
    sock.once("error", onError);
    sock.once("connect", onConnect);
  });
}

/** Turns a socket or protocol error into CONNECTION_LOST with the host:port and a next step. */
function connectionError(where: string, error: NodeJS.ErrnoException, data: Record<string, unknown> = {}): CwsError {
  const code = error.code;
  let message: string;
  switch (code) {
    case "ENOTFOUND":
    case "EAI_AGAIN":
    case "EAI_NONAME":
      message = `Cannot connect to ${where} as the host name does not resolve (${code}): check the spelling or your DNS`;
      break;
    case "ECONNREFUSED":
      message = `Cannot connect to ${where} as the connection was refused: is sshd running there, and is the port right?`;
      break;
    case "ETIMEDOUT":
    case "EHOSTUNREACH":
    case "ENETUNREACH":
      message = `Cannot connect to ${where} as it is unreachable (${code}): check the network, host and firewall`;
      break;
    case "ECONNRESET":
    case "EPIPE":
      message = `Cannot talk to ${where} as the connection was reset (${code}): the server or a firewall dropped it; try again`;
      break;
    default:
      message = `Cannot talk to ${where}: ${error.message}`;
  }
  return new CwsError("CONNECTION_LOST", message, { cause: error, data: { ...data, code } });
}

function lostAfterReady(where: string): CwsError {
  return new CwsError("CONNECTION_LOST", `Cannot use the connection to ${where} as it has closed: run the command again`);
}

function cancelled(where: string): CwsError {
  return new CwsError("CANCELLED", `Cancelled while connecting to ${where}`);
}

/** A deadline that can be paused (while the user types) and resumed. */
class Watchdog {
  readonly #timeoutMs: number;
  readonly #onTimeout: () => void;
  #timer: NodeJS.Timeout | undefined;
  #remainingMs: number;
  #startedAt = 0;
  #stopped = false;

  constructor(timeoutMs: number, onTimeout: () => void) {
    this.#timeoutMs = timeoutMs;
    this.#remainingMs = timeoutMs;
    this.#onTimeout = onTimeout;
  }

  start(): void {
    if (this.#stopped || this.#timer !== undefined || this.#timeoutMs <= 0) return;
    this.#startedAt = performance.now();
    this.#timer = setTimeout(() => {
      this.#stopped = true;
      this.#onTimeout();
    }, this.#remainingMs);
  }

  pause(paused: boolean): void {
    if (!paused) return this.start();
    if (this.#timer === undefined) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#remainingMs = Math.max(0, this.#remainingMs - (performance.now() - this.#startedAt));
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
