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
import type { Socket } from "node:net";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { CwsError, type WireError } from "../errors.ts";
import type { SyncSummary } from "./sync.ts";
import { connectSocket, listenOnSocket, SocketLines, summaryFrom, unreadableAnswer, wireErrorFrom, writeLine } from "./session-socket.ts";

/** A sync request handed to the live session. */
export interface HandoffRequest {
  type: "sync";
  dryRun: boolean;
}

/** What a live session answers. */
export type HandoffReply = { ok: true; summary: SyncSummary } | { ok: false; error: WireError } | { ok: false; unavailable: string };

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
  const sockets = new Set<Socket>();
  const server = await listenOnSocket(path, (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    void new SocketLines(socket).next().then(async (line) => {
      const request = line ? parseRequest(line) : undefined;
      const reply: HandoffReply = request === undefined
        ? { ok: false, error: { code: "INVALID_ARGUMENT", message: "Cannot read the hand-off request: it is not a sync request" } }
        : await handle(request);
      socket.end(`${JSON.stringify(reply)}\n`);
    }).catch(() => socket.destroy());
  });
  if (server === undefined) return undefined;
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
  const socket = await connectSocket(path);
  if (socket === null) return null;
  const lines = new SocketLines(socket);
  const cancelled = new Promise<never>((_, reject) => {
    const onAbort = () => reject(new CwsError("CANCELLED", "The sync was cancelled; the live sync session finishes the sync it started"));
    if (signal?.aborted) onAbort();
    signal?.addEventListener("abort", onAbort, { once: true });
    socket.once("close", () => signal?.removeEventListener("abort", onAbort));
  });
  cancelled.catch(() => {});
  try {
    writeLine(socket, request);
    const line = await Promise.race([lines.next(), cancelled]);
    if (line === null) throw new CwsError("CONNECTION_LOST", "The live sync session closed the connection before it answered; run the sync again");
    const reply = line === undefined ? undefined : parseReply(line);
    if (reply === undefined) throw unreadableAnswer(`live sync session at ${path}`, "stop it with `cws turn-off-sync` and run the sync again");
    if (reply.ok) return reply.summary;
    if ("unavailable" in reply) return null;
    throw CwsError.fromWire(reply.error);
  } finally {
    socket.destroy();
  }
}

function parseRequest(value: Record<string, unknown>): HandoffRequest | undefined {
  if (value.type !== "sync" || typeof value.dryRun !== "boolean") return undefined;
  return { type: "sync", dryRun: value.dryRun };
}

function parseReply(value: Record<string, unknown>): HandoffReply | undefined {
  if (value.ok === true) {
    const summary = summaryFrom(value.summary);
    return summary === undefined ? undefined : { ok: true, summary };
  }
  if (value.ok !== false) return undefined;
  if (typeof value.unavailable === "string") return { ok: false, unavailable: value.unavailable };
  const error = wireErrorFrom(value.error);
  return error === undefined ? undefined : { ok: false, error };
}
