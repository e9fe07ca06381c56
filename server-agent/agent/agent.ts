/**
 * The agent: serves one client session (one SSH connection, or one local-transport child). It
 * runs inside the hub (hub-sessions.ts), which hands it the session's byte stream after the
 * relay's preamble, the hub's own store and manifest cache, and a direct line to the hub's
 * request handler. It moves chunks between the staging folders and the store and asks the hub
 * for everything that lives in the database. It refuses data requests until the session is
 * bound to an enrolled device, and refuses every path that could leave the data dir.
 *
 * Run on its own (tests may), it opens the store itself and connects to the hub's socket.
 */
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { CwsError } from "../../src/errors.ts";
import { homedir } from "node:os";
import { faultPoint } from "../../src/fault.ts";
import { readLines, writeMessage } from "../../src/protocol/framing.ts";
import { JsonText, serveRpc } from "../../src/protocol/rpc.ts";
import { MAX_LISTED_PATHS, MAX_SHOWN_CHANGES, MAX_STAGED_MANIFEST_ENTRIES, Methods, type Hello, type MethodName, type Params, type QuarantineItemInfo, type Result } from "../../src/protocol/messages.ts";
import type { QuarantineRecord } from "../hub/hub-db.ts";
import { manifestChunkIds, type Manifest } from "../../src/core/manifest.ts";
import { checkManifestPath } from "../../src/core/paths.ts";
import { changedTravelProblems, checkTravellingTree, refuseTravelProblems } from "../../src/core/portable-names.ts";
import { AGENT_MAGIC, PACKAGE_VERSION, PROTOCOL_VERSION } from "../../src/version.ts";
import type { Store } from "../store/store.ts";
import type { ManifestTrees } from "../store/manifest-tree.ts";
import type { HubClient } from "../hub/hub-client.ts";
import { explainFailure } from "../failures.ts";
import { sweepStaging } from "../store/staging-sweep.ts";
import { agentLogPath, openAgentLog } from "./agent-log.ts";

// On its own, a no-op sync only asks the hub two questions: the store (whose open reads every
// pack index, a tenth of a second on a large store), the hub client's code and the code of
// rarer requests are loaded when first needed.
const manifestTree = () => import("../store/manifest-tree.ts");


export interface AgentOptions {
  dataDir: string;
  /** The session's bytes (a stream, or an iterator over one). */
  input: AsyncIterable<Uint8Array | string>;
  output: NodeJS.WritableStream;
  /** When set (by the forced command of an enrolled key), the session may only open this device. */
  pinnedDeviceId?: string;
  /** Where `enroll --restrict-key` writes the key's line (default ~/.ssh/authorized_keys). */
  authorizedKeysFile?: string;
  log?: (line: string) => void;
  /** The hub to ask (inside the hub: its own handler); else a connection to its socket. */
  hub?: HubClient;
  /** The store to use (inside the hub: the hub's, never closed here); else opened on first use. */
  store?: Store;
  /** The store's manifests as trees (inside the hub: the hub's, whose folder cache sessions share); else made on first use. */
  manifests?: ManifestTrees;
}

/** Capabilities this agent offers beyond the base protocol. */
export const AGENT_CAPABILITIES = ["bundles-zstd", "bundles-stream", "bundles-raw-frames", "lease", "quarantine", "manifest-delta", "manifest-pieces"];

