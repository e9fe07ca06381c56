/**
 * The kept session's watcher (tree-watch.ts) with the real scanner and real inotify: after
 * every kind of change, a walk that recalls the unchanged folders' listings yields exactly the
 * manifest of a walk that lists every folder, and the change is in it; the watcher is used
 * (listings are recalled) when nothing changed; and whatever makes it doubt (a burst that may
 * have overflowed the queue, a replaced folder, too many folders) makes the next walk list
 * every folder.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { appendFileSync, chmodSync, mkdirSync, mkdtempSync, renameSync, rmSync, unlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { scanTree } from "./scanner.ts";
import { TreeWatcher, type TreeWatcherOptions } from "./tree-watch.ts";
import { keepParsedFiles } from "./file-memo.ts";

// As in the kept session: parsed state files (the stat cache) are kept while unchanged on disk.
keepParsedFiles();

interface Setup {
  root: string;
  watcher: TreeWatcher;
  logs: string[];
  statCachePath: string;
  /** Walks with the watcher after its barrier, checks the result against a walk without it, and returns the manifest's paths. */
  walk(): Promise<{ paths: Set<string>; recalled: number; listed: number; trusted: boolean; reused: number }>;
  /** What the kept session does after a sync: watch the walked folders, list those not known. */
  settle(stop?: () => boolean): Promise<void>;
  [Symbol.dispose](): void;
}

