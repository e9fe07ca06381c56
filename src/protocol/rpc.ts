/**
 * The request/response machinery shared by every protocol of cws (client ↔ agent over stdio,
 * agent ↔ hub over the local socket): a caller that matches responses to requests by id and
 * validates results against a method table, and a server loop that validates params and turns
 * every failure into a wire error. Unknown failures are logged where they happened and cross
 * the wire only as INTERNAL.
 */
import type { z } from "zod";
import { CwsError, toCwsError } from "../errors.ts";
import { RequestEnvelopeFor, ResponseEnvelope } from "./envelopes.ts";
import { writeJsonLine, writeMessage } from "./framing.ts";

export type MethodTable = Record<string, { params: z.ZodType; result: z.ZodType }>;
export type TableParams<T extends MethodTable, M extends keyof T> = z.infer<T[M]["params"]>;
export type TableResult<T extends MethodTable, M extends keyof T> = z.infer<T[M]["result"]>;

interface Pending {
  method: string;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

export interface CallerOptions {
  /** Builds the error used when the stream ends with requests still open. */
  lostError: (cause?: unknown) => CwsError;
  onSent?: (bytes: number) => void;
  /** Peer name for messages ("agent", "hub"). */
  peer: string;
}

/** The calling side: send requests, await validated results. */
export class RpcCaller<T extends MethodTable> {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closedError: CwsError | undefined;
  readonly done: Promise<void>;
  private readonly table: T;
  private readonly output: NodeJS.WritableStream;
  private readonly options: CallerOptions;

  constructor(table: T, lines: AsyncIterator<string>, output: NodeJS.WritableStream, options: CallerOptions) {
    this.table = table;
    this.output = output;
    this.options = options;
    this.done = this.readLoop(lines);
  }

  private failAll(error: CwsError): void {
    this.closedError ??= error;
    for (const entry of this.pending.values()) entry.reject(error);
    this.pending.clear();
  }

  private async readLoop(lines: AsyncIterator<string>): Promise<void> {
    try {
      let next: IteratorResult<string> | undefined;
      for (;;) {
        next = await lines.next();
        if (next.done) break;
        this.receive(next.value);
        // Dropped before the next line is awaited: a suspended async function keeps what its
        // variables held, and a reply that holds a whole tree's manifest (10 MB at 50,000
        // files) would otherwise stay alive until the next reply came.
        next = undefined;
      }
      this.failAll(this.options.lostError());
    } catch (error) {
      this.failAll(error instanceof CwsError ? error : this.options.lostError(error));
    }
  }

  /** Settles the request a response line answers. Throws when the line is not a response. */
  private receive(line: string): void {
    if (line.trim() === "") return;
    let envelope: ResponseEnvelope;
    try {
      envelope = ResponseEnvelope.parse(JSON.parse(line));
    } catch {
      throw new CwsError("PROTOCOL_MISMATCH", `The ${this.options.peer} sent a message this side cannot read: ${line.slice(0, 200)}`);
    }
    if (envelope.id === null) {
      // An error tied to no request means the peer gives up on the whole session.
      if (!envelope.ok) this.failAll(CwsError.fromWire(envelope.error));
      return;
    }
    const entry = this.pending.get(envelope.id);
    if (entry === undefined) return;
    this.pending.delete(envelope.id);
    if (!envelope.ok) {
      entry.reject(CwsError.fromWire(envelope.error));
      return;
    }
    const parsed = this.table[entry.method].result.safeParse(envelope.result);
    if (parsed.success) entry.resolve(parsed.data);
    else entry.reject(new CwsError("PROTOCOL_MISMATCH", `The ${this.options.peer}'s answer to ${entry.method} is malformed: ${parsed.error.issues[0]?.path.join(".")}: ${parsed.error.issues[0]?.message}`));
  }

