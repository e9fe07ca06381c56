/**
 * OpenSSH `known_hosts` files: reading them, checking a server's host key against them,
 * fingerprints, and recording a newly trusted key. No maintained npm package covers this
 * (ssh2 leaves host-key policy to the caller), so it is done here, following sshd(8)
 * "SSH_KNOWN_HOSTS FILE FORMAT":
 *
 *   [@marker] hostpatterns keytype base64-key [comment]
 *
 * - hostpatterns: comma-separated, `*` and `?` wildcards, `!` negation, `[host]:port` for a
 *   port other than 22, matched case-insensitively; or one hashed name `|1|salt|hmac`, where
 *   hmac = HMAC-SHA1(key = salt, data = name), both base64.
 * - `@revoked` marks a key that must never be accepted; `@cert-authority` lines are for host
 *   certificates, which this client does not use, so they never vouch for a key here.
 * - Lines that do not parse are skipped, as OpenSSH does.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { mkdir, open, realpath, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { CwsError } from "../errors.ts";
import { syncDir } from "../fs-atomic.ts";

/** A host public key as the SSH wire carries it. */
export interface HostKey {
  /** The key type, e.g. `ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`. */
  algorithm: string;
  /** The public key blob (what known_hosts stores in base64). */
  blob: Buffer;
}

/** One usable line of a known_hosts file. */
export interface KnownHostLine {
  file: string;
  /** 1-based line number, for messages such as `ssh-keygen -R`. */
  line: number;
  marker: "revoked" | "cert-authority" | undefined;
  /** The host field as written: patterns, or a hashed name. */
  hosts: string;
  algorithm: string;
  blob: Buffer;
}

/** A key on file for the host, as shown to the user. */
export interface KnownKey {
  algorithm: string;
  fingerprint: string;
  file: string;
  line: number;
}

/** The outcome of {@link checkHostKey}. */
export interface HostKeyCheck {
  /**
   * `match`: a line for this host holds this key. `mismatch`: keys are on file for this host
   * but none is this one (or this key is revoked). `unknown`: nothing is on file for the host.
   */
  status: "match" | "mismatch" | "unknown";
  /** True when a `@revoked` line for this host holds this key; status is then `mismatch`. */
  revoked: boolean;
  /** The keys on file for this host (not revoked, not CA lines). */
  knownKeys: KnownKey[];
}

// A known_hosts file of a few thousand hosts is well under a megabyte; a file far larger is
// not one, and reading it whole would be the mistake.
const MAX_KNOWN_HOSTS_BYTES = 16 * 1024 * 1024;
// An SSH public key blob is at most a few KiB (RSA 16384 bits is ~2 KiB).
const MAX_KEY_BLOB_BYTES = 16 * 1024;

/** The name a host has in known_hosts: `host` on port 22, `[host]:port` otherwise. */
export function knownHostName(host: string, port: number): string {
  const name = host.toLowerCase();
  return port === 22 ? name : `[${name}]:${port}`;
}