export async function serveAgent(options: AgentOptions): Promise<void> {
  const log = options.log ?? openAgentLog(options.dataDir, (line: string) => process.stderr.write(`cws-agent: ${line}\n`));
  const logFile = agentLogPath(options.dataDir);
  // The store is opened by the first request that needs it. Its staging folders are made now
  // (cheaply), since a client may upload into them before its first store request.
  const staging = { incoming: join(options.dataDir, "staging", "incoming"), outgoing: join(options.dataDir, "staging", "outgoing") };
  // On a data dir that was never initialised (a wrong --data) the first request that needs the
  // hub says so (see connectHub); bundles alone need only these folders.
  await Promise.all([staging.incoming, staging.outgoing].map((dir) => mkdir(dir, { recursive: true, mode: 0o700 })));
  let opening: Promise<Store> | undefined;
  const shared = { store: options.store, hub: options.hub };
  const getStore = (): Promise<Store> => (shared.store !== undefined ? Promise.resolve(shared.store) : (opening ??= import("../store/store.ts").then(({ Store }) => Store.open(options.dataDir))));
  let trees: Promise<ManifestTrees> | undefined;
  const getTrees = (): Promise<ManifestTrees> =>
    options.manifests !== undefined ? Promise.resolve(options.manifests) : (trees ??= Promise.all([manifestTree(), getStore()]).then(([{ ManifestTrees }, store]) => new ManifestTrees(store)));
  let connecting: Promise<HubClient> | undefined;
  const getHub = (): Promise<HubClient> => {
    if (shared.hub !== undefined) return Promise.resolve(shared.hub);
    if (connecting === undefined) {
      const attempt = import("../hub/hub-client.ts").then(({ connectHub }) => connectHub(options.dataDir));
      connecting = attempt;
      // A failed connection is tried again by the next request that needs the hub.
      attempt.catch(() => {
        if (connecting === attempt) connecting = undefined;
      });
    }
    return connecting;
  };
  let deviceId: string | undefined;
  // Bundles prepared for this session's client and not yet released: removed when it ends.
  const prepared = new Set<string>();
  // The whole manifest this session is staging piece by piece (stageManifest), stored as a tree
  // no snapshot names: only a commit makes it a head. It dies with the session, so a lost
  // connection or a crash leaves the head as it was (gc removes the orphan folder objects
  // after its grace period). Requests are handled one at a time, so pieces never race.
  let staged: { slug: string; pieces: number; entries: number; root: string; lastPath: string } | undefined;

  const hello: Hello = {
    type: "hello",
    magic: AGENT_MAGIC,
    protocol: PROTOCOL_VERSION,
    version: PACKAGE_VERSION,
    capabilities: AGENT_CAPABILITIES,
    staging,
  };
  faultPoint("agent-before-hello");
  await writeMessage(options.output, hello);

  const requireDevice = (): string => {
    if (deviceId === undefined) {
      throw new CwsError("NOT_ENROLLED", "This session has not identified an enrolled device. Run `cws enroll-device` on this device first.");
    }
    return deviceId;
  };

  const handlers: { [M in MethodName]: (params: Params<M>) => Promise<unknown> } = {
    enroll: async (p) => {
      // A key pinned to a device (a restricted key) can only re-enroll that device.
      const replaces = options.pinnedDeviceId ?? p.replacesDeviceId;
      const { deviceId } = await (await getHub()).call("registerDevice", { name: p.deviceName, passphrase: p.passphrase, keyFingerprint: p.keyFingerprint, replaces });
      if (p.publicKey === undefined || !(p.restrictKey || p.installKey)) return { deviceId };
      // The passphrase was right. A restricted line locks the key to the agent and the staging
      // folders, pinned to the device id; a plain line (installKey without restrictKey) is what
      // ssh-copy-id would have added.
      const file = options.authorizedKeysFile ?? join(homedir(), ".ssh", "authorized_keys");
      const { authorizedKeysLineForThisInstall, installAuthorizedKey, plainAuthorizedKeysLine } = await import("../authorized-keys.ts");
      const restricted = p.restrictKey === true;
      const line = restricted ? authorizedKeysLineForThisInstall({ publicKey: p.publicKey, dataDir: options.dataDir, deviceId }) : plainAuthorizedKeysLine(p.publicKey);
      const { replaced } = await installAuthorizedKey(file, line);
      log(`${restricted ? "restricted" : "installed"} the key of device ${p.deviceName} (${deviceId}) in ${file}`);
      return { deviceId, keyInstalled: { file, replaced, restricted } };
    },
    open: async (p) => {
      if (options.pinnedDeviceId !== undefined && p.deviceId !== options.pinnedDeviceId) {
        throw new CwsError("AUTH_FAILED", "This SSH key is enrolled for another device. Use this device's own key, or enroll it again.");
      }
      const device = await (await getHub()).call("device", { deviceId: p.deviceId });
      deviceId = device.id;
      return { deviceName: device.name, enrolledAt: device.enrolledAt };
    },
    listSuperprojects: async () => { requireDevice(); return (await getHub()).call("listSuperprojects", {}); },
    createSuperproject: async (p) => { requireDevice(); return (await getHub()).call("createSuperproject", p); },
    deleteSuperproject: async (p) => {
      const device = requireDevice();
      // Deleting is the most destructive write there is: the same writer rule as a push holds.
      const lease = await (await getHub()).call("leaseStatus", {});
      if (lease.active && lease.deviceId !== device) {
        throw new CwsError("LEASE_HELD", `${lease.deviceName} is live-syncing; run \`cws turn-off-sync\` there before deleting a superproject.`);
      }
      await (await getHub()).call("deleteSuperproject", p);
      return {};
    },
    head: async (p) => { requireDevice(); return (await getHub()).call("head", p); },
    fetchManifest: async (p) => {
      requireDevice();
      const { snapshot } = await (await getHub()).call("snapshot", { slug: p.slug, id: p.snapshotId });
      // Written as text folder by folder (see manifestJson): a 50,000-entry manifest is never
      // held as objects, one string and one buffer at once.
      const manifest = await (await getTrees()).manifestJson(snapshot.manifestHash);
      return new JsonText(['{"manifest":', ...manifest, "}"]);
    },
    fetchManifestDelta: async (p) => {
      requireDevice();
      const hub = await getHub();
      const [{ snapshot }, { snapshot: since }] = await Promise.all([hub.call("snapshot", { slug: p.slug, id: p.snapshotId }), hub.call("snapshot", { slug: p.slug, id: p.since })]);
      return { delta: await (await getTrees()).diff(since.manifestHash, snapshot.manifestHash) };
    },
    missingChunks: async (p) => {
      requireDevice();
      // Forget packs a gc in the hub removed since this session began: a chunk that is gone
      // must be reported missing, or the client would never upload it again.
      const store = await getStore();
      await store.refresh();
      return { missing: await store.missing(p.ids) };
    },
    ingestBundle: async (p) => {
      requireDevice();
      const result = await (await getStore()).ingestBundle(p.name);
      faultPoint("agent-after-first-ingest");
      return result;
    },
    stageManifest: async (p) => {
      requireDevice();
      // Whatever happens below, a staged manifest that missed a piece is no longer one.
      const previous = staged;
      staged = undefined;
      const { entries } = p.manifest;
      if (p.piece > 0 && (previous === undefined || previous.slug !== p.slug || previous.pieces !== p.piece)) {
        throw new CwsError("INVALID_ARGUMENT", `Cannot stage piece ${p.piece} of a manifest for ${p.slug}: this session holds ${previous === undefined ? "no staged manifest" : `${previous.pieces} piece(s) for ${previous.slug}`}. Stage it again from piece 0.`);
      }
      const before = p.piece === 0 ? undefined : previous;
      if (before !== undefined && !(before.lastPath < entries[0].path)) {
        throw new CwsError("INVALID_ARGUMENT", `Cannot stage piece ${p.piece}: its first path ${JSON.stringify(entries[0].path)} does not come after the previous piece's last one`);
      }
      const total = (before?.entries ?? 0) + entries.length;
      if (total > MAX_STAGED_MANIFEST_ENTRIES) {
        throw new CwsError("INVALID_ARGUMENT", `Cannot stage piece ${p.piece}: a manifest may hold at most ${MAX_STAGED_MANIFEST_ENTRIES} entries`);
      }
      // The checks of a whole manifest's commit, piece by piece: with the pieces in path order,
      // a file is always staged before anything that would lie under it, so judging each piece
      // against the tree staged so far finds every entry that cannot travel.
      for (const entry of entries) checkManifestPath(entry.path);
      const edit = await (await getTrees()).editDelta(before?.root ?? null, { upserts: entries, removes: [] });
      refuseTravelProblems(changedTravelProblems(entries, await edit.travelLookup(entries)));
      // Chunks are not asked about here: pieces travel while the push's bundles still upload.
      // The hub checks every chunk of the tree under its head lock when the commit names it.
      const root = await edit.write();
      staged = { slug: p.slug, pieces: p.piece + 1, entries: total, root, lastPath: entries[entries.length - 1].path };
      if (p.piece === 0) faultPoint("agent-after-first-piece");
      return { entries: total };
    },
    commit: async (p) => {
      const device = requireDevice();
      const store = await getStore();
      const trees = await getTrees();
      let ids: string[];
      let stage: () => Promise<string>;
      if (p.staged !== undefined) {
        // Each piece was checked as it was staged (paths, names); the hub checks that the store
        // holds every chunk of the tree under its head lock, as for every commit.
        const done = staged;
        staged = undefined;
        if (done === undefined || done.slug !== p.slug || done.pieces !== p.staged.pieces || done.entries !== p.staged.entries) {
          throw new CwsError("INVALID_ARGUMENT", `Cannot commit the staged manifest of ${p.slug}: this session holds ${done === undefined ? "none" : `${done.pieces} piece(s) with ${done.entries} entries for ${done.slug}`}, not ${p.staged.pieces} piece(s) with ${p.staged.entries}. Sync again.`);
        }
        ids = [];
        stage = () => Promise.resolve(done.root);
      } else if (p.delta !== undefined) {
        // The base snapshot's manifest is already on the server, as a tree of folder objects:
        // the delta rewrites only the folders on its paths, and only what it brings (its paths,
        // entries and chunks) needs checking. The entries were checked by the schema on the way
        // in; the tree keeps them sorted and unique by construction.
        for (const entry of p.delta.upserts) checkManifestPath(entry.path);
        for (const path of p.delta.removes) checkManifestPath(path);
        const { snapshot } = await (await getHub()).call("snapshot", { slug: p.slug, id: p.base! });
        const edit = await trees.editDelta(await trees.treeRoot(snapshot.manifestHash), p.delta);
        // Names that travel: what the delta brings, judged against the tree it makes (an
        // entry an older version let into the base is left to the restore that removes it).
        refuseTravelProblems(changedTravelProblems(p.delta.upserts, await edit.travelLookup(p.delta.upserts)));
        ids = [...manifestChunkIds({ format: 1, entries: p.delta.upserts })];
        stage = () => edit.write();
      } else {
        const manifest = p.manifest!;
        checkManifestPaths(manifest);
        checkTravellingTree(manifest);
        ids = [...manifestChunkIds(manifest)];
        stage = () => trees.putManifest(manifest);
      }
      await store.requireChunks(ids);
      const manifestHash = await stage();
      faultPoint("agent-before-hub-commit");
      return (await getHub()).call("commit", { slug: p.slug, base: p.base, deviceId: device, kind: p.kind, manifestHash, fencingToken: p.fencingToken });
    },
    leaseStatus: async () => { requireDevice(); return (await getHub()).call("leaseStatus", {}); },
    acquireLease: async (p) => (await getHub()).call("acquireLease", { deviceId: requireDevice(), slug: p.slug, takeOver: p.takeOver }),
    heartbeat: async (p) => (await getHub()).call("heartbeat", { deviceId: requireDevice(), token: p.token }),
    releaseLease: async (p) => (await getHub()).call("releaseLease", { deviceId: requireDevice(), token: p.token }),
    prepareBundle: async (p) => {
      requireDevice();
      const bundle = await (await getStore()).writeBundle(p.ids, { stream: p.stream === true, passThrough: p.rawFrames === true });
      prepared.add(bundle.name);
      return bundle;
    },
    releaseBundle: async (p) => {
      requireDevice();
      await (await getStore()).releaseOutgoing(p.name);
      prepared.delete(p.name);
      return {};
    },
    quarantineList: async (p) => {
      requireDevice();
      const { items } = await (await getHub()).call("quarantineList", p);
      return { items: items.map((item) => ({ ...publicItem(item), paths: item.paths.slice(0, MAX_LISTED_PATHS) })) };
    },
    quarantineShow: async (p) => {
      requireDevice();
      const { item } = await (await getHub()).call("quarantineItem", { id: p.id });
      return { item: publicItem(item), ...(await describeItem(await getStore(), item)) };
    },
    quarantineAccept: async (p) => {
      const device = requireDevice();
      const result = await (await getHub()).call("quarantineAccept", { id: p.id, deviceId: device, fencingToken: p.fencingToken });
      return { item: publicItem(result.item), snapshot: result.snapshot };
    },
    quarantineReject: async (p) => {
      const device = requireDevice();
      const { item } = await (await getHub()).call("quarantineReject", { id: p.id, deviceId: device, fencingToken: p.fencingToken });
      return { item: publicItem(item) };
    },
    listSnapshots: async (p) => { requireDevice(); return (await getHub()).call("listSnapshots", { slug: p.slug, limit: p.limit ?? 100 }); },
    restoreSnapshot: async (p) => (await getHub()).call("restoreSnapshot", { slug: p.slug, snapshotId: p.snapshotId, deviceId: requireDevice(), fencingToken: p.fencingToken }),
  };

  try {
    await serveRpc({
      table: Methods,
      lines: readLines(options.input),
      output: options.output,
      // A full disk ends in one sentence with the next step; a real bug in INTERNAL naming the
      // log that holds its stack trace.
      handle: (method, params) => (handlers[method] as (p: unknown) => Promise<unknown>)(params).catch((error: unknown) => {
        throw explainFailure(error, { what: method, dataDir: options.dataDir, logFile, log });
      }),
      onInternalError: (what, error) => log(`internal error in ${what}: ${(error as Error)?.stack ?? String(error)}`),
    });
  } finally {
    // Leftovers of this session (bundles its client never released) and of killed ones.
    for (const name of prepared) await rm(join(staging.outgoing, name), { force: true }).catch(() => {});
    const swept = await sweepStaging([staging.incoming, staging.outgoing], Date.now());
    if (swept.length > 0) log(`removed ${swept.length} staging leftover(s) of interrupted sessions: ${swept.slice(0, 5).join(", ")}`);
    await (await connecting?.catch(() => undefined))?.close();
    await (await opening?.catch(() => undefined))?.close?.();
  }
}

