/**
 * The kept session: a background process of this device that keeps one session with the server
 * open between one-shot commands, as OpenSSH's ControlPersist keeps a master connection, so that
 * `cws sync` and `cws update-from-server` skip the SSH handshake, the server side's start and
 * most of Node's module loading (see docs/performance.md, "The warm path").
 *
 * A one-shot sync that ran on its own starts one (kept-session-wire.ts `startKeptSession`),
 * detached, its output in `<state>/logs/kept-session.log`. It listens on
 * `<state>/kept-session.sock` (mode 0600, made under a restrictive umask) and runs the syncs
 * commands hand it, one at a time, on its connection. It exits after CWS_KEEP_SESSION seconds
 * without a request (default 600; 0 turns kept sessions off), when its connection is lost and
 * cannot be opened again, when this device's enrollment or server in state.json changes, when
 * the code of the checkout changes, on `cws session stop`, when a live sync starts (which asks it
 * to stop), and on SIGTERM, SIGINT or SIGHUP.
 *
 * Safety: why a sync run here is the sync the command would have run.
 *
 * - Nothing is trusted from memory. Every request opens state.json afresh; the base manifest
 *   and the stat cache are read by the sync itself, and a parsed copy kept from the last sync is
 *   used only while the file on disk is the very file it came from (same inode, size and
 *   nanosecond times: file-memo.ts). So whatever a command run directly changed
 *   (update-from-server, override-current-state, disconnect, attach, enroll-device) is what the
 *   next request sees; a kept session never writes back an older state it held.
 * - The walk of a sync may take folder listings from this session's file watcher
 *   (tree-watch.ts) instead of readdir and lstat: only listings made after the folder was
 *   watched, with no event of that folder since, and only after a marker event showed that every
 *   earlier change was handled. Everything else of the scan (the stat cache, the ignore rules,
 *   hashing) runs as in the command; any doubt lists every folder afresh.
 * - It holds no lease, like a one-shot sync: its pushes carry no fencing token, and the hub
 *   treats them as it treats any one-shot push (refused while another device live-syncs).
 * - It refuses (answers "unavailable", so the command syncs on its own) what it must not run:
 *   a binding without a base (its first sync may need the first-join question, which only the
 *   command can ask on its terminal), a superproject a live sync of this device runs, a
 *   request from another checkout or with another environment (CODEX_HOME, PATH, cws's
 *   variables, the umask: see syncEnvironment), and any request once its state.json names
 *   another device or server.
 * - Before every request it binds its session to this device again (`open`), so a device
 *   revoked on the server, or a connection that died while idle, is noticed before anything
 *   is scanned: a dead connection is opened again; a revoked device ends the kept session and
 *   the command gets the server's own answer when it connects itself.
 * - A request runs once: only after the command's "go" (kept-session-wire.ts). If this process
 *   dies in the middle of a sync, the command sees its socket close without a result and runs
 *   the sync again on its own, once this process is gone. That is safe because a sync is
 *   idempotent: the base is written last, so a sync stopped anywhere (before its commit, after
 *   it, halfway through a pull) leaves the folder, the server head and the old base, and the next
 *   sync plans from exactly those: what was committed is seen on both sides and not pushed
 *   again, temp files of the pull are removed as leftovers (leftovers.ts), and every file a pull
 *   replaced was backed up first.
 */
import { createHash } from "node:crypto";
import { readdirSync, statSync } from "node:fs";
import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Socket } from "node:net";
import { CwsError, isCwsError, type WireError } from "../errors.ts";
import type { AgentConnection } from "../transport/connection.ts";
import { StateStore } from "./state.ts";
import { syncSuperproject } from "./sync.ts";
import { runningLiveSyncs } from "./live-sync.ts";
import { keepParsedFiles } from "./file-memo.ts";
import { listenOnSocket, SocketLines, writeLine } from "./session-socket.ts";
import { maxWatchedFolders, TreeWatcher } from "./tree-watch.ts";
import {
  codeIdentity, keptLockPath, processAlive, keptSocketPath, syncEnvironment, type KeptMode, type KeptStatus, type KeptSyncRequest,
} from "./kept-session-wire.ts";

/** How often an idle kept session checks its connection and state.json. */
const CHECK_INTERVAL_MS = 30_000;

/** How long the per-request check of the connection (`open`) may take before it counts as dead. */
const OPEN_TIMEOUT_MS = 10_000;

/** How long a connection may take to send its request. */
const REQUEST_TIMEOUT_MS = 5_000;

