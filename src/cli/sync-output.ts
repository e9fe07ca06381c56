/**
 * How a sync's summary is printed for a person: the summary lines of `cws sync` and of the
 * commands like it, and the conflict and quarantine lines live sync prints too. Apart from
 * program.ts (commander, zod) so that a sync handed to a kept session (kept-sync.ts) prints
 * the same lines without loading them.
 */
import { join } from "node:path";
import type { SyncSummary } from "../client/sync.ts";
import { snapshotNumber } from "../protocol/snapshot-number.ts";
import { formatBytes, println } from "./output.ts";

/** What the quarantine did with this device's changes, one line each (shared by sync and live sync). */
export function quarantineLines(summary: Pick<SyncSummary, "quarantine">): string[] {
  const lines: string[] = [];
  for (const item of summary.quarantine.held) {
    lines.push(`HELD in quarantine item ${item.id}${item.duplicate ? " (already pending)" : ""}: ${item.summary}; the server keeps its version until you run \`cws quarantine accept ${item.id}\` or \`cws quarantine reject ${item.id}\``);
  }
  for (const item of summary.quarantine.waiting) lines.push(`still held in quarantine item ${item.id} (${item.paths} path(s)), not pushed again: ${item.summary}`);
  for (const id of summary.quarantine.restoring) lines.push(`quarantine item ${id} was rejected: the server's version of its paths was brought back (yours is in the local backups)`);
  return lines;
}

/**
 * One conflict as a person reads it: the real path in the folder, what each side did, and
 * what happened to this device's version (or, on a dry run, what would).
 */
export function conflictLine(summary: Pick<SyncSummary, "slug" | "root" | "dryRun">, c: SyncSummary["conflicts"][number]): string {
  const inFolder = c.path.startsWith("files/");
  const name = inFolder ? c.path.slice("files/".length) : `Codex ${c.path.slice("codex/".length)}`;
  const where = inFolder ? join(summary.root, name) : "this device's copy";
  const head = `CONFLICT ${name}: ${!c.here ? "deleted here but changed on the server" : !c.onServer ? "changed here but deleted on the server" : "changed here and on the server"}`;
  if (summary.dryRun) {
    const see = ` (see \`cws backups list ${summary.slug}\` afterwards)`;
    if (!c.here) return `${head}; would restore the server's version${inFolder ? ` at ${where}` : ""}`;
    if (!c.onServer) return `${head}; would move ${where} to the backups${see}`;
    return `${head}; would back up ${where} and put the server's version in its place${see}`;
  }
  if (!c.here) return `${head}; the server's version is restored${inFolder ? ` at ${where}` : ""}`;
  if (c.backup === null) return `${head}; ${where} was left as it is (see the skipped lines)`;
  if (!c.onServer) return `${head}; yours was moved to ${c.backup}`;
  return `${head}; yours is backed up at ${c.backup}, and the server's version is now${inFolder ? ` at ${where}` : " live"}`;
}

/** The changed paths of a summary, one line each (`+`/`~` written, `-` deleted), with how many more there are. */
export function changeLines(changes: SyncSummary["changes"]["push"], total: number): string[] {
  const lines = changes.map((c) => `  ${c.deleted ? "-" : "~"} ${c.path}`);
  if (total > changes.length) lines.push(`  … and ${total - changes.length} more`);
  return lines;
}

export function printSyncSummary(summary: SyncSummary): void {
  const p = summary.pushed;
  const q = summary.pulled;
  println(`${summary.slug}: ${summary.dryRun ? "dry run, nothing changed" : `now at snapshot ${summary.snapshot ? snapshotNumber(summary.snapshot) : "(none)"}`}`);
  println(`  scanned ${summary.scanned.files} files (${summary.scanned.hashedFiles} hashed, ${formatBytes(summary.scanned.hashedBytes)})`);
  if (summary.dryRun) {
    // A dry run counts files; it reads no chunk, so it has no chunk or byte counts to show.
    println(`  would push ${p.files} files and ${p.deleted} deletions`);
    println(`  would pull ${q.files} files and ${q.deleted} deletions`);
  } else {
    println(`  pushed ${p.files} files, ${p.deleted} deletions: ${p.chunks} chunks, ${formatBytes(p.bytes)}`);
    println(`  pulled ${q.files} files, ${q.deleted} deletions: ${q.chunks} chunks, ${formatBytes(q.bytes)} (${q.reusedChunks} chunks reused from local files)`);
  }
  println(`  wire: sent ${formatBytes(summary.wire.sent)}, received ${formatBytes(summary.wire.received)} in ${summary.durationMs} ms`);
  for (const c of summary.conflicts) println(`  ${conflictLine(summary, c)}`);
  for (const s of q.skipped) println(`  skipped ${s.path}: ${s.reason}`);
  for (const u of summary.unknown) println(`  NOT SYNCED ${u.path}: ${u.reason}; it was left as it is here and on the server; ${u.next}`);
  for (const problem of summary.problems) if (problem.unknown !== true) println(`  warning ${problem.path}: ${problem.reason}`);
  if (summary.leftoversRemoved > 0) println(`  removed ${summary.leftoversRemoved} temp file(s) left by an interrupted run`);
  if (summary.backupDir) {
    println(`  ${summary.replaced.length} local file(s) replaced or deleted, each backed up first in ${summary.backupDir}:`);
    for (const path of summary.replaced.slice(0, 200)) println(`    ${path}`);
    if (summary.replaced.length > 200) println(`    … and ${summary.replaced.length - 200} more`);
  }
  println(summary.codex.home === null ? "  codex: thread sync is off for this binding" : `  codex: ${summary.codex.threads} thread(s) of ${summary.codex.root} in ${summary.codex.home} (${summary.codex.readFiles} rollout(s) read, ${formatBytes(summary.codex.readBytes)})`);
  for (const warning of summary.codex.warnings) println(`  warning: ${warning}`);
  for (const line of quarantineLines(summary)) println(`  ${line}`);
}
