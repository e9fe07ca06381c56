/**
 * The command's side of a kept session (kept-session.ts): where its socket is, what a request
 * looks like, and the hand-off itself. Loads nothing but Node's `net` and `fs` (not even
 * `crypto`, which took a twentieth of a second to load): a `cws sync` that a kept session runs
 * must not pay for zod, ssh2 or commander.
 *
 * One connection per request, JSON lines:
 *
 *   command                                  kept session
 *   {"type":"sync",slug,mode,dryRun,…}  ──▶
 *                                       ◀──  {"type":"accepted"}        (or "unavailable", then closed)
 *   {"type":"go"}                       ──▶  (the sync may start only now)
 *                                       ◀──  {"type":"event",event}…    (progress, as sync.ts emits it)
 *   {"type":"cancel"}                   ──▶  (Ctrl+C: the sync stops after its current step)
 *                                       ◀──  {"type":"result",ok,summary | error} or {"type":"unavailable"}
 *
 * Why two steps before the sync starts: a command that gets no "accepted" in time gives up and
 * syncs on its own; were the session to start on the request alone, a late "accepted" would
 * mean two syncs of one folder at once. The session starts only on "go", which the command sends
 * only once it has decided not to sync itself, so each request runs exactly once, here or there.
 * "unavailable" after "go" means the session ran nothing (it found, fresh from disk, that this
 * sync is not one it may run): the command then syncs on its own.
 *
 * `{"type":"status"}` answers `{"type":"status",…}`; `{"type":"stop"}` answers
 * `{"type":"stopping"}` and the connection stays open until the session has finished its
 * current sync and is about to exit.
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CwsError, type WireError } from "../errors.ts";
import type { SyncEvent, SyncSummary } from "./sync.ts";
import { readFile } from "node:fs/promises";
import { connectSocket, socketAnswers, SocketLines, summaryFrom, unreadableAnswer, wireErrorFrom, writeLine } from "./session-socket.ts";
import { LOW_MEMORY_MALLOC_ENV } from "../malloc-env.ts";

/** How long a kept session stays without a request before it exits, when CWS_KEEP_SESSION does not say. */
export const DEFAULT_KEEP_SESSION_SECONDS = 600;

/** How long a command waits for a kept session to accept its request before it syncs on its own. */
export const ACCEPT_TIMEOUT_MS = 3_000;

/** The modes a kept session runs: `cws sync` and `cws update-from-server`. */
export type KeptMode = "sync" | "pull";

/** One sync asked of a kept session. */
export interface KeptSyncRequest {
  type: "sync";
  slug: string;
  mode: KeptMode;
  dryRun: boolean;
  /** The command's environment as far as a sync reads it (see syncEnvironment). */
  env: Record<string, string>;
  /** The checkout the command runs from: a session of another checkout's code does not take it. */
  code: string;
}

/** What a kept session says about itself. */
export interface KeptStatus {
  pid: number;
  startedAt: number;
  /** When it exits if no request comes (ms since the epoch); null while a sync runs. */
  idleExitAt: number | null;
  idleSeconds: number;
  syncs: number;
  /** The slug of the sync running now, if any. */
  running: string | null;
  server: string;
}

/** The socket of this device's kept session. */
export function keptSocketPath(home: string): string {
  return join(home, "kept-session.sock");
}

/** The file that says which process is this device's kept session (created exclusively). */
export function keptLockPath(home: string): string {
  return join(home, "kept-session.pid");
}

/** The kept session's log (its stdout and stderr). */
export function keptLogPath(home: string): string {
  return join(home, "logs", "kept-session.log");
}

/** The checkout this code runs from. */
export function codeIdentity(): string {
  return fileURLToPath(new URL("../..", import.meta.url));
}

/**
 * The idle time of a kept session in seconds from CWS_KEEP_SESSION (0: kept sessions are off),
 * or undefined when the value is not a whole number of seconds (then the default applies).
 */
export function keepSessionSeconds(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.CWS_KEEP_SESSION;
  if (raw === undefined || raw.trim() === "") return DEFAULT_KEEP_SESSION_SECONDS;
  const seconds = Number(raw);
  if (!Number.isInteger(seconds) || seconds < 0) return DEFAULT_KEEP_SESSION_SECONDS;
  // A day at most: a session left for longer holds a server connection nobody uses.
  return Math.min(seconds, 86_400);
}

