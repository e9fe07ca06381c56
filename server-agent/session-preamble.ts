/**
 * The session preamble: the first line a relay (`cws-agent --stdio`, or the forced command of a
 * restricted key) writes on the hub's socket, before a single byte of the client's. It turns the
 * connection into a client session served by the hub, and carries what the relay alone may say
 * about the session: the device a restricted key is pinned to, the authorized_keys file that
 * enrollment edits, and (for crash tests) a fault point.
 *
 * The client cannot forge it: the relay writes it before it starts copying the client's bytes,
 * so everything the client sends arrives after it and is read as protocol requests; and only
 * the server account can connect to the hub's socket (0600), which a restricted key cannot
 * reach (no shell, no forwarding).
 *
 * This module imports nothing, because the relay loads it on every SSH connection.
 */

export interface SessionPreamble {
  /** When set, the session may only open this device. */
  pinnedDeviceId?: string;
  /** Where `enroll --restrict-key` writes the key's line. */
  authorizedKeysFile?: string;
  /** A fault point (src/fault.ts) that ends this session, for crash tests. */
  fault?: string;
}

/** The marker field; no hub request has it, so a preamble is never mistaken for one. */
const TAG = "cwsSession";
const VERSION = 1;
/** A preamble is short; a longer first line is a request, never a preamble. */
export const MAX_PREAMBLE_BYTES = 8192;

export function encodeSessionPreamble(preamble: SessionPreamble): string {
  return `${JSON.stringify({ [TAG]: VERSION, ...preamble })}\n`;
}

/**
 * The preamble in a first line, or null when the line is something else (a hub request).
 * Throws when it is a preamble but a malformed one.
 */
export function parseSessionPreamble(line: string): SessionPreamble | null {
  if (line.length > MAX_PREAMBLE_BYTES || !line.includes(`"${TAG}"`)) return null;
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    return null;
  }
  if (typeof raw !== "object" || raw === null || !(TAG in raw)) return null;
  const record = raw as Record<string, unknown>;
  if (record[TAG] !== VERSION) throw new Error(`unsupported session preamble version ${JSON.stringify(record[TAG])}`);
  const preamble: SessionPreamble = {};
  for (const key of ["pinnedDeviceId", "authorizedKeysFile", "fault"] as const) {
    const value = record[key];
    if (value === undefined) continue;
    if (typeof value !== "string" || value === "" || value.length > 4096) throw new Error(`bad ${key} in the session preamble`);
    preamble[key] = value;
  }
  return preamble;
}
