/**
 * The `authorized_keys` line that confines an enrolled device's SSH key to cws, and the
 * crash-safe edit that installs it.
 *
 *   restrict,command="exec '<node>' '<repo>/server-agent/forced-command.mjs' --data '<dir>' --device '<id>'" <type> <base64> [comment]
 *
 * `restrict` turns off port, agent and X11 forwarding, ptys and ~/.ssh/rc; `command` makes
 * sshd run the forced command for every exec and subsystem request, with the client's request
 * in SSH_ORIGINAL_COMMAND (see forced-command.ts). sshd runs the command through the account's
 * login shell, so each word is single-quoted for the shell; inside the option's double quotes
 * OpenSSH knows only `\"` as an escape, so values holding `"` or `\` are refused rather than
 * escaped, as are control characters (a newline would start a new authorized_keys line).
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import { CwsError } from "../src/errors.ts";
import { writeFileAtomic } from "../src/fs-atomic.ts";

export interface AuthorizedKeysLineOptions {
  /** The device's public key line: `<type> <base64> [comment]`. */
  publicKey: string;
  /** The server data dir (absolute). */
  dataDir: string;
  /** The enrolled device id the key is pinned to. */
  deviceId: string;
  /** The Node 24 binary on the server (absolute: sshd gives commands a minimal PATH). */
  nodePath: string;
  /** The cws installation on the server (absolute), holding `server-agent/forced-command.mjs`. */
  repoDir: string;
}

/** Key types OpenSSH accepts in authorized_keys that cws clients can hold. */
const KEY_TYPES = new Set([
  "ssh-ed25519",
  "ssh-rsa",
  "ecdsa-sha2-nistp256",
  "ecdsa-sha2-nistp384",
  "ecdsa-sha2-nistp521",
  "sk-ssh-ed25519@openssh.com",
  "sk-ecdsa-sha2-nistp256@openssh.com",
]);

/** Device ids are UUIDs; anything outside this alphabet is refused before it reaches a shell. */
const DEVICE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/**
 * Builds the restricted line for one device key.
 *
 * @throws {CwsError} INVALID_ARGUMENT when a value is not absolute, holds `"`, `\` or a
 *   control character, or the key is not a public key line.
 */
