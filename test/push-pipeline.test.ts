/**
 * The push pipeline (src/client/push.ts) with its bundle-building workers, against a real store
 * reached through an in-process connection: every chunk lands once and verified, bundles are
 * sized as planned, big files are split at chunk boundaries, and a file that changed since the
 * scan stops the push with an error that names it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Store } from "../server-agent/store/store.ts";
import { initHash } from "../src/core/hash.ts";
import { chunkId, type ManifestEntry } from "../src/core/manifest.ts";
import { isCwsError } from "../src/errors.ts";
import { readChunkRange } from "../src/client/bundle-build.ts";
import { ChunkScratch, readFileChunks } from "../src/client/file-chunks.ts";
import { nextBundleBytes, pushChunks } from "../src/client/push.ts";
import { scanTree } from "../src/client/scanner.ts";
import type { AgentConnection } from "../src/transport/connection.ts";
import type { Hello } from "../src/protocol/messages.ts";

/** The agent's side of a push, in process: uploads land in the store's incoming folder. */
function storeConnection(store: Store): AgentConnection & { uploads: number } {
  const conn = {
    uploads: 0,
    hello: { type: "hello", capabilities: ["bundles-stream"] } as unknown as Hello,
    async call(method: string, params: { ids?: string[]; name?: string }) {
      if (method === "missingChunks") return { missing: await store.missing(params.ids ?? []) };
      if (method === "ingestBundle") return store.ingestBundle(params.name ?? "");
      throw new Error(`unexpected call ${method}`);
    },
    async upload(localPath: string, name: string) {
      conn.uploads++;
      await copyFile(localPath, join(store.paths.incoming, name));
    },
    async download() {
      throw new Error("unexpected download");
    },
    async downloadBytes(): Promise<Buffer> {
      throw new Error("unexpected download");
    },
    counters: () => ({ sent: 0, received: 0 }),
    async close() {},
  };
  return conn as AgentConnection & { uploads: number };
}

/** Runs `body` with environment variables set, restoring them afterwards. */
async function withEnv<T>(vars: Record<string, string>, body: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((key) => [key, process.env[key]]));
  Object.assign(process.env, vars);
  try {
    return await body();
  } finally {
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  }
}

async function setup(): Promise<{ dir: string; root: string; store: Store }> {
  await initHash();
  const dir = await mkdtemp(join(tmpdir(), "cws-push-test-"));
  const root = join(dir, "root");
  await mkdir(join(root, "notes"), { recursive: true });
  for (let i = 0; i < 40; i++) await writeFile(join(root, "notes", `note-${i}.md`), `# Note ${i}\n\n${"some words to compress ".repeat(50 + i)}\n`);
  // The same content twice: its chunk must be sent once.
  await writeFile(join(root, "notes", "copy-a.md"), "# twin\n".repeat(300));
  await writeFile(join(root, "notes", "copy-b.md"), "# twin\n".repeat(300));
  // About 30 chunks: split across several bundles at the small target below.
  await writeFile(join(root, "big.bin"), randomBytes(2_000_000));
  const store = await Store.open(join(dir, "server"));
  return { dir, root, store };
}

function fileInputs(root: string, entries: readonly ManifestEntry[]): Array<{ entry: ManifestEntry; root: string }> {
  return entries.filter((e) => e.kind === "file").map((entry) => ({ entry, root }));
}

