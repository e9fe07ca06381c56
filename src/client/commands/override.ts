/**
 * `cws override-current-state`: make this device's folder the server's new head. The old head
 * stays as a checkpoint. It needs the global lease: when this device already holds it (live
 * sync in another terminal), its token is used; when the lease is free, it is taken for the
 * duration of the override and given back; when another device holds it, the override is
 * refused.
 */
import type { AgentConnection } from "../../transport/connection.ts";
import type { StateStore } from "../state.ts";
import { CwsError } from "../../errors.ts";
import { snapshotNumber } from "../../protocol/messages.ts";
import { syncSuperproject, type SyncEvent, type SyncSummary } from "../sync.ts";

export interface OverrideOptions {
  dryRun?: boolean;
  signal?: AbortSignal;
  onEvent?: (event: SyncEvent) => void;
  /**
   * Shown what the override would replace (the dry run's summary: the current head, who wrote
   * it and when, and the paths that change); resolves true to go on. Not asked when nothing
   * would change. Without it the override goes ahead (scripts pass --yes).
   */
  confirm?: (preview: SyncSummary) => Promise<boolean>;
}

export async function overrideCurrentState(conn: AgentConnection, state: StateStore, slug: string, options: OverrideOptions = {}): Promise<SyncSummary> {
  const device = state.enrolled().device;
  if (options.confirm !== undefined && !options.dryRun) {
    const preview = await syncSuperproject({ conn, state, slug, mode: "override", dryRun: true, signal: options.signal, onEvent: options.onEvent });
    if (preview.pushed.files + preview.pushed.deleted === 0) return preview;
    if (!(await options.confirm(preview))) throw new CwsError("CANCELLED", `Nothing was changed: the server keeps snapshot ${preview.snapshot ? snapshotNumber(preview.snapshot) : "(none)"} of ${slug}.`);
  }
  const lease = await conn.call("leaseStatus", {});
  const ours = lease.active && lease.deviceId === device.id;
  const held = ours ? lease : options.dryRun ? undefined : await conn.call("acquireLease", { slug });
  try {
    return await syncSuperproject({ conn, state, slug, mode: "override", dryRun: options.dryRun, signal: options.signal, fencingToken: held?.token, onEvent: options.onEvent });
  } finally {
    if (held !== undefined && !ours) await conn.call("releaseLease", { token: held.token }).catch(() => {});
  }
}
