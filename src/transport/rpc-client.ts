/**
 * The client half of the protocol over any pair of byte streams: the agent's stdout and stdin,
 * whether the agent is a local child process or an SSH exec channel. It waits for the agent's
 * hello (skipping a bounded amount of login-shell noise), checks the protocol version, then
 * matches responses to requests by id and validates every result against the method table.
 */
import { CwsError } from "../errors.ts";
import { Hello, Methods } from "../protocol/messages.ts";
import type { MethodName } from "../protocol/messages.ts";
import { RpcCaller } from "../protocol/rpc.ts";
import { readLines } from "../protocol/framing.ts";
import { AGENT_MAGIC, PACKAGE_VERSION, PROTOCOL_VERSION } from "../version.ts";
import type { AgentConnection, WireCounters } from "./connection.ts";

export interface RpcStreams {
  /** The agent's stdout. */
  input: NodeJS.ReadableStream;
  /** The agent's stdin. */
  output: NodeJS.WritableStream;
  /** The agent's stderr, kept (capped) to explain failures. */
  stderr?: NodeJS.ReadableStream;
}

export interface OpenRpcOptions {
  signal?: AbortSignal;
  /** How long to wait for the hello before giving up. @default 30000 */
  helloTimeoutMs?: number;
  /** Non-protocol lines tolerated before the hello (motd, banners). @default 64 */
  maxNoiseLines?: number;
}

export interface RpcSession {
  hello: Hello;
  call: AgentConnection["call"];
  counters(): WireCounters;
  /** The agent's stderr so far (at most 64 KiB), for error messages. */
  stderrText(): string;
  /** Ends the agent's stdin and waits until its stdout ends. */
  end(): Promise<void>;
}

/** Bytes of agent stderr kept in memory for error messages. */
const STDERR_CAP_BYTES = 64 * 1024;

export async function openRpc(streams: RpcStreams, options: OpenRpcOptions = {}): Promise<RpcSession> {
  const { helloTimeoutMs = 30_000, maxNoiseLines = 64, signal } = options;
  const counters: WireCounters = { sent: 0, received: 0 };
  let stderr = "";
  streams.stderr?.on("data", (piece: Buffer | string) => {
    if (stderr.length < STDERR_CAP_BYTES) stderr += piece.toString().slice(0, STDERR_CAP_BYTES - stderr.length);
  });
  const lines = readLines(streams.input as AsyncIterable<Uint8Array>, {
    onBytes: (bytes) => { counters.received += bytes; },
  });

  const hello = await withTimeout(awaitHello(lines, maxNoiseLines, () => stderr), helloTimeoutMs, signal, () => stderr);

  const caller = new RpcCaller(Methods, lines, streams.output, {
    peer: "agent",
    lostError: (cause) => connectionLost(stderr, cause),
    onSent: (bytes) => { counters.sent += bytes; },
  });
  const call = ((method: MethodName, params: unknown, callOptions?: { signal?: AbortSignal }) =>
    caller.call(method, params as never, callOptions)) as AgentConnection["call"];

  return {
    hello,
    call,
    counters: () => ({ ...counters }),
    stderrText: () => stderr,
    async end() {
      streams.output.end();
      await caller.done;
    },
  };
}

async function awaitHello(lines: AsyncGenerator<string>, maxNoiseLines: number, stderr: () => string): Promise<Hello> {
  for (let skipped = 0; skipped <= maxNoiseLines; skipped++) {
    const next = await lines.next();
    if (next.done) break;
    if (!next.value.includes(AGENT_MAGIC) || !next.value.trimStart().startsWith("{")) continue;
    let raw: unknown;
    try {
      raw = JSON.parse(next.value);
    } catch {
      continue;
    }
    const candidate = raw as { protocol?: unknown; version?: unknown };
    if (candidate.protocol !== PROTOCOL_VERSION) {
      throw new CwsError(
        "PROTOCOL_MISMATCH",
        // JSON spellings, so a protocol sent as the string "1" does not read as the number 1.
        `Cannot talk to the agent: it speaks protocol ${JSON.stringify(candidate.protocol) ?? "(none)"} (cws ${JSON.stringify(candidate.version) ?? "(unknown)"}), this client speaks ${PROTOCOL_VERSION} (cws ${PACKAGE_VERSION}).${typeof candidate.protocol === "number" ? "" : " Its hello is malformed: the protocol must be a number."} Install the same cws version on the server and this device.`,
        { data: { client: PROTOCOL_VERSION, agent: candidate.protocol } },
      );
    }
    const parsed = Hello.safeParse(raw);
    if (!parsed.success) throw new CwsError("PROTOCOL_MISMATCH", `The agent's hello is malformed: ${parsed.error.issues[0]?.message}`);
    return parsed.data;
  }
  const detail = stderr().trim();
  throw new CwsError(
    "AGENT_MISSING",
    `The cws agent did not start: no hello was received${detail ? `; it said: ${detail.slice(0, 500)}` : ""}. Check that cws is installed on the server and that the agent command is right.`,
  );
}

async function withTimeout<T>(work: Promise<T>, ms: number, signal: AbortSignal | undefined, stderr: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const detail = stderr().trim();
      reject(new CwsError("AGENT_MISSING", `The cws agent did not answer within ${ms} ms${detail ? `; it said: ${detail.slice(0, 500)}` : ""}`));
    }, ms);
    timer.unref?.();
    onAbort = () => reject(new CwsError("CANCELLED", "Cancelled while waiting for the agent"));
    signal?.addEventListener("abort", onAbort, { once: true });
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
    if (onAbort) signal?.removeEventListener("abort", onAbort);
  }
}

function connectionLost(stderr: string, cause?: unknown): CwsError {
  const detail = stderr.trim();
  return new CwsError(
    "CONNECTION_LOST",
    `The connection to the agent closed unexpectedly${detail ? `; the agent said: ${detail.slice(-1000)}` : ""}. Run the command again; work already stored on the server is not sent twice.`,
    cause === undefined ? {} : { cause },
  );
}
