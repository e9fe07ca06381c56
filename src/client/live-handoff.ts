/**
 * `cws sync` inside a running live sync: the live sync session (live-sync.ts) listens on a Unix
 * socket in this device's state dir, `<state>/live/<slug>.sock` (mode 0600), and a `cws sync`
 * of the same superproject hands its request there instead of opening a session of its own.
 * The live sync runs the sync on its open connection, under its lease (with its fencing token),
 * between its own syncs, so the two never race over the same folder and base; and the command
 * skips the SSH handshake and the server side's start.
 *
 * One JSON line each way: `{"type":"sync","dryRun":false}` in, then
 * `{"ok":true,"summary":{…}}`, `{"ok":false,"error":{code,message,data}}`, or
 * `{"ok":false,"unavailable":"…"}` when the session is stopping (the command then syncs on its
 * own). No live sync (no socket, or nobody answering it) means the same.
 */
import { connect, createServer, type Server, type Socket } from "node:net";
import { chmod, rm } from "node:fs/promises";
import { join } from "node:path";
import { CwsError, ERROR_CODES, type WireError } from "../errors.ts";
import type { SyncSummary } from "./sync.ts";

/** A sync request handed to the live session. */
export interface HandoffRequest {
  type: "sync";
  dryRun: boolean;
}

/** What a live session answers. */
export type HandoffReply = { ok: true; summary: SyncSummary } | { ok: false; error: WireError } | { ok: false; unavailable: string };

/** The longest request or reply line read; a sync summary lists at most a few thousand paths. */
const MAX_LINE_BYTES = 16 * 1024 * 1024;

export function liveSocketPath(home: string, slug: string): string {
  return join(home, "live", `${slug}.sock`);
}

export interface HandoffServer {
  close(): Promise<void>;
}

/**
 * Listens on `path` for sync requests and answers each with `handle`'s reply. Resolves with
 * undefined when the socket cannot be made (e.g. the path is longer than Unix sockets allow,
 * or another live session of the slug answers there): live sync then runs without hand-offs.
 */
export async function listenForHandoffs(path: string, handle: (request: HandoffRequest) => Promise<HandoffReply>): Promise<HandoffServer | undefined> {
  if (await answers(path)) return undefined;
  await rm(path, { force: true });
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    void readLine(socket).then(async (line) => {
      const request = parseRequest(line);
      const reply: HandoffReply = request === undefined
        ? { ok: false, error: { code: "INVALID_ARGUMENT", message: "Cannot read the hand-off request: it is not a sync request" } }
        : await handle(request);
      socket.end(`${JSON.stringify(reply)}\n`);
    }).catch(() => socket.destroy());
  });
  // Created under a restrictive umask, so no other account can connect even for a moment.
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
  return {
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(path, { force: true });
    },
  };
}

/**
 * Hands a sync to the live session listening on `path`. Resolves with its summary, or null when
 * no live session takes it (then the caller syncs on its own); rejects with the sync's own
 * error when the live session ran it and it failed.
 */
export async function handOffSync(path: string, request: HandoffRequest, signal?: AbortSignal): Promise<SyncSummary | null> {
  const socket = await new Promise<Socket | null>((resolve) => {
    const attempt = connect(path);
    attempt.once("connect", () => { attempt.removeAllListeners("error"); resolve(attempt); });
    attempt.once("error", () => { attempt.destroy(); resolve(null); });
  });
  if (socket === null) return null;
  const onAbort = () => socket.destroy(new CwsError("CANCELLED", "The sync was cancelled; the live sync session finishes the sync it started"));
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    socket.write(`${JSON.stringify(request)}\n`);
    const reply = parseReply(await readLine(socket));
    if (reply === undefined) throw new CwsError("INVALID_ARGUMENT", `The live sync session at ${path} sent an answer that is not a sync result; stop it with \`cws turn-off-sync\` and run the sync again`);
    if (reply.ok) return reply.summary;
    if ("unavailable" in reply) return null;
    throw CwsError.fromWire(reply.error);
  } finally {
    signal?.removeEventListener("abort", onAbort);
    socket.destroy();
  }
}

/** True when something accepts connections on the socket. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(path);
    socket.once("connect", () => { socket.destroy(); resolve(true); });
    socket.once("error", () => resolve(false));
  });
}

/** The first line a socket sends (without its newline); rejects if it ends first or sends too much. */
function readLine(socket: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    const pieces: Buffer[] = [];
    let size = 0;
    socket.on("data", (piece: Buffer) => {
      const newline = piece.indexOf(10);
      if (newline >= 0) {
        pieces.push(piece.subarray(0, newline));
        resolve(Buffer.concat(pieces).toString("utf8"));
        return;
      }
      pieces.push(piece);
      size += piece.byteLength;
      if (size > MAX_LINE_BYTES) socket.destroy(new Error("line too long"));
    });
    socket.once("end", () => reject(new CwsError("CONNECTION_LOST", "The live sync session closed the connection before it answered; run the sync again")));
    socket.once("error", reject);
  });
}

function parseJson(line: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function parseRequest(line: string): HandoffRequest | undefined {
  const value = parseJson(line);
  if (value?.type !== "sync" || typeof value.dryRun !== "boolean") return undefined;
  return { type: "sync", dryRun: value.dryRun };
}

function parseReply(line: string): HandoffReply | undefined {
  const value = parseJson(line);
  if (value === undefined) return undefined;
  if (value.ok === true) {
    const summary = value.summary as Record<string, unknown> | undefined;
    const counts = (part: unknown) => typeof part === "object" && part !== null && typeof (part as { files?: unknown }).files === "number";
    if (typeof summary !== "object" || summary === null || !counts(summary.pushed) || !counts(summary.pulled) || !Array.isArray(summary.conflicts)) return undefined;
    return { ok: true, summary: summary as unknown as SyncSummary };
  }
  if (value.ok !== false) return undefined;
  if (typeof value.unavailable === "string") return { ok: false, unavailable: value.unavailable };
  const error = value.error as Record<string, unknown> | undefined;
  if (typeof error !== "object" || error === null || typeof error.message !== "string" || !(ERROR_CODES as readonly unknown[]).includes(error.code)) return undefined;
  return { ok: false, error: { code: error.code as WireError["code"], message: error.message, ...(typeof error.data === "object" && error.data !== null ? { data: error.data as Record<string, unknown> } : {}) } };
}
