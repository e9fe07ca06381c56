/**
 * `cws checkpoints list <slug>` and `cws restore <slug> --checkpoint <id>`. Every snapshot the
 * server keeps is a checkpoint (retention decides which are kept: docs/recovery.md). A restore
 * makes an old checkpoint's state the head as a new snapshot; history is never rewritten, so
 * the head it replaces stays a checkpoint and restoring that one undoes the restore. Devices
 * get the restored state at their next sync, their own versions of changed files backed up.
 */
import { snapshotNumber, type Result } from "../../protocol/messages.ts";
import { CwsError } from "../../errors.ts";
import type { AgentConnection } from "../../transport/connection.ts";
import type { StateStore } from "../state.ts";
import { checkSlug } from "./superprojects.ts";
import { writerToken } from "./quarantine.ts";

export async function listCheckpoints(conn: AgentConnection, slug: string, limit = 100): Promise<Result<"listSnapshots">["snapshots"]> {
  const { snapshots } = await conn.call("listSnapshots", { slug: checkSlug(slug), limit });
  return snapshots;
}

export async function restoreCheckpoint(conn: AgentConnection, state: StateStore, slug: string, snapshotId: number): Promise<Result<"restoreSnapshot">> {
  return conn.call("restoreSnapshot", { slug: checkSlug(slug), snapshotId, fencingToken: await writerToken(conn, state) });
}

/**
 * Restores the checkpoint people know by its number within the superproject (what
 * `cws checkpoints list` shows). Also tells the number of the head it replaced, for undo.
 *
 * @throws {CwsError} NOT_FOUND when the superproject keeps no checkpoint with that number.
 */
export async function restoreCheckpointNumber(conn: AgentConnection, state: StateStore, slug: string, number: number): Promise<Result<"restoreSnapshot"> & { previousHeadNumber: number | null }> {
  const snapshots = await listCheckpoints(conn, slug, 10_000);
  const chosen = snapshots.find((s) => snapshotNumber(s) === number);
  if (chosen === undefined) {
    throw new CwsError("NOT_FOUND", `${slug} keeps no checkpoint ${number} (it never existed, or retention dropped it). List them with \`cws checkpoints list ${slug}\`.`);
  }
  const result = await restoreCheckpoint(conn, state, slug, chosen.id);
  const previous = result.previousHead === null ? undefined : snapshots.find((s) => s.id === result.previousHead);
  return { ...result, previousHeadNumber: previous === undefined ? result.previousHead : snapshotNumber(previous) };
}
