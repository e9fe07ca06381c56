/**
 * Newline-delimited JSON framing with hard limits. Every line read from a peer is capped, so
 * a broken or hostile peer cannot make us buffer without bound.
 */
import type { Readable, Writable } from "node:stream";
import { CwsError } from "../errors.ts";

/** The largest line accepted, in bytes, newline excluded (manifests travel inline). */
export const MAX_LINE_BYTES = 64 * 1024 * 1024;

export interface ReadLinesOptions {
  /** Largest line accepted, in bytes, newline excluded. @default MAX_LINE_BYTES */
  maxLineBytes?: number;
  /** Called with the byte count of every piece read, for wire counters. */
  onBytes?: (bytes: number) => void;
}

/** Splits a byte stream into UTF-8 lines (without the newline; a trailing `\r` is dropped). */
export async function* readLines(source: AsyncIterable<Uint8Array | string>, options: ReadLinesOptions = {}): AsyncGenerator<string> {
  const { maxLineBytes = MAX_LINE_BYTES, onBytes } = options;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  for await (const piece of source) {
    let buffer = typeof piece === "string" ? Buffer.from(piece) : Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
    onBytes?.(buffer.byteLength);
    let newline = buffer.indexOf(0x0a);
    while (newline !== -1) {
      const head = buffer.subarray(0, newline);
      if (pendingBytes + head.byteLength > maxLineBytes) throw tooLarge(maxLineBytes);
      pending.push(head);
      yield decodeLine(Buffer.concat(pending, pendingBytes + head.byteLength));
      pending = [];
      pendingBytes = 0;
      buffer = buffer.subarray(newline + 1);
      newline = buffer.indexOf(0x0a);
    }
    if (buffer.byteLength > 0) {
      pendingBytes += buffer.byteLength;
      if (pendingBytes > maxLineBytes) throw tooLarge(maxLineBytes);
      pending.push(buffer);
    }
  }
  if (pendingBytes > 0) yield decodeLine(Buffer.concat(pending, pendingBytes));
}

function decodeLine(bytes: Buffer): string {
  const end = bytes.byteLength > 0 && bytes[bytes.byteLength - 1] === 0x0d ? bytes.byteLength - 1 : bytes.byteLength;
  return bytes.toString("utf8", 0, end);
}

function tooLarge(maxLineBytes: number): CwsError {
  return new CwsError("FRAME_TOO_LARGE", `Refused a message longer than ${maxLineBytes} bytes from the peer; the stream is corrupt or the peer is not a cws agent`, {
    data: { maxLineBytes },
  });
}

/**
 * Writes one JSON message as a line and waits for the stream to accept it, so a slow peer
 * applies backpressure instead of growing our buffers. Returns the bytes written.
 */
export async function writeMessage(target: Writable | NodeJS.WritableStream, message: unknown): Promise<number> {
  const line = Buffer.from(JSON.stringify(message) + "\n");
  await writeBytes(target, line);
  return line.byteLength;
}

/** Pieces of JSON text joined into writes of about this many characters. */
const PIECE_WRITE_CHARS = 64 * 1024;

/**
 * Writes pieces of JSON text that join to one message as one line, a few pieces per write
 * (each waiting for the stream to accept the previous), so a large message is never one string
 * or one buffer. Returns the bytes written.
 */
export async function writeJsonLine(target: Writable | NodeJS.WritableStream, pieces: readonly string[]): Promise<number> {
  let written = 0;
  let batch: string[] = [];
  let chars = 0;
  const flush = async (end: string) => {
    const bytes = Buffer.from(batch.join("") + end);
    batch = [];
    chars = 0;
    await writeBytes(target, bytes);
    written += bytes.byteLength;
  };
  for (const piece of pieces) {
    batch.push(piece);
    chars += piece.length;
    if (chars >= PIECE_WRITE_CHARS) await flush("");
  }
  await flush("\n");
  return written;
}

/** Writes bytes and waits for the stream to accept them (backpressure). */
async function writeBytes(target: Writable | NodeJS.WritableStream, bytes: Buffer): Promise<void> {
  const accepted = (target as Writable).write(bytes);
  if (!accepted) {
    await new Promise<void>((resolve, reject) => {
      const onDrain = () => { cleanup(); resolve(); };
      const onError = (error: Error) => { cleanup(); reject(error); };
      const onClose = () => { cleanup(); reject(new CwsError("CONNECTION_LOST", "The connection closed while a message was being sent")); };
      const cleanup = () => {
        (target as Writable).off("drain", onDrain);
        (target as Writable).off("error", onError);
        (target as Writable).off("close", onClose);
      };
      (target as Writable).on("drain", onDrain);
      (target as Writable).on("error", onError);
      (target as Writable).on("close", onClose);
    });
  }
}

export type { Readable };