/** The longest slug accepted in a request (slugs are short; state.json says which exist). */
const MAX_SLUG_LENGTH = 200;

export interface KeptSessionOptions {
  /** The client's state dir. */
  home: string;
  /** Exit after this long without a request. */
  idleMs: number;
  /** Opens a session as this device (connect.ts in real use). */
  connect: (state: StateStore) => Promise<AgentConnection>;
  /** Turns a failure into what the command would print (failure.ts in real use). */
  describe: (error: unknown) => WireError;
  /** Where its log lines go. @default stderr */
  log?: (line: string) => void;
}

/** Why a kept session ended. */
export interface KeptSessionEnd {
  reason: string;
  syncs: number;
}

interface Job {
  request: KeptSyncRequest;
  socket: Socket;
  lines: SocketLines;
}

/** Runs a kept session until one of its exit conditions; resolves with why it ended. */
export async function runKeptSession(options: KeptSessionOptions): Promise<KeptSessionEnd> {
  const { home, idleMs } = options;
  const log = options.log ?? ((line: string) => void process.stderr.write(`${new Date().toISOString()} ${line}\n`));
  const first = await StateStore.open(home);
  const { device, server } = first.enrolled();
  const identity = identityOf(first.data);
  const code = codeIdentity();
  const stamp = sourceStamp(code);
  const environment = syncEnvironment();
  // The base manifest and stat cache of each sync are read again only when their files changed.
  keepParsedFiles();

  const early = (reason: string): KeptSessionEnd => {
    log(`kept session not started: ${reason}`);
    return { reason, syncs: 0 };
  };
  if (!(await takeLock(keptLockPath(home)))) return early("another kept session of this device is running");
  let conn: AgentConnection | null = null;
  let server_: Awaited<ReturnType<typeof listenOnSocket>>;
  const jobs: Job[] = [];
  const stopWaiters = new Set<Socket>();
  let running: { slug: string; abort: AbortController } | null = null;
  let stopReason: string | null = null;
  let syncs = 0;
  let idleTimer: NodeJS.Timeout | undefined;
  let idleExitAt: number | null = null;
  let wake: (() => void) | undefined;
  const startedAt = Date.now();
  // A watcher per superproject, so that a sync re-lists only the folders that changed
  // (tree-watch.ts); set up after a sync, between requests.
  const watchers = new Map<string, TreeWatcher>();
  const toWatch = new Set<string>();
  const maxFolders = maxWatchedFolders();

  /** Ends the session once the sync in flight is done; `abort` stops that sync after its current step. */
  const stop = (reason: string, abort = false) => {
    if (abort) running?.abort.abort();
    if (stopReason !== null) return;
    stopReason = reason;
    wake?.();
  };
  const armIdle = () => {
    clearTimeout(idleTimer);
    idleExitAt = Date.now() + idleMs;
    idleTimer = setTimeout(() => stop(`no request for ${Math.round(idleMs / 1000)} s`), idleMs);
  };

  try {
    conn = await options.connect(first);
  } catch (error) {
    await rm(keptLockPath(home), { force: true });
    return early(`cannot connect: ${(error as Error).message}`);
  }
  server_ = await listenOnSocket(keptSocketPath(home), (socket) => void serve(socket));
  if (server_ === undefined) {
    await conn.close().catch(() => {});
    await rm(keptLockPath(home), { force: true });
    return early(`cannot listen on ${keptSocketPath(home)}`);
  }
  log(`kept session started (pid ${process.pid}) for device ${device.name} (${device.id}), server ${describeServer(server)}, environment ${environmentDigest(environment)}; exits after ${Math.round(idleMs / 1000)} s without a request`);

  const signals: NodeJS.Signals[] = ["SIGTERM", "SIGINT", "SIGHUP"];
  const onSignal = (signal: NodeJS.Signals) => stop(signal, true);
  for (const signal of signals) process.on(signal, onSignal);

  /** Reads one connection's request and answers it (a sync is queued and answered by the loop). */
  async function serve(socket: Socket): Promise<void> {
    const lines = new SocketLines(socket);
    const message = await lines.next(REQUEST_TIMEOUT_MS);
    if (message?.type === "status") {
      const status: KeptStatus = { pid: process.pid, startedAt, idleExitAt: running === null ? idleExitAt : null, idleSeconds: Math.round(idleMs / 1000), syncs, running: running?.slug ?? null, server: describeServer(server) };
      socket.end(`${JSON.stringify({ type: "status", ...status })}\n`);
      return;
    }
    if (message?.type === "stop") {
      writeLine(socket, { type: "stopping", pid: process.pid });
      stopWaiters.add(socket);
      stop("asked to stop");
      return;
    }
    const request = message ? parseRequest(message) : undefined;
    if (request === undefined || stopReason !== null) {
      refuse(socket, request === undefined ? "not a request this kept session understands" : STOPPING);
      return;
    }
    writeLine(socket, { type: "accepted" });
    const go = await lines.next();
    // Without "go" the command syncs on its own (it gave up waiting): nothing may run here.
    if (go?.type !== "go") {
      socket.destroy();
      return;
    }
    // Stopped meanwhile: the loop that answers queued requests may be gone already.
    if (stopReason !== null) {
      refuse(socket, STOPPING);
      return;
    }
    jobs.push({ request, socket, lines });
    wake?.();
  }

  /** Why this request must not run here (the command then syncs on its own), or null. */
  async function refusal(request: KeptSyncRequest): Promise<{ reason: string; end?: boolean } | { state: StateStore }> {
    if (request.code !== code) return { reason: "the command runs from another checkout of cws" };
    if (sourceStamp(code) !== stamp) return { reason: "cws was updated since this kept session started", end: true };
    if (JSON.stringify(request.env) !== JSON.stringify(environment)) return { reason: "the command runs with another environment than this kept session" };
    let state: StateStore;
    try {
      state = await StateStore.open(home);
    } catch {
      return { reason: "the state file cannot be read" };
    }
    if (identityOf(state.data) !== identity) return { reason: "this device's enrollment or server changed", end: true };
    const binding = Object.hasOwn(state.data.superprojects, request.slug) ? state.data.superprojects[request.slug] : undefined;
    if (binding === undefined) return { reason: "not bound on this device" };
    // The first sync of a binding may have to ask how the folder joins: only the command can.
    if (binding.base === null) return { reason: "the first sync of a binding runs in the command" };
    if ((await runningLiveSyncs(state)).some((marker) => marker.slug === request.slug)) return { reason: "a live sync runs this superproject" };
    if (!(await usableConnection(state))) return { reason: "the connection to the server cannot be opened again", end: true };
    return { state };
  }

  /**
   * Binds the session to this device again (one round trip): a revoked device is refused here,
   * and a connection that died while idle is replaced before the sync starts.
   */
  async function usableConnection(state: StateStore): Promise<boolean> {
    try {
      await withTimeout(conn!.call("open", { deviceId: device.id }), OPEN_TIMEOUT_MS);
      return true;
    } catch (error) {
      if (!isCwsError(error, "CONNECTION_LOST") && !isCwsError(error, "HUB_UNAVAILABLE") && !isCwsError(error, "AGENT_MISSING")) {
        log(`the server refused this device's session: ${(error as Error).message}`);
        return false;
      }
    }
    log("the connection was lost; opening it again");
    await conn!.close().catch(() => {});
    try {
      conn = await options.connect(state);
      return true;
    } catch (error) {
      log(`cannot open the connection again: ${(error as Error).message}`);
      return false;
    }
  }

  /**
   * The watcher of a superproject's folder, ready for a walk: `barrier()` has run, so its
   * listings are recalled only if every earlier change was seen. A new one (or one for a folder
   * that moved) only learns which folders the walk lists, to watch them after the sync.
   */
  async function watcherFor(slug: string, root: string): Promise<TreeWatcher | undefined> {
    let watcher = watchers.get(slug);
    if (watcher !== undefined && watcher.root !== root) {
      watcher.close();
      watcher = undefined;
    }
    if (watcher === undefined) {
      watcher = new TreeWatcher({ root, markerDir: join(home, "kept-watch"), maxFolders, log });
      watchers.set(slug, watcher);
    }
    if (watcher.gaveUp !== null) return undefined;
    await watcher.barrier();
    toWatch.add(slug);
    return watcher;
  }

  /** Watches the folders the last walks listed and lists those not yet known; stops when a request comes. */
  async function maintainWatchers(): Promise<void> {
    for (const slug of [...toWatch]) {
      const watcher = watchers.get(slug);
      toWatch.delete(slug);
      if (watcher === undefined || stopReason !== null || jobs.length > 0) continue;
      const started = Date.now();
      if (!watcher.watchWalked()) continue;
      await watcher.prime(() => stopReason !== null || jobs.length > 0);
      const { watched, listed } = watcher.size;
      log(`watching ${watched} folder(s) of ${slug}, ${listed} listed (${Date.now() - started} ms)`);
    }
  }

  /** What the watcher did for the last walk, for the log. */
  function watchNote(watcher: TreeWatcher | undefined): string {
    if (watcher === undefined) return "";
    const { recalled, listed } = watcher.takeCounts();
    return `; folders recalled ${recalled}, listed ${listed}`;
  }

  async function runJob(job: Job): Promise<void> {
    const { request, socket, lines } = job;
    const checked = await refusal(request);
    if ("reason" in checked) {
      log(`request for ${request.slug} not run here: ${checked.reason}`);
      refuse(socket, checked.reason);
      if (checked.end) stop(checked.reason);
      return;
    }
    const abort = new AbortController();
    running = { slug: request.slug, abort };
    // The command's Ctrl+C arrives as "cancel": the sync stops after its current step, as it
    // would in the command. A command that went away does not stop the sync: it finishes, so
    // that its base is written.
    void lines.next().then((line) => { if (line?.type === "cancel") abort.abort(); });
    const started = Date.now();
    const phases = new PhaseTimes();
    const watcher = await watcherFor(request.slug, checked.state.binding(request.slug).root);
    try {
      const summary = await syncSuperproject({
        conn: conn!, state: checked.state, slug: request.slug, mode: request.mode, dryRun: request.dryRun, signal: abort.signal,
        onEvent: (event) => {
          if (event.type === "phase") phases.enter(event.phase);
          writeLine(socket, { type: "event", event });
        },
        walkMemo: watcher,
      });
      syncs++;
      writeLine(socket, { type: "result", ok: true, summary });
      log(`${request.mode} of ${request.slug}${request.dryRun ? " (dry run)" : ""}: ${summary.pushed.files + summary.pushed.deleted} pushed, ${summary.pulled.files + summary.pulled.deleted} pulled, ${Date.now() - started} ms (${phases.describe()})${watchNote(watcher)}`);
    } catch (error) {
      const wire = options.describe(error);
      writeLine(socket, { type: "result", ok: false, error: wire });
      log(`${request.mode} of ${request.slug} failed: ${wire.code}: ${wire.message}`);
    } finally {
      running = null;
      socket.end();
    }
  }

  // Idle checks: a lost connection or a changed state.json ends the session without waiting
  // for the next request to find out.
  const check = setInterval(() => {
    if (running !== null || jobs.length > 0 || stopReason !== null) return;
    void (async () => {
      const state = await StateStore.open(home).catch(() => null);
      if (state === null || identityOf(state.data) !== identity) return stop("this device's enrollment or server changed");
      if (!(await usableConnection(state))) stop("the connection to the server was lost and cannot be opened again");
    })();
  }, CHECK_INTERVAL_MS);

  /**
   * Runs a dry run of every superproject it may sync, once, right after it started: the code of
   * a sync is then loaded and compiled, and the base manifests and stat caches parsed, before
   * the first request comes, which then costs what every later one does. A dry run changes
   * nothing (`cws status` runs the same), beyond the stat cache a scan keeps up to date anyway.
   */
  async function warmUp(): Promise<void> {
    const state = await StateStore.open(home).catch(() => null);
    if (state === null || identityOf(state.data) !== identity) return;
    const live = new Set((await runningLiveSyncs(state)).map((marker) => marker.slug));
    for (const [slug, binding] of Object.entries(state.data.superprojects)) {
      if (stopReason !== null || jobs.length > 0) return;
      if (binding.base === null || live.has(slug)) continue;
      const abort = new AbortController();
      running = { slug, abort };
      const started = Date.now();
      const watcher = await watcherFor(slug, binding.root);
      try {
        await syncSuperproject({ conn: conn!, state, slug, dryRun: true, signal: abort.signal, walkMemo: watcher });
        log(`warmed up with a dry run of ${slug} in ${Date.now() - started} ms${watchNote(watcher)}`);
      } catch (error) {
        log(`dry run of ${slug} failed: ${(error as Error).message}`);
      } finally {
        running = null;
      }
    }
  }

  try {
    await warmUp();
    await maintainWatchers();
    armIdle();
    while (stopReason === null) {
      const job = jobs.shift();
      if (job !== undefined) {
        clearTimeout(idleTimer);
        idleExitAt = null;
        await runJob(job);
        await maintainWatchers();
        armIdle();
        continue;
      }
      await new Promise<void>((resolve) => { wake = resolve; });
      wake = undefined;
    }
  } finally {
    clearInterval(check);
    clearTimeout(idleTimer);
    for (const watcher of watchers.values()) watcher.close();
    for (const signal of signals) process.off(signal, onSignal);
    // Stops accepting at once; not awaited, as close() waits for open connections, and the
    // connection of a `cws session stop` stays open until the very end.
    server_.close();
    // Requests that were never started: their commands sync on their own.
    for (const job of jobs.splice(0)) refuse(job.socket, STOPPING);
    await conn?.close().catch(() => {});
    await rm(keptSocketPath(home), { force: true });
    await rm(keptLockPath(home), { force: true });
    for (const socket of stopWaiters) socket.end();
    log(`kept session stopped: ${stopReason} (${syncs} sync(s))`);
  }
  return { reason: stopReason ?? "stopped", syncs };
}

