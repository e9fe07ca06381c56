/**
 * A conversation of several questions over one input stream: a terminal (with line editing),
 * or a pipe. One readline interface serves every question, so lines typed or piped ahead of
 * a question wait for it instead of being lost between two interfaces.
 */
import { createInterface, type Interface } from "node:readline";
import type { Readable, Writable } from "node:stream";
import { CwsError } from "../errors.ts";

export class LineQuestions {
  readonly #rl: Interface;
  readonly #lines: AsyncIterator<string>;
  readonly #cancelled: Promise<never>;

  constructor(input: Readable, output: Writable) {
    const terminal = (input as { isTTY?: boolean }).isTTY === true;
    this.#rl = createInterface({ input, output, terminal });
    this.#lines = this.#rl[Symbol.asyncIterator]();
    // On a terminal readline reads Ctrl+C as a key and emits SIGINT on the interface (the
    // process gets no signal): it cancels the conversation.
    this.#cancelled = new Promise<never>((_, reject) => {
      this.#rl.once("SIGINT", () => reject(new CwsError("CANCELLED", "Cancelled at the question; nothing was changed.")));
    });
    this.#cancelled.catch(() => {});
  }

  /** Shows `prompt` and returns the next line, trimmed, or null when the input ended. */
  async ask(prompt: string): Promise<string | null> {
    this.#rl.setPrompt(prompt);
    this.#rl.prompt();
    const next = await Promise.race([this.#lines.next(), this.#cancelled]);
    return next.done === true ? null : next.value.trim();
  }

  close(): void {
    this.#rl.close();
  }
}
