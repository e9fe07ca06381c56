/**
 * The quick way in for `cws sync <slug>` and `cws update-from-server <slug>`: before the
 * command line program is even built (commander, zod, ssh2 are not loaded yet), hand the sync
 * to a session of this device that is already running: a live sync of the superproject
 * (live-handoff.ts, `cws sync` only), else the kept session (kept-session-wire.ts). When
 * neither takes it, nothing has run and nothing was printed: the full program then runs the
 * command as always (and starts a kept session afterwards).
 *
 * Only the plain forms are handled here: a slug (positional or `--superproject`), `--json`,
 * `--dry-run` (and `--yes` for update-from-server, which asks nothing). Anything else (the
 * first-join flags, `--help`, a typo) goes to the full program, which owns their meaning and
 * their errors.
 */
import { clientHome } from "../client/home.ts";
import { handOffSync, liveSocketPath } from "../client/live-handoff.ts";
import { keptSessionsEnabled, syncViaKeptSession, type KeptMode } from "../client/kept-session-wire.ts";
import type { SyncSummary } from "../client/sync.ts";
import { printJson, println, Progress, releasableInterruptSignal, reportError, tolerateClosedOutput } from "./output.ts";
import { printSyncSummary } from "./sync-output.ts";

interface PlainSync {
  mode: KeptMode;
  slug: string;
  json: boolean;
  dryRun: boolean;
}

/** The command line as a plain sync, or null when the full program must read it. */
export function plainSync(args: readonly string[]): PlainSync | null {
  const [command, ...rest] = args;
  const mode: KeptMode | null = command === "sync" ? "sync" : command === "update-from-server" ? "pull" : null;
  if (mode === null) return null;
  let slug: string | undefined;
  let json = false;
  let dryRun = false;
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!;
    if (arg === "--json" && !json) json = true;
    else if (arg === "--dry-run" && !dryRun) dryRun = true;
    else if (arg === "--yes" && mode === "pull") continue;
    else if (arg === "--superproject" && slug === undefined && rest[i + 1] !== undefined && !rest[i + 1]!.startsWith("-")) slug = rest[++i];
    else if (!arg.startsWith("-") && slug === undefined && arg !== "") slug = arg;
    else return null;
  }
  return slug === undefined ? null : { mode, slug, json, dryRun };
}

/**
 * Runs the command through a session already running, if one takes it. Resolves true when the
 * command is done (its output printed, process.exitCode set), false when the full program must
 * run it.
 */
export async function runThroughRunningSession(args: readonly string[]): Promise<boolean> {
  const plain = plainSync(args);
  if (plain === null) return false;
  const { mode, slug, json, dryRun } = plain;
  const home = clientHome();
  const live = mode === "sync";
  const kept = keptSessionsEnabled();
  if (!live && !kept) return false;
  tolerateClosedOutput();
  const interrupt = releasableInterruptSignal();
  const signal = interrupt.signal;
  const progress = new Progress({ json });
  let done = false;
  try {
    if (live) {
      const handedOff = await handOffSync(liveSocketPath(home, slug), { type: "sync", dryRun }, signal);
      if (handedOff !== null) {
        printResult(handedOff, json, "live-sync", `(run by the live sync of ${slug} on this device)`);
        return (done = true);
      }
    }
    if (!kept) return false;
    const outcome = await syncViaKeptSession(home, { slug, mode, dryRun }, { signal, onEvent: (event) => progress.syncEvent(event) });
    progress.done();
    if (!outcome.ran) return false;
    printResult(outcome.summary, json, "kept-session");
    return (done = true);
  } catch (error) {
    progress.done();
    // The kept session died during the sync and is gone: nothing runs it any more, so the full
    // program runs it again here (safe, see kept-session.ts), as the command would have.
    if ((error as { data?: { keptSessionGone?: unknown } }).data?.keptSessionGone === true) {
      process.stderr.write("cws: the kept session of this device stopped during the sync; running the sync here\n");
      return false;
    }
    process.exitCode = await reportHandedOffError(error, json);
    return (done = true);
  } finally {
    if (!done) interrupt.release();
  }
}

function printResult(summary: SyncSummary, json: boolean, via: "live-sync" | "kept-session", note?: string): void {
  // The same output as the command's own sync, which says `firstJoin: null` when no first-join
  // question came up (a binding a session runs always has a base).
  if (json) printJson(via === "live-sync" ? { ok: true, via, ...summary } : { ok: true, via, ...summary, firstJoin: null });
  else {
    if (note !== undefined) println(note);
    printSyncSummary(summary);
  }
}

/**
 * Prints the error a session sent back as the command would have printed it. An unexpected
 * failure was already written to the log and worded by the session (failure.ts); it is shown as
 * it is rather than wrapped a second time.
 */
async function reportHandedOffError(error: unknown, json: boolean): Promise<number> {
  const { EXIT } = await import("./failure.ts");
  const { isCwsError } = await import("../errors.ts");
  if (!isCwsError(error, "INTERNAL")) return reportError(error, json);
  if (json) printJson({ ok: false, error: error.toWire() });
  else process.stderr.write(`cws: ${error.message}\n`);
  return EXIT.internal;
}