test("a push through the workers stores every chunk once, in bundles of the planned size, splitting a big file", async () => {
  const { dir, root, store } = await setup();
  try {
    const { manifest } = await scanTree({ root });
    const files = fileInputs(root, manifest.entries);
    const unique = new Set(files.flatMap(({ entry }) => entry.chunks.map(chunkId)));
    const conn = storeConnection(store);
    const stats = await withEnv({ CWS_PUSH_WORKERS: "2", CWS_BUNDLE_TARGET_BYTES: "400000" }, () => pushChunks({ conn, files }));
    assert.equal(stats.chunks, unique.size);
    assert.ok(stats.bundles >= 5, `${stats.bundles} bundles for ~2.1 MB at a 400 kB target`);
    assert.equal(conn.uploads, stats.bundles);
    assert.deepEqual(await store.missing([...unique]), []);
    // readChunk re-hashes what was stored.
    for (const id of unique) await store.readChunk(id);
    // A second push finds nothing missing and builds nothing.
    assert.deepEqual(await pushChunks({ conn, files }), { chunks: 0, bytes: 0, bundles: 0 });
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test("a file changed since the scan stops a push through the workers with CORRUPT naming it", async () => {
  const { dir, root, store } = await setup();
  try {
    const { manifest } = await scanTree({ root });
    // Same size, other bytes: only reading it again can tell.
    await writeFile(join(root, "notes", "note-3.md"), `# Note 3\n\n${"some words to compress ".repeat(53)}\n`.replace("some", "SOME"));
    const conn = storeConnection(store);
    await assert.rejects(
      withEnv({ CWS_PUSH_WORKERS: "2", CWS_BUNDLE_TARGET_BYTES: "400000" }, () => pushChunks({ conn, files: fileInputs(root, manifest.entries) })),
      (error: unknown) => isCwsError(error, "CORRUPT") && (error.data as { path?: string } | undefined)?.path === "files/notes/note-3.md",
    );
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test("readChunkRange() reads one part of a file and notices a change inside it", async () => {
  const { dir, root, store } = await setup();
  try {
    const { manifest } = await scanTree({ root });
    const entry = manifest.entries.find((e) => e.path === "files/big.bin")!;
    assert.ok(entry.chunks.length > 4);
    const got = [];
    for await (const chunk of readChunkRange(join(root, "big.bin"), entry, 2, 4)) got.push(chunk.id);
    assert.deepEqual(got, entry.chunks.slice(2, 4).map(chunkId));
    // Flip one byte inside the third chunk.
    const offset = entry.chunks[0][1] + entry.chunks[1][1] + 10;
    const handle = await import("node:fs/promises").then((fs) => fs.open(join(root, "big.bin"), "r+"));
    await handle.write(Buffer.from([0xff ^ (await handle.read(Buffer.alloc(1), 0, 1, offset)).buffer[0]]), 0, 1, offset);
    await handle.close();
    await assert.rejects(async () => {
      for await (const _ of readChunkRange(join(root, "big.bin"), entry, 2, 4)) void _;
    }, (error: unknown) => isCwsError(error, "CORRUPT"));
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test("bundles start small, grow to the target and shrink again at the end of a push", () => {
  const MiB = 1024 * 1024;
  const target = 32 * MiB;
  const total = 600 * MiB;
  assert.equal(nextBundleBytes(target, 0, total, 2), 4 * MiB);
  assert.equal(nextBundleBytes(target, 1, total, 2), 8 * MiB);
  assert.equal(nextBundleBytes(target, 5, total, 2), target);
  assert.equal(nextBundleBytes(target, 10, 40 * MiB, 2), 20 * MiB);
  assert.equal(nextBundleBytes(target, 12, 5 * MiB, 2), 4 * MiB, "never below the first bundle's size");
  assert.equal(nextBundleBytes(1_000_000, 0, total, 2), 1_000_000, "a smaller target wins");
});

test("readFileChunks() and readChunkRange() with a scratch buffer yield the chunks fresh reads yield, each valid until the next is asked for", async () => {
  const { dir, root, store } = await setup();
  try {
    const { manifest } = await scanTree({ root });
    const files = manifest.entries.filter((e) => e.kind === "file");
    assert.ok(files.some((e) => e.chunks.length > 4) && files.some((e) => e.size < 1024 * 1024), "a big file and small ones");
    const scratch = new ChunkScratch();
    for (const entry of files) {
      const absPath = join(root, entry.path.slice("files/".length));
      const fresh = [];
      for await (const chunk of readFileChunks(absPath, entry)) fresh.push(Buffer.from(chunk.data));
      let i = 0;
      for await (const chunk of readFileChunks(absPath, entry, scratch)) assert.ok(Buffer.from(chunk.data).equals(fresh[i++]!), `${entry.path} chunk ${i}`);
      assert.equal(i, fresh.length);
      i = 1;
      for await (const chunk of readChunkRange(absPath, entry, 1, entry.chunks.length, scratch)) assert.ok(Buffer.from(chunk.data).equals(fresh[i++]!), `${entry.path} range chunk ${i}`);
    }
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
});
