/**
 * The local sockets through which a `cws` command hands its work to a session of this device
 * that is already running: a live sync (live-handoff.ts) or a kept session (kept-session.ts).
 * Both listen on a Unix socket in the state dir, made under a restrictive umask so that no other
 * account can connect even for a moment, and both speak JSON lines with a cap on their length.
 *
 * This module loads only Node's own `net` and `fs`: the command's side of a hand-off must stay
 * fast, it runs before the command knows whether it will need anything heavier.
 */
import { connect, createServer, type Server, type Socket } from "node:net";
import { chmod, rm } from "node:fs/promises";
import { CwsError, ERROR_CODES, type WireError } from "../errors.ts";
import type { SyncSummary } from "./sync.ts";

/** The longest line read from a hand-off socket; a sync summary lists at most a few thousand paths. */
export const MAX_SOCKET_LINE_BYTES = 16 * 1024 * 1024;

/** True when something accepts connections on the socket. */
export function socketAnswers(path: string): Promise<boolean> {
  return connectSocket(path).then((socket) => {
    socket?.destroy();
    return socket !== null;
  });
}

/** Connects to the socket at `path`, or resolves null when nobody listens there (no file, refused). */
export function connectSocket(path: string): Promise<Socket | null> {
  return new Promise((resolve) => {
    const attempt = connect(path);
    attempt.once("connect", () => { attempt.removeAllListeners("error"); resolve(attempt); });
    attempt.once("error", () => { attempt.destroy(); resolve(null); });
  });
}

/**
 * Listens on the Unix socket `path` (mode 0600). Resolves with undefined when the socket cannot
 * be made (a path longer than Unix sockets allow, a folder that cannot be written) or when
 * another process already answers there. The server does not keep the process alive by itself.
 */
export async function listenOnSocket(path: string, onConnection: (socket: Socket) => void): Promise<Server | undefined> {
  if (await socketAnswers(path)) return undefined;
  // A socket file nobody answers on is a leftover of a process that died.
  await rm(path, { force: true });
  const server: Server = createServer((socket) => {
    socket.on("error", () => socket.destroy());
    onConnection(socket);
  });
  const previousUmask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(path, () => { server.off("error", reject); resolve(); });
    });
  } catch {
    return undefined;
  } finally {
    process.umask(previousUmask);
  }
  await chmod(path, 0o600).catch(() => {});
  server.unref();
  return server;
}

/**
 * The JSON lines a socket sends, one at a time. `next` resolves with the next line parsed as a
 * JSON object, with undefined for a line that is not one, and with null once the socket ended.
 */
export class SocketLines {
  readonly #lines: string[] = [];
  readonly #waiting: Array<(line: string | null) => void> = [];
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #ended = false;

  constructor(socket: Socket) {
    socket.on("data", (piece: Buffer) => {
      let start = 0;
      for (let newline = piece.indexOf(10); newline >= 0; newline = piece.indexOf(10, start)) {
        this.#pending.push(piece.subarray(start, newline));
        this.#push(Buffer.concat(this.#pending).toString("utf8"));
        this.#pending = [];
        this.#pendingBytes = 0;
        start = newline + 1;
      }
      if (start < piece.length) {
        this.#pending.push(piece.subarray(start));
        this.#pendingBytes += piece.length - start;
        if (this.#pendingBytes > MAX_SOCKET_LINE_BYTES) socket.destroy();
      }
    });
    const end = () => {
      this.#ended = true;
      for (const resolve of this.#waiting.splice(0)) resolve(null);
    };
    socket.once("close", end);
    socket.once("end", end);
  }

  #push(line: string): void {
    const resolve = this.#waiting.shift();
    if (resolve !== undefined) resolve(line);
    else this.#lines.push(line);
  }

  /**
   * The next line as a JSON object (undefined: not one), or null when the socket ended first,
   * or when `timeoutMs` passed without a line.
   */
  async next(timeoutMs?: number): Promise<Record<string, unknown> | undefined | null> {
    const queued = this.#lines.shift();
    if (queued !== undefined) return parseObject(queued);
    if (this.#ended) return null;
    const line = await new Promise<string | null>((resolve) => {
      this.#waiting.push(resolve);
      if (timeoutMs !== undefined) {
        setTimeout(() => {
          const at = this.#waiting.indexOf(resolve);
          if (at >= 0) {
            this.#waiting.splice(at, 1);
            resolve(null);
          }
        }, timeoutMs).unref();
      }
    });
    return line === null ? null : parseObject(line);
  }
}

/** Writes one JSON line (a socket the peer closed is ignored: the peer has gone, nothing to tell). */
export function writeLine(socket: Socket, value: unknown): void {
  if (!socket.destroyed && socket.writable) socket.write(`${JSON.stringify(value)}\n`);
}

export function parseObject(line: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** A sync summary as another process of this device sent it, checked for the parts the command reads. */
export function summaryFrom(value: unknown): SyncSummary | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const summary = value as Record<string, unknown>;
  const counts = (part: unknown) => typeof part === "object" && part !== null && typeof (part as { files?: unknown }).files === "number";
  if (!counts(summary.pushed) || !counts(summary.pulled) || !Array.isArray(summary.conflicts)) return undefined;
  return summary as unknown as SyncSummary;
}

/** An error as another process of this device sent it, or undefined when it is not one of ours. */
export function wireErrorFrom(value: unknown): WireError | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const error = value as Record<string, unknown>;
  if (typeof error.message !== "string" || !(ERROR_CODES as readonly unknown[]).includes(error.code)) return undefined;
  return { code: error.code as WireError["code"], message: error.message, ...(typeof error.data === "object" && error.data !== null ? { data: error.data as Record<string, unknown> } : {}) };
}

/** The error a command reports when a session of this device answered with something it cannot read. */
export function unreadableAnswer(what: string, fix: string): CwsError {
  return new CwsError("INVALID_ARGUMENT", `The ${what} sent an answer that is not a sync result; ${fix}`);
}
