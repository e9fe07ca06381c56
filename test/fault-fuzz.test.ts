/**
 * A seeded fuzzer of the agent (issue 11): a real agent process, a real hub and store, and a
 * stream of hostile frames from an enrolled device — malformed JSON, wrong types, huge values,
 * unknown methods, hostile bundle names and commits of hostile trees, full and delta. After
 * every frame the agent must have answered exactly once and never with INTERNAL (bad input is
 * the client's fault, not a bug); it must stay up; the store must verify and the head must be a
 * tree every device can hold.
 *
 * Sized for `npm test` (a few thousand frames, seconds). The long run is by hand:
 * `npm run soak:fuzz` (CWS_FUZZ_FRAMES=100000), with CWS_FUZZ_SEED to replay a run.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { after, before, it } from "node:test";
import { readLines } from "../src/protocol/framing.ts";
import { LOCAL_AGENT_MAIN } from "../src/transport/local.ts";
import { checkManifestPath } from "../src/core/paths.ts";
import { travelProblems } from "../src/core/portable-names.ts";
import { MAX_IDS_PER_REQUEST } from "../src/protocol/messages.ts";
import { makeCluster, type TestCluster } from "./helpers/cluster.ts";
import { createSuperproject } from "../src/client/commands/superprojects.ts";
import { prng } from "./helpers/prng.ts";
import { verifyStore } from "./helpers/verify-store.ts";

const FRAMES = Number(process.env.CWS_FUZZ_FRAMES ?? 3000);
const SEED = Number(process.env.CWS_FUZZ_SEED ?? 0x5eed11);
const EMPTY_HASH = "ef46db3751d8e999";


class Gen {
  readonly next: () => number;
  constructor(seed: number) { this.next = prng(seed); }
  int(n: number): number { return Math.floor(this.next() * n); }
  pick<T>(values: readonly T[]): T { return values[this.int(values.length)]; }
  chance(p: number): boolean { return this.next() < p; }
  hex(n: number): string { let s = ""; for (let i = 0; i < n; i++) s += "0123456789abcdef"[this.int(16)]; return s; }
  text(max: number): string {
    let s = "";
    const n = this.int(max + 1);
    for (let i = 0; i < n; i++) s += String.fromCharCode(this.chance(0.8) ? 0x20 + this.int(95) : this.int(0x3000));
    return s;
  }
}

// Names chosen to break one rule each: traversal, separators, Windows, lengths, Unicode, namespaces.
const HOSTILE_SEGMENTS = [
  "..", ".", "", "a\u0000b", "\n", "CON", "nul.txt", "com1.tar.gz", "a:b", "Q:A notes.md", "C:", "a\\b", "a<b", "why?",
  "trailing.", "trailing ", "x".repeat(256), "日".repeat(86), "😀".repeat(64), "\ud800", "cafe\u0301", "\u212b", "*",
];
const PLAIN_SEGMENTS = ["a", "b.md", "notes", "日本", "x", "a.md", "deep", "ok.txt", "é"];

function randomJson(g: Gen, depth = 0): unknown {
  switch (g.int(depth > 2 ? 6 : 8)) {
    case 0: return null;
    case 1: return g.chance(0.5);
    case 2: return g.pick([0, -1, 1.5, 2 ** 53, -(2 ** 63), 1e308, 4294967296, 7]);
    case 3: return g.text(20);
    case 4: return g.pick(["files", "../../etc/passwd", "fuzz", "push-x.bundle", "0123456789abcdef-5", ""]);
    case 5: return g.int(100);
    case 6: return Array.from({ length: g.int(4) }, () => randomJson(g, depth + 1));
    default: {
      const object: Record<string, unknown> = {};
      for (let i = g.int(4); i > 0; i--) object[g.pick(["slug", "ids", "name", "path", "base", "manifest", "delta", "id", "kind", g.text(5)])] = randomJson(g, depth + 1);
      return object;
    }
  }
}

function randomPath(g: Gen, hostile: boolean): string {
  if (hostile && g.chance(0.1)) return g.pick(["files", "codex", "/etc/passwd", "other/x", "", "files/" + "y/".repeat(1500) + "z"]);
  const segments = ["files"];
  for (let i = 1 + g.int(3); i > 0; i--) segments.push(g.pick(PLAIN_SEGMENTS));
  if (hostile) segments[1 + g.int(segments.length - 1)] = g.pick(HOSTILE_SEGMENTS);
  return segments.join("/");
}

function entry(g: Gen, path: string, kind: "file" | "dir" = g.chance(0.7) ? "file" : "dir"): Record<string, unknown> {
  const base = kind === "file"
    ? { path, kind, size: 0, mtimeMs: g.int(1e12), mode: 0o644, hash: EMPTY_HASH, chunks: [] as unknown[] }
    : { path, kind, size: 0, mtimeMs: 0, mode: 0o755, hash: "", chunks: [] as unknown[] };
  if (g.chance(0.05)) (base as Record<string, unknown>)[g.pick(["size", "mode", "mtimeMs", "hash", "chunks", "kind"])] = randomJson(g);
  return base;
}

/** A tree with at least one hostile entry, or a file under a file, or (rarely) a clean one. */
function hostileEntries(g: Gen): Record<string, unknown>[] {
  const entries = new Map<string, Record<string, unknown>>();
  for (let i = 1 + g.int(4); i > 0; i--) { const p = randomPath(g, false); entries.set(p, entry(g, p)); }
  const mode = g.int(10);
  if (mode < 6) { const p = randomPath(g, true); entries.set(p, entry(g, p)); }
  else if (mode < 9) {
    const file = randomPath(g, false);
    entries.set(file, entry(g, file, "file"));
    const below = `${file}/${g.pick(PLAIN_SEGMENTS)}`;
    entries.set(below, entry(g, below));
  }
  const list = [...entries.values()];
  // Mostly sorted (so the path rules are reached), sometimes not.
  if (!g.chance(0.1)) list.sort((a, b) => (String(a.path) < String(b.path) ? -1 : String(a.path) > String(b.path) ? 1 : 0));
  return list;
}

