/**
 * What this device remembers about its own changes that the server's quarantine held back,
 * so that a held change is neither pushed again on every sync nor silently forgotten.
 *
 * When a commit comes back with held items, the device records, per item, what it proposed at
 * each held path and what the server kept there (`<CWS_HOME>/held/<slug>.json`). On the next
 * syncs it asks the server about those items (one request, only while some are recorded):
 * - pending: where the folder still holds exactly the proposed change and the server still
 *   holds what it kept, the path is left out of the plan (the local scan is read as if it
 *   agreed with the server there), so the change is not pushed again, and nothing of the
 *   server's version is pulled over it either; the sync reports the item as waiting;
 * - rejected: where the folder still holds the proposed change, the plan treats it as agreed
 *   before (base = proposed), so the server's version comes back (the local one goes to the
 *   backup area first, as every pull does);
 * - accepted, or unknown to the server: forgotten; the server head now decides.
 * A path the user changed again since is not touched by any of this: it syncs normally, and a
 * change that trips a rule again is held again (the hub does not duplicate an identical
 * pending item).
 */
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { writeFileAtomic } from "../fs-atomic.ts";
import { makeManifest, manifestIndex, ManifestEntry, sameContent, type Manifest } from "../core/manifest.ts";
import type { HeldItem } from "../protocol/messages.ts";
import type { AgentConnection } from "../transport/connection.ts";
import type { StateStore } from "./state.ts";

const HeldLocalItem = z.object({
  id: z.number().int().positive(),
  reason: z.string(),
  summary: z.string(),
  // proposed is what this device pushed at each held path (null = deleted).
  proposed: z.record(z.string(), ManifestEntry.nullable()),
  // kept is what the server head kept at each of those paths (null = absent).
  kept: z.record(z.string(), ManifestEntry.nullable()),
});
export type HeldLocalItem = z.infer<typeof HeldLocalItem>;

const HeldFile = z.object({ format: z.literal(1), items: z.array(HeldLocalItem) });

export function heldFilePath(state: StateStore, slug: string): string {
  return join(state.home, "held", `${slug}.json`);
}

