import { test } from "node:test";
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { z } from "zod";
import { CwsError } from "../errors.ts";
import { readLines } from "./framing.ts";
import { JsonText, RpcCaller, serveRpc } from "./rpc.ts";

const Table = {
  list: { params: z.object({ count: z.number().int() }), result: z.object({ items: z.array(z.object({ n: z.number(), name: z.string() })) }) },
  plain: { params: z.object({}), result: z.object({ ok: z.boolean() }) },
};

/** A caller and a serving loop joined by two in-memory pipes. */
function connect(handle: (method: "list" | "plain", params: unknown) => Promise<unknown>): { caller: RpcCaller<typeof Table>; lines: string[]; close(): void } {
  const requests = new PassThrough();
  const responses = new PassThrough();
  const lines: string[] = [];
  responses.on("data", (piece: Buffer) => lines.push(piece.toString("utf8")));
  void serveRpc({ table: Table, lines: readLines(requests), output: responses, handle });
  const caller = new RpcCaller(Table, readLines(responses)[Symbol.asyncIterator](), requests, { peer: "test", lostError: () => new CwsError("CONNECTION_LOST", "closed") });
  return { caller, lines, close: () => requests.end() };
}

test("a result written as JSON text in pieces arrives as one message, the same value, in writes of bounded size", async () => {
  const items = Array.from({ length: 5000 }, (_, n) => ({ n, name: `item ${n} ${"x".repeat(n % 50)}` }));
  const { caller, lines, close } = connect(async (method, params) => {
    if (method === "plain") return { ok: true };
    const count = (params as { count: number }).count;
    const chunk = 100;
    const pieces = ['{"items":['];
    for (let i = 0; i < count; i += chunk) pieces.push(`${i === 0 ? "" : ","}${JSON.stringify(items.slice(i, i + chunk)).slice(1, -1)}`);
    pieces.push("]}");
    return new JsonText(pieces);
  });
  assert.deepEqual(await caller.call("list", { count: items.length }), { items });
  // The next answer on the same stream is read as its own message.
  assert.deepEqual(await caller.call("plain", {}), { ok: true });
  const written = lines.join("");
  assert.equal(written.split("\n").length, 3, "two lines, each ended by a newline");
  assert.ok(lines.length > 4, "the long line went out in several writes");
  assert.ok(Math.max(...lines.map((l) => l.length)) < 2 * 64 * 1024 + 10_000, "no write much larger than the batch size");
  close();
});

test("a large reply is not kept alive by the reading side once its caller has dropped it", async () => {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  const responses = new PassThrough();
  const caller = new RpcCaller(Table, readLines(responses)[Symbol.asyncIterator](), new PassThrough().resume(), { peer: "test", lostError: () => new CwsError("CONNECTION_LOST", "closed") });
  const used = () => {
    gc();
    const { heapUsed, external } = process.memoryUsage();
    return heapUsed + external;
  };
  // A 16 MB reply line, arriving as an SSH channel delivers it: in packets of 32 KiB.
  const reply = () => {
    const line = Buffer.from(`${JSON.stringify({ id: 1, ok: true, result: { ok: true, padding: "x".repeat(16 * 2 ** 20) } })}\n`);
    for (let at = 0; at < line.length; at += 32 * 1024) responses.write(Buffer.from(line.subarray(at, at + 32 * 1024)));
  };
  const before = used();
  let result: unknown = caller.call("plain", {});
  reply();
  result = await result;
  assert.deepEqual(result, { ok: true });
  result = undefined;
  // The reader now waits for the next line: the reply's text, bytes and parsed form are garbage.
  // Memory outside the heap is counted as freed only after collections and a turn or two of the
  // event loop (its finalizers), so the check is repeated for a while.
  let held = Infinity;
  for (let round = 0; round < 100 && held >= 8 * 2 ** 20; round++) {
    await new Promise((resolve) => setImmediate(resolve));
    held = used() - before;
  }
  assert.ok(held < 8 * 2 ** 20, `${(held / 2 ** 20).toFixed(1)} MiB still held after the reply was dropped`);
  responses.end();
  await caller.done;
});
