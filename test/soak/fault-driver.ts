/**
 * Rounds of real SIGKILLs during syncs, with the checks that must hold after each: the driver
 * of the fault suite (test/fault-kill.test.ts, a few rounds in `npm test`) and of the soak
 * (`npm run soak`, hundreds of rounds, by hand).
 *
 * Two devices share one superproject through a real hub. Each round, the other device changes
 * its part of the tree (`b/` or `a/`) and pushes it; then this device changes its own part and
 * runs the real `cws sync` CLI (a push and a pull at once), which is killed with SIGKILL: the
 * client itself, its agent or the hub, either at a fault point (src/fault.ts) or after a
 * seeded random delay. After each round:
 *
 * - verify: the hub re-hashes every chunk and checks every snapshot (corrupt snapshots: 0);
 * - the killed device syncs again at once and must succeed (blocked devices: 0);
 * - leftovers: no pull temp file in either tree, no work folder of the killed client left in
 *   the temp folder once that sync ran;
 * - convergence: once the other device synced too, both trees equal the model the driver
 *   keeps of what was written (lost files: 0, and nothing deleted comes back).
 *
 * The seed fixes every decision (which files change, what is killed, when); where a timed
 * kill lands still depends on the machine's speed, so each round checks the invariants that
 * must hold wherever it landed, never a particular outcome.
 */
import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { makeCluster, REPO, type TestDevice } from "../helpers/cluster.ts";
import { connectHub } from "../../server-agent/hub/hub-client.ts";
import { prng } from "../helpers/prng.ts";

/** How a round kills its sync. */
export const KILL_METHODS = [
  "fault:client-after-first-bundle",
  "fault:client-before-commit",
  "fault:client-mid-pull",
  "fault:agent-after-first-ingest",
  "fault:agent-before-hub-commit",
  "fault:agent-before-hello",
  "timed:client",
  "timed:agent",
  "timed:hub",
] as const;
export type KillMethod = (typeof KILL_METHODS)[number];

export interface FaultRunOptions {
  seed: number;
  rounds: number;
  /** Receives one line per round. */
  log?: (line: string) => void;
}

export interface FaultFigures {
  seed: number;
  rounds: number;
  /** Processes actually killed, by who was killed. */
  kills: { client: number; agent: number; hub: number; total: number };
  /** Rounds whose kill did not land (the fault point was not reached, or the sync was done). */
  missed: number;
  corruptSnapshots: number;
  lostFiles: number;
  /** Files that were deleted but came back, or appeared from nowhere. */
  unexpectedFiles: number;
  blockedDevices: number;
  leftovers: number;
  durationMs: number;
  /** What went wrong, one line per problem (empty when every check held). */
  problems: string[];
}

const SLUG = "fault-kill";
const CWS = join(REPO, "src", "cli", "cws.ts");

