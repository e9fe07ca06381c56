/**
 * The relay: what sshd starts for each cws connection (`cws-agent --stdio`, or the forced
 * command of a restricted key). The hub, which outlives connections, serves the session; the
 * relay only connects to the hub's socket, writes the session preamble (see
 * ../session-preamble.ts) and then copies bytes both ways until either side closes.
 *
 * It must start in a few tens of milliseconds, so its common path loads only node:net and two
 * dependency-free modules: no zod, no SQLite, no store. Only when the hub is not running does
 * it load the hub client, which starts the hub under the one start lock of the data dir.
 */
import { connect, type Socket } from "node:net";
import type { Readable, Writable } from "node:stream";
import { hubSocketPath } from "../data-dir.ts";
import { encodeSessionPreamble, type SessionPreamble } from "../session-preamble.ts";

export interface RelayOptions extends SessionPreamble {
  dataDir: string;
  input: Readable;
  output: Writable;
}

/** The start of the agent's hello line, the first line of every session the hub serves. */
const HELLO_MARK = '"magic":"cws-agent"';

/**
 * Relays one session; resolves once the hub's side has closed, with 0 when the client ended the
 * session (it closed its side first and the hub finished answering), else 1: the hub ended it
 * (a fault point, a protocol error) or the connection broke.
 */
export async function relaySession(options: RelayOptions): Promise<number> {
  const { dataDir, input, output, ...preamble } = options;
  let opened = await openSession(dataDir, preamble, await quickConnect(hubSocketPath(dataDir)));
  if (isOldHubAnswer(opened.hello)) {
    // A hub of an older cws (still running after an update) does not serve sessions: it
    // answers the preamble as a bad request. Ask it to exit, and start a current one.
    opened.socket.destroy();
    await retireHub(dataDir);
    opened = await openSession(dataDir, preamble, null);
    if (isOldHubAnswer(opened.hello)) {
      opened.socket.destroy();
      throw new Error(`the cws hub for ${dataDir} does not serve sessions (it answered ${JSON.stringify(opened.hello.subarray(0, 200).toString())}); stop it with \`cws-server stop --data ${dataDir}\` and try again`);
    }
  }
  const { socket } = opened;
  if (opened.hello.byteLength > 0) output.write(opened.hello);
  let inputEnded = false;
  input.once("end", () => { inputEnded = true; });
  // The last piece from the hub: a session the hub ends says why in its last line.
  let last: Buffer = opened.hello;
  socket.on("data", (piece: Buffer) => { last = piece; });
  input.pipe(socket);
  socket.pipe(output);
  return new Promise((resolve) => {
    let failed = false;
    const finish = () => {
      input.unpipe(socket);
      // Either way there is nothing left to relay.
      const code = inputEnded && !failed ? 0 : 1;
      if (code !== 0) {
        const reason = sessionEndReason(last);
        if (reason !== undefined) process.stderr.write(`cws-agent: ${reason}\n`);
      }
      if (output.writableEnded) resolve(code);
      else output.end(() => resolve(code));
    };
    if (socket.closed) return finish();
    socket.on("error", () => { failed = true; });
    socket.once("close", finish);
  });
}

/** The message of an error of id null ending `tail` (how the hub ends a session it cannot go on with). */
function sessionEndReason(tail: Buffer): string | undefined {
  const text = tail.toString("utf8").trimEnd();
  const line = text.slice(text.lastIndexOf("\n") + 1);
  if (!line.startsWith('{"id":null,"ok":false')) return undefined;
  try {
    const message = (JSON.parse(line) as { error?: { message?: unknown } }).error?.message;
    return typeof message === "string" ? message : undefined;
  } catch {
    return undefined;
  }
}

/**
 * True when the hub answered the preamble as a hub of an older cws does: with an error envelope
 * (it took the line for a malformed request) instead of the agent's hello. Nothing at all (the
 * session ended before its hello) is not that.
 */
function isOldHubAnswer(first: Buffer): boolean {
  if (first.byteLength === 0 || first.includes(HELLO_MARK)) return false;
  const newline = first.indexOf(10);
  try {
    const line = JSON.parse(first.subarray(0, newline < 0 ? first.byteLength : newline).toString("utf8")) as { ok?: unknown };
    return line.ok === false;
  } catch {
    return false;
  }
}

/**
 * Sends the preamble on `socket` (or on a connection to a hub started as needed) and reads the
 * hub's first line: the agent's hello when the hub serves the session. Returns the line with its
 * newline and anything after it, to be passed on to the client first.
 */
async function openSession(dataDir: string, preamble: SessionPreamble, socket: Socket | null): Promise<{ socket: Socket; hello: Buffer }> {
  socket ??= await startHubAndConnect(dataDir);
  socket.setNoDelay(true);
  // The preamble goes out before the first byte of the client's: see session-preamble.ts.
  socket.write(encodeSessionPreamble(preamble));
  const connection = socket;
  const hello = await new Promise<Buffer>((resolve) => {
    const pieces: Buffer[] = [];
    let size = 0;
    const onData = (piece: Buffer) => {
      pieces.push(piece);
      size += piece.byteLength;
      if (piece.includes(10) || size > 65536) done();
    };
    const done = () => {
      connection.off("data", onData);
      connection.off("end", done);
      connection.off("error", done);
      connection.pause();
      resolve(Buffer.concat(pieces));
    };
    connection.on("data", onData);
    connection.once("end", done);
    connection.once("error", done);
  });
  return { socket: connection, hello };
}

/**
 * Connects to the hub, starting it first when it is not running (under the data dir's start
 * lock); a data dir `cws-server init` never made is reported with the command that makes one.
 */
async function startHubAndConnect(dataDir: string): Promise<Socket> {
  const { connectHubSocket } = await import("../hub/hub-client.ts");
  return connectHubSocket(dataDir);
}

/** Asks the running hub to exit and waits until its socket stops answering. */
async function retireHub(dataDir: string): Promise<void> {
  const { connectHub } = await import("../hub/hub-client.ts");
  const hub = await connectHub(dataDir, { autoStart: false }).catch(() => null);
  await hub?.call("shutdown", {}).catch(() => {});
  await hub?.close().catch(() => {});
  for (let waited = 0; waited < 10_000; waited += 100) {
    const probe = await quickConnect(hubSocketPath(dataDir));
    if (probe === null) return;
    probe.destroy();
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Connects to a running hub, or null when none answers (so the relay must start one). */
function quickConnect(socketPath: string): Promise<Socket | null> {
  return new Promise((resolve) => {
    // Not half-open: once the hub has ended the session, this side closes too, whether or not
    // the client has finished sending.
    const socket = connect({ path: socketPath, allowHalfOpen: false });
    socket.once("connect", () => { socket.removeAllListeners("error"); resolve(socket); });
    socket.once("error", () => { socket.destroy(); resolve(null); });
  });
}
