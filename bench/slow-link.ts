/**
 * A slow link for the benchmark: a TCP relay on 127.0.0.1 in front of the benchmark's sshd
 * that gives every connection a fixed bandwidth and round-trip time in each direction, like a
 * home or office uplink. Every tool (rsync, Unison, cws) connects to the relay's port instead
 * of sshd's, so they all cross the very same link, and whatever a tool saves in bytes shows as
 * time.
 *
 * The model is that of a router with a FIFO queue: a piece of data leaves the queue when the
 * link has finished sending what was queued before it (`bytes × 8 / rate`), and arrives one
 * one-way delay (`rtt / 2`) later. When more than `queueBytes` wait, the sending side is paused
 * (TCP back-pressure), as a full router queue would make TCP slow down, instead of buffering
 * without bound. It runs in the benchmark's own process and needs no privileges; its own CPU
 * cost at tens of Mbit/s is a few percent of a core.
 */
import net from "node:net";

export interface SlowLinkOptions {
  /** Bandwidth of each direction, in bits per second. */
  bitsPerSecond: number;
  /** Round-trip time added by the link, in milliseconds (half of it each way). */
  rttMs: number;
  /**
   * Bytes that may wait in each direction's queue before the sender is paused.
   *
   * @default {max(256 KiB, 2 × bandwidth-delay product)}
   */
  queueBytes?: number;
}

export interface SlowLink {
  host: string;
  /** The relay's port: connect here instead of to the target. */
  port: number;
  /** Bytes relayed so far in each direction (client → server, server → client). */
  counters(): { up: number; down: number };
  /** Stops listening and destroys every relayed connection. */
  close(): Promise<void>;
}

/** Starts a relay on 127.0.0.1 (a free port) to `target`. */
export async function startSlowLink(target: { host: string; port: number }, options: SlowLinkOptions): Promise<SlowLink> {
  const { bitsPerSecond, rttMs } = options;
  if (!(bitsPerSecond > 0) || !(rttMs >= 0)) throw new RangeError(`Cannot shape a link of ${bitsPerSecond} bit/s and ${rttMs} ms RTT`);
  const bdp = (bitsPerSecond / 8) * (rttMs / 1000);
  const queueBytes = options.queueBytes ?? Math.max(256 * 1024, Math.ceil(2 * bdp));
  const sockets = new Set<net.Socket>();
  const totals = { up: 0, down: 0 };
  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    for (const socket of [client, upstream]) {
      socket.setNoDelay(true);
      sockets.add(socket);
      socket.once("close", () => sockets.delete(socket));
    }
    const fail = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on("error", fail);
    upstream.on("error", fail);
    shape(client, upstream, { bitsPerSecond, delayMs: rttMs / 2, queueBytes }, (n) => (totals.up += n));
    shape(upstream, client, { bitsPerSecond, delayMs: rttMs / 2, queueBytes }, (n) => (totals.down += n));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    host: "127.0.0.1",
    port,
    counters: () => ({ ...totals }),
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * Moves data from `from` to `to` through one direction of the link: each piece is delivered
 * when the link has serialised it and the one-way delay has passed, in order.
 */
function shape(from: net.Socket, to: net.Socket, link: { bitsPerSecond: number; delayMs: number; queueBytes: number }, onDelivered: (bytes: number) => void): void {
  const queue: Array<{ data: Buffer; due: number }> = [];
  let queued = 0;
  let linkFreeAt = 0;
  let timer: NodeJS.Timeout | undefined;
  let ended = false;
  const deliver = (): void => {
    timer = undefined;
    const now = performance.now();
    while (queue.length > 0 && queue[0]!.due <= now) {
      const { data } = queue.shift()!;
      queued -= data.byteLength;
      onDelivered(data.byteLength);
      if (!to.destroyed) to.write(data);
    }
    if (queued < link.queueBytes / 2 && from.isPaused()) from.resume();
    if (queue.length > 0) timer = setTimeout(deliver, Math.max(0, queue[0]!.due - now));
    else if (ended && !to.destroyed) to.end();
  };
  from.on("data", (data: Buffer) => {
    const now = performance.now();
    const start = Math.max(now, linkFreeAt);
    linkFreeAt = start + (data.byteLength * 8 * 1000) / link.bitsPerSecond;
    queue.push({ data, due: linkFreeAt + link.delayMs });
    queued += data.byteLength;
    if (queued > link.queueBytes) from.pause();
    if (timer === undefined) timer = setTimeout(deliver, Math.max(0, queue[0]!.due - now));
  });
  from.on("end", () => {
    ended = true;
    if (queue.length === 0 && timer === undefined && !to.destroyed) to.end();
  });
  from.on("close", () => {
    if (!ended) {
      clearTimeout(timer);
      to.destroy();
    }
  });
}