  call<M extends keyof T & string>(method: M, params: TableParams<T, M>, options: { signal?: AbortSignal } = {}): Promise<TableResult<T, M>> {
    if (this.closedError !== undefined) return Promise.reject(this.closedError);
    const id = this.nextId++;
    const { signal } = options;
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        this.pending.delete(id);
        reject(new CwsError("CANCELLED", `${method} was cancelled`));
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener("abort", onAbort, { once: true });
      this.pending.set(id, {
        method,
        resolve: (value) => { signal?.removeEventListener("abort", onAbort); resolve(value as TableResult<T, M>); },
        reject: (error) => { signal?.removeEventListener("abort", onAbort); reject(error); },
      });
      writeMessage(this.output, { id, method, params }).then(
        (bytes) => this.options.onSent?.(bytes),
        (error) => {
          this.pending.delete(id);
          reject(error instanceof CwsError ? error : this.options.lostError(error));
        },
      );
    });
  }
}

export interface ServeOptions<T extends MethodTable> {
  table: T;
  lines: AsyncIterable<string>;
  output: NodeJS.WritableStream;
  /** Handles one validated request. Requests are handled one at a time, in order. */
  handle: (method: keyof T & string, params: unknown) => Promise<unknown>;
  /** Called with failures that are not CwsErrors, before they are replaced by INTERNAL. */
  onInternalError?: (method: string, error: unknown) => void;
}

/**
 * A result already written as JSON text, in pieces that join to one JSON value. The serving
 * loop writes the pieces as they are, so a large result (a whole manifest of 50,000 entries) is
 * never held as one string and one buffer beside the objects it was made from. Only the side
 * that made the pieces may vouch for them: they are not checked again.
 */
export class JsonText {
  readonly pieces: readonly string[];
  constructor(pieces: readonly string[]) {
    this.pieces = pieces;
  }
}

/** The serving side: read requests, validate, dispatch, answer. Returns when the input ends. */
export async function serveRpc<T extends MethodTable>(options: ServeOptions<T>): Promise<void> {
  const envelopeSchema = RequestEnvelopeFor(Object.keys(options.table));
  // `let`: the line is let go once parsed, so a large request (a first push's whole manifest)
  // is not held as text while it is handled.
  for await (let line of options.lines) {
    if (line.trim() === "") continue;
    let id: number | null = null;
    let what = "a request";
    let response: unknown;
    try {
      let raw: unknown;
      try {
        raw = JSON.parse(line);
      } catch {
        throw new CwsError("INVALID_ARGUMENT", "Cannot read request: it is not JSON");
      } finally {
        line = "";
      }
      const envelope = envelopeSchema.safeParse(raw);
      if (!envelope.success) {
        const candidate = raw as { id?: unknown };
        if (typeof candidate?.id === "number") id = candidate.id;
        throw new CwsError("INVALID_ARGUMENT", `Cannot accept request: ${envelope.error.issues[0]?.path.join(".")}: ${envelope.error.issues[0]?.message}`);
      }
      raw = undefined;
      id = envelope.data.id;
      const method = envelope.data.method as keyof T & string;
      what = `${method} (request ${id})`;
      const params = options.table[method].params.safeParse(envelope.data.params ?? {});
      if (!params.success) {
        const issue = params.error.issues[0];
        throw new CwsError("INVALID_ARGUMENT", `Cannot accept ${method}: ${issue?.path.join(".") || "params"}: ${issue?.message}`);
      }
      const result = await options.handle(method, params.data);
      response = result instanceof JsonText ? result : { id, ok: true, result };
    } catch (error) {
      if (!(error instanceof CwsError)) options.onInternalError?.(what, error);
      response = { id, ok: false, error: toCwsError(error, "The request").toWire() };
    }
    if (response instanceof JsonText) await writeJsonLine(options.output, [`{"id":${id},"ok":true,"result":`, ...response.pieces, "}"]);
    else await writeMessage(options.output, response);
  }
}