/** Whether kept sessions are on: never on Windows yet (no Unix socket with an owner-only mode there). */
export function keptSessionsEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  return process.platform !== "win32" && keepSessionSeconds(env) > 0;
}

/** The environment variables a sync reads (Codex home and command, cws's own knobs, the home folder). */
const SYNC_ENV_NAMES = ["CODEX_HOME", "HOME", "USERPROFILE", "PATH", "Path", "XDG_DATA_HOME"];

/**
 * cws variables that do not change what a sync does: the kept session's own idle time, and the
 * fault point of crash tests (it kills the one process it was given to, which is the point).
 */
const UNCOMPARED_ENV_NAMES = ["CWS_KEEP_SESSION", "CWS_FAULT"];

/**
 * The part of an environment a sync depends on, with the umask (new folders a pull makes get
 * it). A kept session runs a request only when the command's is the same as its own, so a
 * request never runs with another CODEX_HOME, fault point or PATH than the command would use.
 */
export function syncEnvironment(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const picked: Record<string, string> = {};
  for (const name of Object.keys(env).sort()) {
    if ((name.startsWith("CWS_") && !UNCOMPARED_ENV_NAMES.includes(name)) || SYNC_ENV_NAMES.includes(name)) picked[name] = env[name] ?? "";
  }
  // NOTE: process.umask() without an argument is deprecated only in the documentation (DEP0139);
  // setting it and back would open a moment with another umask for this whole process.
  picked["(umask)"] = process.umask().toString(8);
  return picked;
}

/** What became of a request handed to a kept session. */
export type KeptOutcome =
  | { ran: true; summary: SyncSummary }
  /** Nothing ran there: the command syncs on its own. */
  | { ran: false; reason: string };

export interface KeptSyncOptions {
  signal?: AbortSignal;
  onEvent?: (event: SyncEvent) => void;
  /** @default ACCEPT_TIMEOUT_MS */
  acceptTimeoutMs?: number;
}

/**
 * Hands a sync to the kept session of the state dir `home`. Resolves with its summary, or with
 * `ran: false` when no session took it (none, a stale socket, no answer in time, or it answered
 * "unavailable"): then nothing ran there, and the caller syncs on its own. Rejects with the
 * sync's own error when the session ran it and it failed.
 *
 * @throws {CwsError} CONNECTION_LOST when the session went away during the sync it had started
 *   (the sync may have got anywhere; running it again is safe, see kept-session.ts)
 */
export async function syncViaKeptSession(home: string, request: Omit<KeptSyncRequest, "type" | "env" | "code">, options: KeptSyncOptions = {}): Promise<KeptOutcome> {
  const { signal, onEvent, acceptTimeoutMs = ACCEPT_TIMEOUT_MS } = options;
  if (signal?.aborted) return { ran: false, reason: "cancelled" };
  const socket = await connectSocket(keptSocketPath(home));
  if (socket === null) return { ran: false, reason: "no kept session" };
  const lines = new SocketLines(socket);
  let onAbort: (() => void) | undefined;
  try {
    writeLine(socket, { type: "sync", ...request, env: syncEnvironment(), code: codeIdentity() } satisfies KeptSyncRequest);
    const first = await lines.next(acceptTimeoutMs);
    if (first?.type !== "accepted") return { ran: false, reason: typeof first?.reason === "string" ? first.reason : "no answer" };
    // From here on the session runs the sync, so this command must not: it only waits.
    writeLine(socket, { type: "go" });
    onAbort = () => writeLine(socket, { type: "cancel" });
    signal?.addEventListener("abort", onAbort, { once: true });
    for (;;) {
      const line = await lines.next();
      if (line === null) {
        // Only this session's end closes the connection before the result: once it is gone,
        // nothing runs the sync any more, and the command may run it again (kept-session.ts
        // says why that is safe). A session that still lives is reported, never raced.
        const gone = await keptSessionGone(home);
        throw new CwsError("CONNECTION_LOST", `The kept session of this device stopped during the sync${gone ? "" : " and is still running (see `cws session status`)"}. Run the sync again: a sync that stopped anywhere is safe to repeat.`, { data: { keptSessionGone: gone } });
      }
      if (line?.type === "event") {
        if (typeof line.event === "object" && line.event !== null) onEvent?.(line.event as SyncEvent);
        continue;
      }
      if (line?.type === "unavailable") return { ran: false, reason: typeof line.reason === "string" ? line.reason : "unavailable" };
      if (line?.type === "result" && line.ok === true) {
        const summary = summaryFrom(line.summary);
        if (summary !== undefined) return { ran: true, summary };
      }
      const error: WireError | undefined = line?.type === "result" && line.ok === false ? wireErrorFrom(line.error) : undefined;
      if (error !== undefined) throw CwsError.fromWire(error);
      throw unreadableAnswer("kept session of this device", "stop it with `cws session stop` and run the sync again");
    }
  } finally {
    if (onAbort !== undefined) signal?.removeEventListener("abort", onAbort);
    socket.destroy();
  }
}

