/**
 * A JSON-RPC client for `codex app-server` over stdio (one JSON message per line), the
 * integration point Codex offers on a device. cws asks Codex itself what it lists and how it
 * resumes a thread, and registers names through it, instead of writing Codex's SQLite state
 * database (whose schema changes between releases and which Codex rebuilds from rollouts).
 *
 * The process is started with the device's CODEX_HOME, answers are awaited with a timeout
 * and every failure names the method and ends with the tail of Codex's stderr, so a user
 * sees why Codex refused.
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { createInterface } from "node:readline";
import { CwsError } from "../../errors.ts";
import { PACKAGE_VERSION } from "../../version.ts";

/** How to start Codex: the executable and the arguments before `app-server`. */
export interface CodexCommand {
  command: string;
  args: readonly string[];
}

export interface AppServerOptions {
  codex: CodexCommand;
  codexHome: string;
  /** Extra `-c key=value` overrides. */
  config?: readonly string[];
  /** Extra environment (merged over process.env). */
  env?: Readonly<Record<string, string | undefined>>;
  /** Per-request timeout. @default 30 s */
  timeoutMs?: number;
  /** Gets every notification Codex sends (method and params). */
  onNotification?: (method: string, params: unknown) => void;
}

interface Waiter {
  method: string;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

const STDERR_TAIL = 2_000;

export class CodexAppServer {
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #timeoutMs: number;
  readonly #pending = new Map<number, Waiter>();
  #nextId = 1;
  #stderr = "";
  #exited: Promise<void>;

  private constructor(options: AppServerOptions) {
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    const args = [...options.codex.args, "app-server", ...(options.config ?? []).flatMap((c) => ["-c", c])];
    this.#child = spawn(options.codex.command, args, {
      env: { ...process.env, RUST_LOG: "error", ...options.env, CODEX_HOME: options.codexHome },
      stdio: ["pipe", "pipe", "pipe"],
      windowsHide: true,
    });
    this.#child.stderr.on("data", (piece: Buffer) => {
      this.#stderr = (this.#stderr + piece.toString("utf8")).slice(-STDERR_TAIL);
    });
    createInterface({ input: this.#child.stdout }).on("line", (line) => {
      let message: { id?: unknown; method?: unknown; params?: unknown; result?: unknown; error?: { message?: unknown } };
      try {
        message = JSON.parse(line) as typeof message;
      } catch {
        return; // not a protocol line
      }
      if (typeof message.id === "number" && this.#pending.has(message.id) && message.method === undefined) {
        const waiter = this.#pending.get(message.id)!;
        this.#pending.delete(message.id);
        clearTimeout(waiter.timer);
        if (message.error !== undefined) {
          waiter.reject(
            new CwsError("CODEX_FAILED", `codex app-server refused ${waiter.method}: ${String(message.error?.message ?? JSON.stringify(message.error))}`),
          );
        } else waiter.resolve(message.result);
        return;
      }
      if (typeof message.method === "string") {
        if (typeof message.id === "number" || typeof message.id === "string") {
          // A request from Codex (an approval): cws never approves anything.
          this.#child.stdin.write(JSON.stringify({ id: message.id, error: { code: -32601, message: "cws does not answer requests" } }) + "\n");
        } else options.onNotification?.(message.method, message.params);
      }
    });
    this.#exited = new Promise((resolve) => {
      const fail = (why: string) => {
        for (const waiter of this.#pending.values()) {
          clearTimeout(waiter.timer);
          waiter.reject(new CwsError("CODEX_FAILED", `codex app-server ${why} before answering ${waiter.method}: ${this.#stderr.trim()}`));
        }
        this.#pending.clear();
        resolve();
      };
      this.#child.on("exit", (code, signal) => fail(`exited (${signal ?? code})`));
      this.#child.on("error", (error) => fail(`could not start (${error.message})`));
    });
    this.#child.stdin.on("error", () => {}); // a dead child is reported by "exit"
  }

  /** Starts `codex app-server` and performs the initialize handshake. */
  static async start(options: AppServerOptions): Promise<CodexAppServer> {
    const server = new CodexAppServer(options);
    try {
      await server.request("initialize", { clientInfo: { name: "cws", title: "codex-workspace-sync", version: PACKAGE_VERSION } });
      server.notify("initialized");
    } catch (error) {
      await server.close();
      throw error;
    }
    return server;
  }

  request<T = unknown>(method: string, params: unknown = {}): Promise<T> {
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new CwsError("CODEX_FAILED", `codex app-server did not answer ${method} within ${this.#timeoutMs} ms: ${this.#stderr.trim()}`));
      }, this.#timeoutMs);
      this.#pending.set(id, { method, resolve: (v) => resolve(v as T), reject, timer });
      this.#child.stdin.write(JSON.stringify({ id, method, params }) + "\n");
    });
  }

  notify(method: string, params?: unknown): void {
    this.#child.stdin.write(JSON.stringify(params === undefined ? { method } : { method, params }) + "\n");
  }

  /** Ends the process (closing stdin first, so Codex flushes) and waits for it. */
  async close(): Promise<void> {
    if (this.#child.exitCode === null && this.#child.signalCode === null) {
      this.#child.stdin.end();
      const timer = setTimeout(() => this.#child.kill(), 2_000);
      await this.#exited;
      clearTimeout(timer);
    }
  }
}
