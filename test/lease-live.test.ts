/**
 * The global lease and live sync, end to end through the local transport: one writer at a
 * time, expiry on the hub's (fake) clock, fencing tokens, clean stops, and handoffs.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { makeCluster, REPO, type TestCluster, type TestDevice } from "./helpers/cluster.ts";
import { runLiveSync, type LiveEvent } from "../src/client/live-sync.ts";
import { isCwsError } from "../src/errors.ts";

let cluster: TestCluster;
/** Live-sync child processes still running; a failed test must not leave one behind. */
const children = new Set<import("node:child_process").ChildProcess>();
before(async () => { cluster = await makeCluster({ fakeHubClock: true }); });
after(async () => {
  for (const child of children) child.kill("SIGKILL");
  await cluster.close();
});


/** Releases whatever lease is active, so tests do not depend on each other's order. */
async function freeLease(device: TestDevice): Promise<void> {
  const conn = await device.connect();
  const lease = await conn.call("leaseStatus", {});
  await conn.close();
  if (lease.active) await cluster.advanceHubClock(121_000);
}

/** Collects live-sync events and lets a test wait for one that matches. */
function eventLog() {
  const events: LiveEvent[] = [];
  const waiters: Array<{ match: (e: LiveEvent) => boolean; resolve: (e: LiveEvent) => void }> = [];
  return {
    events,
    push(event: LiveEvent) {
      events.push(event);
      for (const waiter of [...waiters]) {
        if (waiter.match(event)) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve(event);
        }
      }
    },
    next(match: (e: LiveEvent) => boolean): Promise<LiveEvent> {
      return new Promise((resolve) => waiters.push({ match, resolve }));
    },
  };
}

test("two devices racing for the lease: exactly one wins, every round", async () => {
  const { a, b } = await cluster.pair("race");
  await freeLease(a);
  const [connA, connB] = await Promise.all([a.connect(), b.connect()]);
  try {
    const tokens = new Set<number>();
    for (let round = 0; round < 25; round++) {
      const results = await Promise.allSettled([connA.call("acquireLease", { slug: "race" }), connB.call("acquireLease", { slug: "race" })]);
      const winners = results.filter((r) => r.status === "fulfilled");
      assert.equal(winners.length, 1, `round ${round}: ${winners.length} winners`);
      const loser = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
      assert.ok(isCwsError(loser.reason, "LEASE_HELD"), String(loser.reason));
      const lease = (winners[0] as PromiseFulfilledResult<{ token: number }>).value;
      assert.ok(!tokens.has(lease.token), "every grant has a new token");
      tokens.add(lease.token);
      const winner = results[0].status === "fulfilled" ? connA : connB;
      await winner.call("releaseLease", { token: lease.token });
    }
  } finally {
    await Promise.all([connA.close(), connB.close()]);
  }
});

test("turn-on-sync is refused while the local copy is behind the server", async () => {
  const { a, b, rootA } = await cluster.pair("behind");
  await freeLease(a);
  await writeFile(join(rootA, "notes.md"), "# from A\n");
  await a.sync("behind");
  await assert.rejects(
    runLiveSync({ state: await b.state(), slug: "behind", connect: () => b.connect() }),
    (error: unknown) => isCwsError(error, "BEHIND_SERVER") && /update-from-server/.test((error as Error).message),
  );
  // Nothing was taken: the lease is still free.
  const conn = await b.connect();
  assert.equal((await conn.call("leaseStatus", {})).active, false);
  await conn.close();
});

test("a file edited while live sync runs reaches the server and then device B; stopping releases the lease", async () => {
  const { a, b, rootA, rootB } = await cluster.pair("live");
  await freeLease(a);
  const log = eventLog();
  const controller = new AbortController();
  const running = runLiveSync({
    state: await a.state(), slug: "live", connect: () => a.connect(), signal: controller.signal,
    quietMs: 30, heartbeatMs: 200, rescanMs: 60_000, onEvent: (e) => log.push(e),
  });
  await log.next((e) => e.type === "synced");
  const pushed = log.next((e) => e.type === "synced" && e.summary.pushed.files > 0);
  await writeFile(join(rootA, "live-edit.md"), "# written while live\n");
  await pushed;
  // B is not the lease holder but may pull at any time.
  const onB = await b.sync("live");
  assert.equal(onB.pulled.files, 1);
  assert.equal(await readFile(join(rootB, "live-edit.md"), "utf8"), "# written while live\n");
  // While A holds the lease, B's pushes are refused with a clear message.
  await writeFile(join(rootB, "from-b.md"), "# B\n");
  await assert.rejects(b.sync("live"), (error: unknown) => isCwsError(error, "LEASE_HELD") && /turn-off-sync/.test((error as Error).message));
  controller.abort();
  const result = await running;
  assert.equal(result.stoppedBy, "interrupt");
  assert.equal(result.released, true);
  const conn = await a.connect();
  assert.equal((await conn.call("leaseStatus", {})).active, false);
  await conn.close();
});