/** The SHA256 fingerprint as `ssh-keygen -lf` prints it: `SHA256:` + unpadded base64. */
export function fingerprintSha256(blob: Buffer): string {
  return `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

/**
 * Reads the key type embedded at the start of a public key blob.
 *
 * @throws {CwsError} INVALID_ARGUMENT when the blob is not an SSH public key.
 */
export function hostKeyFromBlob(blob: Buffer): HostKey {
  const algorithm = blobAlgorithm(blob);
  if (algorithm === undefined) {
    throw new CwsError("INVALID_ARGUMENT", "Cannot read host key as it is not an SSH public key blob");
  }
  return { algorithm, blob };
}

/** Parses known_hosts text; lines that do not parse are skipped. */
export function parseKnownHosts(text: string, file = "known_hosts"): KnownHostLine[] {
  const lines: KnownHostLine[] = [];
  const rows = text.split("\n");
  for (let index = 0; index < rows.length; index++) {
    const row = rows[index].trim();
    if (row === "" || row.startsWith("#")) continue;
    const fields = row.split(/[ \t]+/);
    let marker: KnownHostLine["marker"];
    if (fields[0].startsWith("@")) {
      const name = fields.shift()!;
      if (name === "@revoked") marker = "revoked";
      else if (name === "@cert-authority") marker = "cert-authority";
      else continue;
    }
    if (fields.length < 3) continue;
    const [hosts, algorithm, base64] = fields;
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(base64) || base64.length > (MAX_KEY_BLOB_BYTES * 4) / 3 + 4) continue;
    const blob = Buffer.from(base64, "base64");
    // The type written in the line must be the one inside the blob, as OpenSSH checks.
    if (blobAlgorithm(blob) !== algorithm) continue;
    lines.push({ file, line: index + 1, marker, hosts, algorithm, blob });
  }
  return lines;
}

/** Reads and parses several known_hosts files; missing files count as empty. */
export async function readKnownHosts(files: readonly string[]): Promise<KnownHostLine[]> {
  const all: KnownHostLine[] = [];
  for (const file of files) {
    const text = await readCapped(file);
    if (text !== undefined) all.push(...parseKnownHosts(text, file));
  }
  return all;
}

/** True when a host field (patterns or a hashed name) matches `name` (see the module comment). */
export function hostFieldMatches(hosts: string, name: string): boolean {
  const lowered = name.toLowerCase();
  if (hosts.startsWith("|1|")) return hashedNameMatches(hosts, lowered);
  let matched = false;
  for (const raw of hosts.split(",")) {
    if (raw === "") continue;
    const negated = raw.startsWith("!");
    const pattern = (negated ? raw.slice(1) : raw).toLowerCase();
    if (!globMatches(pattern, lowered)) continue;
    // A matching negation wins over any positive match, as in OpenSSH's match_hostname().
    if (negated) return false;
    matched = true;
  }
  return matched;
}

/** Checks `key` for `host:port` against parsed known_hosts lines. */
export function checkHostKey(lines: readonly KnownHostLine[], host: string, port: number, key: HostKey): HostKeyCheck {
  const name = knownHostName(host, port);
  const forHost = lines.filter((line) => hostFieldMatches(line.hosts, name));
  const revoked = forHost.some((line) => line.marker === "revoked" && line.blob.equals(key.blob));
  const plain = forHost.filter((line) => line.marker === undefined);
  const knownKeys = plain.map((line) => ({
    algorithm: line.algorithm,
    fingerprint: fingerprintSha256(line.blob),
    file: line.file,
    line: line.line,
  }));
  if (revoked) return { status: "mismatch", revoked, knownKeys };
  if (plain.some((line) => line.blob.equals(key.blob))) return { status: "match", revoked, knownKeys };
  return { status: plain.length === 0 ? "unknown" : "mismatch", revoked, knownKeys };
}

/** The key types on file for a host, so the client can ask the server for one of those first. */
export function knownAlgorithms(lines: readonly KnownHostLine[], host: string, port: number): string[] {
  const name = knownHostName(host, port);
  const algorithms = lines
    .filter((line) => line.marker === undefined && hostFieldMatches(line.hosts, name))
    .map((line) => line.algorithm);
  return [...new Set(algorithms)];
}

/** Options for {@link appendKnownHost}. */
export interface AppendKnownHostOptions {
  /**
   * Write the host name hashed (`|1|salt|hmac`), like `HashKnownHosts yes`.
   *
   * @default {false}
   */
  hashed?: boolean;
}

/**
 * Records `key` for `host:port` at the end of `file`, crash-safely: the whole new content
 * goes to a temp file beside the real one (following a symlink to its target), is fsynced and
 * renamed over it, so a crash leaves either the old or the new file. The file mode is kept;
 * a new file (and a missing parent dir) is private.
 *
 * NOTE: Two processes appending at the same moment can lose one of the two entries (last
 * rename wins). That costs one more trust-on-first-use prompt, never a wrong key.
 */
export async function appendKnownHost(
  file: string,
  host: string,
  port: number,
  key: HostKey,
  options: AppendKnownHostOptions = {},
): Promise<void> {
  const { hashed = false } = options;
  const name = knownHostName(host, port);
  const hostField = hashed ? hashHostName(name) : name;
  const entry = `${hostField} ${key.algorithm} ${key.blob.toString("base64")}\n`;

  const target = await realpath(file).catch(() => file);
  await mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
  const existing = (await readCapped(target)) ?? "";
  const mode = await stat(target).then(
    (stats) => stats.mode & 0o777,
    () => 0o600,
  );
  const separator = existing === "" || existing.endsWith("\n") ? "" : "\n";
  const temp = `${target}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  try {
    const handle = await open(temp, "wx", mode);
    try {
      await handle.writeFile(existing + separator + entry);
      await handle.chmod(mode);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, target);
  } catch (error) {
    await rm(temp, { force: true });
    throw new CwsError("INTERNAL", `Cannot record the host key in "${file}": ${(error as Error).message}`, {
      cause: error,
    });
  }
  await syncDir(path.dirname(target));
}

/** Hashes a known_hosts name with a fresh salt, as `ssh-keygen -H` does. */
export function hashHostName(name: string, salt: Buffer = randomBytes(20)): string {
  const digest = createHmac("sha1", salt).update(name).digest();
  return `|1|${salt.toString("base64")}|${digest.toString("base64")}`;
}

/**
 * The error for a host key that differs from the one on file: names both fingerprints and
 * says how to fix it when the change is expected.
 */
