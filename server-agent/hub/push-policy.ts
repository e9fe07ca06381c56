/**
 * The hub's side of a commit: run the quarantine policy (src/core/policy.ts) on the push, put
 * what it accepts in as the new head, and record what it holds as quarantine items. The pure
 * rules need a few facts only content can answer (Markdown statistics, whether a rollout was
 * only appended to); they are computed here from the store, under the hub's head lock, against
 * the very head the commit replaces.
 */
import { z } from "zod";
import { CwsError } from "../../src/errors.ts";
import { chunkId, ManifestEntry } from "../../src/core/manifest.ts";
import {
  evaluatePushView,
  pushMayHold,
  markdownStats,
  pushChecksNeeded,
  resolvePolicySettings,
  type MarkdownStats,
  type PolicySettings,
  type QuarantineItemDraft,
} from "../../src/core/policy.ts";
import type { HeldItem, SnapshotInfo } from "../../src/protocol/messages.ts";
import type { Store } from "../store/store.ts";
import { ManifestTrees } from "../store/manifest-tree.ts";
import type { HubDatabase, NewQuarantineItem } from "./hub-db.ts";
import { MAX_MARKDOWN_READ_BYTES, readEntry, rolloutExtends } from "./stored-content.ts";

/** A quarantine item's content as stored: what it would put at each path, and what was there. */
export const QuarantineContent = z.object({
  proposed: z.record(z.string(), ManifestEntry.nullable()),
  previous: z.record(z.string(), ManifestEntry.nullable()),
});
export type QuarantineContent = z.infer<typeof QuarantineContent>;

export async function putQuarantineContent(store: Store, content: QuarantineContent): Promise<string> {
  return store.putObject(Buffer.from(JSON.stringify({ proposed: content.proposed, previous: content.previous })));
}

export async function getQuarantineContent(store: Store, hash: string): Promise<QuarantineContent> {
  const raw = await store.getObject(hash);
  let parsed;
  try {
    parsed = QuarantineContent.safeParse(JSON.parse(Buffer.from(raw).toString("utf8")));
  } catch {
    parsed = undefined;
  }
  if (parsed === undefined || !parsed.success) {
    throw new CwsError("CORRUPT", `Stored quarantine content ${hash} is not valid. Run \`cws-server verify\`.`, { data: { hash } });
  }
  return parsed.data;
}

export interface PolicyContext {
  db: HubDatabase;
  store: Store;
  /** The store's manifests as trees, with recently read folders kept in memory. */
  manifests: ManifestTrees;
  log: (line: string) => void;
}

export interface CommitRequest {
  slug: string;
  base: number | null;
  deviceId: string;
  kind: SnapshotInfo["kind"];
  manifestHash: string;
  fencingToken?: number;
}

/** A superproject's quarantine settings as stored; a damaged value fails the push with advice. */
export function superprojectPolicy(settingsJson: string, slug: string): PolicySettings {
  let raw: unknown;
  try {
    raw = JSON.parse(settingsJson);
  } catch {
    throw new CwsError("INVALID_ARGUMENT", `The quarantine settings of ${slug} are not valid JSON. Reset them with \`cws-server settings ${slug} --quarantine '{}'\`.`);
  }
  return resolvePolicySettings(raw);
}

/**
 * Commits a push: the policy decides what lands; the accepted manifest becomes the head (no
 * new snapshot when nothing landed) and every held change becomes a quarantine item. Call
 * under the hub's head lock.
 */
export async function commitWithPolicy(ctx: PolicyContext, request: CommitRequest): Promise<{ snapshot: SnapshotInfo; held: HeldItem[] }> {
  const { db, store, manifests } = ctx;
  const sp = db.superproject(request.slug);
  db.assertWriter(request.deviceId, request.fencingToken);
  db.assertHead(request.slug, request.base);
  const head = sp.head === null ? null : db.snapshot(request.slug, sp.head);
  // Both sides as trees (a head stored whole by an earlier version is turned into one, once),
  // compared by descending only into folders whose hashes differ: the work grows with the push.
  const after = await manifests.treeRoot(request.manifestHash);
  const before = head === null ? null : await manifests.treeRoot(head.manifestHash);
  const settings = superprojectPolicy(sp.settings, request.slug);
  if (before === null || !pushMayHold((await manifests.counts(before)).files)) {
    // Only adds (a first push): no rule can hold anything, so the trees are not compared and no
    // entry list is built; the tree is read folder by folder for its chunk ids.
    await requireTreeChunks(manifests, after);
    return finishCommit(ctx, request, { head, before, after, accepted: after, held: [], items: [] });
  }
  const view = await manifests.pushView(before, after);

  // The agent checked this already, but gc may have run since; under the head lock this
  // answer stands until the head has moved. The head's own chunks are kept by gc (it is a
  // retained snapshot), so only what this push brings needs asking about.
  const ids = new Set<string>();
  for (const change of view.changes) for (const ref of change.after?.chunks ?? []) ids.add(chunkId(ref));
  await store.requireChunks([...ids]);

  const checks = pushChecksNeeded(view);
  const markdown = new Map<string, { before: MarkdownStats; after: MarkdownStats }>();
  for (const path of checks.markdown) {
    const old = view.before(path) as ManifestEntry;
    if (old.size < settings.minMarkdownBytes) continue;
    markdown.set(path, await markdownPair(ctx, old, view.after(path) as ManifestEntry));
  }
  const rollouts = new Map<string, boolean>();
  for (const check of checks.rollouts) {
    rollouts.set(check.path, await rolloutExtends(store, view.before(check.previousPath) as ManifestEntry, view.after(check.path) as ManifestEntry));
  }
  const decision = evaluatePushView({ view, settings, markdown, rolloutExtends: rollouts });

  let acceptedHash = after;
  const items: NewQuarantineItem[] = [];
  if (decision.held.length > 0) {
    const upserts = [...decision.reverts.values()].filter((entry): entry is ManifestEntry => entry !== null);
    const removes = [...decision.reverts].filter(([, entry]) => entry === null).map(([path]) => path);
    acceptedHash = (await manifests.applyDelta(after, { upserts, removes })).root;
    for (const held of decision.held) {
      const objectHash = await putQuarantineContent(store, { proposed: held.proposed, previous: held.previous });
      items.push({ reason: held.reason, summary: held.summary, metrics: held.metrics, paths: held.paths, objectHash });
    }
  }
  return finishCommit(ctx, request, { head, before, after, accepted: acceptedHash, held: decision.held, items });
}