/** Starts `cws turn-on-sync` as a child process of a device and waits until it holds the lease. */
async function startLiveChild(device: TestDevice, slug: string, quietMs = 30) {
  const child = spawn(process.execPath, [join(REPO, "src", "cli", "cws.mjs"), "turn-on-sync", slug, "--json", "--quiet-ms", String(quietMs), "--heartbeat-ms", "200"], {
    env: { ...process.env, CWS_HOME: device.home },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  child.on("close", () => children.delete(child));
  let stderr = "";
  child.stderr.on("data", (piece) => { stderr += piece; });
  const lines = createInterface({ input: child.stdout });
  const events: Array<Record<string, unknown>> = [];
  const waiters: Array<{ match: (e: Record<string, unknown>) => boolean; resolve: () => void }> = [];
  lines.on("line", (line) => {
    const event = JSON.parse(line) as Record<string, unknown>;
    events.push(event);
    for (const waiter of [...waiters]) if (waiter.match(event)) { waiters.splice(waiters.indexOf(waiter), 1); waiter.resolve(); }
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on("close", (code, signal) => resolve({ code, signal })));
  const until = (match: (e: Record<string, unknown>) => boolean) => events.some(match) ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ match, resolve }));
  await Promise.race([until((e) => e.type === "synced"), exited.then(() => { throw new Error(`turn-on-sync exited early: ${stderr}`); })]);
  return { child, events, until, exited, stderr: () => stderr };
}

test("Ctrl+C during live sync pushes the last change, releases the lease and leaves no partial state", async () => {
  const { a, b, rootA, rootB } = await cluster.pair("ctrlc");
  await freeLease(a);
  const live = await startLiveChild(a, "ctrlc");
  await writeFile(join(rootA, "last-words.md"), "# written just before Ctrl+C\n");
  live.child.kill("SIGINT");
  const exit = await live.exited;
  assert.equal(exit.code, 0, live.stderr());
  assert.ok(live.events.some((e) => e.type === "stopped" && e.released === true));
  const conn = await a.connect();
  assert.equal((await conn.call("leaseStatus", {})).active, false);
  await conn.close();
  await b.sync("ctrlc");
  assert.equal(await readFile(join(rootB, "last-words.md"), "utf8"), "# written just before Ctrl+C\n");
  // No temp files in the folder, no live marker, nothing left in the staging folders.
  assert.deepEqual((await readdir(rootA, { recursive: true })).filter((n) => n.includes("cws-tmp")), []);
  assert.deepEqual(await readdir(join(a.home, "live")), []);
  assert.deepEqual(await readdir(join(cluster.dataDir, "staging", "incoming")), []);
});

test("handoff: A live → turn-off-sync → B update-from-server → B turn-on-sync", async () => {
  const { a, b, rootA, rootB } = await cluster.pair("handoff");
  await freeLease(a);
  const live = await startLiveChild(a, "handoff");
  await writeFile(join(rootA, "a-work.md"), "# A's work\n");
  await live.until((e) => e.type === "synced" && ((e.summary as { pushed: { files: number } }).pushed.files > 0));
  const off = await a.cli(["turn-off-sync"]);
  assert.equal(off.code, 0, off.stderr);
  assert.match(off.stdout, /Stopped live sync of handoff/);
  assert.equal((await live.exited).code, 0);
  const update = await b.cli(["update-from-server", "handoff"]);
  assert.equal(update.code, 0, update.stderr);
  assert.equal(await readFile(join(rootB, "a-work.md"), "utf8"), "# A's work\n");
  const controller = new AbortController();
  const log = eventLog();
  const running = runLiveSync({ state: await b.state(), slug: "handoff", connect: () => b.connect(), signal: controller.signal, quietMs: 30, heartbeatMs: 200, onEvent: (e) => log.push(e) });
  const started = await log.next((e) => e.type === "started");
  assert.equal(started.type === "started" && started.lease.deviceName, "handoff-b");
  controller.abort();
  assert.equal((await running).released, true);
});

test("crash handoff: A dies, B takes over after 120 s on the hub's clock, and A's late push is refused", async () => {
  const { a, b, rootA } = await cluster.pair("crash");
  await freeLease(a);
  const live = await startLiveChild(a, "crash");
  const started = live.events.find((e) => e.type === "started") as { lease: { token: number } };
  live.child.kill("SIGKILL");
  await live.exited;
  await b.sync("crash");
  const connB = await b.connect();
  try {
  const seen = await connB.call("leaseStatus", {});
  assert.equal(seen.active, true, `A's lease must still be active: ${JSON.stringify(seen)} started=${JSON.stringify(started)}`);
  await assert.rejects(connB.call("acquireLease", { slug: "crash" }), (error: unknown) => isCwsError(error, "LEASE_HELD") && /expires at/.test((error as Error).message));
  // Move the hub's clock to just before the expiry (120 s after A's last heartbeat), then past it.
  const leftMs = (seen.expiresAt ?? 0) - seen.now;
  // The hub's clock is real here, and B's sync above may take many seconds on a loaded machine,
  // so only the upper bound is exact; the exact 120 s TTL is shown with a fake clock in hub-db.test.ts.
  assert.ok(leftMs > 30_000 && leftMs <= 120_000, `the lease lives 120 s after the last heartbeat (left: ${leftMs} ms)`);
  await cluster.advanceHubClock(leftMs - 1_000);
  await assert.rejects(connB.call("acquireLease", { slug: "crash" }), (error: unknown) => isCwsError(error, "LEASE_HELD"));
  await cluster.advanceHubClock(1_001);
  const lease = await connB.call("acquireLease", { slug: "crash" });
  assert.equal(lease.deviceName, "crash-b");
  assert.ok(lease.token > started.lease.token);
  // A wakes up and pushes with its old token: refused, and the head does not move.
  await writeFile(join(rootA, "late.md"), "# too late\n");
  const headBefore = (await connB.call("head", { slug: "crash" })).snapshot?.id;
  await assert.rejects(a.sync("crash", { fencingToken: started.lease.token }), (error: unknown) => isCwsError(error, "LEASE_LOST"));
  assert.equal((await connB.call("head", { slug: "crash" })).snapshot?.id, headBefore);
  await connB.call("releaseLease", { token: lease.token });
  } finally {
    await connB.close();
  }
});