interface Agent {
  child: ChildProcessWithoutNullStreams;
  lines: AsyncGenerator<string>;
  stderr: () => string;
}

// Agents still running when a test fails are killed by after(), so a failure never hangs the run.
const started = new Set<ChildProcessWithoutNullStreams>();

function startAgent(dataDir: string): Agent {
  const child = spawn(process.execPath, [LOCAL_AGENT_MAIN, "--stdio", "--data", dataDir], { stdio: ["pipe", "pipe", "pipe"] });
  started.add(child);
  child.once("exit", () => started.delete(child));
  let stderr = "";
  child.stderr.on("data", (piece) => { if (stderr.length < 1e6) stderr += piece; });
  return { child, lines: readLines(child.stdout), stderr: () => stderr };
}

async function send(agent: Agent, line: string): Promise<{ id: unknown; ok: boolean; result?: any; error?: { code: string; message: string } }> {
  if (!agent.child.stdin.write(line + "\n")) await new Promise((resolve) => agent.child.stdin.once("drain", resolve));
  const next = await agent.lines.next();
  assert.ok(!next.done, `the agent closed its output after ${JSON.stringify(line.slice(0, 200))}; stderr: ${agent.stderr().slice(-2000)}`);
  return JSON.parse(next.value);
}

let cluster: TestCluster;
before(async () => { cluster = await makeCluster(); });
after(async () => {
  for (const child of started) child.kill("SIGKILL");
  await cluster.close();
});