/**
 * How long each phase of a sync took (from its "phase" events), for the session's log: where a
 * slow sync spent its time, without a profiler.
 */
class PhaseTimes {
  #current: string | null = null;
  #since = performance.now();
  readonly #spent = new Map<string, number>();

  enter(phase: string): void {
    const now = performance.now();
    if (this.#current !== null) this.#spent.set(this.#current, (this.#spent.get(this.#current) ?? 0) + now - this.#since);
    this.#current = phase === "done" ? null : phase;
    this.#since = now;
  }

  /** E.g. "scan 12 ms, plan 30 ms, push 210 ms, commit 45 ms". */
  describe(): string {
    return [...this.#spent].map(([phase, ms]) => `${phase} ${Math.round(ms)} ms`).join(", ");
  }
}

/** A short digest of an environment, for the session's log (the values may be private). */
export function environmentDigest(env: Record<string, string>): string {
  return createHash("sha256").update(JSON.stringify(env)).digest("hex").slice(0, 12);
}

const STOPPING = "the kept session is stopping";

/** Answers that this request did not and will not run here (the command then syncs on its own), and hangs up. */
function refuse(socket: Socket, reason: string): void {
  socket.end(`${JSON.stringify({ type: "unavailable", reason })}\n`);
}

/** The device and server a kept session serves, as a string to compare. */
function identityOf(data: StateStore["data"]): string {
  return JSON.stringify({ device: data.device, server: data.server });
}

function describeServer(server: ReturnType<StateStore["enrolled"]>["server"]): string {
  return server.transport === "ssh" ? `${server.user}@${server.host}:${server.port}` : `local ${server.dataDir}`;
}

/**
 * The newest modification time among the checkout's source files: a kept session whose code was
 * replaced (an update of cws) ends rather than run old code for new commands.
 */
function sourceStamp(code: string): number {
  let newest = 0;
  const visit = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) visit(path);
      else if (entry.name.endsWith(".ts") || entry.name.endsWith(".mjs")) newest = Math.max(newest, statSync(path).mtimeMs);
    }
  };
  try {
    visit(join(code, "src"));
  } catch {
    // An unreadable checkout: the stamp stays what it can be, and a change still differs.
  }
  return newest;
}