/** What clients see of an item: everything but where the hub keeps its content. */
function publicItem(record: QuarantineRecord): QuarantineItemInfo {
  const { objectHash: _objectHash, ...item } = record;
  return item;
}

/**
 * The changes of an item, path by path, and a line diff of each held Markdown change (old
 * live version → proposed version), computed here rather than in the hub so that reading and
 * diffing large files never stalls other devices' commits.
 */
async function describeItem(store: Store, item: QuarantineRecord): Promise<Pick<Result<"quarantineShow">, "changes" | "changesTruncated" | "diffs">> {
  const [{ markdownDiffSummary }, { getQuarantineContent }, { MAX_MARKDOWN_READ_BYTES, readEntry }] = await Promise.all([
    import("../../src/core/policy.ts"),
    import("../hub/push-policy.ts"),
    import("../hub/stored-content.ts"),
  ]);
  if (!item.contentAvailable) {
    return { changes: [], changesTruncated: false, diffs: item.reason === "markdown-drift" ? item.paths.map((path) => ({ path, diff: "", note: "the held content was removed by gc" })) : [] };
  }
  const content = await getQuarantineContent(store, item.objectHash);
  const paths = Object.keys(content.proposed).sort();
  const changes = paths.slice(0, MAX_SHOWN_CHANGES).map((path) => ({ path, previous: content.previous[path] ?? null, proposed: content.proposed[path] ?? null }));
  const diffs: Result<"quarantineShow">["diffs"] = [];
  if (item.reason === "markdown-drift") {
    for (const path of item.paths) {
      const previous = content.previous[path];
      const proposed = content.proposed[path];
      if (previous?.kind !== "file" || proposed?.kind !== "file") continue;
      try {
        const a = await readEntry(store, previous, MAX_MARKDOWN_READ_BYTES);
        const b = await readEntry(store, proposed, MAX_MARKDOWN_READ_BYTES);
        if (a === undefined || b === undefined) {
          diffs.push({ path, diff: "", note: `too large to diff here (over ${MAX_MARKDOWN_READ_BYTES} bytes)` });
        } else {
          diffs.push({ path, diff: markdownDiffSummary(a.toString("utf8"), b.toString("utf8")) });
        }
      } catch (error) {
        diffs.push({ path, diff: "", note: `cannot read the stored content: ${(error as Error).message}` });
      }
    }
  }
  return { changes, changesTruncated: paths.length > MAX_SHOWN_CHANGES, diffs };
}

function checkManifestPaths(manifest: Manifest): void {
  for (const entry of manifest.entries) checkManifestPath(entry.path);
}