/** Asks the kept session of `home` how it is; null when none answers. */
export async function keptSessionStatus(home: string, timeoutMs = ACCEPT_TIMEOUT_MS): Promise<KeptStatus | null> {
  const socket = await connectSocket(keptSocketPath(home));
  if (socket === null) return null;
  try {
    const lines = new SocketLines(socket);
    writeLine(socket, { type: "status" });
    const line = await lines.next(timeoutMs);
    if (line?.type !== "status" || typeof line.pid !== "number") return null;
    return line as unknown as KeptStatus;
  } finally {
    socket.destroy();
  }
}

/**
 * Asks the kept session of `home` to stop and waits until it has finished its current sync and
 * is exiting (at most `timeoutMs`). Resolves with its pid, or null when none answered.
 */
export async function stopKeptSession(home: string, timeoutMs = 120_000): Promise<number | null> {
  const socket = await connectSocket(keptSocketPath(home));
  if (socket === null) return null;
  try {
    const lines = new SocketLines(socket);
    writeLine(socket, { type: "stop" });
    const line = await lines.next(ACCEPT_TIMEOUT_MS);
    if (line?.type !== "stopping") return null;
    // The session closes this connection when it exits.
    await lines.next(timeoutMs);
    return typeof line.pid === "number" ? line.pid : null;
  } finally {
    socket.destroy();
  }
}

/**
 * Starts this device's kept session in the background, unless kept sessions are off or one
 * answers already. The process is detached, its output goes to the log, and nothing of it
 * holds this command: the command exits at once, and whoever waits for the command's exit (or
 * reads its output to the end) is not kept waiting by it.
 */
export async function startKeptSession(home: string): Promise<void> {
  if (!keptSessionsEnabled()) return;
  const [{ spawn }, fs] = await Promise.all([import("node:child_process"), import("node:fs")]);
  if (await socketAnswers(keptSocketPath(home))) return;
  const logPath = keptLogPath(home);
  let log: number;
  try {
    fs.mkdirSync(join(home, "logs"), { recursive: true, mode: 0o700 });
    // The log is kept short: started afresh once it passes a megabyte.
    const size = fs.statSync(logPath, { throwIfNoEntry: false })?.size ?? 0;
    log = fs.openSync(logPath, size > 1024 * 1024 ? "w" : "a", 0o600);
  } catch {
    return;
  }
  try {
    const child = spawn(process.execPath, [join(codeIdentity(), "src", "cli", "cws.mjs"), "session", "run"], {
      detached: true,
      stdio: ["ignore", log, log],
      // Not the command's working folder: the session must not keep a folder (or a drive) busy.
      cwd: home,
      // It lives for minutes and is counted by its peak memory: see malloc-env.ts.
      env: { ...LOW_MEMORY_MALLOC_ENV, ...process.env },
    });
    child.on("error", () => {});
    child.unref();
  } finally {
    fs.closeSync(log);
  }
}

/** The pid in this device's kept-session lock file, when that process is alive. */
export async function keptSessionPid(home: string): Promise<number | null> {
  const pid = Number((await readFile(keptLockPath(home), "utf8").catch(() => "")).trim());
  return Number.isInteger(pid) && pid > 0 && processAlive(pid) ? pid : null;
}

/** True when no process holds the kept-session lock of `home`, waiting up to `timeoutMs` for it to end. */
async function keptSessionGone(home: string, timeoutMs = 2_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if ((await keptSessionPid(home)) === null) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