export function hostKeyMismatchError(
  host: string,
  port: number,
  presented: HostKey,
  check: HostKeyCheck,
): CwsError {
  const name = knownHostName(host, port);
  const actual = fingerprintSha256(presented.blob);
  if (check.revoked) {
    return new CwsError(
      "HOST_KEY_MISMATCH",
      `Cannot trust ${name} as its host key ${presented.algorithm} ${actual} is marked @revoked in known_hosts: ` +
        `the server may be compromised; ask its administrator`,
      { data: { host, port, presented: actual, revoked: true } },
    );
  }
  const expected = check.knownKeys.map((key) => `${key.algorithm} ${key.fingerprint} (${key.file}:${key.line})`);
  const files = [...new Set(check.knownKeys.map((key) => key.file))];
  const removal = files.map((file) => `ssh-keygen -R '${name}' -f '${file}'`).join(" and ");
  return new CwsError(
    "HOST_KEY_MISMATCH",
    `Cannot trust ${name} as its host key changed: expected ${expected.join(", ")}, ` +
      `the server presented ${presented.algorithm} ${actual}. This may be an attack (someone in the middle) ` +
      `or a reinstalled server. If you trust the change, remove the old key with ${removal}, ` +
      `then connect again to trust the new one`,
    {
      data: {
        host,
        port,
        presented: actual,
        presentedAlgorithm: presented.algorithm,
        expected: check.knownKeys.map((key) => key.fingerprint),
      },
    },
  );
}

/**
 * The error for a host that is not in known_hosts when trust on first use is not allowed.
 * NOTE: it uses HOST_KEY_MISMATCH (data.reason "unknown") as errors.ts has no code of its own
 * for an unknown host.
 */
export function hostKeyUnknownError(host: string, port: number, presented: HostKey, knownHostsFile: string): CwsError {
  const name = knownHostName(host, port);
  const actual = fingerprintSha256(presented.blob);
  return new CwsError(
    "HOST_KEY_MISMATCH",
    `Cannot trust ${name} as its host key is not in "${knownHostsFile}": the server presented ` +
      `${presented.algorithm} ${actual}. Compare it with the server's own \`ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub\`, ` +
      `then run \`cws enroll-device\` to trust it (or connect once with \`ssh -p ${port} ${host}\`)`,
    { data: { host, port, presented: actual, presentedAlgorithm: presented.algorithm, reason: "unknown" } },
  );
}

function blobAlgorithm(blob: Buffer): string | undefined {
  if (blob.length < 4 || blob.length > MAX_KEY_BLOB_BYTES) return undefined;
  const length = blob.readUInt32BE(0);
  if (length === 0 || length > 64 || 4 + length > blob.length) return undefined;
  const name = blob.toString("latin1", 4, 4 + length);
  return /^[A-Za-z0-9@._-]+$/.test(name) ? name : undefined;
}

function hashedNameMatches(field: string, name: string): boolean {
  const parts = field.split("|");
  // "|1|salt|hash" splits into ["", "1", salt, hash].
  if (parts.length !== 4) return false;
  const salt = Buffer.from(parts[2], "base64");
  const expected = Buffer.from(parts[3], "base64");
  if (salt.length === 0 || expected.length !== 20) return false;
  const actual = createHmac("sha1", salt).update(name).digest();
  return timingSafeEqual(actual, expected);
}

/** OpenSSH's match_pattern(): `*` any run, `?` one character, nothing else special. */
function globMatches(pattern: string, text: string): boolean {
  let p = 0;
  let t = 0;
  let starP = -1;
  let starT = 0;
  while (t < text.length) {
    if (p < pattern.length && (pattern[p] === "?" || pattern[p] === text[t])) {
      p++;
      t++;
    } else if (p < pattern.length && pattern[p] === "*") {
      starP = p++;
      starT = t;
    } else if (starP !== -1) {
      p = starP + 1;
      t = ++starT;
    } else {
      return false;
    }
  }
  while (p < pattern.length && pattern[p] === "*") p++;
  return p === pattern.length;
}

async function readCapped(file: string): Promise<string | undefined> {
  let handle;
  try {
    handle = await open(file, "r");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new CwsError("INVALID_ARGUMENT", `Cannot read known_hosts file "${file}": ${(error as Error).message}`, {
      cause: error,
    });
  }
  try {
    const { size } = await handle.stat();
    if (size > MAX_KNOWN_HOSTS_BYTES) {
      throw new CwsError(
        "INVALID_ARGUMENT",
        `Cannot read known_hosts file "${file}" as it exceeds ${MAX_KNOWN_HOSTS_BYTES} bytes: size ${size}`,
      );
    }
    return await handle.readFile("utf8");
  } finally {
    await handle.close();
  }
}
