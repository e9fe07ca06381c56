/**
 * Manifests stored as a tree of folder objects, like git trees: one object per folder holds
 * that folder's own entries and, for each sub-folder with anything in it, the hash of its
 * object and the counts of what lies under it (entries, files, bytes). A snapshot names the
 * root object. A commit of 50 files into a tree of 50,000 rewrites only the folders on their
 * paths; two snapshots are compared by descending only into sub-folders whose hashes differ;
 * the quarantine policy reads file counts per folder from the objects instead of walking
 * every entry.
 *
 * Objects are canonical JSON (keys in a fixed order, names sorted, no empty sub-folder), so the
 * same tree always has the same hashes and an unchanged folder is never written twice. Every
 * object is validated when read back, so a damaged one is reported, never used.
 *
 * Manifests stored whole by earlier versions (`{"format":1,"entries":[…]}`) are still read:
 * `getManifest` assembles either form, and `treeRoot` turns a whole manifest into a tree the
 * first time a commit builds on it (lazily, once per head).
 */
import { CwsError } from "../../src/errors.ts";
import { xxh64Hex } from "../../src/core/hash.ts";
import { diffManifests, MANIFEST_FORMAT, MAX_PATH_LENGTH, ManifestEntry, sameEntry, type Manifest, type ManifestDelta } from "../../src/core/manifest.ts";
import { hasPlainEntryFields, safeParseManifest } from "../../src/core/manifest-check.ts";
import { byPath, type PushView } from "../../src/core/push-view.ts";
import type { TravelLookup } from "../../src/core/portable-names.ts";
import type { Store } from "./store.ts";

/** What lies under a sub-folder, kept in its parent's object. */
export interface TreeCounts {
  /** Entries at any depth (files and folders). */
  entries: number;
  /** File entries at any depth. */
  files: number;
  /** Bytes of those files. */
  bytes: number;
}

export interface SubtreeRef extends TreeCounts {
  /** The hash of the sub-folder's object. */
  tree: string;
}

/** One folder's object, read: its own entries by name, and its non-empty sub-folders by name. */
export interface TreeNode {
  /** The folder's path ("" for the root). */
  readonly path: string;
  readonly entries: Map<string, ManifestEntry>;
  readonly dirs: Map<string, SubtreeRef>;
}

/** The marker of a tree object; a whole manifest has `format` instead. */
const TREE_FORMAT = 1;
const HASH = /^[0-9a-f]{16}$/;
/**
 * Parsed folder objects kept in memory, counted in entries (about 350 bytes each). Since a
 * folder object is read with synchronous calls (Store.getObject), a miss costs about 50 µs, so
 * the cache is kept small: at 20,000 entries it held about 7 MiB of the hub's resting memory
 * after a 50,000-file first push, memory the hub's warm syncs then could not go below.
 */
const NODE_CACHE_ENTRIES = 4_000;
/** Folder objects written per `Store.putObjects` batch. */
const OBJECT_BATCH = 1024;

function joinPath(folder: string, name: string): string {
  return folder === "" ? name : `${folder}/${name}`;
}

function parentOf(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash === -1 ? "" : path.slice(0, slash);
}

