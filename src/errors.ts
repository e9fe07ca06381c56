/**
 * The one error type of cws. It crosses the wire between agent, hub and client as
 * `{code, message, data}`, so every code here is part of the protocol: add codes, never
 * rename them. Messages say what failed, why, and what to do next.
 */

/** The closed set of error codes. Anything not covered stays on the agent as INTERNAL. */
export const ERROR_CODES = [
  "INVALID_ARGUMENT", // a value from the user, disk or wire failed validation
  "INVALID_PATH", // a path is absolute, has `..`, NUL, empty segments or escapes its root
  "NOT_FOUND", // a superproject, snapshot, chunk, device or item does not exist
  "ALREADY_EXISTS", // creating something that is already there
  "PROTOCOL_MISMATCH", // client and agent speak different protocol versions
  "AGENT_MISSING", // the agent could not be started or never said hello
  "FRAME_TOO_LARGE", // a line or bundle record exceeded its cap
  "HEAD_MOVED", // the server head is not the base the client pushed against
  "LEASE_HELD", // another device holds the global lease
  "LEASE_LOST", // the fencing token is stale: the lease expired or was taken
  "NOT_ENROLLED", // the device is not registered on the server
  "AUTH_FAILED", // wrong secondary passphrase, rejected SSH key, or unknown device key
  "HOST_KEY_MISMATCH", // the server's host key differs from the one trusted
  "CONNECTION_LOST", // the channel closed in the middle of a request
  "CORRUPT", // a hash did not match its content
  "BEHIND_SERVER", // the local copy is behind the server head
  "CONFLICT", // both sides changed the same thing differently
  "HUB_UNAVAILABLE", // the hub process could not be reached or started
  "CANCELLED", // the user interrupted the operation
  "IO_FAILED", // this machine's disk or permissions failed: disk full, permission denied, read-only
  "DISK_FULL", // the server's disk has no space left for a write (this device's full disk is IO_FAILED)
  "CODEX_FAILED", // the local Codex CLI (codex app-server) could not be started or refused a request
  "INTERNAL", // an unexpected failure; details stay in the agent's log
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export interface CwsErrorOptions {
  /** Structured details a program can act on (shown by `--json`). */
  data?: Record<string, unknown>;
  /** The underlying error, kept for logs; never sent over the wire. */
  cause?: unknown;
}

export class CwsError extends Error {
  readonly code: ErrorCode;
  readonly data: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: CwsErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "CwsError";
    this.code = code;
    this.data = options.data;
  }

  /** The form that crosses the wire. */
  toWire(): WireError {
    return this.data === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, data: this.data };
  }

  static fromWire(wire: WireError): CwsError {
    return new CwsError(wire.code, wire.message, wire.data === undefined ? {} : { data: wire.data });
  }
}

export interface WireError {
  code: ErrorCode;
  message: string;
  data?: Record<string, unknown>;
}

export function isCwsError(value: unknown, code?: ErrorCode): value is CwsError {
  return value instanceof CwsError && (code === undefined || value.code === code);
}

/**
 * Turns any thrown value into a CwsError. Unknown failures become INTERNAL with a generic
 * message so that stack traces and local paths never leave the process that saw them.
 */
export function toCwsError(error: unknown, context: string): CwsError {
  if (error instanceof CwsError) return error;
  return new CwsError("INTERNAL", `${context} failed unexpectedly; see the agent log for details`, {
    cause: error,
  });
}