/** Runs the rounds on a fresh throw-away installation and returns the figures. */
export async function runFaultRounds(options: FaultRunOptions): Promise<FaultFigures> {
  const { seed, rounds, log = () => {} } = options;
  const started = Date.now();
  const random = prng(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const figures: FaultFigures = {
    seed, rounds, kills: { client: 0, agent: 0, hub: 0, total: 0 }, missed: 0,
    corruptSnapshots: 0, lostFiles: 0, unexpectedFiles: 0, blockedDevices: 0, leftovers: 0, durationMs: 0, problems: [],
  };
  const cluster = await makeCluster();
  try {
    const { a, b, rootA, rootB } = await cluster.pair(SLUG);
    const sides = [
      { device: a, root: rootA, part: "a" },
      { device: b, root: rootB, part: "b" },
    ];
    // The model: what each tree must hold once both devices synced, by relative path.
    const model = new Map<string, Buffer>();
    for (const side of sides) {
      await mkdir(join(side.root, side.part));
      for (let i = 0; i < 6; i++) await writeModel(model, side.root, `${side.part}/f${i}.bin`, content(random, sizeOf(random)));
    }
    await a.sync(SLUG);
    await b.sync(SLUG);
    await a.sync(SLUG);

    for (let round = 1; round <= rounds; round++) {
      const victim = sides[round % 2]!;
      const other = sides[(round + 1) % 2]!;
      await mutate(random, model, other.root, other.part);
      await other.device.sync(SLUG);
      await mutate(random, model, victim.root, victim.part);

      const method = pick(KILL_METHODS);
      const delayMs = 150 + Math.floor(random() * 2500);
      const outcome = await killedSync(victim.device, cluster.dataDir, method, delayMs);
      if (outcome.killed === null) figures.missed++;
      else {
        figures.kills[outcome.killed]++;
        figures.kills.total++;
      }
      const where = `round ${round} (seed ${seed}, ${method}${method.startsWith("timed") ? ` after ${delayMs} ms` : ""}, ${victim.part})`;

      // Every snapshot and chunk on the server is whole.
      const problems = await verifyServer(cluster.dataDir);
      if (problems.length > 0) {
        figures.corruptSnapshots += problems.length;
        figures.problems.push(`${where}: verify found ${problems.join("; ")}`);
      }
      // The killed device is not blocked: its next sync succeeds, and cleans up after the killed one.
      try {
        await victim.device.sync(SLUG);
      } catch (error) {
        figures.blockedDevices++;
        figures.problems.push(`${where}: the next sync failed: ${(error as Error).message}`);
        try {
          await victim.device.sync(SLUG);
        } catch {
          // Counted once; the convergence check below says what it cost.
        }
      }
      const left = [...treeTempFiles(victim.root), ...(outcome.pid === null ? [] : workDirsOf(outcome.pid))];
      if (left.length > 0) {
        figures.leftovers += left.length;
        figures.problems.push(`${where}: leftovers after the next sync: ${left.join(", ")}`);
      }
      // Both devices converge on the model: the victim's sync above pulled the other's changes
      // (pushed before the kill), the other device's sync now pulls the victim's.
      await other.device.sync(SLUG).catch((error: Error) => figures.problems.push(`${where}: the other device's sync failed: ${error.message}`));
      for (const side of sides) {
        const diff = await compareWithModel(model, side.root);
        figures.lostFiles += diff.lost.length;
        figures.unexpectedFiles += diff.unexpected.length;
        if (diff.lost.length + diff.unexpected.length > 0) {
          figures.problems.push(`${where}: device ${side.part} differs from the model: lost ${diff.lost.join(", ") || "-"}; unexpected ${diff.unexpected.join(", ") || "-"}`);
        }
      }
      log(`${where}: ${outcome.killed === null ? "no kill landed" : `killed the ${outcome.killed}`}; so far ${figures.kills.total} kills, ${figures.problems.length} problem(s)`);
    }
  } finally {
    await cluster.close();
  }
  figures.durationMs = Date.now() - started;
  return figures;
}


/** Mostly small files, some large enough for several chunks and bundles. */
function sizeOf(random: () => number): number {
  const r = random();
  return r < 0.6 ? 1 + Math.floor(random() * 20_000) : r < 0.9 ? 100_000 + Math.floor(random() * 300_000) : 700_000 + Math.floor(random() * 800_000);
}

/** Seeded bytes that do not compress (so chunking and bundles see real sizes). */
function content(random: () => number, size: number): Buffer {
  const buffer = Buffer.allocUnsafe(size);
  let i = 0;
  for (; i + 4 <= size; i += 4) buffer.writeUInt32LE(Math.floor(random() * 0x1_0000_0000), i);
  for (; i < size; i++) buffer[i] = Math.floor(random() * 256);
  return buffer;
}

async function writeModel(model: Map<string, Buffer>, root: string, path: string, data: Buffer): Promise<void> {
  await writeFile(join(root, path), data);
  model.set(path, data);
}

/**
 * One to four changes to a device's own part: new files, rewrites, appends, deletions. A
 * part keeps at least four files, so no round empties a folder (which the quarantine holds).
 */
async function mutate(random: () => number, model: Map<string, Buffer>, root: string, part: string): Promise<void> {
  const changes = 1 + Math.floor(random() * 4);
  for (let i = 0; i < changes; i++) {
    const mine = [...model.keys()].filter((p) => p.startsWith(`${part}/`)).sort();
    const r = random();
    if (r < 0.35 || mine.length === 0) {
      await writeModel(model, root, `${part}/n${Math.floor(random() * 1e9).toString(36)}.bin`, content(random, sizeOf(random)));
    } else if (r < 0.65) {
      const path = mine[Math.floor(random() * mine.length)]!;
      await writeModel(model, root, path, content(random, sizeOf(random)));
    } else if (r < 0.85) {
      const path = mine[Math.floor(random() * mine.length)]!;
      await writeModel(model, root, path, Buffer.concat([model.get(path)!, content(random, 1 + Math.floor(random() * 50_000))]));
    } else if (mine.length > 4) {
      const path = mine[Math.floor(random() * mine.length)]!;
      await rm(join(root, path));
      model.delete(path);
    }
  }
}

/** Runs the `cws sync` CLI of a device and kills it (or its agent, or the hub) as the method says. */
async function killedSync(device: TestDevice, dataDir: string, method: KillMethod, delayMs: number): Promise<{ killed: "client" | "agent" | "hub" | null; pid: number | null }> {
  const fault = method.startsWith("fault:") ? method.slice("fault:".length) : undefined;
  const child = spawn(process.execPath, [CWS, "sync", SLUG], {
    env: { ...process.env, CWS_HOME: device.home, CWS_BUNDLE_TARGET_BYTES: "400000", ...(fault === undefined ? {} : { CWS_FAULT: fault }) },
    stdio: ["ignore", "ignore", "pipe"],
  });
  child.stderr.resume();
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on("close", (code, signal) => resolve({ code, signal })));
  let killed: "client" | "agent" | "hub" | null = null;
  if (fault === undefined) {
    const stillRunning = await Promise.race([exited.then(() => false), sleep(delayMs).then(() => true)]);
    if (stillRunning) {
      const target = method === "timed:client" ? child.pid ?? null : method === "timed:agent" ? agentOf(child.pid) : hubPid(dataDir);
      if (target !== null && kill(target)) killed = method === "timed:client" ? "client" : method === "timed:agent" ? "agent" : "hub";
    }
  }
  const status = await exited;
  if (fault !== undefined && status.signal === "SIGKILL") killed = "client";
  // A fault point in the agent kills the agent: the client sees its connection drop.
  if (fault !== undefined && fault.startsWith("agent-") && status.code !== 0 && killed === null) killed = "agent";
  return { killed, pid: child.pid ?? null };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function kill(pid: number): boolean {
  try {
    process.kill(pid, "SIGKILL");
    return true;
  } catch {
    return false;
  }
}

/** The pid of the local agent a client process started (Linux /proc), or null. */
function agentOf(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
    for (const child of children) {
      if (readFileSync(`/proc/${child}/cmdline`, "utf8").includes("agent/main.ts")) return child;
    }
  } catch {
    // The client is gone already.
  }
  return null;
}

