/**
 * `cws quarantine list|show|accept|reject`: what the server holds back for review and why,
 * and the user's decision about it. Accepting applies the held change as a new snapshot;
 * rejecting drops it (the server version stays, and the device that pushed it gets the server
 * version back at its next sync). Both follow the commit rule for the lease: allowed when no
 * other device live-syncs.
 */
import { CwsError } from "../../errors.ts";
import type { Result } from "../../protocol/messages.ts";
import type { AgentConnection } from "../../transport/connection.ts";
import type { StateStore } from "../state.ts";

/**
 * The fencing token to act with: this device's own lease when it holds one (live sync in
 * another terminal), else none (the hub then refuses while another device holds the lease).
 */
export async function writerToken(conn: AgentConnection, state: StateStore): Promise<number | undefined> {
  const lease = await conn.call("leaseStatus", {});
  return lease.active && lease.deviceId === state.enrolled().device.id ? lease.token : undefined;
}

export async function listQuarantine(conn: AgentConnection, options: { slug?: string; all?: boolean } = {}): Promise<Result<"quarantineList">["items"]> {
  const { items } = await conn.call("quarantineList", { slug: options.slug, status: options.all ? "all" : "pending" });
  return items;
}

export async function showQuarantine(conn: AgentConnection, id: number): Promise<Result<"quarantineShow">> {
  return conn.call("quarantineShow", { id });
}

export async function acceptQuarantine(conn: AgentConnection, state: StateStore, id: number): Promise<Result<"quarantineAccept">> {
  return conn.call("quarantineAccept", { id, fencingToken: await writerToken(conn, state) });
}

export async function rejectQuarantine(conn: AgentConnection, state: StateStore, id: number): Promise<Result<"quarantineReject">> {
  return conn.call("quarantineReject", { id, fencingToken: await writerToken(conn, state) });
}

/** Parses an item id from the command line. */
export function parseItemId(text: string): number {
  const id = Number(text.replace(/^#/, ""));
  if (!Number.isSafeInteger(id) || id <= 0) {
    throw new CwsError("INVALID_ARGUMENT", `"${text}" is not a quarantine item id; take one from \`cws quarantine list\`.`);
  }
  return id;
}
