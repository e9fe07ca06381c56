/**
 * Client sessions served inside the hub. A relay (agent/relay.ts) connects to the hub's socket
 * and writes a session preamble before the client's first byte; the hub then runs the agent
 * (agent/agent.ts) on that connection, with the hub's own store, manifest cache and request
 * handler. So a session costs no process start, no store open and no second parse of the
 * manifests the hub already holds, and the per-connection process stays a thin relay.
 *
 * The other connections to the socket (cws-server commands, agents run on their own) speak the
 * hub protocol from their first line; a line that is not a preamble is handed back to them.
 */
import type { Socket } from "node:net";
import { CwsError, toCwsError } from "../../src/errors.ts";
import { withFaultScope } from "../../src/fault.ts";
import { serveAgent } from "../agent/agent.ts";
import { openAgentLog } from "../agent/agent-log.ts";
import { MAX_PREAMBLE_BYTES, parseSessionPreamble, type SessionPreamble } from "../session-preamble.ts";
import type { Store } from "../store/store.ts";
import type { HubClient } from "./hub-client.ts";
import { HubMethods, type HubMethodName } from "./hub-protocol.ts";
import type { ManifestTrees } from "../store/manifest-tree.ts";

export interface SessionHost {
  dataDir: string;
  store: Store;
  /** The hub's manifest trees: sessions share its folder cache. */
  manifests: ManifestTrees;
  /** The hub's request handler: what a hub connection's requests reach after validation. */
  handle(method: HubMethodName, params: unknown): Promise<unknown>;
  log(line: string): void;
}

/**
 * Reads the first line of a new connection. A session preamble is consumed and returned; any
 * other first line (or a connection that ends or sends a long line first) is put back unread,
 * and null returned.
 */
export function takeSessionPreamble(socket: Socket): Promise<SessionPreamble | null> {
  return new Promise((resolve, reject) => {
    const pieces: Buffer[] = [];
    let size = 0;
    const finish = (preamble: SessionPreamble | null, rest: Buffer) => {
      socket.off("data", onData);
      socket.off("end", onEnd);
      socket.pause();
      if (rest.byteLength > 0) socket.unshift(rest);
      resolve(preamble);
    };
    const onData = (piece: Buffer) => {
      pieces.push(piece);
      size += piece.byteLength;
      const all = pieces.length === 1 ? piece : Buffer.concat(pieces);
      const newline = all.indexOf(10);
      if (newline < 0) {
        if (size > MAX_PREAMBLE_BYTES) finish(null, all);
        return;
      }
      let preamble: SessionPreamble | null;
      try {
        preamble = parseSessionPreamble(all.subarray(0, newline).toString("utf8"));
      } catch (error) {
        socket.off("data", onData);
        socket.off("end", onEnd);
        reject(error);
        return;
      }
      finish(preamble, preamble === null ? all : all.subarray(newline + 1));
    };
    const onEnd = () => finish(null, Buffer.concat(pieces));
    socket.on("data", onData);
    socket.once("end", onEnd);
  });
}

/** Serves one client session on a connection whose preamble was read. */
export async function serveSession(socket: Socket, preamble: SessionPreamble, host: SessionHost): Promise<void> {
  const hub: HubClient = {
    // The agent's requests go to the handler directly, with the same checks a hub connection's
    // requests and replies get, so the agent sees exactly what it saw over the socket.
    call: (async (method: HubMethodName, params: unknown) => {
      const spec = HubMethods[method];
      const checked = spec.params.safeParse(params);
      if (!checked.success) {
        const issue = checked.error.issues[0];
        throw new CwsError("INVALID_ARGUMENT", `Cannot accept ${method}: ${issue?.path.join(".") || "params"}: ${issue?.message}`);
      }
      return spec.result.parse(await host.handle(method, checked.data));
    }) as HubClient["call"],
    close: async () => {},
  };

  let stopped = false;
  const stop = () => {
    stopped = true;
    socket.destroy();
  };
  try {
    await withFaultScope({ fault: preamble.fault, stop }, () => runAgent());
  } catch (error) {
    // A session the agent cannot go on with (a line over the cap, a broken stream) ends with an
    // error of id null, which the protocol reads as the end of the session, and which the relay
    // repeats on its stderr, as the agent process did when it ran on its own.
    if (stopped || socket.destroyed || !socket.writable) throw error;
    const wire = toCwsError(error, "The session").toWire();
    socket.end(`${JSON.stringify({ id: null, ok: false, error: wire })}\n`);
    // What the client still sends is read and dropped: closing with unread data would reset the
    // connection, and the reset would discard the line above before the relay reads it.
    socket.resume();
  }

  function runAgent(): Promise<void> {
    return serveAgent({
      dataDir: host.dataDir,
      // Read without destroying the socket when reading stops early (a line over the cap),
      // so the session can still say why it ends.
      input: { [Symbol.asyncIterator]: () => socket.iterator({ destroyOnReturn: false }) },
      output: socket,
      pinnedDeviceId: preamble.pinnedDeviceId,
      authorizedKeysFile: preamble.authorizedKeysFile,
      hub,
      store: host.store,
      manifests: host.manifests,
      // The agent's log (which INTERNAL errors name), echoed into the hub's.
      log: openAgentLog(host.dataDir, (line) => host.log(`session: ${line}`)),
    });
  }
}
