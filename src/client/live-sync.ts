/**
 * Live sync (`cws turn-on-sync`): hold the global lease, prove it with heartbeats, watch the
 * superproject, and push changes after a quiet period, until Ctrl+C or `cws turn-off-sync`.
 * Every push carries the lease's fencing token, so if this device loses the lease (its
 * heartbeats stopped for longer than the lease lives, and another device took over), the hub
 * refuses its pushes even if this process wakes up much later.
 *
 * Stopping is always the same path: wait for the sync in flight, make a final push, release
 * the lease, remove the live marker. A lost lease stops without a final push (it would be
 * refused) and leaves every local file where it is, for `update-from-server` to reconcile.
 */
import { watch, type FSWatcher } from "node:fs";
import { mkdir, readFile, readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { CwsError, isCwsError } from "../errors.ts";
import { writeFileAtomic } from "../fs-atomic.ts";
import { snapshotNumber, type LeaseState } from "../protocol/messages.ts";
import type { AgentConnection } from "../transport/connection.ts";
import type { StateStore } from "./state.ts";
import { syncSuperproject, type SyncSummary } from "./sync.ts";
import { stopKeptSession } from "./kept-session-wire.ts";
import { listenForHandoffs, liveSocketPath, type HandoffReply, type HandoffRequest } from "./live-handoff.ts";

import { DEFAULT_HEARTBEAT_MS, DEFAULT_QUIET_MS, DEFAULT_RESCAN_MS } from "./live-sync-defaults.ts";

export { DEFAULT_HEARTBEAT_MS, DEFAULT_QUIET_MS, DEFAULT_RESCAN_MS };
/** How often the stop-request file of `turn-off-sync` is looked for. */
const STOP_POLL_MS = 250;

export type LiveEvent =
  | { type: "started"; lease: LeaseState }
  | { type: "synced"; summary: SyncSummary }
  | { type: "heartbeat"; lease: LeaseState }
  | { type: "sync-failed"; error: CwsError }
  | { type: "stopping"; reason: "interrupt" | "turn-off-sync" | "lease-lost" | "error" }
  | { type: "stopped"; released: boolean };

export interface LiveSyncOptions {
  state: StateStore;
  slug: string;
  /** Opens a device session (the caller decides the transport). */
  connect: () => Promise<AgentConnection>;
  /** Aborting stops live sync cleanly (Ctrl+C). */
  signal?: AbortSignal;
  heartbeatMs?: number;
  quietMs?: number;
  rescanMs?: number;
  onEvent?: (event: LiveEvent) => void;
  /**
   * Asked when another device holds the lease (shown its holder, superproject and last
   * heartbeat); resolving true takes the lease over. Without it, a held lease is refused
   * (LEASE_HELD). The old holder's next push is refused by its stale fencing token.
   */
  takeOver?: (holder: LeaseState) => Promise<boolean>;
}

export interface LiveSyncResult {
  syncs: number;
  stoppedBy: "interrupt" | "turn-off-sync" | "lease-lost" | "error";
  released: boolean;
  error?: CwsError;
}

const LiveMarker = z.object({ pid: z.number().int(), slug: z.string(), token: z.number().int(), startedAt: z.number() });
export type LiveMarker = z.infer<typeof LiveMarker>;

export function liveDir(state: StateStore): string {
  return join(state.home, "live");
}

function markerPath(state: StateStore, slug: string): string {
  return join(liveDir(state), `${slug}.json`);
}

export function stopRequestPath(state: StateStore, slug: string): string {
  return join(liveDir(state), `${slug}.stop`);
}

/** The live sync sessions this device runs now (markers whose process is alive). */
export async function runningLiveSyncs(state: StateStore): Promise<LiveMarker[]> {
  let names: string[];
  try {
    names = await readdir(liveDir(state));
  } catch {
    return [];
  }
  const markers: LiveMarker[] = [];
  for (const name of names.filter((n) => n.endsWith(".json"))) {
    try {
      const marker = LiveMarker.parse(JSON.parse(await readFile(join(liveDir(state), name), "utf8")));
      process.kill(marker.pid, 0);
      markers.push(marker);
    } catch {
      // A marker left by a process that died: not running.
    }
  }
  return markers;
}

/**
 * Checks that turn-on-sync may start: the local copy must not be behind the server, or live
 * sync would push an old state over newer work.
 */
export async function checkNotBehind(conn: AgentConnection, state: StateStore, slug: string): Promise<void> {
  const binding = state.binding(slug);
  const { snapshot } = await conn.call("head", { slug });
  if (snapshot !== null && snapshot.id !== binding.base) {
    throw new CwsError("BEHIND_SERVER", `This device's copy of ${slug} is behind the server (the server is at snapshot ${snapshotNumber(snapshot)} from ${snapshot.deviceName}; this device ${binding.base === null ? "never synced" : "is at an older one"}). Run \`cws update-from-server ${slug}\` to bring it up to date, or \`cws override-current-state ${slug}\` to make this device's copy the server's state.`, {
      data: { head: snapshot.id, base: binding.base },
    });
  }
}

export async function runLiveSync(options: LiveSyncOptions): Promise<LiveSyncResult> {
  const { state, slug } = options;
  const emit = options.onEvent ?? (() => {});
  const heartbeatMs = options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
  const quietMs = options.quietMs ?? DEFAULT_QUIET_MS;
  const rescanMs = options.rescanMs ?? DEFAULT_RESCAN_MS;
  const root = state.binding(slug).root;

  // A kept session of this device (kept-session.ts) could be syncing this folder right now: it
  // is asked to finish that sync and stop, so that live sync alone syncs it from here on (while
  // the live marker exists, a new kept session refuses this superproject).
  await stopKeptSession(state.home);
  let conn = await options.connect();
  let lease: LeaseState;
  try {
    await checkNotBehind(conn, state, slug);
    let takeOver = false;
    if (options.takeOver !== undefined) {
      const current = await conn.call("leaseStatus", {});
      const deviceId = state.enrolled().device.id;
      if (current.active && current.deviceId !== deviceId) {
        if (!(await options.takeOver(current))) throw new CwsError("CANCELLED", `Nothing was changed: ${current.deviceName} keeps the lease.`);
        takeOver = true;
      }
    }
    lease = await conn.call("acquireLease", { slug, takeOver });
  } catch (error) {
    await conn.close();
    throw error;
  }
  const token = lease.token;
  await mkdir(liveDir(state), { recursive: true });
  await rm(stopRequestPath(state, slug), { force: true });
  await writeFileAtomic(markerPath(state, slug), JSON.stringify({ pid: process.pid, slug, token, startedAt: Date.now() } satisfies LiveMarker));
  emit({ type: "started", lease });

  let syncs = 0;
  let stopReason: LiveSyncResult["stoppedBy"] | undefined;
  let stopError: CwsError | undefined;
  let wake: (() => void) | undefined;
  const stop = (reason: LiveSyncResult["stoppedBy"], error?: CwsError) => {
    if (stopReason !== undefined) return;
    stopReason = reason;
    stopError = error;
    emit({ type: "stopping", reason });
    wake?.();
  };

  /** Runs one sync; reconnects once if the connection dropped. */
  const syncOnce = async (dryRun = false): Promise<HandoffReply> => {
    try {
      const summary = await syncSuperproject({ conn, state, slug, fencingToken: token, dryRun });
      if (!dryRun) {
        syncs++;
        emit({ type: "synced", summary });
      }
      return { ok: true, summary };
    } catch (error) {
      const failure = isCwsError(error) ? error : new CwsError("INTERNAL", `Live sync failed: ${(error as Error)?.message}`, { cause: error });
      if (failure.code === "LEASE_LOST" || failure.code === "LEASE_HELD") {
        stop("lease-lost", failure);
        return { ok: false, error: failure.toWire() };
      }
      emit({ type: "sync-failed", error: failure });
      if (failure.code === "CONNECTION_LOST" || failure.code === "HUB_UNAVAILABLE") {
        await conn.close().catch(() => {});
        conn = await options.connect().catch((reconnectError: unknown) => {
          emit({ type: "sync-failed", error: isCwsError(reconnectError) ? reconnectError : new CwsError("CONNECTION_LOST", String(reconnectError)) });
          return conn;
        });
      }
      return { ok: false, error: failure.toWire() };
    }
  };

  // `cws sync` of this superproject hands its request here (live-handoff.ts); the requests run
  // in the loop below, between this session's own syncs, on its connection and lease.
  const handoffs: Array<{ request: HandoffRequest; answer: (reply: HandoffReply) => void }> = [];
  const handoffServer = await listenForHandoffs(liveSocketPath(state.home, slug), (request) => {
    if (stopReason !== undefined) return Promise.resolve({ ok: false, unavailable: "live sync is stopping" });
    return new Promise<HandoffReply>((answer) => {
      handoffs.push({ request, answer });
      wake?.();
    });
  });

  let dirty = true;
  let lastChange = 0;
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(root, { recursive: true }, () => {
      dirty = true;
      lastChange = Date.now();
      wake?.();
    });
    watcher.on("error", () => { dirty = true; });
  } catch {
    // Without a watcher (some network drives), the periodic rescan still finds every change.
  }
  const onAbort = () => stop("interrupt");
  options.signal?.addEventListener("abort", onAbort, { once: true });
  if (options.signal?.aborted) stop("interrupt");

  const heartbeat = setInterval(() => {
    conn.call("heartbeat", { token }).then(
      (state) => emit({ type: "heartbeat", lease: state }),
      (error: unknown) => {
        if (isCwsError(error, "LEASE_LOST")) stop("lease-lost", error);
        // Other failures (a dropped connection) are retried by the next beat; the lease lives
        // four beats, so one missed beat costs nothing.
      },
    );
  }, heartbeatMs);
  const rescan = setInterval(() => { dirty = true; lastChange = 0; wake?.(); }, rescanMs);
  const stopPoll = setInterval(() => {
    stat(stopRequestPath(state, slug)).then(() => stop("turn-off-sync"), () => {});
  }, STOP_POLL_MS);

  try {
    while (stopReason === undefined) {
      const handoff = handoffs.shift();
      if (handoff !== undefined) {
        // A requested sync runs now, quiet period or not: the person asked for it.
        if (!handoff.request.dryRun) dirty = false;
        handoff.answer(await syncOnce(handoff.request.dryRun));
        continue;
      }
      const quietFor = Date.now() - lastChange;
      if (dirty && quietFor >= quietMs) {
        dirty = false;
        await syncOnce();
        continue;
      }
      // Sleep until a watcher event, a timer, or the end of the quiet period.
      // The timer is cleared when something else wakes the loop: left running, it would keep
      // the process alive for up to a quiet period after live sync stopped.
      await new Promise<void>((resolve) => {
        const timer = dirty ? setTimeout(resolve, Math.max(quietMs - quietFor, 10)) : undefined;
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
    }
  } finally {
    clearInterval(heartbeat);
    clearInterval(rescan);
    clearInterval(stopPoll);
    watcher?.close();
    options.signal?.removeEventListener("abort", onAbort);
    await handoffServer?.close();
    for (const { answer } of handoffs.splice(0)) answer({ ok: false, unavailable: "live sync is stopping" });
  }

  let released = false;
  if (stopReason !== "lease-lost") {
    // The final push: whatever changed since the last sync reaches the server before the
    // lease is given up.
    await syncOnce();
    try {
      await conn.call("releaseLease", { token });
      released = true;
    } catch {
      // The lease then expires by itself after its TTL.
    }
  }
  await conn.close().catch(() => {});
  await rm(markerPath(state, slug), { force: true });
  await rm(stopRequestPath(state, slug), { force: true });
  emit({ type: "stopped", released });
  return { syncs, stoppedBy: stopReason, released, error: stopError };
}

/**
 * Asks running live sync sessions of this device to stop (the stop-request file), and waits
 * for them. Returns the slugs that stopped.
 */
export async function requestStop(state: StateStore, options: { slug?: string; timeoutMs?: number; signal?: AbortSignal } = {}): Promise<string[]> {
  const running = (await runningLiveSyncs(state)).filter((m) => options.slug === undefined || m.slug === options.slug);
  for (const marker of running) await writeFileAtomic(stopRequestPath(state, marker.slug), `${Date.now()}\n`);
  const deadline = Date.now() + (options.timeoutMs ?? 120_000);
  const stopped: string[] = [];
  for (const marker of running) {
    while (Date.now() < deadline && !options.signal?.aborted) {
      const still = (await runningLiveSyncs(state)).some((m) => m.slug === marker.slug && m.pid === marker.pid);
      if (!still) {
        stopped.push(marker.slug);
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, STOP_POLL_MS));
    }
  }
  return stopped;
}