/**
 * Makes the lock file that says this process is the device's kept session. A lock whose process
 * is gone (killed) is taken over; one whose process lives means another kept session runs.
 */
async function takeLock(path: string): Promise<boolean> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFile(path, `${process.pid}\n`, { flag: "wx", mode: 0o600 });
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") return false;
    }
    const pid = Number((await readFile(path, "utf8").catch(() => "")).trim());
    if (Number.isInteger(pid) && pid > 0 && processAlive(pid)) return false;
    await rm(path, { force: true });
  }
  return false;
}

function parseRequest(value: Record<string, unknown>): KeptSyncRequest | undefined {
  const { slug, mode, dryRun, env, code } = value;
  if (value.type !== "sync" || typeof slug !== "string" || slug.length === 0 || slug.length > MAX_SLUG_LENGTH) return undefined;
  if ((mode !== "sync" && mode !== "pull") || typeof dryRun !== "boolean" || typeof code !== "string") return undefined;
  if (typeof env !== "object" || env === null || Array.isArray(env) || !Object.values(env).every((v) => typeof v === "string")) return undefined;
  return { type: "sync", slug, mode: mode as KeptMode, dryRun, env: env as Record<string, string>, code };
}

function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new CwsError("CONNECTION_LOST", `The server did not answer within ${ms} ms`)), ms);
  });
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}
