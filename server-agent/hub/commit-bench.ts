/**
 * Measures the hub's side of a first push's commit at the benchmark's scale: what
 * `commitWithPolicy` costs once the manifest is staged (the walk that checks every chunk of the
 * tree, the counts, the database's transaction). The tree is shaped like the benchmark's
 * workspace (bench/dataset.ts at 50,000 files): about 2,000 note and config folders of 25
 * files, rollouts of several chunks in dated folders. Its chunks are stored (tiny, one bundle),
 * and the manifest is staged as the agent stages it, in pieces of 5,000 entries through one
 * ManifestTrees (whose folder cache the commit then finds as the hub would).
 *
 * Run with the hub's flags and allocator settings, as the hub runs:
 *
 *   MALLOC_ARENA_MAX=1 MALLOC_MMAP_THRESHOLD_=32768 MALLOC_TRIM_THRESHOLD_=65536 \
 *     node --max-semi-space-size=1 --expose-gc server-agent/hub/commit-bench.ts [files] [rounds]
 *
 * Each round stages a new superproject's tree in the same store and commits it; printed per
 * round: wall and CPU time of the commit, the bytes it allocated in V8's young generation, the
 * bytes young collections moved to the old generation during it (garbage there waits for a
 * full collection, and is what raises the hub's resident memory), what the heap grew by, and
 * how many young and full collections ran.
 *
 * This is not a test: `npm test` does not run it.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GCProfiler, getHeapStatistics } from "node:v8";
import { xxh64Hex } from "../../src/core/hash.ts";
import { chunkId, type ManifestEntry } from "../../src/core/manifest.ts";
import { byPath } from "../../src/core/push-view.ts";
import { BundleWriter } from "../../src/protocol/bundle.ts";
import { ManifestTrees } from "../store/manifest-tree.ts";
import { Store } from "../store/store.ts";
import { HubDatabase } from "./hub-db.ts";
import { commitWithPolicy } from "./push-policy.ts";

const files = Number(process.argv[2] ?? 50_000);
const rounds = Number(process.argv[3] ?? 3);
const PIECE = 5_000;

/** The tree's entries (in path order) and the chunks they name. */
function benchTree(total: number, seed: number): { entries: ManifestEntry[]; chunks: Buffer[] } {
  const chunks: Buffer[] = [];
  const entries: ManifestEntry[] = [];
  const folders = new Set<string>();
  const chunk = (): [string, number] => {
    const bytes = Buffer.from(`chunk ${seed}/${chunks.length} of a benchmark tree`);
    chunks.push(bytes);
    return [xxh64Hex(bytes), bytes.byteLength];
  };
  const file = (path: string, pieces: number): void => {
    const refs = Array.from({ length: pieces }, chunk);
    const size = refs.reduce((sum, [, length]) => sum + length, 0);
    entries.push({ path, kind: "file", size, mtimeMs: 1_760_000_000_000 + entries.length, mode: 0o644, hash: refs[0]![0], chunks: refs });
    for (let at = path.lastIndexOf("/"); at > 0; at = path.lastIndexOf("/", at - 1)) folders.add(path.slice(0, at));
  };
  const rollouts = Math.round(total * 0.0024);
  const areas = ["notes", "plans", "docs", "research", "meetings", "skills"];
  for (let i = 0; i < total - rollouts; i++) {
    const folder = `files/${areas[i % areas.length]}/topic-${Math.floor(i / 6 / 25)}`;
    file(`${folder}/a-note-about-something-${i}.${i % 3 === 0 ? "json" : "md"}`, 1);
  }
  for (let i = 0; i < rollouts; i++) {
    const day = `${String(1 + (i % 5)).padStart(2, "0")}/${String(1 + (i % 28)).padStart(2, "0")}`;
    file(`codex/sessions/2026/${day}/rollout-2026-01-05T10-00-00-0199a5c2-7d4e-7c61-8f3a-${String(i).padStart(12, "0")}.jsonl`, 40);
  }
  for (const path of folders) entries.push({ path, kind: "dir", size: 0, mtimeMs: 1_760_000_000_000, mode: 0o755, hash: "", chunks: [] });
  entries.sort((a, b) => byPath(a.path, b.path));
  return { entries, chunks };
}

