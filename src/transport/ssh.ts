/**
 * The SSH transport: an {@link AgentConnection} over one SSH connection. The agent runs in an
 * exec channel (`<agentCommand>`, e.g. `cws-agent --stdio`) and speaks the protocol on its
 * stdio; bundles move over SFTP on the same connection, into the staging folders the agent
 * named in its hello.
 *
 *   client                                       server
 *   TCP + SSH handshake, host key, auth   ────▶  sshd
 *   exec "<agentCommand>"                 ────▶  cws-agent --stdio
 *   openRpc(): wait for hello             ◀────  {"type":"hello",…,"staging":{…}}
 *   call()                                ◀───▶  JSON lines
 *   SFTP put  <incoming>/<name>.part → rename <name>; SFTP get <outgoing>/<name>
 *   close(): end stdin, wait for exit status, end the connection
 */
import path from "node:path";
import type { ClientChannel, SFTPWrapper } from "ssh2";
import { CwsError, isCwsError } from "../errors.ts";
import { BundleName } from "../protocol/messages.ts";
import type { AgentConnection, DownloadBytesOptions, TransferOptions } from "./connection.ts";
import { openRpc, type RpcSession } from "./rpc-client.ts";
import { downloadFile, downloadToMemory, uploadResumable, type SftpTransferOptions } from "./sftp-transfer.ts";
import { openSshSession, type SshProgressEvent, type SshSession, type SshSessionTarget } from "./ssh-session.ts";

/** Where the agent is and how to start it, on top of how to reach the server. */
export interface SshTarget extends SshSessionTarget {
  /**
   * The remote command that starts the agent, run by the user's login shell on the server,
   * e.g. `cws-agent --stdio` (or a forced command from authorized_keys, which replaces it).
   */
  agentCommand: string;
}

export interface ConnectSshOptions {
  signal?: AbortSignal;
  /** Told about each stage of connecting (for a progress line). */
  onProgress?: (event: SshProgressEvent) => void;
  /**
   * Milliseconds to wait for the agent's hello.
   *
   * @default {30000}
   */
  helloTimeoutMs?: number;
  /** SFTP tuning; the defaults were measured (see sftp-transfer.ts). */
  transfer?: Pick<SftpTransferOptions, "concurrency" | "chunkSize">;
}

/** What the agent may print on stderr before we stop keeping it. */
const AGENT_STDERR_CAP_BYTES = 64 * 1024;
/** How long close() waits for the agent's exit status and the connection's end. */
const CLOSE_DEADLINE_MS = 5_000;

/**
 * Connects, authenticates, starts the agent and waits for its hello.
 *
 * @throws {CwsError} CONNECTION_LOST, HOST_KEY_MISMATCH, AUTH_FAILED, AGENT_MISSING,
 *   PROTOCOL_MISMATCH or CANCELLED.
 */
export async function connectSsh(target: SshTarget, options: ConnectSshOptions = {}): Promise<AgentConnection> {
  const { signal, onProgress, helloTimeoutMs = 30_000, transfer = {} } = options;
  const where = `${target.user}@${target.host}:${target.port}`;
  const session = await openSshSession(target, { signal, onProgress });
  let agent: StartedAgent;
  try {
    onProgress?.({ stage: "starting-agent", target: where });
    agent = await startAgent(session, target.agentCommand, { signal, helloTimeoutMs, where });
  } catch (error) {
    await session.close();
    throw error;
  }
  return new SshAgentConnection(session, agent, transfer, where);
}

interface StartedAgent {
  rpc: RpcSession;
  channel: ClientChannel;
  /** Resolves with the exit status once the channel has closed. */
  exited: Promise<{ code: number | null; signal: string | undefined }>;
  stderr: () => string;
}

async function startAgent(
  session: SshSession,
  command: string,
  options: { signal: AbortSignal | undefined; helloTimeoutMs: number; where: string },
): Promise<StartedAgent> {
  const channel = await session.exec(command);
  let stderr = "";
  channel.stderr.on("data", (piece: Buffer) => {
    if (stderr.length < AGENT_STDERR_CAP_BYTES) stderr += piece.toString("utf8").slice(0, AGENT_STDERR_CAP_BYTES - stderr.length);
  });
  let status: { code: number | null; signal: string | undefined } = { code: null, signal: undefined };
  channel.on("exit", (code: number | null, signalName?: string) => {
    status = { code, signal: signalName ?? undefined };
  });
  const exited = new Promise<{ code: number | null; signal: string | undefined }>((resolve) =>
    channel.once("close", () => resolve(status)),
  );
  try {
    const rpc = await openRpc(
      { input: channel, output: channel, stderr: channel.stderr },
      { signal: options.signal, helloTimeoutMs: options.helloTimeoutMs },
    );
    return { rpc, channel, exited, stderr: () => stderr };
  } catch (error) {
    // The exit status and the rest of stderr arrive just before the channel closes; they
    // tell a missing agent (127, "command not found") from one that crashed.
    channel.close();
    const final = await withDeadline(exited, 3_000);
    throw classifyAgentFailure(error, final ?? status, stderr, command, options.where);
  }
}