/** Records the evaluated push: the accepted tree becomes the head (unless nothing landed), held items are stored. */
async function finishCommit(
  ctx: PolicyContext,
  request: CommitRequest,
  push: { head: SnapshotInfo | null; before: string | null; after: string; accepted: string; held: QuarantineItemDraft[]; items: NewQuarantineItem[] },
): Promise<{ snapshot: SnapshotInfo; held: HeldItem[] }> {
  const { db, manifests } = ctx;
  const totals = await manifests.counts(push.accepted);
  const result = db.commitEvaluated({
    ...request,
    manifestHash: push.accepted,
    files: totals.files,
    bytes: totals.bytes,
    // Trees are canonical: the same entries (mtimes and modes included) have the same root.
    newSnapshot: push.head === null || push.accepted !== push.before,
    items: push.items,
  });
  const held: HeldItem[] = push.held.map((item, i) => ({
    id: result.items[i].id,
    reason: item.reason,
    summary: item.summary,
    paths: item.paths,
    heldPaths: Object.keys(item.proposed),
    duplicate: result.items[i].duplicate,
  }));
  const snapshot = result.snapshot;
  ctx.log(`${request.slug}: ${result.created ? `snapshot ${snapshot.id} (${request.kind})` : `head stays at ${snapshot.id}`} by ${snapshot.deviceName}, ${snapshot.files} files${held.length > 0 ? `; held ${held.map((h) => `#${h.id} ${h.reason}${h.duplicate ? " (again)" : ""}`).join(", ")}` : ""}`);
  return { snapshot, held };
}

/**
 * `requireChunks` for every chunk of a tree. Each chunk reference is looked up in the store's
 * index by its hash and length as the walk reads the folders (ManifestTrees.forEachChunk, which
 * checks each folder object where it lies), and only the ids of chunks the index lacks are
 * made and handed to `requireChunks`, which looks for packs added since and refuses the commit
 * with NOT_FOUND naming how many (of the whole tree) are missing. At the end of a 50,000-file
 * first push, the walk that built every folder's node and every chunk's id (in sets of 2,048
 * asked about at a time) made 85–95 MiB of short-lived objects in half a second, 23 MiB of
 * which reached the old generation: often the hub's peak of the whole push (commit-bench.ts).
 */
export async function requireTreeChunks(manifests: ManifestTrees, root: string): Promise<void> {
  const { store } = manifests;
  const lacking: string[] = [];
  await manifests.forEachChunk(root, (hash, length) => {
    if (!store.holdsChunk(hash, length)) lacking.push(chunkId([hash, length]));
  });
  await store.requireChunks(lacking);
}

/**
 * Markdown statistics of both stored versions of a file. When either is too large to read (or
 * unreadable), neither gets heading counts, so only the size rule (which needs no content)
 * judges the change: comparing real headings with none would report every heading as lost.
 */
async function markdownPair(ctx: PolicyContext, old: ManifestEntry, now: ManifestEntry): Promise<{ before: MarkdownStats; after: MarkdownStats }> {
  const sizeOnly = {
    before: { bytes: old.size, headings: 0, nonEmptyLines: 0 },
    after: { bytes: now.size, headings: 0, nonEmptyLines: 0 },
  };
  try {
    const a = await readEntry(ctx.store, old, MAX_MARKDOWN_READ_BYTES);
    const b = await readEntry(ctx.store, now, MAX_MARKDOWN_READ_BYTES);
    if (a === undefined || b === undefined) return sizeOnly;
    return { before: markdownStats(a.toString("utf8")), after: markdownStats(b.toString("utf8")) };
  } catch (error) {
    ctx.log(`cannot read ${now.path} for the Markdown rule (${(error as Error).message}); judging it by size only`);
    return sizeOnly;
  }
}