type GCStatistics = ReturnType<GCProfiler["stop"]>["statistics"];

/** Sums over collections: bytes allocated in the young generation (up to the last collection), bytes young collections moved to the old one, and how many of each kind ran. */
function collectionTotals(statistics: GCStatistics): { allocated: number; promoted: number; young: number; full: number } {
  const used = (side: GCStatistics[number]["beforeGC"], names: string[]) => side.heapSpaceStatistics.filter((s) => names.includes(s.spaceName)).reduce((sum, s) => sum + s.spaceUsedSize, 0);
  const YOUNG = ["new_space", "new_large_object_space"];
  const OLD = ["old_space", "large_object_space"];
  let allocated = 0;
  let promoted = 0;
  let young = 0;
  // The young generation is empty after the full collection the round starts with.
  let left = 0;
  for (const gc of statistics) {
    allocated += used(gc.beforeGC, YOUNG) - left;
    left = used(gc.afterGC, YOUNG);
    if (gc.gcType === "Scavenge" || gc.gcType === "MinorMarkSweep") {
      young++;
      promoted += Math.max(0, used(gc.afterGC, OLD) - used(gc.beforeGC, OLD));
    }
  }
  return { allocated, promoted, young, full: statistics.length - young };
}

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error("run with --expose-gc");
const dir = await mkdtemp(join(tmpdir(), "cws-commit-bench-"));
const store = await Store.open(dir);
const db = new HubDatabase(join(dir, "hub.sqlite"));
try {
  const device = db.registerDevice("bench", undefined);
  const trees = new ManifestTrees(store);
  console.log(`${files} files per tree`);
  for (let round = 0; round < rounds; round++) {
    const slug = `bench-${round}`;
    db.createSuperproject(slug);
    const { entries, chunks } = benchTree(files, round);
    const writer = await BundleWriter.create(join(store.paths.incoming, `${slug}.cwsb`));
    for (const bytes of chunks) await writer.add(chunkId([xxh64Hex(bytes), bytes.byteLength]), bytes);
    await writer.finish();
    await store.ingestBundle(`${slug}.cwsb`);
    let root: string | null = null;
    for (let start = 0; start < entries.length; start += PIECE) {
      root = await (await trees.editDelta(root, { upserts: entries.slice(start, start + PIECE), removes: [] })).write();
    }
    gc();
    const heapBefore = getHeapStatistics().used_heap_size;
    const profiler = new GCProfiler();
    profiler.start();
    const cpu = process.cpuUsage();
    const wall = performance.now();
    const { snapshot } = await commitWithPolicy({ db, store, manifests: trees, log: () => {} }, { slug, base: null, deviceId: device, kind: "push", manifestHash: root! });
    const ms = performance.now() - wall;
    const { user, system } = process.cpuUsage(cpu);
    const grew = getHeapStatistics().used_heap_size - heapBefore;
    const stats = profiler.stop();
    const { allocated, promoted, young, full } = collectionTotals(stats.statistics);
    console.log(
      `round ${round + 1}: ${snapshot.files} files, ${chunks.length} chunks: ${ms.toFixed(0)} ms wall, ${((user + system) / 1000).toFixed(0)} ms cpu, ` +
        `${(allocated / 2 ** 20).toFixed(0)} MiB allocated, ${(promoted / 2 ** 20).toFixed(1)} MiB promoted, heap +${(grew / 2 ** 20).toFixed(1)} MiB, ${young} young / ${full} full collections`,
    );
  }
} finally {
  db.close();
  await store.close();
  await rm(dir, { recursive: true, force: true });
}
