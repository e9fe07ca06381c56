/**
 * How commands talk to people and programs: results on stdout (text, or JSON with --json),
 * progress and warnings on stderr (only when stderr is a terminal, so logs stay clean), and
 * errors as one line that says what failed and what to do next.
 */
import { join } from "node:path";

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** An AbortSignal that fires on the first Ctrl+C; a second Ctrl+C exits at once. */
export function processInterruptSignal(): AbortSignal {
  return releasableInterruptSignal().signal;
}

/**
 * The same, with `release()` to stop listening: for a step that may hand the command on to the
 * full program, which then listens itself (two listeners would print the notice twice).
 */
export function releasableInterruptSignal(): { signal: AbortSignal; release(): void } {
  const controller = new AbortController();
  const onInterrupt = () => {
    process.stderr.write("\ncws: stopping after the current step (Ctrl+C again to quit now)\n");
    controller.abort();
    process.once("SIGINT", () => process.exit(130));
  };
  process.once("SIGINT", onInterrupt);
  return { signal: controller.signal, release: () => process.off("SIGINT", onInterrupt) };
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + "\n");
}

export function println(line = ""): void {
  process.stdout.write(line + "\n");
}

/** The progress events of a sync (see src/client/sync.ts), kept structural so this file stays thin. */
export type ProgressEvent =
  | { type: "phase"; phase: string }
  | { type: "scan-progress"; files: number; bytes: number }
  | { type: "push-progress"; bytes: number; total: number; chunks?: number }
  | { type: "pull-progress"; files: number; total: number };

/**
 * Progress on stderr, in the form that suits whoever reads it:
 * - a terminal: one status line, rewritten in place and cleared at the end;
 * - `--json`: one JSON object per line (`{"type":"progress",…}`), for programs to follow;
 * - anything else (a log, CI): one plain line per phase, so long runs are not silent.
 * stdout keeps only the result either way.
 */
export class Progress {
  private readonly mode: "terminal" | "json" | "lines";
  private readonly write: (text: string) => void;
  private last = 0;
  private shown = false;

  constructor(options: { json?: boolean; terminal?: boolean; write?: (text: string) => void } = {}) {
    this.mode = options.json ? "json" : (options.terminal ?? process.stderr.isTTY === true) ? "terminal" : "lines";
    this.write = options.write ?? ((text) => void process.stderr.write(text));
  }

  /** Shows a status line (terminal only); `force` skips the 100 ms throttle. */
  update(text: string, force = false): void {
    if (this.mode !== "terminal") return;
    const now = Date.now();
    if (!force && now - this.last < 100) return;
    this.last = now;
    this.shown = true;
    this.write(`\r\x1b[2K${text.slice(0, (process.stderr.columns ?? 100) - 1)}`);
  }

  /** Shows one event of a sync. */
  syncEvent(event: ProgressEvent): void {
    if (this.mode === "json") {
      const now = Date.now();
      // Phases always; counters at most four times a second.
      if (event.type !== "phase" && now - this.last < 250) return;
      if (event.type !== "phase") this.last = now;
      const { type, ...fields } = event;
      this.write(JSON.stringify({ type: "progress", event: type, ...fields, at: new Date(now).toISOString() }) + "\n");
      return;
    }
    if (this.mode === "lines") {
      if (event.type === "phase" && event.phase !== "done") this.write(`cws: ${PHASE_TEXT[event.phase] ?? event.phase}\n`);
      return;
    }
    if (event.type === "scan-progress") this.update(`scanning: ${event.files} files, ${formatBytes(event.bytes)}`);
    else if (event.type === "push-progress") this.update(`uploading: ${formatBytes(event.bytes)} of ${formatBytes(event.total)}`);
    else if (event.type === "pull-progress") this.update(`writing: ${event.files} of ${event.total} files`);
    else this.update(`${event.phase}…`, true);
  }

  done(): void {
    if (this.mode === "terminal" && this.shown) this.write("\r\x1b[2K");
    this.shown = false;
  }
}

const PHASE_TEXT: Record<string, string> = {
  scan: "scanning the folder",
  plan: "comparing with the server",
  push: "uploading changes",
  commit: "committing on the server",
  pull: "writing server changes",
};

/**
 * Prints an error for a person (or as JSON) and returns the exit code (see failure.ts for the
 * classes). A bug's detail goes to `cws-errors.log` in the client's state folder.
 */
export async function reportError(error: unknown, json: boolean): Promise<number> {
  const { describeFailure } = await import("./failure.ts");
  const failure = describeFailure(error, await logDir());
  if (json) {
    const wire = { code: failure.code, message: failure.message, ...(failure.data === undefined ? {} : { data: failure.data }) };
    // With --json the error is printed once, as JSON on stdout, where the result would be.
    writeQuietly(process.stdout, JSON.stringify({ ok: false, error: wire }, null, 2) + "\n");
    return failure.exitCode;
  }
  writeQuietly(process.stderr, `cws: ${failure.message}\n`);
  return failure.exitCode;
}

/** The folder for the error log: the client's state folder (loaded only when a bug needs it). */
async function logDir(): Promise<string | null> {
  try {
    const { clientHome } = await import("../client/home.ts");
    return join(clientHome(), "logs");
  } catch {
    return null;
  }
}

/** Writes to a stream that may already be closed (`cws … | head`) without failing again. */
function writeQuietly(stream: NodeJS.WriteStream, text: string): void {
  if (stream.destroyed || stream.writableEnded) return;
  stream.write(text, () => {});
}

let closedOutputTolerated = false;

/**
 * Makes a closed stdout (the reader went away: `cws sync | head`) end the output quietly
 * instead of failing with an EPIPE stack trace. The command itself still runs to its end
 * (a sync is not cut short); only its output is dropped.
 */
export function tolerateClosedOutput(): void {
  // The hand-off path (kept-sync.ts) and the full program may both ask for it in one run.
  if (closedOutputTolerated) return;
  closedOutputTolerated = true;
  for (const stream of [process.stdout, process.stderr]) {
    stream.on("error", (error: NodeJS.ErrnoException) => {
      if (error.code === "EPIPE" || error.code === "ERR_STREAM_DESTROYED") {
        stream.destroy();
        return;
      }
      throw error;
    });
  }
}
