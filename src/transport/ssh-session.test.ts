import assert from "node:assert/strict";
import net from "node:net";
import { describe, it } from "node:test";
import { coalesceWrites } from "./ssh-session.ts";

/** A loopback server that collects what it receives, and a connected client socket. */
async function loopback(): Promise<{ client: net.Socket; received: () => Promise<Buffer>; close: () => void }> {
  const pieces: Buffer[] = [];
  let ended!: () => void;
  const done = new Promise<void>((resolve) => (ended = resolve));
  const server = net.createServer((peer) => {
    peer.on("data", (data: Buffer) => pieces.push(data));
    peer.on("end", () => {
      peer.end();
      ended();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  const client = net.connect({ host: "127.0.0.1", port });
  await new Promise<void>((resolve) => client.once("connect", resolve));
  client.setNoDelay(true);
  return {
    client,
    received: async () => {
      client.end();
      await done;
      return Buffer.concat(pieces);
    },
    close: () => server.close(),
  };
}

describe("coalesceWrites()", () => {
  it("hands the writes of one tick to the kernel in one writev, in order, and later writes too", async () => {
    const { client, received, close } = await loopback();
    try {
      coalesceWrites(client);
      // Node's stream internals: `_writev` receives what a cork held, `_write` a lone write.
      const writevBatches: number[] = [];
      let singleWrites = 0;
      const socket = client as unknown as { _writev: (chunks: unknown[], cb: () => void) => void; _write: (...args: unknown[]) => void };
      const writev = socket._writev.bind(client);
      const write = socket._write.bind(client);
      socket._writev = (chunks, cb) => {
        writevBatches.push(chunks.length);
        writev(chunks, cb);
      };
      socket._write = (...args) => {
        singleWrites++;
        write(...args);
      };
      // What ssh2 does for one packet: length, ciphertext and tag, written one after another.
      const packet = [Buffer.from([0, 0, 0, 8]), Buffer.alloc(32 * 1024, 7), Buffer.from("tag-tag-tag-tag!")];
      for (const piece of packet) client.write(piece);
      await new Promise((resolve) => setImmediate(resolve));
      client.write(Buffer.from("next tick"));
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(writevBatches, [3], "the three pieces of the first tick go out together");
      assert.equal(singleWrites, 1, "the lone write of the next tick goes out by itself");
      assert.deepEqual(await received(), Buffer.concat([...packet, Buffer.from("next tick")]));
    } finally {
      client.destroy();
      close();
    }
  });
});
