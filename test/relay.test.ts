/**
 * The per-connection relay (server-agent/agent/relay.ts) against real hubs: sessions served by
 * the hub, and a hub of an older cws (one that answers the session preamble as a bad request)
 * replaced by a current one.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:net";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { makeCluster, type TestCluster } from "./helpers/cluster.ts";
import { connectHub } from "../server-agent/hub/hub-client.ts";
import { hubSocketPath } from "../server-agent/data-dir.ts";

let cluster: TestCluster;

before(async () => {
  cluster = await makeCluster();
});

after(async () => {
  await cluster?.close();
});

/** Stops the hub serving the cluster and waits until its socket is gone. */
async function stopHub(): Promise<void> {
  const hub = await connectHub(cluster.dataDir, { autoStart: false });
  await hub.call("shutdown", {});
  await hub.close();
  for (let i = 0; i < 100; i++) {
    const pid = await readFile(join(cluster.dataDir, "hub.pid"), "utf8").catch(() => null);
    if (pid === null) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error("the hub did not stop");
}

/** A stand-in for a hub of an older cws: every line is a bad request, except a shutdown. */
function startOldHub(): Promise<{ server: Server; lines: string[] }> {
  const lines: string[] = [];
  const server = createServer((socket) => {
    let text = "";
    socket.on("data", (piece: Buffer) => {
      text += piece.toString("utf8");
      let at: number;
      while ((at = text.indexOf("\n")) >= 0) {
        const line = text.slice(0, at);
        text = text.slice(at + 1);
        lines.push(line);
        const request = JSON.parse(line) as { id?: number; method?: string };
        if (request.method === "shutdown") {
          socket.end(`${JSON.stringify({ id: request.id, ok: true, result: {} })}\n`);
          server.close();
          return;
        }
        socket.write(`${JSON.stringify({ id: null, ok: false, error: { code: "INVALID_ARGUMENT", message: "Cannot accept request: id: expected number" } })}\n`);
      }
    });
    socket.on("error", () => socket.destroy());
  });
  return new Promise((resolve) => server.listen(hubSocketPath(cluster.dataDir), () => resolve({ server, lines })));
}

test("sessions are served by the hub: the relay's hello comes from it, and the hub outlives the session", async () => {
  const device = await cluster.device("served");
  const conn = await device.connect();
  assert.equal(conn.hello.magic, "cws-agent");
  assert.deepEqual((await conn.call("listSuperprojects", {})).superprojects, []);
  await conn.close();
  const pid = Number(await readFile(join(cluster.dataDir, "hub.pid"), "utf8"));
  const again = await device.connect();
  await again.close();
  assert.equal(Number(await readFile(join(cluster.dataDir, "hub.pid"), "utf8")), pid, "the same hub served both sessions");
});

test("a hub of an older cws that does not serve sessions is asked to exit and replaced by a current one", async () => {
  const device = await cluster.device("upgraded");
  await stopHub();
  const old = await startOldHub();
  const conn = await device.connect();
  try {
    assert.equal(conn.hello.magic, "cws-agent");
    assert.deepEqual((await conn.call("listSuperprojects", {})).superprojects, []);
  } finally {
    await conn.close();
  }
  assert.ok(old.lines.some((line) => line.includes('"cwsSession"')), "the old hub saw the preamble");
  assert.ok(old.lines.some((line) => line.includes('"shutdown"')), "and was asked to shut down");
  assert.equal(old.server.listening, false);
});