export function authorizedKeysLine(options: AuthorizedKeysLineOptions): string {
  const key = parsePublicKey(options.publicKey);
  if (!DEVICE_ID.test(options.deviceId)) {
    throw new CwsError("INVALID_ARGUMENT", `Cannot pin the key to device id ${JSON.stringify(options.deviceId.slice(0, 200))} as it is not a plain id`);
  }
  const checked = (what: string, value: string): string => {
    if (!path.posix.isAbsolute(value)) {
      throw new CwsError("INVALID_ARGUMENT", `Cannot write the authorized_keys line as the ${what} ${JSON.stringify(value)} is not an absolute path`);
    }
    if (/["\\\u0000-\u001f\u007f]/.test(value)) {
      throw new CwsError(
        "INVALID_ARGUMENT",
        `Cannot write the authorized_keys line as the ${what} ${JSON.stringify(value)} holds a double quote, backslash or control character; move it to a plainer path`,
      );
    }
    return value;
  };
  const entry = path.posix.join(checked("cws installation folder", options.repoDir), "server-agent", "forced-command.mjs");
  const command = [
    "exec",
    shellQuote(checked("Node binary path", options.nodePath)),
    shellQuote(entry),
    "--data",
    shellQuote(checked("data dir", options.dataDir)),
    "--device",
    shellQuote(options.deviceId),
  ].join(" ");
  return `restrict,command="${command}" ${key.type} ${key.blob}${key.comment ? ` ${key.comment}` : ""}`;
}

/**
 * {@link authorizedKeysLine} for the cws installation this code runs from: its repo dir, and
 * the repo's own Node 24 (`node_modules/.bin/node`, stable across Node updates by npm) or
 * else the Node running now.
 *
 * In the server install layout (docs/operations.md) this code runs from one release folder
 * that a later update replaces, so scripts/server/run.sh names the stable paths instead
 * (`<install>/current` and its Node) in CWS_STABLE_ROOT and CWS_STABLE_NODE: device keys keep
 * working across updates and rollbacks.
 */
export function authorizedKeysLineForThisInstall(options: Pick<AuthorizedKeysLineOptions, "publicKey" | "dataDir" | "deviceId">): string {
  return authorizedKeysLine({ ...options, dataDir: path.resolve(options.dataDir), ...thisInstall() });
}

/**
 * This cws installation: its checkout and the Node 24 to run it with (absolute paths); in the
 * server install layout, the stable paths run.sh names (see above), so what is written with
 * them (key lines, the `<data>/bin/cws-agent` launcher) keeps working across updates.
 */
export function thisInstall(): { repoDir: string; nodePath: string } {
  const { CWS_STABLE_ROOT: stableRoot, CWS_STABLE_NODE: stableNode } = process.env;
  if (stableRoot && stableNode) return { repoDir: stableRoot, nodePath: stableNode };
  const repoDir = path.resolve(import.meta.dirname, "..");
  const repoNode = path.join(repoDir, "node_modules", ".bin", "node");
  return { repoDir, nodePath: existsSync(repoNode) ? repoNode : process.execPath };
}

/** OpenSSH's SHA256 fingerprint of a base64 key blob, as `ssh-keygen -l` prints it. */
function keyFingerprint(base64Blob: string): string {
  return `SHA256:${createHash("sha256").update(Buffer.from(base64Blob, "base64")).digest("base64").replace(/=+$/, "")}`;
}

/** The unrestricted line for a key, as `ssh-copy-id` writes it (the key line itself, checked). */
export function plainAuthorizedKeysLine(publicKey: string): string {
  const key = parsePublicKey(publicKey);
  return `${key.type} ${key.blob}${key.comment ? ` ${key.comment}` : ""}`;
}

/**
 * Removes the lines that let a revoked device in: the restricted lines pinned to its id, and
 * any line (restricted or not) for its key, named by the SHA256 fingerprint recorded at
 * enrollment. Other lines stay as they are; the file is replaced crash-safely.
 *
 * @returns How many lines were removed (0 also when the file does not exist).
 */
export async function removeAuthorizedKeys(file: string, match: { deviceId: string; keyFingerprint?: string | null }): Promise<{ removed: number }> {
  let current: string;
  try {
    current = await readFile(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { removed: 0 };
    throw error;
  }
  const pinned = new RegExp(`--device '?${match.deviceId.replace(/[.]/g, "\\.")}'?(?=[\\s"])`);
  const kept: string[] = [];
  let removed = 0;
  for (const line of current.split("\n")) {
    if (line.trim() === "") continue;
    const blob = keyBlobOf(line);
    const sameKey = blob !== undefined && match.keyFingerprint != null && keyFingerprint(blob) === match.keyFingerprint;
    if (sameKey || (blob !== undefined && pinned.test(line))) removed++;
    else kept.push(line);
  }
  if (removed > 0) await writeFileAtomic(file, kept.map((l) => `${l}\n`).join(""), { mode: 0o600 });
  return { removed };
}

/**
 * Puts `line` into the authorized_keys file `file`, replacing every line for the same key
 * (restricted or not), keeping all other lines as they are. The file is replaced crash-safely
 * with mode 0600; a missing file (and its folder, mode 0700) is created.
 *
 * A session already authenticated with the key keeps running: sshd reads the options only
 * when a connection authenticates.
 *
 * @returns How many lines for the key were replaced (0 when the key was new).
 */
export async function installAuthorizedKey(file: string, line: string): Promise<{ replaced: number }> {
  const blob = keyBlobOf(line);
  if (blob === undefined) throw new CwsError("INVALID_ARGUMENT", "Cannot install an authorized_keys line that holds no public key");
  if (/[\r\n]/.test(line)) throw new CwsError("INVALID_ARGUMENT", "Cannot install an authorized_keys line that spans several lines");
  let current = "";
  try {
    current = await readFile(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  }
  const kept: string[] = [];
  let replaced = 0;
  for (const existing of current.split("\n")) {
    if (existing.trim() === "") continue;
    if (keyBlobOf(existing) === blob) replaced++;
    else kept.push(existing);
  }
  await writeFileAtomic(file, [...kept, line].map((l) => `${l}\n`).join(""), { mode: 0o600 });
  return { replaced };
}

/** Splits and checks a public key line. */
function parsePublicKey(publicKey: string): { type: string; blob: string; comment: string } {
  if (/[\u0000-\u001f\u007f]/.test(publicKey.trim())) {
    throw new CwsError("INVALID_ARGUMENT", "Cannot use the public key as it holds a line break or control character");
  }
  const [type, blob, ...rest] = publicKey.trim().split(/\s+/);
  if (type === undefined || !KEY_TYPES.has(type) || blob === undefined || !/^[A-Za-z0-9+/]+={0,2}$/.test(blob)) {
    throw new CwsError("INVALID_ARGUMENT", "Cannot use the public key as it is not an OpenSSH public key line (`ssh-ed25519 AAAA… comment`)");
  }
  return { type, blob, comment: rest.join(" ") };
}

/**
 * The base64 key blob of an authorized_keys line, after any options (which may hold quoted
 * spaces), or undefined for comments and lines without a known key type.
 */
export function keyBlobOf(line: string): string | undefined {
  const trimmed = line.trim();
  if (trimmed === "" || trimmed.startsWith("#")) return undefined;
  // Walk words, treating a double-quoted stretch (where `\"` escapes) as part of one word.
  const words: string[] = [];
  let word = "";
  let quoted = false;
  for (let i = 0; i < trimmed.length; i++) {
    const ch = trimmed[i];
    if (quoted && ch === "\\" && trimmed[i + 1] === '"') {
      word += '\\"';
      i++;
    } else if (ch === '"') {
      quoted = !quoted;
      word += ch;
    } else if (!quoted && (ch === " " || ch === "\t")) {
      if (word !== "") words.push(word);
      word = "";
    } else {
      word += ch;
    }
  }
  if (word !== "") words.push(word);
  const typeAt = words.findIndex((w) => KEY_TYPES.has(w));
  return typeAt >= 0 ? words[typeAt + 1] : undefined;
}

/** Quotes one word for a POSIX shell (single quotes; `'` itself as `'\''`). */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(word) ? word : `'${word.replaceAll("'", "'\\''")}'`;
}