function setup(options: Partial<TreeWatcherOptions> = {}): Setup {
  const dir = mkdtempSync(join(tmpdir(), "cws-tree-watch-"));
  const root = join(dir, "root");
  const files: Record<string, string> = {
    "AGENTS.md": "# Agents\n",
    "notes/plan.md": "- one\n- two\n",
    "notes/deep/idea.md": "an idea\n",
    "notes/deep/deeper/x.json": "{}\n",
    "configs/a.json": "{\"a\": 1}\n",
    "node_modules/pkg/index.js": "ignored, never walked nor watched\n",
  };
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(root, path, ".."), { recursive: true });
    writeFileSync(join(root, path), content);
  }
  const logs: string[] = [];
  const watcher = new TreeWatcher({ root, markerDir: join(dir, "state", "kept-watch"), maxFolders: 100, log: (line) => logs.push(line), ...options });
  mkdirSync(join(dir, "state"), { recursive: true });
  const statCachePath = join(dir, "state", "stat-cache");
  return {
    root,
    watcher,
    logs,
    statCachePath,
    async walk() {
      const trusted = await watcher.barrier();
      const withWatcher = await scanTree({ root, statCachePath, memo: watcher });
      const counts = watcher.takeCounts();
      const fresh = await scanTree({ root });
      assert.deepEqual(withWatcher.manifest, fresh.manifest, "the walk with the watcher finds what a full walk finds");
      assert.deepEqual(withWatcher.problems, fresh.problems);
      return { paths: new Set(withWatcher.manifest.entries.map((entry) => entry.path)), ...counts, trusted, reused: withWatcher.reusedFolders };
    },
    async settle(stop = () => false) {
      watcher.watchWalked();
      await watcher.prime(stop);
    },
    [Symbol.dispose]() {
      watcher.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Lets inotify's events reach the watcher before the next change is made. */
const turn = () => new Promise((resolve) => setTimeout(resolve, 20));

test("after each kind of change, a walk through the watcher finds it, and recalls the folders nothing happened in", async () => {
  using s = setup();
  const first = await s.walk();
  assert.equal(first.trusted, false, "nothing is watched before the first walk");
  assert.equal(first.recalled, 0);
  await s.settle();
  assert.deepEqual(s.watcher.size, { watched: 5, listed: 5 }, "root, notes, notes/deep, notes/deep/deeper, configs; not node_modules");

  const quiet = await s.walk();
  assert.equal(quiet.trusted, true);
  assert.deepEqual([quiet.recalled, quiet.listed], [5, 0], "a walk with no change lists no folder");

  // An edit of a file three folders down: only its folder is listed again.
  writeFileSync(join(s.root, "notes/deep/deeper/x.json"), "{\"edited\": true, \"longer\": 1}\n");
  const edited = await s.walk();
  assert.deepEqual([edited.recalled, edited.listed], [4, 1]);
  await s.settle();

  // An append (a rollout's new turn) and a change of permissions.
  appendFileSync(join(s.root, "notes/plan.md"), "- three\n");
  chmodSync(join(s.root, "configs/a.json"), 0o600);
  const appended = await s.walk();
  assert.deepEqual([appended.recalled, appended.listed], [3, 2]);
  await s.settle();

  // A new file, a deleted file, a file renamed across folders.
  writeFileSync(join(s.root, "configs/new.json"), "[]\n");
  unlinkSync(join(s.root, "AGENTS.md"));
  renameSync(join(s.root, "notes/deep/idea.md"), join(s.root, "configs/idea.md"));
  const moved = await s.walk();
  assert.ok(moved.paths.has("files/configs/new.json") && moved.paths.has("files/configs/idea.md"));
  assert.ok(!moved.paths.has("files/AGENTS.md") && !moved.paths.has("files/notes/deep/idea.md"));
  await s.settle();

  // A new sub-folder with files, and a folder renamed with its content.
  mkdirSync(join(s.root, "notes/fresh/inner"), { recursive: true });
  writeFileSync(join(s.root, "notes/fresh/inner/a.md"), "a\n");
  writeFileSync(join(s.root, "notes/fresh/b.md"), "b\n");
  renameSync(join(s.root, "notes/deep"), join(s.root, "notes/renamed"));
  const grown = await s.walk();
  for (const path of ["files/notes/fresh/inner/a.md", "files/notes/fresh/b.md", "files/notes/renamed/deeper/x.json"]) assert.ok(grown.paths.has(path), path);
  assert.ok(!grown.paths.has("files/notes/deep"));
  await s.settle();
  assert.deepEqual(s.watcher.size, { watched: 7, listed: 7 }, "the new folders are watched, the moved ones under their new names");

  // A change inside the moved folder reaches its new watch.
  writeFileSync(join(s.root, "notes/renamed/deeper/y.md"), "y\n");
  const inMoved = await s.walk();
  assert.ok(inMoved.paths.has("files/notes/renamed/deeper/y.md"));
  assert.deepEqual([inMoved.recalled, inMoved.listed], [5, 2], "the new name's folder and its parent (whose listing holds the folder's times)");

  // A deleted folder with its content.
  rmSync(join(s.root, "notes/fresh"), { recursive: true });
  const removed = await s.walk();
  assert.ok(![...removed.paths].some((path) => path.startsWith("files/notes/fresh")));
  await s.settle();
  const last = await s.walk();
  assert.equal(last.listed, 0, "a quiet walk lists nothing again");
  assert.deepEqual(s.logs, [], "nothing made the watcher doubt");
});

test("a walk takes the folders nothing happened in as the last walk found them, and walks the rest", async () => {
  using s = setup();
  // Files written within the last two seconds are never cached (racy, see stat-cache.ts), so
  // their folders are read every time: these files are made an hour old, as a workspace's are.
  const hourAgo = new Date(Date.now() - 3_600_000);
  const age = (...paths: string[]) => { for (const path of paths) utimesSync(join(s.root, path), hourAgo, hourAgo); };
  age("AGENTS.md", "notes/plan.md", "notes/deep/idea.md", "notes/deep/deeper/x.json", "configs/a.json");
  await s.walk();
  await s.settle();
  // The first walk through the watcher walks every folder (its listings came from the set-up)
  // and keeps what each yielded; the next takes all five as they were.
  assert.equal((await s.walk()).reused, 0);
  assert.equal((await s.walk()).reused, 5);

  // An edited file: its folder is walked (and read), the other four are taken as they were.
  writeFileSync(join(s.root, "notes/deep/deeper/x.json"), "{\"edited\": 2}\n");
  age("notes/deep/deeper/x.json");
  const edited = await s.walk();
  assert.ok(edited.reused === 4 && edited.listed === 1, JSON.stringify(edited));
  await s.settle();
  // That folder read a file, so it was not kept: walked once more (all cache hits), then kept.
  assert.equal((await s.walk()).reused, 4);
  assert.equal((await s.walk()).reused, 5);

  // A new file and a deleted one: their folders are walked, and the manifest has both changes
  // (walk() compares every result with a walk without the watcher).
  writeFileSync(join(s.root, "configs/b.json"), "[]\n");
  age("configs/b.json");
  unlinkSync(join(s.root, "notes/plan.md"));
  const changed = await s.walk();
  assert.ok(changed.paths.has("files/configs/b.json") && !changed.paths.has("files/notes/plan.md"));
  assert.equal(changed.reused, 2, "notes/deep and notes/deep/deeper (the root's listing holds the two folders' times)");
  await s.settle();
  await s.walk();

  // The stat cache changed by something else (another command's sync): nothing is taken as it
  // was, as the cache entries the folders' files came from may be gone.
  assert.equal((await s.walk()).reused, 5);
  const later = new Date(Date.now() + 5_000);
  utimesSync(s.statCachePath, later, later);
  assert.equal((await s.walk()).reused, 0);
  assert.equal((await s.walk()).reused, 5, "kept again after one walk under the new cache");

  // Changed ignore rules: every folder is walked under them.
  writeFileSync(join(s.root, ".cwsignore"), "configs/\n");
  const ignoring = await s.walk();
  assert.equal(ignoring.reused, 0);
  assert.ok(![...ignoring.paths].some((path) => path.startsWith("files/configs/")));
});

test("changes made while the watcher is being set up are found by the next walk", async () => {
  using s = setup();
  await s.walk();
  // After the walk, before the folders are watched: the folder is listed when it is watched.
  writeFileSync(join(s.root, "configs/before-watch.json"), "1\n");
  s.watcher.watchWalked();
  // Watched, not yet listed.
  writeFileSync(join(s.root, "notes/deep/before-prime.md"), "2\n");
  await turn();
  // While the folders are being listed: a folder listed already changes.
  let calls = 0;
  await s.watcher.prime(() => {
    if (++calls === 3) writeFileSync(join(s.root, "during-prime.md"), "3\n");
    return false;
  });
  await turn();
  const next = await s.walk();
  for (const path of ["files/configs/before-watch.json", "files/notes/deep/before-prime.md", "files/during-prime.md"]) assert.ok(next.paths.has(path), path);
  assert.equal(next.listed, 1, "only the root, changed after it was listed, is listed again");

  // A change made during a walk that recalls listings: found by that walk or the next.
  let during = false;
  const trusted = await s.watcher.barrier();
  assert.ok(trusted);
  const scan = await scanTree({
    root: s.root, memo: s.watcher, onProgress: () => {
      if (!during) writeFileSync(join(s.root, "configs/during-walk.json"), "4\n");
      during = true;
    },
  });
  s.watcher.takeCounts();
  const found = scan.manifest.entries.some((entry) => entry.path === "files/configs/during-walk.json") || (await s.walk()).paths.has("files/configs/during-walk.json");
  assert.ok(found);

  // A new folder, walked before it is watched, gets a name before its watch: its own times
  // (held by its parent's listing, made while the parent was watched) changed with no event.
  await s.settle();
  mkdirSync(join(s.root, "configs/new-folder"));
  await s.walk();
  writeFileSync(join(s.root, "configs/new-folder/late.md"), "5\n");
  await s.settle();
  assert.ok((await s.walk()).paths.has("files/configs/new-folder/late.md"), "and the walk's manifest matches a full walk's, the folder's times included");
});

test("a burst of events that may have overflowed the kernel's queue makes the next walk list every folder", async () => {
  using s = setup({ burstLimit: 8 });
  await s.walk();
  await s.settle();
  for (let i = 0; i < 20; i++) writeFileSync(join(s.root, `notes/burst-${i}.md`), `${i}\n`);
  const after = await s.walk();
  assert.equal(after.trusted, false);
  assert.equal(after.recalled, 0);
  assert.ok(after.paths.has("files/notes/burst-19.md"));
  assert.match(s.logs.join("\n"), /overflowed/);
  // Set up again after that walk, it is trusted again.
  await s.settle();
  const again = await s.walk();
  assert.deepEqual([again.trusted, again.listed], [true, 0]);
});

test("a folder replaced by another one at the same path is listed afresh", async () => {
  using s = setup();
  await s.walk();
  await s.settle();
  renameSync(s.root, `${s.root}-old`);
  mkdirSync(join(s.root, "notes"), { recursive: true });
  writeFileSync(join(s.root, "notes/plan.md"), "another folder\n");
  const after = await s.walk();
  assert.equal(after.trusted, false);
  assert.deepEqual([...after.paths].sort(), ["files/notes", "files/notes/plan.md"]);
  rmSync(`${s.root}-old`, { recursive: true, force: true });
});

test("a tree with more folders than allowed is not watched, and walks list every folder", async () => {
  using s = setup({ maxFolders: 3 });
  await s.walk();
  await s.settle();
  assert.match(s.watcher.gaveUp ?? "", /more than 3 folders/);
  writeFileSync(join(s.root, "notes/deep/late.md"), "late\n");
  const after = await s.walk();
  assert.equal(after.recalled, 0);
  assert.ok(after.paths.has("files/notes/deep/late.md"));
});

test("CWS_WATCH_FOLDERS=0 turns the watcher off", async () => {
  using s = setup({ maxFolders: 0 });
  await s.walk();
  await s.settle();
  assert.deepEqual(s.watcher.size, { watched: 0, listed: 0 });
  assert.notEqual(s.watcher.gaveUp, null);
});
