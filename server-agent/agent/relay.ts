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

/** Relays one session; resolves with the exit code once the hub's side has closed. */
export async function relaySession(options: RelayOptions): Promise<number> {
  const { dataDir, input, output, ...preamble } = options;
  const socket = (await quickConnect(hubSocketPath(dataDir))) ?? (await (await import("../hub/hub-client.ts")).connectHubSocket(dataDir));
  socket.setNoDelay(true);
  // The preamble goes out before the first byte of the client's: see session-preamble.ts.
  socket.write(encodeSessionPreamble(preamble));
  input.pipe(socket);
  socket.pipe(output);
  return new Promise((resolve) => {
    let failed = false;
    socket.on("error", () => { failed = true; });
    socket.once("close", () => {
      input.unpipe(socket);
      // The hub ended the session on purpose (the client closed, or a fault point) or the
      // connection broke: either way there is nothing left to relay.
      if (output.writableEnded) resolve(failed ? 1 : 0);
      else output.end(() => resolve(1));
    });
  });
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