function hubPid(dataDir: string): number | null {
  try {
    const pid = Number(readFileSync(join(dataDir, "hub.pid"), "utf8").trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/** What the hub's verify finds wrong (empty when every chunk, object and snapshot is whole). */
async function verifyServer(dataDir: string): Promise<string[]> {
  const hub = await connectHub(dataDir);
  try {
    const report = await hub.call("verify", {});
    return report.problems.map((p: unknown) => JSON.stringify(p));
  } finally {
    await hub.close();
  }
}

/** Temp files of a pull anywhere in a tree. */
function treeTempFiles(root: string): string[] {
  return (readdirSync(root, { recursive: true }) as string[]).filter((p) => p.endsWith(".cws-tmp")).map((p) => join(root, p));
}

/** Work folders a (dead) client process left in the temp folder. */
function workDirsOf(pid: number): string[] {
  return readdirSync(tmpdir()).filter((name) => new RegExp(`^cws-(pull|push|fetch)-${pid}-`).test(name)).map((name) => join(tmpdir(), name));
}

/** Files of the model missing or different in a tree, and files the tree has beyond it. */
async function compareWithModel(model: Map<string, Buffer>, root: string): Promise<{ lost: string[]; unexpected: string[] }> {
  const lost: string[] = [];
  const unexpected: string[] = [];
  const onDisk = new Set<string>();
  for (const entry of await readdir(root, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    onDisk.add(relative(root, join(entry.parentPath, entry.name)).split("\\").join("/"));
  }
  for (const [path, data] of model) {
    if (!onDisk.has(path)) lost.push(path);
    else if (!(await readFile(join(root, path))).equals(data)) lost.push(`${path} (content)`);
  }
  for (const path of onDisk) if (!model.has(path)) unexpected.push(path);
  return { lost, unexpected };
}
