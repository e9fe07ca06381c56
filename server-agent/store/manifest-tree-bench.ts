/**
 * Measures how long a first push's manifest takes to store as folder objects and to read back:
 * `putManifest` of a fresh tree, then a walk by a fresh `ManifestTrees` (nothing cached, as the
 * commit's chunk check, gc and verify read it), with and without the count check, and a second
 * `putManifest` of the same manifest (every folder already present). The tree is shaped like
 * the benchmark's workspace: `files/aN/bN/cN/` with 9 files in each leaf folder.
 *
 * Run: `node server-agent/store/manifest-tree-bench.ts [leaf folders] [rounds]` (default 5,200
 * leaf folders, about 52,000 entries in 5,300 folders, and 3 rounds). Each round uses a new
 * store; the times printed are each round's, in milliseconds: wall, the process's CPU time (all
 * threads) and the main thread's busy time (event-loop utilisation).
 */
import { mkdtemp, rename, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeManifest, type Manifest, type ManifestEntry } from "../../src/core/manifest.ts";
import { ManifestTrees } from "./manifest-tree.ts";
import { Store } from "./store.ts";

const leaves = Number(process.argv[2] ?? 5200);
const rounds = Number(process.argv[3] ?? 3);

function hex(n: number): string {
  return n.toString(16).padStart(16, "0");
}

function benchManifest(leafFolders: number): Manifest {
  const entries: ManifestEntry[] = [];
  const dir = (path: string): void => void entries.push({ path, kind: "dir", size: 0, mtimeMs: 1_700_000_000_000, mode: 0o755, hash: "", chunks: [] });
  dir("files");
  let n = 0;
  const perB = 52;
  for (let leaf = 0; leaf < leafFolders; leaf++) {
    const a = Math.floor(leaf / (perB * 10));
    const b = Math.floor(leaf / perB) % 10;
    const c = leaf % perB;
    if (leaf % (perB * 10) === 0) dir(`files/a${a}`);
    if (leaf % perB === 0) dir(`files/a${a}/b${b}`);
    const folder = `files/a${a}/b${b}/c${c}`;
    dir(folder);
    for (let i = 0; i < 9; i++) {
      n++;
      const size = 1000 + ((n * 7919) % 20_000);
      entries.push({ path: `${folder}/note-${i}.md`, kind: "file", size, mtimeMs: 1_700_000_000_000 + n, mode: 0o644, hash: hex(n * 2654435761), chunks: [[hex(n * 2654435761), size]] });
    }
  }
  return makeManifest(entries);
}

function cpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

/** Runs `work`, printing its wall time, the process's CPU time and the main thread's busy time (what the hub's event loop pays). */
async function timed<T>(what: string, work: () => Promise<T>): Promise<T> {
  const wall = performance.now();
  const cpu = cpuMs();
  const loop = performance.eventLoopUtilization();
  const result = await work();
  const busy = performance.eventLoopUtilization(loop).active;
  console.log(`  ${what.padEnd(28)} ${(performance.now() - wall).toFixed(0).padStart(6)} ms wall ${(cpuMs() - cpu).toFixed(0).padStart(6)} ms cpu ${busy.toFixed(0).padStart(6)} ms main thread`);
  return result;
}

const manifest = benchManifest(leaves);
console.log(`${manifest.entries.length} entries`);
const old: string[] = [];
for (let round = 0; round < rounds; round++) {
  const dir = await mkdtemp(join(tmpdir(), "cws-tree-bench-"));
  const store = await Store.open(dir);
  try {
    console.log(`round ${round + 1}`);
    const root = await timed("putManifest (new tree)", () => new ManifestTrees(store).putManifest(manifest));
    let folders = 0;
    await timed("walk (fresh trees)", () => new ManifestTrees(store).walk(root, () => void folders++));
    await timed("walk, checkCounts", () => new ManifestTrees(store).walk(root, () => {}, { checkCounts: true }));
    await timed("putManifest (all present)", () => new ManifestTrees(store).putManifest(manifest));
    if (round === 0) console.log(`  (${folders} folders)`);
  } finally {
    await store.close();
    // Deleted at the end, not between rounds: creating files right after mass deletions is
    // slow on ext4 (recently deleted inodes are skipped), which would slow the next round.
    const aside = `${dir}-old`;
    await rename(dir, aside);
    old.push(aside);
  }
}
for (const dir of old) await rm(dir, { recursive: true, force: true });
