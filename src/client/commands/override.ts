/**
 * `cws override-current-state`: make this device's folder the server's new head. The old head
 * stays as a checkpoint. It needs the global lease: when this device already holds it (live
 * sync in another terminal), its token is used; when the lease is free, it is taken for the
 * duration of the override and given back; when another device holds it, the override is
 * refused.
 */
import type { AgentConnection } from "../../transport/connection.ts";
import type { StateStore } from "../state.ts";
import { syncSuperproject, type SyncSummary } from "../sync.ts";

export async function overrideCurrentState(conn: AgentConnection, state: StateStore, slug: string, options: { dryRun?: boolean; signal?: AbortSignal } = {}): Promise<SyncSummary> {
  const device = state.enrolled().device;
  const lease = await conn.call("leaseStatus", {});
  const ours = lease.active && lease.deviceId === device.id;
  const held = ours ? lease : options.dryRun ? undefined : await conn.call("acquireLease", { slug });
  try {
    return await syncSuperproject({ conn, state, slug, mode: "override", dryRun: options.dryRun, signal: options.signal, fencingToken: held?.token });
  } finally {
    if (held !== undefined && !ours) await conn.call("releaseLease", { token: held.token }).catch(() => {});
  }
}