it(`the agent survives ${FRAMES} hostile frames (seed ${SEED}) without INTERNAL, and keeps a head every device can hold`, async () => {
  const device = await cluster.device("fuzzer");
  const conn = await device.connect();
  await createSuperproject(conn, await device.state(), { slug: "fuzz", root: await cluster.folder("fuzz") });
  await conn.close();
  const deviceId = (await device.state()).enrolled().device.id;

  const g = new Gen(SEED);
  const agent = startAgent(cluster.dataDir);
  const hello = await agent.lines.next();
  assert.match(String(hello.value), /"type":"hello"/);
  let id = 1;
  const counts = { frames: 0, ok: 0, errors: {} as Record<string, number>, kinds: {} as Record<string, number>, commitsAccepted: 0 };
  const request = async (kind: string, line: string, expectId: unknown) => {
    counts.frames++;
    counts.kinds[kind] = (counts.kinds[kind] ?? 0) + 1;
    const response = await send(agent, line);
    if (expectId !== undefined) assert.equal(response.id, expectId, `${kind}: answered another id for ${line.slice(0, 200)}`);
    if (response.ok) counts.ok++;
    else {
      counts.errors[response.error!.code] = (counts.errors[response.error!.code] ?? 0) + 1;
      assert.notEqual(response.error!.code, "INTERNAL", `${kind}: INTERNAL for ${line.slice(0, 300)}: ${response.error!.message}\nstderr: ${agent.stderr().slice(-3000)}`);
      assert.notEqual(response.error!.code, "HUB_UNAVAILABLE", `${kind}: ${response.error!.message}`);
    }
    return response;
  };
  const call = (kind: string, method: string, params: unknown) => { const n = id++; return request(kind, JSON.stringify({ id: n, method, params }), n); };
  const headId = async (): Promise<number | null> => (await call("head", "head", { slug: "fuzz" })).result?.snapshot?.id ?? null;

  assert.equal((await call("open", "open", { deviceId })).ok, true);
  const methods = ["enroll", "open", "listSuperprojects", "deleteSuperproject", "createSuperproject", "head", "fetchManifest", "missingChunks", "ingestBundle", "commit", "prepareBundle", "leaseStatus", "acquireLease", "heartbeat", "releaseLease", "releaseBundle", "quarantineList", "quarantineShow", "quarantineAccept", "quarantineReject", "listSnapshots", "restoreSnapshot"];
  let head = await headId();

  for (let frame = 0; counts.frames < FRAMES; frame++) {
    const kind = g.int(100);
    if (kind < 8) {
      // Not JSON at all (never only whitespace, which the agent skips without an answer).
      const garbage = ("x" + g.text(200)).replace(/[\n\r]/g, " ");
      const response = await request("garbage", garbage, undefined);
      assert.equal(response.ok, false);
    } else if (kind < 14) {
      const valid = JSON.stringify({ id: id++, method: "head", params: { slug: "fuzz" } });
      await request("truncated", valid.slice(0, 1 + g.int(valid.length - 2)), undefined);
    } else if (kind < 20) {
      await request("envelope", JSON.stringify(g.pick([
        randomJson(g), { id: g.pick(["1", -1, 1.5, 2 ** 60, null]), method: "head", params: { slug: "fuzz" } },
        { id: id++, method: g.pick(["rm", "__proto__", "constructor", "", "HEAD", g.text(10)]), params: {} },
        { id: id++ }, { id: id++, method: "head", params: g.pick([null, [], "x", 5]) },
      ])), undefined);
    } else if (kind < 40) {
      // A known method with random params of random types.
      const method = g.pick(methods);
      const params = randomJson(g);
      if (method === "deleteSuperproject" && (params as { slug?: unknown })?.slug === "fuzz") continue;
      await call("wrong-types", method, params);
    } else if (kind < 50) {
      // Hostile names and ids where the agent touches files.
      const name = g.pick(["../hub.sqlite", "..", "a/b", "/etc/passwd", "push-\u0000.bundle", ".hidden", "x".repeat(200), "push-absent.bundle", "out-x.cwsb", g.text(30)]);
      await call("names", g.pick(["ingestBundle", "releaseBundle"]), { name });
      await call("ids", g.pick(["prepareBundle", "missingChunks"]), { ids: Array.from({ length: 1 + g.int(5) }, () => g.pick([`${g.hex(16)}-${g.int(300000)}`, "../x", `${g.hex(16)}-99999999`, g.text(20)])) });
    } else if (kind < 53) {
      // Huge values: a long string, a long id list, deep nesting.
      const huge = g.int(3);
      if (huge === 0) await call("huge", "head", { slug: "x".repeat(1 + g.int(2_000_000)) });
      else if (huge === 1) await call("huge", "missingChunks", { ids: Array.from({ length: MAX_IDS_PER_REQUEST + g.int(10) }, (_, i) => `${i.toString(16).padStart(16, "0")}-1`) });
      else {
        let nested: unknown = 1;
        for (let i = 0; i < 2000 + g.int(5000); i++) nested = [nested];
        await call("huge", "commit", { slug: "fuzz", base: head, manifest: { format: 1, entries: nested }, kind: "push" });
      }
    } else {
      // Commits of hostile trees, full and delta, against the current head (or a wrong one).
      const entries = hostileEntries(g);
      const base = g.chance(0.85) ? head : g.pick([null, 0, 999999, -1]);
      const params = g.chance(0.4) || base === null
        ? { slug: "fuzz", base, manifest: { format: 1, entries }, kind: "push" }
        : { slug: "fuzz", base, delta: { upserts: entries, removes: g.chance(0.3) ? [randomPath(g, g.chance(0.5))] : [] }, kind: g.pick(["push", "push", "override", "bogus"]) };
      const response = await call("commit", "commit", params);
      if (response.ok) {
        counts.commitsAccepted++;
        head = response.result.snapshot.id;
      }
    }
    if (frame % 250 === 0) head = await headId();
  }

  // Still alive, still answering, and its head holds only names every device can hold.
  head = await headId();
  if (head !== null) {
    const { result } = await call("check", "fetchManifest", { slug: "fuzz", snapshotId: head });
    const paths: string[] = result.manifest.entries.map((e: { path: string }) => e.path);
    for (const path of paths) assert.doesNotThrow(() => checkManifestPath(path), path);
    assert.deepEqual(travelProblems(result.manifest.entries), []);
  }
  agent.child.stdin.end();
  const code = await new Promise((resolve) => agent.child.once("exit", resolve));
  assert.equal(code, 0, agent.stderr().slice(-2000));
  await verifyStore(cluster.dataDir);
  console.log(`fault-fuzz: seed ${SEED}, ${counts.frames} frames, ${counts.ok} ok, ${counts.commitsAccepted} commits accepted, errors ${JSON.stringify(counts.errors)}, kinds ${JSON.stringify(counts.kinds)}, INTERNAL 0, crashes 0, head ${head}`);
});

it("ends the session cleanly, with one sentence and no stack trace, on a frame over the line cap", async () => {
  const agent = startAgent(cluster.dataDir);
  await agent.lines.next();
  const chunk = Buffer.alloc(1024 * 1024, 0x61);
  const exited = new Promise((resolve) => agent.child.once("exit", resolve));
  // The agent stops reading (and exits) once the line is over the cap: later writes may fail.
  agent.child.stdin.on("error", () => {});
  let gone = false;
  void exited.then(() => { gone = true; });
  // 65 MiB without a newline: more than MAX_LINE_BYTES.
  for (let i = 0; i < 65 && !gone; i++) {
    if (!agent.child.stdin.write(chunk)) await Promise.race([new Promise((resolve) => agent.child.stdin.once("drain", resolve)), exited]);
  }
  agent.child.stdin.end();
  const code = await exited;
  assert.equal(code, 1);
  assert.match(agent.stderr(), /^cws-agent: Refused a message longer than \d+ bytes/);
  assert.doesNotMatch(agent.stderr(), /\n\s+at /);
});
