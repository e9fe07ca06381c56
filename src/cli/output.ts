/**
 * How commands talk to people and programs: results on stdout (text, or JSON with --json),
 * progress and warnings on stderr (only when stderr is a terminal, so logs stay clean), and
 * errors as one line that says what failed and what to do next.
 */
import { isCwsError } from "../errors.ts";

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

/** Prints an error for a person (or as JSON) and returns the exit code. */
export function reportError(error: unknown, json: boolean): number {
  if (json) {
    const wire = isCwsError(error) ? error.toWire() : { code: "INTERNAL", message: (error as Error)?.message ?? String(error) };
    process.stdout.write(JSON.stringify({ ok: false, error: wire }, null, 2) + "\n");
  }
  if (isCwsError(error)) {
    process.stderr.write(`cws: ${error.message}\n`);
    return error.code === "CANCELLED" ? 130 : 1;
  }
  process.stderr.write(`cws: unexpected failure: ${(error as Error)?.stack ?? String(error)}\nPlease report this with the command you ran.\n`);
  return 70;
}
