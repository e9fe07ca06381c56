/**
 * The hub's side of a commit: run the quarantine policy (src/core/policy.ts) on the push, put
 * what it accepts in as the new head, and record what it holds as quarantine items. The pure
 * rules need a few facts only content can answer (Markdown statistics, whether a rollout was
 * only appended to); they are computed here from the store, under the hub's head lock, against
 * the very head the commit replaces.
 */
import { z } from "zod";
import { CwsError } from "../../src/errors.ts";
import { emptyManifest, manifestChunkIds, manifestIndex, ManifestEntry, type Manifest } from "../../src/core/manifest.ts";
import {
  evaluatePush,
  markdownStats,
  pushChecksNeeded,
  resolvePolicySettings,
  type MarkdownStats,
  type PolicySettings,
} from "../../src/core/policy.ts";
import type { HeldItem, SnapshotInfo } from "../../src/protocol/messages.ts";
import type { Store } from "../store/store.ts";
import { getManifest, putManifest } from "../store/manifest-objects.ts";
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

/**
 * Manifests read back from the store, the last few kept in memory: a commit's "before" is
 * almost always the manifest the previous commit stored, and parsing a 50,000-file manifest
 * costs more than the rest of a small push.
 */
export class ManifestCache {
  #entries = new Map<string, Manifest>();
  readonly #store: Store;
  readonly #size: number;

  constructor(store: Store, size = 4) {
    this.#store = store;
    this.#size = size;
  }

  async get(hash: string): Promise<Manifest> {
    const hit = this.#entries.get(hash);
    if (hit !== undefined) {
      this.#entries.delete(hash);
      this.#entries.set(hash, hit);
      return hit;
    }
    const manifest = await getManifest(this.#store, hash);
    this.remember(hash, manifest);
    return manifest;
  }

  remember(hash: string, manifest: Manifest): void {
    this.#entries.delete(hash);
    this.#entries.set(hash, manifest);
    while (this.#entries.size > this.#size) this.#entries.delete(this.#entries.keys().next().value as string);
  }
}

export interface PolicyContext {
  db: HubDatabase;
  store: Store;
  manifests: ManifestCache;
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

/** True when two manifests hold the same entries (content, kind, mode and mtime alike). */
function sameManifest(a: Manifest, b: Manifest): boolean {
  if (a.entries.length !== b.entries.length) return false;
  return a.entries.every((x, i) => {
    const y = b.entries[i];
    return x.path === y.path && x.kind === y.kind && x.size === y.size && x.hash === y.hash && x.mtimeMs === y.mtimeMs && x.mode === y.mode;
  });
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
  const after = await manifests.get(request.manifestHash);
  const before = head === null ? emptyManifest() : await manifests.get(head.manifestHash);

  // The agent checked this already, but gc may have run since; under the head lock this
  // answer stands until the head has moved.
  const missing = await store.missing([...manifestChunkIds(after)]);
  if (missing.length > 0) {
    throw new CwsError("NOT_FOUND", `Cannot commit: the server lacks ${missing.length} chunk(s) the manifest needs (first ${missing[0]}). Run the sync again to upload them.`, {
      data: { missing: missing.slice(0, 20) },
    });
  }

  const settings = superprojectPolicy(sp.settings, request.slug);
  const checks = pushChecksNeeded(before, after);
  const beforeIndex = checks.markdown.length + checks.rollouts.length > 0 ? manifestIndex(before) : new Map<string, ManifestEntry>();
  const afterIndex = checks.markdown.length + checks.rollouts.length > 0 ? manifestIndex(after) : new Map<string, ManifestEntry>();
  const markdown = new Map<string, { before: MarkdownStats; after: MarkdownStats }>();
  for (const path of checks.markdown) {
    const old = beforeIndex.get(path) as ManifestEntry;
    if (old.size < settings.minMarkdownBytes) continue;
    markdown.set(path, await markdownPair(ctx, old, afterIndex.get(path) as ManifestEntry));
  }
  const rollouts = new Map<string, boolean>();
  for (const check of checks.rollouts) {
    rollouts.set(check.path, await rolloutExtends(store, beforeIndex.get(check.previousPath) as ManifestEntry, afterIndex.get(check.path) as ManifestEntry));
  }
  const decision = evaluatePush({ before, after, settings, markdown, rolloutExtends: rollouts });

  let accepted = after;
  let acceptedHash = request.manifestHash;
  const items: NewQuarantineItem[] = [];
  if (decision.held.length > 0) {
    accepted = decision.accepted;
    acceptedHash = await putManifest(store, accepted);
    for (const held of decision.held) {
      const objectHash = await putQuarantineContent(store, { proposed: held.proposed, previous: held.previous });
      items.push({ reason: held.reason, summary: held.summary, metrics: held.metrics, paths: held.paths, objectHash });
    }
  }
  const files = accepted.entries.filter((e) => e.kind === "file");
  const result = db.commitEvaluated({
    ...request,
    manifestHash: acceptedHash,
    files: files.length,
    bytes: files.reduce((sum, e) => sum + e.size, 0),
    newSnapshot: head === null || !sameManifest(accepted, before),
    items,
  });
  manifests.remember(acceptedHash, accepted);
  const held: HeldItem[] = decision.held.map((item, i) => ({
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