function nameOf(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

function emptyNode(path: string): TreeNode {
  return { path, entries: new Map(), dirs: new Map() };
}

function corrupt(hash: string, why: string): CwsError {
  return new CwsError("CORRUPT", `Stored manifest object ${hash} is not valid (${why}). Run \`cws-server verify\`.`, { data: { hash } });
}

/** The counts of a folder's object: its own entries plus what its sub-folders hold. */
export function nodeCounts(node: TreeNode): TreeCounts {
  const counts: TreeCounts = { entries: node.entries.size, files: 0, bytes: 0 };
  for (const entry of node.entries.values()) {
    if (entry.kind === "file") {
      counts.files++;
      counts.bytes += entry.size;
    }
  }
  for (const ref of node.dirs.values()) {
    counts.entries += ref.entries;
    counts.files += ref.files;
    counts.bytes += ref.bytes;
  }
  return counts;
}

/** The canonical bytes of a folder's object. */
function encodeNode(node: TreeNode): Buffer {
  const entries = [...node.entries.keys()].sort(byPath).map((name) => {
    const e = node.entries.get(name) as ManifestEntry;
    return { name, kind: e.kind, size: e.size, mtimeMs: e.mtimeMs, mode: e.mode, hash: e.hash, chunks: e.chunks };
  });
  const dirs = [...node.dirs.keys()].sort(byPath).map((name) => {
    const d = node.dirs.get(name) as SubtreeRef;
    return { name, tree: d.tree, entries: d.entries, files: d.files, bytes: d.bytes };
  });
  return Buffer.from(JSON.stringify({ tree: TREE_FORMAT, entries, dirs }));
}

function isCount(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

function isName(value: unknown): value is string {
  return typeof value === "string" && value.length > 0 && !value.includes("/");
}

/** An entry of a folder's object as read from JSON: a manifest entry with its name in place of its path. */
type EntryJson = Omit<ManifestEntry, "path"> & { name: string };

/** A folder's object as read from JSON (see encodeNode). */
interface NodeJson {
  tree: typeof TREE_FORMAT;
  entries: EntryJson[];
  dirs: Array<SubtreeRef & { name: string }>;
}

/** True when `json` is marked as a folder object (a whole manifest has `format` instead). */
function isTreeJson(json: unknown): boolean {
  return typeof json === "object" && json !== null && "tree" in json;
}

/**
 * Checks a folder's object as read from JSON where it lies, copying nothing, and returns it
 * typed; throws CORRUPT naming what is wrong. `path` is where the folder sits (its entries'
 * paths must not grow too long).
 */
function checkNodeJson(json: unknown, hash: string, path: string): NodeJson {
  if (typeof json !== "object" || json === null || (json as { tree?: unknown }).tree !== TREE_FORMAT) throw corrupt(hash, "not a folder object");
  const { entries, dirs } = json as { entries?: unknown; dirs?: unknown };
  if (!Array.isArray(entries) || !Array.isArray(dirs)) throw corrupt(hash, "entries or dirs missing");
  let previous: string | null = null;
  // The path an entry's name makes is this long plus the name.
  const prefix = path === "" ? 0 : path.length + 1;
  for (const raw of entries as unknown[]) {
    if (typeof raw !== "object" || raw === null) throw corrupt(hash, "an entry is not an object");
    const { name } = raw as { name?: unknown };
    if (!isName(name)) throw corrupt(hash, `entry name ${JSON.stringify(name)}`);
    if (previous !== null && !(previous < name)) throw corrupt(hash, "entries not sorted by name");
    previous = name;
    if (prefix + name.length > MAX_PATH_LENGTH || !hasPlainEntryFields(raw)) {
      // The schema names what is wrong (only now: a valid entry is never copied).
      const { name: _name, ...fields } = raw as { name: string };
      const checked = ManifestEntry.safeParse({ path: joinPath(path, name), ...fields });
      throw corrupt(hash, `entry ${name}: ${checked.success ? "unexpected fields" : checked.error.issues[0]?.message}`);
    }
  }
  previous = null;
  for (const raw of dirs as unknown[]) {
    const { name, tree, entries: n, files, bytes } = (raw ?? {}) as Record<string, unknown>;
    if (!isName(name) || typeof tree !== "string" || !HASH.test(tree) || !isCount(n) || n === 0 || !isCount(files) || !isCount(bytes) || files > n) {
      throw corrupt(hash, `sub-folder ${JSON.stringify(name)}`);
    }
    if (previous !== null && !(previous < name)) throw corrupt(hash, "sub-folders not sorted by name");
    previous = name;
  }
  return json as NodeJson;
}

/** Checks a folder's object as read from JSON and returns it as a node; throws CORRUPT naming what is wrong. */
function decodeNode(json: unknown, hash: string, path: string): TreeNode {
  const checked = checkNodeJson(json, hash, path);
  // Not emptyNode(): V8 decides per allocation site whether to allocate its objects in the old
  // generation from the start, and the folders a commit or a staged piece edits (made by
  // emptyNode, held until written) persuade it to for emptyNode's. A decoded node in the old
  // generation keeps every entry it holds alive through young collections after it died, so a
  // walk over a first push's 50,000-entry tree, right after it was staged, moved about 20 MiB
  // of dead entries into the old generation (hub/commit-bench.ts); nodes made here die young.
  const node: TreeNode = { path, entries: new Map(), dirs: new Map() };
  for (const { name, ...fields } of checked.entries) node.entries.set(name, { path: joinPath(path, name), ...fields });
  for (const { name, tree, entries, files, bytes } of checked.dirs) node.dirs.set(name, { tree, entries, files, bytes });
  return node;
}

/** Either form of a stored manifest object, read. */
type StoredManifest = { kind: "tree"; root: TreeNode } | { kind: "whole"; manifest: Manifest };

/** A change of one path: its entry before and after (undefined: absent on that side). */
export interface TreeChange {
  path: string;
  before: ManifestEntry | undefined;
  after: ManifestEntry | undefined;
}

/**
 * Reads and writes manifests as trees in one store, keeping recently read folder objects in
 * memory (they never change: an object is named by its hash).
 */
export class ManifestTrees {
  readonly store: Store;
  readonly #cache = new Map<string, TreeNode>();
  #cached = 0;
  /** Whole manifests already turned into trees: hash → root hash. */
  readonly #converted = new Map<string, string>();

  constructor(store: Store) {
    this.store = store;
  }

  /**
   * Reads a folder's object. `path` is where it sits; entries carry full paths. Kept in the
   * cache unless `remember` is false: a walk over a whole tree (a first push, gc, verify) reads
   * each folder once, and keeping them would only move garbage into the old generation, which
   * V8 does not hand back to the system (the hub's resident memory would stay high for hours).
   */
  async node(hash: string, path: string, remember = true): Promise<TreeNode> {
    const key = `${hash}\u0000${path}`;
    const hit = this.#cache.get(key);
    if (hit !== undefined) {
      this.#cache.delete(key);
      this.#cache.set(key, hit);
      return hit;
    }
    const stored = await this.#read(hash, path);
    if (stored.kind !== "tree") throw corrupt(hash, "a whole manifest where a folder object was expected");
    if (remember) this.#remember(key, stored.root);
    return stored.root;
  }

  #remember(key: string, node: TreeNode): void {
    this.#cache.set(key, node);
    this.#cached += node.entries.size + 1;
    for (const [old, value] of this.#cache) {
      if (this.#cached <= NODE_CACHE_ENTRIES) break;
      this.#cache.delete(old);
      this.#cached -= value.entries.size + 1;
    }
  }

  async #read(hash: string, path: string): Promise<StoredManifest> {
    const json = await this.#readJson(hash);
    if (isTreeJson(json)) return { kind: "tree", root: decodeNode(json, hash, path) };
    const parsed = safeParseManifest(json);
    if (!parsed.success) {
      throw new CwsError("CORRUPT", `Stored manifest ${hash} is not a valid manifest (${parsed.error.issues[0]?.message}). Run \`cws-server verify\`.`);
    }
    return { kind: "whole", manifest: parsed.data };
  }

  /** A stored manifest object (either form) as parsed from its JSON, not yet checked. */
  async #readJson(hash: string): Promise<unknown> {
    const raw = await this.store.getObject(hash);
    try {
      return JSON.parse(Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString("utf8"));
    } catch {
      throw corrupt(hash, "not JSON");
    }
  }

  /** True when `hash` names a tree's root object (false for a whole manifest of an earlier version). */
  async isTree(hash: string): Promise<boolean> {
    if (this.#cache.has(`${hash}\u0000`)) return true;
    return (await this.#read(hash, "")).kind === "tree";
  }

  /**
   * The root object of a stored manifest: itself when it is a tree; a whole manifest of an
   * earlier version is stored as a tree first (once; later calls find every folder present).
   */
  async treeRoot(hash: string): Promise<string> {
    const known = this.#converted.get(hash);
    if (known !== undefined) return known;
    const stored = await this.#read(hash, "");
    if (stored.kind === "tree") {
      this.#remember(`${hash}\u0000`, stored.root);
      return hash;
    }
    const root = await this.putManifest(stored.manifest);
    this.#converted.set(hash, root);
    return root;
  }

  /** The counts of a whole tree (its root's). */
  async counts(root: string): Promise<TreeCounts> {
    return nodeCounts(await this.node(root, ""));
  }

  /** Stores a whole manifest as a tree (folders already present are not written again); returns the root's hash. */
  async putManifest(manifest: Manifest): Promise<string> {
    const nodes = new Map<string, TreeNode>([["", emptyNode("")]]);
    const folder = (path: string): TreeNode => {
      let node = nodes.get(path);
      if (node === undefined) {
        node = emptyNode(path);
        nodes.set(path, node);
        folder(parentOf(path));
      }
      return node;
    };
    for (const entry of manifest.entries) folder(parentOf(entry.path)).entries.set(nameOf(entry.path), entry);
    return this.#writeBottomUp(nodes);
  }

  /**
   * Writes every node of `nodes` (path → node, ancestors of each included); returns the root's
   * hash. Hashes are computed deepest first (a parent names its children's hashes), then the
   * objects are written in batches made durable as a whole (`Store.putObjects`).
   */
  async #writeBottomUp(nodes: Map<string, TreeNode>): Promise<string> {
    const paths = [...nodes.keys()].filter((p) => p !== "").sort((a, b) => depth(b) - depth(a));
    const objects: Array<{ node: TreeNode; raw: Buffer; hash: string }> = [];
    const encode = (node: TreeNode): string => {
      const raw = encodeNode(node);
      const hash = xxh64Hex(raw);
      objects.push({ node, raw, hash });
      return hash;
    };
    for (const path of paths) {
      const node = nodes.get(path) as TreeNode;
      const parent = nodes.get(parentOf(path)) as TreeNode;
      const counts = nodeCounts(node);
      if (counts.entries === 0) parent.dirs.delete(nameOf(path));
      else parent.dirs.set(nameOf(path), { tree: encode(node), ...counts });
    }
    const root = encode(nodes.get("") as TreeNode);
    // In batches, each made durable with two file-system barriers (Store.putObjects), and each
    // batch's bytes let go of once written: a first push of 50,000 files encodes as many bytes
    // of folder objects as its manifest has.
    for (let start = 0; start < objects.length; start += OBJECT_BATCH) {
      const batch = objects.slice(start, start + OBJECT_BATCH);
      for (let at = start; at < start + batch.length; at++) objects[at] = undefined as never;
      await this.store.putObjects(batch.map((object) => object.raw));
      for (const { node, hash } of batch) this.#remember(`${hash}\u0000${node.path}`, node);
    }
    return root;
  }

  /** Reads a whole manifest, from either form. */
  async getManifest(hash: string): Promise<Manifest> {
    const stored = await this.#read(hash, "");
    if (stored.kind === "whole") return stored.manifest;
    const entries: ManifestEntry[] = [];
    await this.walk(hash, (node) => {
      for (const entry of node.entries.values()) entries.push(entry);
    });
    // Depth first by name is not path order ("a-b" sorts before "a/…"): one sort puts it right.
    entries.sort((a, b) => byPath(a.path, b.path));
    return { format: MANIFEST_FORMAT, entries };
  }

  /**
   * A whole manifest (either stored form) as JSON text in pieces, entries in path order: what
   * `getManifest` returns, serialised, without ever holding every entry at once. Folders are
   * read one at a time and not kept, so a pull of a 50,000-entry tree holds its text (which
   * travels anyway) and one folder's objects. Every folder is read and checked before the
   * first piece is returned, so a damaged object fails the request, never half an answer.
   */
  async manifestJson(hash: string): Promise<string[]> {
    const stored = await this.#read(hash, "");
    if (stored.kind === "whole") return [JSON.stringify(stored.manifest)];
    const pieces: string[] = [`{"format":${MANIFEST_FORMAT},"entries":[`];
    let first = true;
    const emit = (run: ManifestEntry[]) => {
      if (run.length === 0) return;
      const text = JSON.stringify(run);
      pieces.push(`${first ? "" : ","}${text.slice(1, -1)}`);
      first = false;
    };
    const descend = async (node: TreeNode): Promise<void> => {
      // Path order across folders: every path under sub-folder `d` starts with "d/", so the
      // folder's own names and its sub-folders' names followed by "/" sort as their paths do.
      const items: Array<{ key: string; entry?: ManifestEntry; dir?: string }> = [];
      for (const [name, entry] of node.entries) items.push({ key: name, entry });
      for (const name of node.dirs.keys()) items.push({ key: `${name}/`, dir: name });
      items.sort((a, b) => byPath(a.key, b.key));
      let run: ManifestEntry[] = [];
      for (const item of items) {
        if (item.entry !== undefined) {
          run.push(item.entry);
          continue;
        }
        emit(run);
        run = [];
        const name = item.dir as string;
        await descend(await this.node((node.dirs.get(name) as SubtreeRef).tree, joinPath(node.path, name), false));
      }
      emit(run);
    };
    await descend(stored.root);
    pieces.push("]}");
    return pieces;
  }

  /**
   * Visits every folder object of a tree once (`seen`, shared across calls, skips sub-trees
   * already visited: snapshots share most of theirs). A whole manifest of an earlier version is
   * visited as one folder holding all its entries. With `checkCounts`, the counts a parent keeps
   * for each sub-folder are checked against the sub-folder itself. A visit that returns a
   * promise is awaited before the walk goes on.
   */
  async walk(root: string, visit: (node: TreeNode, hash: string) => void | Promise<void>, options: { seen?: Set<string>; checkCounts?: boolean } = {}): Promise<void> {
    const seen = options.seen ?? new Set<string>();
    if (seen.has(root)) return;
    const stored = await this.#read(root, "");
    if (stored.kind === "whole") {
      seen.add(root);
      const node = emptyNode("");
      for (const entry of stored.manifest.entries) node.entries.set(entry.path, entry);
      await visit(node, root);
      return;
    }
    const descend = async (hash: string, path: string, expected: TreeCounts | null): Promise<void> => {
      if (seen.has(hash) && expected === null) return;
      const node = await this.node(hash, path, false);
      if (expected !== null) {
        const actual = nodeCounts(node);
        if (actual.entries !== expected.entries || actual.files !== expected.files || actual.bytes !== expected.bytes) {
          throw corrupt(hash, `its parent counts ${expected.entries} entries, ${expected.files} files, ${expected.bytes} bytes under ${path}; it holds ${actual.entries}, ${actual.files}, ${actual.bytes}`);
        }
      }
      if (seen.has(hash)) return;
      seen.add(hash);
      await visit(node, hash);
      for (const [name, ref] of node.dirs) await descend(ref.tree, joinPath(path, name), options.checkCounts ? ref : null);
    };
    await descend(root, "", null);
  }

  /**
   * Calls `onChunk` with the hash and length of every chunk reference of every file in the
   * manifest `root` (either stored form), in no particular order and once per reference. Each
   * folder object is read and checked as `node` reads it (a damaged one fails with CORRUPT), but
   * where it lies: no node, no entry copy and no id string is made, nothing is cached, and of a
   * folder only its list of sub-folders is kept while they are read. This is the commit's check
   * that the store holds every chunk of a tree (requireTreeChunks in push-policy.ts): for a
   * first push's 50,000 entries `walk` and the ids made 85–95 MiB of short-lived objects, this
   * 40 (hub/commit-bench.ts). A sub-folder that appears twice (two folders with the same
   * content) is read twice: a tree holds no more of them than its manifest has entries, and no
   * set of hashes is kept.
   */
  async forEachChunk(root: string, onChunk: (hash: string, length: number) => void): Promise<void> {
    const json = await this.#readJson(root);
    if (!isTreeJson(json)) {
      // A whole manifest of an earlier version: one object (commits turn it into a tree first).
      await this.walk(root, (node) => {
        for (const entry of node.entries.values()) for (const [hash, length] of entry.chunks) onChunk(hash, length);
      });
      return;
    }
    const visit = (folder: NodeJson): NodeJson["dirs"] => {
      for (const entry of folder.entries) for (const [hash, length] of entry.chunks) onChunk(hash, length);
      return folder.dirs;
    };
    const descend = async (dirs: NodeJson["dirs"], path: string): Promise<void> => {
      for (const { tree, name } of dirs) {
        const at = joinPath(path, name);
        await descend(visit(checkNodeJson(await this.#readJson(tree), tree, at)), at);
      }
    };
    await descend(visit(checkNodeJson(json, root, "")), "");
  }

  /**
   * Applies a delta to the tree `root` (null: an empty tree), loading and rewriting only the
   * folders on the changed paths. Upserts may not repeat a path; a remove of an absent path is
   * a no-op (as for whole manifests). Returns the new root's hash.
   */
  async applyDelta(root: string | null, delta: ManifestDelta): Promise<{ root: string }> {
    return { root: await (await this.editDelta(root, delta)).write() };
  }

  /**
   * `applyDelta` in two steps: the folders on the changed paths are loaded and edited in
   * memory, so the result can be checked (`travelLookup`) before anything is written (`write`).
   */
  async editDelta(root: string | null, delta: ManifestDelta): Promise<{ write(): Promise<string>; travelLookup(upserts: readonly ManifestEntry[]): Promise<TravelLookup> }> {
    const nodes = new Map<string, TreeNode>();
    const load = async (path: string): Promise<TreeNode> => {
      const known = nodes.get(path);
      if (known !== undefined) return known;
      let source: TreeNode | null = null;
      if (path === "") source = root === null ? null : await this.node(root, "");
      else {
        const ref = (await load(parentOf(path))).dirs.get(nameOf(path));
        if (ref !== undefined) source = await this.node(ref.tree, path);
      }
      // A copy: cached objects are shared and never change.
      const node: TreeNode = source === null ? emptyNode(path) : { path, entries: new Map(source.entries), dirs: new Map(source.dirs) };
      nodes.set(path, node);
      return node;
    };
    for (const path of delta.removes) (await load(parentOf(path))).entries.delete(nameOf(path));
    const seen = new Set<string>();
    for (const entry of delta.upserts) {
      if (seen.has(entry.path)) throw new CwsError("INVALID_ARGUMENT", `Cannot accept commit: duplicate path ${entry.path} in a manifest delta`);
      seen.add(entry.path);
      (await load(parentOf(entry.path))).entries.set(nameOf(entry.path), entry);
    }
    await load("");
    // Edited folders by parent: a folder the delta creates is not yet among its parent's dirs.
    const children = new Map<string, Set<string>>();
    for (const path of nodes.keys()) {
      if (path === "") continue;
      const set = children.get(parentOf(path)) ?? new Set<string>();
      set.add(nameOf(path));
      children.set(parentOf(path), set);
    }
    /** Paths of the edited tree at any depth under `path` (whose parent folder is loaded). */
    const pathsBelow = async (path: string, out: string[]): Promise<void> => {
      let node = nodes.get(path);
      if (node === undefined) {
        const ref = nodes.get(parentOf(path))?.dirs.get(nameOf(path));
        if (ref === undefined) return;
        node = await this.node(ref.tree, path);
      }
      for (const entry of node.entries.values()) out.push(entry.path);
      const names = new Set([...node.dirs.keys(), ...(nodes.has(path) ? (children.get(path) ?? []) : [])]);
      for (const name of names) {
        const child = joinPath(path, name);
        if (nodes.has(child)) await pathsBelow(child, out);
        else await pathsBelowStored(node.dirs.get(name) as SubtreeRef, child, out);
      }
    };
    const pathsBelowStored = async (ref: SubtreeRef, path: string, out: string[]): Promise<void> => {
      const node = await this.node(ref.tree, path);
      for (const entry of node.entries.values()) out.push(entry.path);
      for (const [name, child] of node.dirs) await pathsBelowStored(child, joinPath(path, name), out);
    };
    return {
      write: () => this.#writeBottomUp(nodes),
      travelLookup: async (upserts) => {
        const below = new Map<string, string[]>();
        for (const entry of upserts) {
          if (entry.kind !== "file") continue;
          const out: string[] = [];
          await pathsBelow(entry.path, out);
          if (out.length > 0) below.set(entry.path, out.sort(byPath));
        }
        return {
          entry: (path) => nodes.get(parentOf(path))?.entries.get(nameOf(path)),
          pathsBelow: (path) => below.get(path) ?? [],
        };
      },
    };
  }

  /**
   * What turns the manifest `from` into `to` (either stored form). Two trees are compared
   * folder by folder, descending only where hashes differ; a whole manifest of an earlier
   * version is compared whole (nothing is written on this read path).
   */
  async diff(from: string, to: string): Promise<ManifestDelta> {
    if (!(await this.isTree(from)) || !(await this.isTree(to))) return diffManifests(await this.getManifest(from), await this.getManifest(to));
    const { changes } = await this.pushView(from, to);
    return {
      upserts: changes.flatMap((c) => (c.after === undefined ? [] : [c.after])),
      removes: changes.flatMap((c) => (c.after === undefined ? [c.path] : [])),
    };
  }

  /** Loads the folder at `path` of the tree `root`, or null when nothing lies there. */
  async folder(root: string, path: string): Promise<TreeNode | null> {
    let node = await this.node(root, "");
    if (path === "") return node;
    let at = "";
    for (const name of path.split("/")) {
      const ref = node.dirs.get(name);
      if (ref === undefined) return null;
      at = joinPath(at, name);
      node = await this.node(ref.tree, at);
    }
    return node;
  }

  /** Every entry at any depth under the folder at `path` of `root`, sorted by path. */
  async entriesUnder(root: string, path: string): Promise<ManifestEntry[]> {
    const start = await this.folder(root, path);
    if (start === null) return [];
    const entries: ManifestEntry[] = [];
    const descend = async (node: TreeNode): Promise<void> => {
      for (const entry of node.entries.values()) entries.push(entry);
      for (const [name, ref] of node.dirs) await descend(await this.node(ref.tree, joinPath(node.path, name)));
    };
    await descend(start);
    return entries.sort((a, b) => byPath(a.path, b.path));
  }

  /**
   * The view of a push from tree `before` (null: empty) to tree `after` for the quarantine
   * policy: descends only into folders whose hashes differ, so it reads the changed folders and
   * their ancestors, nothing else.
   */
  async pushView(before: string | null, after: string): Promise<PushView & { changes: TreeChange[] }> {
    const sides = { before: new Map<string, TreeNode>(), after: new Map<string, TreeNode>() };
    const changes: TreeChange[] = [];
    const descend = async (a: string | undefined, b: string | undefined, path: string): Promise<void> => {
      if (a === b) return;
      const nodeA = a === undefined ? emptyNode(path) : await this.node(a, path);
      const nodeB = b === undefined ? emptyNode(path) : await this.node(b, path);
      sides.before.set(path, nodeA);
      sides.after.set(path, nodeB);
      for (const [name, old] of nodeA.entries) {
        const now = nodeB.entries.get(name);
        if (now === undefined || !sameEntry(old, now)) changes.push({ path: old.path, before: old, after: now });
      }
      for (const [name, now] of nodeB.entries) if (!nodeA.entries.has(name)) changes.push({ path: now.path, before: undefined, after: now });
      const names = new Set([...nodeA.dirs.keys(), ...nodeB.dirs.keys()]);
      for (const name of names) await descend(nodeA.dirs.get(name)?.tree, nodeB.dirs.get(name)?.tree, joinPath(path, name));
    };
    await descend(before ?? undefined, after, "");
    if (!sides.before.has("")) {
      // Identical trees: the roots are still needed for counts.
      sides.before.set("", await this.node(after, ""));
      sides.after.set("", sides.before.get("") as TreeNode);
    }
    changes.sort((x, y) => byPath(x.path, y.path));
    // The policy lists what a restored file would bury: everything `after` holds under a path
    // that was a file before. Rare; loaded in full, before the (synchronous) policy runs.
    // Both sides of those folders are loaded, so that every entry listed can be looked up.
    const under = new Map<string, string[]>();
    const loadSubtree = async (path: string): Promise<void> => {
      const [nodeA, nodeB] = [before === null ? null : await this.folder(before, path), await this.folder(after, path)];
      sides.before.set(path, nodeA ?? emptyNode(path));
      sides.after.set(path, nodeB ?? emptyNode(path));
      for (const name of nodeB?.dirs.keys() ?? []) await loadSubtree(joinPath(path, name));
    };
    for (const change of changes) {
      if (change.before?.kind !== "file") continue;
      const paths = (await this.entriesUnder(after, change.path)).map((e) => e.path);
      if (paths.length === 0) continue;
      under.set(change.path, paths);
      await loadSubtree(change.path);
    }
    const lookup = (side: Map<string, TreeNode>, path: string): ManifestEntry | undefined => {
      const node = side.get(parentOf(path));
      if (node === undefined) throw new Error(`bug: the push view has no folder ${parentOf(path)} loaded for ${path}`);
      return node.entries.get(nameOf(path));
    };
    const filesUnder = (side: Map<string, TreeNode>, folder: string): number => {
      const node = side.get(folder);
      if (node !== undefined) return nodeCounts(node).files;
      // Not loaded: unchanged on this path, so its parent's count says it.
      const parent = side.get(parentOf(folder));
      if (parent === undefined) throw new Error(`bug: the push view has no folder ${parentOf(folder)} loaded for ${folder}`);
      return parent.dirs.get(nameOf(folder))?.files ?? 0;
    };
    return {
      changes,
      changed: changes.map((c) => c.path),
      before: (path) => lookup(sides.before, path),
      after: (path) => lookup(sides.after, path),
      beforeFiles: nodeCounts(sides.before.get("") as TreeNode).files,
      filesUnder: (side, folder) => filesUnder(sides[side], folder),
      afterPathsUnder: (folder) => under.get(folder) ?? [],
    };
  }
}

function depth(path: string): number {
  let n = 0;
  for (let i = 0; i < path.length; i++) if (path.charCodeAt(i) === 0x2f) n++;
  return n;
}
