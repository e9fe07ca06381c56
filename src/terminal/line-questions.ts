/**
 * A conversation of several questions over one input stream: a terminal (with line editing),
 * or a pipe. One readline interface serves every question, so lines typed or piped ahead of
 * a question wait for it instead of being lost between two interfaces.
 */
import { createInterface, type Interface } from "node:readline";
import type { Readable, Writable } from "node:stream";
import { CwsError } from "../errors.ts";

/** The readline interface of `cws shell` while it runs, which questions then go through. */
let shellInterface: Interface | null = null;

/**
 * Lets questions on standard input go through `cws shell`'s own interface while the shell runs
 * (null when it ends): a second interface on the same input would see every answer too, and
 * the shell would then run each answer as a command.
 */
export function shareShellInterface(rl: Interface | null): void {
  shellInterface = rl;
}

export class LineQuestions {
  readonly #rl: Interface;
  readonly #shared: boolean;
  readonly #lines: AsyncIterator<string> | null;
  readonly #cancelled: Promise<never>;
  readonly #output: Writable;
  /** Set when the input ended: lines it held are still answered, but readline takes no prompt. */
  #ended = false;

  constructor(input: Readable, output: Writable) {
    this.#output = output;
    this.#shared = shellInterface !== null && input === process.stdin;
    const terminal = (input as { isTTY?: boolean }).isTTY === true;
    this.#rl = this.#shared ? shellInterface! : createInterface({ input, output, terminal });
    // The shell's interface is read with question(), which takes the next line before the
    // shell's own loop sees it; an own interface is read line by line, so piped lines that
    // arrive before their question wait for it.
    this.#lines = this.#shared ? null : this.#rl[Symbol.asyncIterator]();
    this.#rl.once("close", () => { this.#ended = true; });
    // On a terminal readline reads Ctrl+C as a key and emits SIGINT on the interface (the
    // process gets no signal): it cancels the conversation.
    this.#cancelled = new Promise<never>((_, reject) => {
      this.#onSigint = () => reject(new CwsError("CANCELLED", "Cancelled at the question; nothing was changed."));
      this.#rl.once("SIGINT", this.#onSigint);
    });
    this.#cancelled.catch(() => {});
  }

  #onSigint: () => void = () => {};

  /** Shows `prompt` and returns the next line, trimmed, or null when the input ended. */
  async ask(prompt: string): Promise<string | null> {
    if (this.#lines === null) {
      const closed = new Promise<null>((resolve) => this.#rl.once("close", () => resolve(null)));
      const answer = await Promise.race([new Promise<string>((resolve) => this.#rl.question(prompt, resolve)), closed, this.#cancelled]);
      return answer === null ? null : answer.trim();
    }
    if (this.#ended) {
      this.#output.write(prompt);
    } else {
      this.#rl.setPrompt(prompt);
      this.#rl.prompt();
    }
    const next = await Promise.race([this.#lines.next(), this.#cancelled]);
    return next.done === true ? null : next.value.trim();
  }

  close(): void {
    this.#rl.off("SIGINT", this.#onSigint);
    // The shell's interface stays open, paused again as the shell keeps it while a command runs.
    if (this.#shared) this.#rl.pause();
    else this.#rl.close();
  }
}
