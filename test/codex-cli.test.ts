/**
 * The real Codex CLI (the @openai/codex devDependency) finds a synced thread: device A plays
 * a Windows machine whose superproject is `C:\Users\a\proj`; device B pulls the thread into
 * its own CODEX_HOME, and `codex app-server` on B, asked over JSON-RPC (stdio) for the threads
 * of B's superproject folder, lists it with its name and preview, and does not list it for
 * another folder. No network is needed: listing reads rollouts and the session index only.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { mkdir, mkdtemp, readFile, realpath, rm } from "node:fs/promises";
import { createInterface } from "node:readline";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeCluster, REPO, type TestCluster } from "./helpers/cluster.ts";
import { VSCODE_THREAD, WINDOWS_ROOT, WINDOWS_THREAD, writeFakeCodexHome, type FakeCodexHome } from "./fixtures/codex-fixtures.ts";
import { attachSuperproject, createSuperproject } from "../src/client/commands/superprojects.ts";
import { PACKAGE_VERSION } from "../src/version.ts";

const CODEX_JS = join(REPO, "node_modules", "@openai", "codex", "bin", "codex.js");

let cluster: TestCluster;
let fakeA: FakeCodexHome;
let homeB: string;
before(async () => {
  cluster = await makeCluster();
  fakeA = await writeFakeCodexHome();
  homeB = await mkdtemp(join(tmpdir(), "cws-codex-cli-b-"));
});
after(async () => {
  await fakeA.cleanup();
  await rm(homeB, { recursive: true, force: true });
  await cluster.close();
});

/** A JSON-RPC client for `codex app-server` over stdio (one JSON message per line). */
class AppServer {
  readonly child: ChildProcessWithoutNullStreams;
  #nextId = 1;
  #pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  stderr = "";

  constructor(codexHome: string) {
    this.child = spawn(process.execPath, [CODEX_JS, "app-server"], {
      env: { ...process.env, CODEX_HOME: codexHome, RUST_LOG: "error" },
      stdio: ["pipe", "pipe", "pipe"],
    });
    this.child.stderr.on("data", (piece) => { this.stderr += piece; });
    createInterface({ input: this.child.stdout }).on("line", (line) => {
      let message: { id?: number; result?: unknown; error?: { message: string } };
      try {
        message = JSON.parse(line) as typeof message;
      } catch {
        return; // not a protocol line
      }
      if (typeof message.id !== "number" || !this.#pending.has(message.id)) return; // a notification
      const waiter = this.#pending.get(message.id)!;
      this.#pending.delete(message.id);
      if (message.error) waiter.reject(new Error(`codex app-server: ${message.error.message}`));
      else waiter.resolve(message.result);
    });
    this.child.on("exit", (code) => {
      for (const waiter of this.#pending.values()) waiter.reject(new Error(`codex app-server exited (${code}): ${this.stderr.slice(-2000)}`));
      this.#pending.clear();
    });
  }

  request<T>(method: string, params: unknown): Promise<T> {
    const id = this.#nextId++;
    const answer = new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`codex app-server did not answer ${method} in 30 s: ${this.stderr.slice(-2000)}`)), 30_000);
      this.#pending.set(id, {
        resolve: (value) => { clearTimeout(timer); resolve(value as T); },
        reject: (error) => { clearTimeout(timer); reject(error); },
      });
    });
    this.child.stdin.write(JSON.stringify({ id, method, params }) + "\n");
    return answer;
  }

  notify(method: string): void {
    this.child.stdin.write(JSON.stringify({ method }) + "\n");
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((resolve) => this.child.once("exit", resolve));
    this.child.stdin.end();
    this.child.kill();
    await exited;
  }
}

interface ListedThread {
  id: string;
  name: string | null;
  preview: string;
  cwd: string;
  path: string;
}

test("codex app-server on device B lists the thread synced from A for B's superproject folder only", async () => {
  const version = JSON.parse(await readFile(join(REPO, "node_modules", "@openai", "codex", "package.json"), "utf8")).version as string;
  const a = await cluster.device("cli-a");
  const b = await cluster.device("cli-b");
  // B's superproject is a real folder: Codex canonicalizes the cwd filter when it can.
  const rootB = await realpath(await cluster.folder("cli-b"));
  const elsewhere = await realpath(await cluster.folder("cli-elsewhere"));
  let conn = await a.connect();
  await createSuperproject(conn, await a.state(), { slug: "cli", root: await cluster.folder("cli-a"), codexHome: fakeA.home, codexRoot: WINDOWS_ROOT, codexPlatform: "win32" });
  await conn.close();
  conn = await b.connect();
  await attachSuperproject(conn, await b.state(), { slug: "cli", root: rootB, codexHome: homeB });
  await conn.close();
  await a.sync("cli", { codexPlatform: "win32" });
  const pulled = await b.sync("cli");
  assert.equal(pulled.pulled.files, 3);
  await mkdir(join(rootB, "api"), { recursive: true });

  const server = new AppServer(homeB);
  try {
    const init = await server.request<{ codexHome: string }>("initialize", { clientInfo: { name: "cws-test", version: PACKAGE_VERSION } });
    assert.equal(await realpath(init.codexHome), await realpath(homeB), `codex ${version} uses B's CODEX_HOME`);
    server.notify("initialized");

    const here = await server.request<{ data: ListedThread[] }>("thread/list", { cwd: rootB, modelProviders: [] });
    const thread = here.data.find((t) => t.id === WINDOWS_THREAD.id);
    assert.ok(thread !== undefined, `codex ${version} lists the synced thread for ${rootB}: ${JSON.stringify(here.data.map((t) => [t.id, t.cwd]))}`);
    assert.equal(thread.name, "Grüße parser");
    assert.equal(thread.preview, "Fix the Grüße-Parser: ünïcödé, 日本語, emoji 🚀 and a \"quoted\" path");
    assert.equal(thread.cwd, rootB);
    assert.ok(thread.path.startsWith(homeB));

    // The VS Code thread was created in the `api` sub-folder: listed there, not at the root.
    const api = await server.request<{ data: ListedThread[] }>("thread/list", { cwd: join(rootB, "api"), modelProviders: [] });
    assert.deepEqual(api.data.map((t) => t.id), [VSCODE_THREAD.id]);

    const other = await server.request<{ data: ListedThread[] }>("thread/list", { cwd: elsewhere, modelProviders: [] });
    assert.ok(!other.data.some((t) => t.id === WINDOWS_THREAD.id || t.id === VSCODE_THREAD.id), "not listed for another folder");
  } finally {
    await server.close();
  }
});
