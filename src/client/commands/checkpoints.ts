/**
 * `cws checkpoints list <slug>` and `cws restore <slug> --checkpoint <id>`. Every snapshot the
 * server keeps is a checkpoint (retention decides which are kept: docs/recovery.md). A restore
 * makes an old checkpoint's state the head as a new snapshot; history is never rewritten, so
 * the head it replaces stays a checkpoint and restoring that one undoes the restore. Devices
 * get the restored state at their next sync, their own versions of changed files backed up.
 */
import type { Result } from "../../protocol/messages.ts";
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
