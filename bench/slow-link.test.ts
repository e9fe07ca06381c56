import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import net from "node:net";
import { test } from "node:test";
import { startSlowLink } from "./slow-link.ts";

/** An echo server on a free loopback port. */
async function echoServer(): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** Sends `data` through a connection to `port` and collects as many bytes back. */
async function roundTrip(port: number, data: Buffer): Promise<Buffer> {
  const socket = net.connect(port, "127.0.0.1");
  const pieces: Buffer[] = [];
  let received = 0;
  const done = new Promise<Buffer>((resolve, reject) => {
    socket.on("data", (piece: Buffer) => {
      pieces.push(piece);
      received += piece.byteLength;
      if (received >= data.byteLength) {
        socket.end();
        resolve(Buffer.concat(pieces));
      }
    });
    socket.on("error", reject);
  });
  socket.write(data);
  return done;
}

test("the slow link delivers every byte in order, no faster than its bandwidth and round-trip time allow", async () => {
  const echo = await echoServer();
  // 256 KiB each way at 8 Mbit/s is at least 0.26 s per direction, pipelined: ≥ 0.26 s + RTT.
  const link = await startSlowLink({ host: "127.0.0.1", port: echo.port }, { bitsPerSecond: 8_000_000, rttMs: 40 });
  try {
    const data = randomBytes(256 * 1024);
    const started = performance.now();
    const back = await roundTrip(link.port, data);
    const elapsed = performance.now() - started;
    assert.ok(back.equals(data), "the bytes that came back are the bytes sent");
    assert.ok(elapsed >= (data.byteLength * 8 * 1000) / 8_000_000 + 40, `took ${elapsed.toFixed(0)} ms`);
    assert.deepEqual(link.counters(), { up: data.byteLength, down: data.byteLength });

    const small = Buffer.from("ping");
    const pingStarted = performance.now();
    assert.equal((await roundTrip(link.port, small)).toString(), "ping");
    assert.ok(performance.now() - pingStarted >= 40, "a small message waits one round trip");
  } finally {
    await link.close();
    await echo.close();
  }
});
