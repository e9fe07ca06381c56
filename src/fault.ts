/**
 * Fault injection for crash tests. When the environment variable CWS_FAULT names a fault
 * point, the process kills itself with SIGKILL on reaching it, exactly like a power cut or an
 * OOM kill would stop it there. Without the variable this is a no-op. Tests use it to prove
 * that a sync interrupted at any point leaves the server consistent and resumes cleanly.
 */
export type FaultPoint =
  | "client-after-first-bundle" // the client, after the first bundle of a push was ingested
  | "client-before-commit" // the client, with every chunk uploaded, before asking to commit
  | "agent-before-hub-commit" // the agent, with the manifest stored, before the hub's commit
  | "agent-after-first-ingest" // the agent, right after storing its session's first bundle (a dropped connection mid-push)
  | "agent-before-hello" // the agent, started, before it says hello (killed by the OOM killer, a reboot)
  | "client-mid-pull" // the client, with the first batch of pulled files written under temp names, before any rename
  | "client-pull-mid-write" // the client, pulling: the first files are written under temp names, one perhaps half
  | "client-pull-before-barrier" // the client, pulling: every file written under its temp name, none renamed
  | "client-pull-mid-rename" // the client, pulling: half of the files renamed into place
  | "client-pull-before-base"; // the client, pulling: every file in place and durable, the base not yet recorded

export function faultPoint(point: FaultPoint): void {
  if (process.env.CWS_FAULT === point) process.kill(process.pid, "SIGKILL");
}
