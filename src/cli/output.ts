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

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + "\n");
}

export function println(line = ""): void {
  process.stdout.write(line + "\n");
}

/** A single status line on a terminal, rewritten in place; silent when stderr is not a terminal. */
export class Progress {
  private readonly enabled: boolean;
  private last = 0;
  private shown = false;

  constructor(enabled = process.stderr.isTTY === true) {
    this.enabled = enabled;
  }

  update(text: string, force = false): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (!force && now - this.last < 100) return;
    this.last = now;
    this.shown = true;
    process.stderr.write(`\r\x1b[2K${text.slice(0, (process.stderr.columns ?? 100) - 1)}`);
  }

  done(): void {
    if (this.enabled && this.shown) process.stderr.write("\r\x1b[2K");
    this.shown = false;
  }
}

/**
 * Prints an error for a person (or as JSON) and returns the exit code (see failure.ts for the
 * classes). A bug's detail goes to `cws-errors.log` in the client's state folder.
 */
export async function reportError(error: unknown, json: boolean): Promise<number> {
  const { describeFailure } = await import("./failure.ts");
  const failure = describeFailure(error, await logDir());
  if (json) {
    const wire = { code: failure.code, message: failure.message, ...(failure.data === undefined ? {} : { data: failure.data }) };
    writeQuietly(process.stdout, JSON.stringify({ ok: false, error: wire }, null, 2) + "\n");
  }
  writeQuietly(process.stderr, `cws: ${failure.message}\n`);
  return failure.exitCode;
}

/** The folder for the error log: the client's state folder (loaded only when a bug needs it). */
async function logDir(): Promise<string | null> {
  try {
    const { clientHome } = await import("../client/state.ts");
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

/**
 * Makes a closed stdout (the reader went away: `cws sync | head`) end the output quietly
 * instead of failing with an EPIPE stack trace. The command itself still runs to its end
 * (a sync is not cut short); only its output is dropped.
 */
export function tolerateClosedOutput(): void {
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
