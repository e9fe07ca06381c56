/**
 * The agent's log, `<data>/logs/agent.log`: what a session could not do and why, with the
 * stack traces INTERNAL errors keep off the wire (their messages name this file). Lines carry
 * the time and the agent's PID, since many sessions append to it at once. Writing it never
 * fails a request: on a full disk the line still goes to stderr.
 */
import { appendFileSync, mkdirSync, renameSync, statSync } from "node:fs";
import { join } from "node:path";

/** Above this size the log is moved to `agent.log.1` (replacing it) when a session starts. */
export const MAX_AGENT_LOG_BYTES = 4 * 1024 * 1024;

export function agentLogPath(dataDir: string): string {
  return join(dataDir, "logs", "agent.log");
}

/** A line writer for the agent's log, also echoed to `stderr` (the SSH channel's, for `cws -v`). */
export function openAgentLog(dataDir: string, stderr: (line: string) => void): (line: string) => void {
  const file = agentLogPath(dataDir);
  try {
    mkdirSync(join(dataDir, "logs"), { recursive: true, mode: 0o700 });
    if ((statSync(file, { throwIfNoEntry: false })?.size ?? 0) > MAX_AGENT_LOG_BYTES) renameSync(file, `${file}.1`);
  } catch {
    // No log folder (a read-only or full disk): lines still reach stderr.
  }
  return (line) => {
    stderr(line);
    try {
      // Synchronous: a line is written before the request's answer leaves, and before a crash.
      appendFileSync(file, `${new Date().toISOString()} [${process.pid}] ${line}\n`, { mode: 0o600 });
    } catch {
      // As above.
    }
  };
}