export async function readHeld(state: StateStore, slug: string): Promise<HeldLocalItem[]> {
  let text: string;
  try {
    text = await readFile(heldFilePath(state, slug), "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
  try {
    const parsed = HeldFile.safeParse(JSON.parse(text));
    if (parsed.success) return parsed.data.items;
  } catch {
    // Fall through: a damaged record costs at most a repeated push, which the hub deduplicates.
  }
  return [];
}

export async function writeHeld(state: StateStore, slug: string, items: readonly HeldLocalItem[]): Promise<void> {
  await mkdir(join(state.home, "held"), { recursive: true, mode: 0o700 });
  await writeFileAtomic(heldFilePath(state, slug), JSON.stringify({ format: 1, items }), { mode: 0o600 });
}

/** The recorded items sorted by what the server says about them now. */
export interface HeldStatus {
  pending: HeldLocalItem[];
  rejected: HeldLocalItem[];
  /** Accepted, or gone from the server. */
  settled: HeldLocalItem[];
}

/** Asks the server about the recorded items (no request when none is recorded). */
export async function checkHeld(conn: AgentConnection, slug: string, items: readonly HeldLocalItem[], signal?: AbortSignal): Promise<HeldStatus> {
  const status: HeldStatus = { pending: [], rejected: [], settled: [] };
  if (items.length === 0) return status;
  const { items: infos } = await conn.call("quarantineList", { slug, status: "all", ids: items.slice(0, 1000).map((i) => i.id) }, { signal });
  const byId = new Map(infos.map((info) => [info.id, info.status]));
  for (const item of items) {
    const now = byId.get(item.id);
    if (now === "pending") status.pending.push(item);
    else if (now === "rejected") status.rejected.push(item);
    else status.settled.push(item);
  }
  return status;
}

/** True when two entries (or absences) hold the same thing; a folder's mtime does not matter. */
function sameState(a: ManifestEntry | null | undefined, b: ManifestEntry | null | undefined): boolean {
  if (a == null || b == null) return a == null && b == null;
  return a.kind === b.kind && (a.kind === "dir" || sameContent(a, b));
}

/** True when no entry sits below a file (what the planner requires of its inputs). */
function wellFormed(entries: Map<string, ManifestEntry>): boolean {
  for (const path of entries.keys()) {
    for (let i = path.indexOf("/"); i !== -1; i = path.indexOf("/", i + 1)) {
      if (entries.get(path.slice(0, i))?.kind === "file") return false;
    }
  }
  return true;
}

function set(entries: Map<string, ManifestEntry>, path: string, entry: ManifestEntry | null | undefined): void {
  if (entry == null) entries.delete(path);
  else entries.set(path, entry);
}

export interface MaskResult {
  local: Manifest;
  base: Manifest;
  /** Pending items whose paths were left out of the plan. */
  waiting: Array<{ id: number; reason: string; summary: string; paths: number }>;
  /** Rejected items whose paths now pull the server's version. */
  restoring: number[];
}

/**
 * Rewrites the plan's inputs for the held items (see the module comment). An item whose
 * rewrite would leave a manifest ill-formed (an entry below a file, after the user rebuilt
 * that part of the tree) is left alone and syncs normally.
 */
export function maskHeld(local: Manifest, server: Manifest, base: Manifest, status: HeldStatus): MaskResult {
  // Nothing held (the usual case): the inputs stand, and no index of every entry is built.
  if (status.pending.length === 0 && status.rejected.length === 0) return { local, base, waiting: [], restoring: [] };
  const localIndex = manifestIndex(local);
  const serverIndex = manifestIndex(server);
  const baseIndex = manifestIndex(base);
  const result: MaskResult = { local, base, waiting: [], restoring: [] };
  let localChanged = false;
  let baseChanged = false;
  for (const item of status.pending) {
    const undo: Array<[string, ManifestEntry | undefined]> = [];
    for (const [path, proposed] of Object.entries(item.proposed)) {
      if (!sameState(localIndex.get(path), proposed) || !sameState(serverIndex.get(path), item.kept[path])) continue;
      undo.push([path, localIndex.get(path)]);
      set(localIndex, path, serverIndex.get(path));
    }
    if (undo.length === 0) continue;
    if (!wellFormed(localIndex)) {
      for (const [path, entry] of undo.reverse()) set(localIndex, path, entry);
      continue;
    }
    localChanged = true;
    result.waiting.push({ id: item.id, reason: item.reason, summary: item.summary, paths: undo.length });
  }
  for (const item of status.rejected) {
    const undo: Array<[string, ManifestEntry | undefined]> = [];
    for (const [path, proposed] of Object.entries(item.proposed)) {
      if (!sameState(localIndex.get(path), proposed)) continue;
      undo.push([path, baseIndex.get(path)]);
      set(baseIndex, path, proposed);
    }
    if (undo.length === 0) continue;
    if (!wellFormed(baseIndex)) {
      for (const [path, entry] of undo.reverse()) set(baseIndex, path, entry);
      continue;
    }
    baseChanged = true;
    result.restoring.push(item.id);
  }
  if (localChanged) result.local = makeManifest(localIndex.values());
  if (baseChanged) result.base = makeManifest(baseIndex.values());
  return result;
}

/** The record of the items a commit just held: what this device proposed, what the server kept. */
export function recordHeld(held: readonly HeldItem[], proposed: Manifest, kept: Manifest): HeldLocalItem[] {
  const proposedIndex = manifestIndex(proposed);
  const keptIndex = manifestIndex(kept);
  return held.map((item) => ({
    id: item.id,
    reason: item.reason,
    summary: item.summary,
    proposed: Object.fromEntries(item.heldPaths.map((path) => [path, proposedIndex.get(path) ?? null])),
    kept: Object.fromEntries(item.heldPaths.map((path) => [path, keptIndex.get(path) ?? null])),
  }));
}

/**
 * The record after a successful sync: the items still pending, plus the commit's items
 * (replacing any of the same id). Rejected items are dropped: the sync that just ended pulled
 * the server's version of their paths back. Accepted ones are dropped: the head has them.
 */
export function nextHeldRecord(status: HeldStatus, added: readonly HeldLocalItem[]): HeldLocalItem[] {
  const byId = new Map<number, HeldLocalItem>();
  for (const item of [...status.pending, ...added]) byId.set(item.id, item);
  return [...byId.values()].sort((a, b) => a.id - b.id);
}
