/**
 * Fault injection for crash tests. When the environment variable CWS_FAULT names a fault
 * point, the process kills itself with SIGKILL on reaching it, exactly like a power cut or an
 * OOM kill would stop it there. Without the variable this is a no-op. Tests use it to prove
 * that a sync interrupted at any point leaves the server consistent and resumes cleanly.
 *
 * Agent sessions run inside the hub, which serves many of them, so a fault there ends only its
 * own session: the session runs in a fault scope (set from its relay's CWS_FAULT) whose stop()
 * drops the connection, and the handler that reached the point goes no further.
 */
import { AsyncLocalStorage } from "node:async_hooks";

export type FaultPoint =
  | "client-after-first-bundle" // the client, after the first bundle of a push was ingested
  | "client-before-commit" // the client, with every chunk uploaded, before asking to commit
  | "agent-before-hub-commit" // the agent, with the manifest stored, before the hub's commit
  | "client-after-first-piece" // the client, staging a first push's manifest in pieces, once the first piece is stored
  | "agent-after-first-piece" // the agent, right after storing the first piece of a staged manifest (a dropped connection mid-commit)
  | "agent-after-first-ingest" // the agent, right after storing its session's first bundle (a dropped connection mid-push)
  | "agent-before-hello" // the agent, started, before it says hello (killed by the OOM killer, a reboot)
  | "client-mid-pull" // the client, with the first batch of pulled files written under temp names, before any rename
  | "client-pull-mid-write" // the client, pulling: the first files are written under temp names, one perhaps half
  | "client-pull-after-early-rename" // the client, pulling many new files: the first round of them renamed into place, the rest still coming
  | "client-pull-before-barrier" // the client, pulling: every file written under its temp name, none renamed but those of early rounds
  | "client-pull-mid-rename" // the client, pulling: half of the files left for the end renamed into place
  | "client-pull-before-base" // the client, pulling: every file in place and durable, the base not yet recorded
  | "client-base-mid-append" // the client, recording its new base in the base's journal: half the record written
  | "client-base-mid-snapshot" // the client, writing a whole new base snapshot: its first rows handed to the writer, the temp file not renamed
  | "client-base-before-journal-reset" // the client, a new base snapshot renamed into place, the old journal not yet removed
  | "store-objects-before-rename" // the store, a batch of objects written under temp names and made durable, none renamed
  | "store-objects-mid-rename"; // the store, half of a batch of objects renamed into place, the names not yet made durable

/** The fault of one session served inside a longer-lived process. */
export interface FaultScope {
  fault: string | undefined;
  /** Ends the session at once, as killing its process would. */
  stop(): void;
}

const scopes = new AsyncLocalStorage<FaultScope>();

/** Runs `work` (and everything it starts) with faults decided by `scope` instead of CWS_FAULT. */
export function withFaultScope<T>(scope: FaultScope, work: () => T): T {
  return scopes.run(scope, work);
}

export function faultPoint(point: FaultPoint): void {
  const scope = scopes.getStore();
  if (scope === undefined) {
    if (process.env.CWS_FAULT === point) process.kill(process.pid, "SIGKILL");
    return;
  }
  if (scope.fault !== point) return;
  scope.stop();
  throw new Error(`fault point ${point} reached: the session was ended`);
}