test("take-over: B is shown A's lease and last heartbeat, takes it, and A's next push is refused while A's file stays on A", async () => {
  const { a, b, rootA, rootB } = await cluster.pair("takeover");
  await freeLease(a);
  const logA = eventLog();
  const runningA = runLiveSync({
    state: await a.state(), slug: "takeover", connect: () => a.connect(),
    quietMs: 30, heartbeatMs: 60_000, rescanMs: 60_000, onEvent: (e) => logA.push(e),
  });
  await logA.next((e) => e.type === "synced");
  const shown: Array<{ deviceName: string | null; heartbeatAt: number | null; slug: string | null }> = [];
  const logB = eventLog();
  const controllerB = new AbortController();
  const runningB = runLiveSync({
    state: await b.state(), slug: "takeover", connect: () => b.connect(), signal: controllerB.signal,
    quietMs: 30, heartbeatMs: 200, rescanMs: 60_000, onEvent: (e) => logB.push(e),
    takeOver: async (holder) => { shown.push({ deviceName: holder.deviceName, heartbeatAt: holder.heartbeatAt, slug: holder.slug }); return true; },
  });
  await logB.next((e) => e.type === "started");
  assert.equal(shown.length, 1);
  assert.equal(shown[0].deviceName, (await a.state()).data.device?.name);
  assert.equal(shown[0].slug, "takeover");
  assert.equal(typeof shown[0].heartbeatAt, "number");
  // A, not knowing yet, pushes its next change: refused by the fencing token.
  await writeFile(join(rootA, "late-from-a.md"), "# A's late work\n");
  const resultA = await runningA;
  assert.equal(resultA.stoppedBy, "lease-lost");
  assert.equal(await readFile(join(rootA, "late-from-a.md"), "utf8"), "# A's late work\n", "A's work stays on A");
  controllerB.abort();
  await runningB;
  await b.sync("takeover");
  await assert.rejects(readFile(join(rootB, "late-from-a.md")), "A's refused push never reached the server");
});

test("cws sync during a live sync of the same superproject is run by the live session, on its lease", async () => {
  const { a, b, rootA, rootB } = await cluster.pair("asked");
  await freeLease(a);
  // A quiet period far longer than the test: only the handed-off request can push the new file.
  const live = await startLiveChild(a, "asked", 600_000);
  await writeFile(join(rootA, "asked-for.md"), "# synced on request\n");
  const run = await a.cli(["sync", "asked", "--json"]);
  assert.equal(run.code, 0, run.stderr);
  const summary = JSON.parse(run.stdout) as { via?: string; pushed: { files: number } };
  assert.equal(summary.via, "live-sync");
  assert.equal(summary.pushed.files, 1);
  await live.until((e) => e.type === "synced" && (e.summary as { pushed: { files: number } }).pushed.files === 1);
  // A dry run is answered by the live session too, and changes nothing.
  const dry = await a.cli(["sync", "asked", "--dry-run", "--json"]);
  assert.equal(dry.code, 0, dry.stderr);
  assert.equal((JSON.parse(dry.stdout) as { via?: string }).via, "live-sync");
  await b.sync("asked");
  assert.equal(await readFile(join(rootB, "asked-for.md"), "utf8"), "# synced on request\n");
  live.child.kill("SIGINT");
  assert.equal((await live.exited).code, 0, live.stderr());
  // Once live sync is off, cws sync opens its own session again.
  await writeFile(join(rootA, "after.md"), "# after live sync\n");
  const own = await a.cli(["sync", "asked", "--json"]);
  assert.equal(own.code, 0, own.stderr);
  const ownSummary = JSON.parse(own.stdout) as { via?: string; pushed: { files: number } };
  assert.equal(ownSummary.via, undefined);
  assert.equal(ownSummary.pushed.files, 1);
  assert.deepEqual((await readdir(join(a.home, "live"))).filter((name) => name.endsWith(".sock")), [], "the socket is removed");
});