/** Explains why the agent did not start, with what to do next. */
export function classifyAgentFailure(
  error: unknown,
  status: { code: number | null; signal: string | undefined },
  stderr: string,
  command: string,
  where: string,
): CwsError {
  const said = stderr.trim();
  const notFound =
    status.code === 127 || /command not found|: not found|No such file or directory|is not recognized|Cannot find module/i.test(said);
  if (notFound && !(isCwsError(error) && error.code === "PROTOCOL_MISMATCH")) {
    return new CwsError(
      "AGENT_MISSING",
      `Cannot start the cws agent on ${where} as the command was not found: ${JSON.stringify(command)}` +
        (said ? ` (the server said: ${said.slice(0, 500)})` : "") +
        `. Install cws on the server and give the agent command \`cws-server init --data <dir>\` printed there, e.g. ` +
        `--agent-command '~/cws-data/bin/cws-agent --stdio' (or '<node 24> <checkout>/server-agent/agent/main.ts --stdio --data <dir>'); ` +
        `remote commands get a minimal PATH, so name it by its path`,
      { cause: error, data: { command, exitCode: status.code, stderr: said.slice(0, 4096) } },
    );
  }
  if (isCwsError(error) && error.code !== "AGENT_MISSING") return error;
  if (status.signal !== undefined && status.code === null) {
    // When the agent started but was killed before its hello (OOM killer, a reboot, an admin).
    return new CwsError(
      "AGENT_MISSING",
      `The cws agent on ${where} was stopped by signal ${status.signal} before it was ready` +
        (said ? `; it said: ${said.slice(-1000)}` : "") +
        `. Run the command again; if it keeps happening, check the server's memory and its logs`,
      { cause: error, data: { command, exitCode: status.code, signal: status.signal, stderr: said.slice(0, 4096) } },
    );
  }
  const exit = status.code !== null ? `exit code ${status.code}` : status.signal !== undefined ? `signal ${status.signal}` : "no exit status";
  return new CwsError(
    "AGENT_MISSING",
    `Cannot start the cws agent on ${where} (${exit}): it did not say hello` +
      (said ? `; it said: ${said.slice(-1000)}` : "") +
      `. Check the agent command ${JSON.stringify(command)} by running it with ssh`,
    { cause: error, data: { command, exitCode: status.code, signal: status.signal, stderr: said.slice(0, 4096) } },
  );
}

class SshAgentConnection implements AgentConnection {
  readonly hello: AgentConnection["hello"];
  readonly authMethod: string | undefined;
  readonly call: AgentConnection["call"];
  readonly #session: SshSession;
  readonly #agent: StartedAgent;
  readonly #tuning: Pick<SftpTransferOptions, "concurrency" | "chunkSize">;
  readonly #where: string;
  #closing: Promise<void> | undefined;
  #sftp: SFTPWrapper | undefined;

  constructor(session: SshSession, agent: StartedAgent, tuning: ConnectSshOptions["transfer"], where: string) {
    this.#session = session;
    this.#agent = agent;
    this.#tuning = tuning ?? {};
    this.#where = where;
    this.hello = agent.rpc.hello;
    this.authMethod = session.authMethod;
    this.call = agent.rpc.call;
  }

  async upload(localPath: string, name: string, options: TransferOptions = {}): Promise<void> {
    const remote = path.posix.join(this.hello.staging.incoming, checkName(name));
    // Uploads are bundles: the agent verifies each and copies its chunks into fsynced packs,
    // so the staged file need not reach the disk (measured in docs/performance.md).
    await uploadResumable(await this.#openSftp(), localPath, remote, { ...this.#tuning, ...options, durable: false });
  }

  async download(name: string, localPath: string, options: TransferOptions = {}): Promise<void> {
    const remote = path.posix.join(this.hello.staging.outgoing, checkName(name));
    await downloadFile(await this.#openSftp(), remote, localPath, { ...this.#tuning, ...options });
  }

  async downloadBytes(name: string, options: DownloadBytesOptions): Promise<Buffer> {
    const remote = path.posix.join(this.hello.staging.outgoing, checkName(name));
    return downloadToMemory(await this.#openSftp(), remote, { ...this.#tuning, ...options });
  }

  counters(): { sent: number; received: number } {
    // The socket's counts: protocol lines, SFTP and SSH framing, all encrypted, as on the wire.
    return this.#session.counters();
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    // Ending the agent's stdin is its signal to finish; it exits after its last reply.
    await withDeadline(this.#agent.rpc.end().catch(() => undefined), CLOSE_DEADLINE_MS);
    const status = await withDeadline(this.#agent.exited, CLOSE_DEADLINE_MS);
    if (status === undefined) this.#agent.channel.close();
    this.#sftp?.end();
    await this.#session.close();
  }

  async #openSftp(): Promise<SFTPWrapper> {
    if (this.#closing !== undefined) {
      throw new CwsError("CONNECTION_LOST", `Cannot transfer over the connection to ${this.#where} as it is closing`);
    }
    this.#sftp = await this.#session.sftp();
    return this.#sftp;
  }
}

function checkName(name: string): string {
  const parsed = BundleName.safeParse(name);
  if (!parsed.success) {
    throw new CwsError("INVALID_PATH", `Cannot transfer bundle ${JSON.stringify(name)} as it is not a plain bundle name`);
  }
  return parsed.data;
}

/** Resolves with the promise's value, or undefined once `ms` have passed. */
async function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
