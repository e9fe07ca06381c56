/**
 * Builds ssh2's `authHandler`: the ordered list of credentials offered to the server, tried
 * one after another until one is accepted, in the order OpenSSH uses:
 *
 *   1. `none`, which costs one round trip and tells which methods the server accepts;
 *   2. publickey through an agent: `SSH_AUTH_SOCK`; on Windows, when that is unset, the
 *      Windows OpenSSH agent pipe, then Pageant. Agent keys that belong to a configured key
 *      file go first; with IdentitiesOnly only those are offered;
 *   3. publickey from key files not already offered through an agent. An encrypted key asks
 *      for its passphrase through a callback (never argv), at most three times;
 *   4. keyboard-interactive, then password, only when a password was given (enrollment).
 *
 * Everything tried is recorded, so a refusal becomes an AUTH_FAILED error that lists what
 * was offered and what the server accepts.
 */
import { readFile } from "node:fs/promises";
import ssh2 from "ssh2";
import type {
  AnyAuthMethod,
  AuthenticationType,
  AuthHandlerMiddleware,
  BaseAgent,
  KeyboardInteractiveAuthMethod,
  ParsedKey,
} from "ssh2";
import { CwsError } from "../errors.ts";

/** The Windows OpenSSH agent's named pipe (the `ssh-agent` service). */
export const WINDOWS_OPENSSH_AGENT_PIPE = "\\\\.\\pipe\\openssh-ssh-agent";

/** What ssh2's `agent` option takes to talk to Pageant. */
export const PAGEANT = "pageant";

export interface SshAuthOptions {
  user: string;
  /** Key files in the order to try them. */
  identityFiles: readonly string[];
  /**
   * The files are OpenSSH's defaults rather than named by the user: a missing one is not
   * worth mentioning.
   *
   * @default {false}
   */
  defaultIdentityFiles?: boolean;
  /**
   * Offer only keys from `identityFiles`, also through agents (OpenSSH's IdentitiesOnly).
   *
   * @default {false}
   */
  identitiesOnly?: boolean;
  /**
   * Agents to ask: socket paths, Windows pipes or {@link PAGEANT}; `false` for none.
   *
   * @default {defaultAgents()}
   */
  agents?: readonly string[] | false;
  /**
   * A password, used only at enrollment to install the device's key: the value, or a
   * function that asks for it only once every key was refused (as ssh asks after its keys).
   * Resolving undefined skips the password.
   */
  password?: string | (() => Promise<string | undefined>);
  /**
   * Asks the user for a key file's passphrase; resolves undefined when they decline.
   * `attempt` starts at 1. Without it, encrypted key files are skipped.
   */
  passphrase?: (keyPath: string, attempt: number) => Promise<string | undefined>;
  /** Told when a prompt starts and ends, so connection timeouts can pause meanwhile. */
  onInteraction?: (waitingForUser: boolean) => void;
  /**
   * Milliseconds to wait for an agent to list its keys.
   *
   * @default {5000}
   */
  agentTimeoutMs?: number;
}

/** The handler for ssh2 plus what it tried, for errors. */
export interface SshAuth {
  authHandler: AuthHandlerMiddleware;
  /** One line per credential source, e.g. `key ~/.ssh/id_ed25519: refused by the server`. */
  attempts(): string[];
  /** The methods the server said it accepts, once known. */
  serverMethods(): string[] | undefined;
  /** The kind of credential the server accepted (`publickey`, `agent`, `password`, …), once ready. */
  acceptedMethod(): AuthenticationType | undefined;
  /** The AUTH_FAILED error to show when every credential was refused. */
  failure(host: string, port: number, reason?: string): CwsError;
}

/** The agents OpenSSH would ask on this platform, in order. */
export function defaultAgents(env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): string[] {
  const agents: string[] = [];
  const socket = env.SSH_AUTH_SOCK;
  if (socket !== undefined && socket !== "") agents.push(socket);
  if (platform === "win32") {
    if (agents.length === 0) agents.push(WINDOWS_OPENSSH_AGENT_PIPE);
    agents.push(PAGEANT);
  }
  return agents;
}

/** How often a wrong passphrase may be retyped, as OpenSSH's NumberOfPasswordPrompts. */
const PASSPHRASE_ATTEMPTS = 3;
// A private key file is a few KiB; anything far larger is not one.
const MAX_KEY_FILE_BYTES = 1024 * 1024;

/**
 * One credential source and its outcome. An offered credential is recorded as refused up
 * front: the record is only ever shown when authentication failed as a whole.
 */
interface AttemptRecord {
  label: string;
  status: string;
}

/** Creates the handler; nothing is read or asked until ssh2 starts authenticating. */
export function createSshAuth(options: SshAuthOptions): SshAuth {
  const {
    user,
    identityFiles,
    defaultIdentityFiles = false,
    identitiesOnly = false,
    agents = defaultAgents(),
    password,
    passphrase,
    onInteraction,
    agentTimeoutMs = 5_000,
  } = options;

  const records: AttemptRecord[] = [];
  let methods: string[] | undefined;
  let generator: AsyncGenerator<AnyAuthMethod, void, void> | undefined;
  // ssh2 asks for the next credential only after a refusal, so the last one offered is the
  // one the server accepted once the connection is ready.
  let lastOffered: AuthenticationType | undefined;

  const record = (label: string, status: string): void => {
    records.push({ label, status });
  };

  const allowed = (method: AuthenticationType): boolean => methods === undefined || methods.includes(method);

  async function* candidates(): AsyncGenerator<AnyAuthMethod, void, void> {
    // `none` learns the server's methods; OpenSSH sends it first too.
    yield { type: "none", username: user };

    const files = await Promise.all(identityFiles.map((file) => inspectKeyFile(file)));
    const offered: Buffer[] = [];

    for (const agentPath of agents === false ? [] : agents) {
      if (!allowed("publickey")) break;
      const label = agentLabel(agentPath);
      let keys: ParsedKey[];
      let agent: BaseAgent;
      try {
        agent = ssh2.createAgent(agentPath);
        keys = await listAgentKeys(agent, agentTimeoutMs);
      } catch (error) {
        record(label, `not reachable (${(error as Error).message})`);
        continue;
      }
      const fileBlobs = files.map((file) => file.publicBlob).filter((blob) => blob !== undefined);
      const ordered = orderAgentKeys(keys, fileBlobs, identitiesOnly).filter(
        (key) => !offered.some((blob) => blob.equals(key.getPublicSSH())),
      );
      if (ordered.length === 0) {
        record(label, keys.length === 0 ? "no keys loaded" : "no key of the configured key files loaded");
        continue;
      }
      offered.push(...ordered.map((key) => key.getPublicSSH()));
      record(label, `${ordered.length} key(s) offered, refused by the server`);
      yield { type: "agent", username: user, agent: new FixedKeysAgent(agent, ordered) };
    }

    for (const file of files) {
      if (!allowed("publickey")) break;
      if (file.missing) {
        if (!defaultIdentityFiles) record(`key ${file.path}`, "not found");
        continue;
      }
      if (file.error !== undefined) {
        record(`key ${file.path}`, file.error);
        continue;
      }
      if (file.publicBlob !== undefined && offered.some((blob) => blob.equals(file.publicBlob!))) continue;
      const key = await loadPrivateKey(file, passphrase, onInteraction);
      if (typeof key === "string") {
        record(`key ${file.path}`, key);
        continue;
      }
      offered.push(key.getPublicSSH());
      record(`key ${file.path}`, "refused by the server");
      yield { type: "publickey", username: user, key };
    }

    if (password !== undefined && (allowed("keyboard-interactive") || allowed("password"))) {
      let value: string | undefined;
      if (typeof password === "string") value = password;
      else {
        onInteraction?.(true);
        try {
          value = await password();
        } finally {
          onInteraction?.(false);
        }
      }
      if (value === undefined || value === "") {
        record("password", "not given");
        return;
      }
      if (allowed("keyboard-interactive")) {
        record("password (keyboard-interactive)", "refused by the server");
        yield keyboardInteractive(user, value);
      }
      if (allowed("password")) {
        record("password", "refused by the server");
        yield { type: "password", username: user, password: value };
      }
    }
  }

  const authHandler: AuthHandlerMiddleware = (methodsLeft, _partialSuccess, next) => {
    if (Array.isArray(methodsLeft)) methods = [...methodsLeft];
    generator ??= candidates();
    void generator.next().then(
      (step) => {
        if (step.done !== true) lastOffered = step.value.type;
        next(step.done === true ? (false as unknown as AnyAuthMethod) : step.value);
      },
      (error: unknown) => {
        record("authentication", `failed: ${(error as Error).message}`);
        next(false as unknown as AnyAuthMethod);
      },
    );
  };

  return {
    authHandler,
    attempts: () => records.map((entry) => `${entry.label}: ${entry.status}`),
    serverMethods: () => (methods === undefined ? undefined : [...methods]),
    acceptedMethod: () => lastOffered,
    failure(host, port, reason) {
      const tried = records.length === 0 ? "nothing" : records.map((entry) => `${entry.label}: ${entry.status}`).join("; ");
      const accepts = methods === undefined ? "" : ` The server accepts: ${methods.join(", ") || "nothing"}.`;
      const because = reason === undefined ? "" : ` (${reason})`;
      return new CwsError(
        "AUTH_FAILED",
        `Cannot log in to ${user}@${host}:${port} as the server refused every credential${because}. ` +
          `Tried: ${tried}.${accepts} Make sure the device's public key is in ~/.ssh/authorized_keys of ` +
          `"${user}" on the server (enrollment installs it when you log in once with the account's password), or name the right key with --identity`,
        { data: { host, port, user, tried: records.map((entry) => `${entry.label}: ${entry.status}`), serverMethods: methods } },
      );
    },
  };
}

/** An agent that offers a fixed, ordered subset of another agent's keys and signs through it. */
class FixedKeysAgent extends ssh2.BaseAgent {
  readonly #inner: BaseAgent;
  readonly #keys: ParsedKey[];

  constructor(inner: BaseAgent, keys: ParsedKey[]) {
    super();
    this.#inner = inner;
    this.#keys = keys;
  }

  getIdentities(cb: (error: Error | undefined, keys?: ParsedKey[]) => void): void {
    cb(undefined, this.#keys);
  }

  sign(pubKey: ParsedKey, data: Buffer, options: unknown, cb?: unknown): void {
    (this.#inner.sign as (...args: unknown[]) => void)(pubKey, data, options, cb);
  }
}

function listAgentKeys(agent: BaseAgent, timeoutMs: number): Promise<ParsedKey[]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    agent.getIdentities((error, keys) => {
      clearTimeout(timer);
      if (error) return reject(error);
      const parsed: ParsedKey[] = [];
      for (const key of keys ?? []) {
        const result = ssh2.utils.parseKey(key as ParsedKey);
        if (!(result instanceof Error)) parsed.push(result);
      }
      resolve(parsed);
    });
  });
}

/** Agent keys of the configured files first (in file order), then the rest unless IdentitiesOnly. */
function orderAgentKeys(keys: ParsedKey[], fileBlobs: Buffer[], identitiesOnly: boolean): ParsedKey[] {
  const ofFiles: ParsedKey[] = [];
  for (const blob of fileBlobs) {
    const key = keys.find((candidate) => candidate.getPublicSSH().equals(blob));
    if (key !== undefined && !ofFiles.includes(key)) ofFiles.push(key);
  }
  if (identitiesOnly) return ofFiles;
  return [...ofFiles, ...keys.filter((key) => !ofFiles.includes(key))];
}

interface KeyFileInfo {
  path: string;
  missing: boolean;
  data?: Buffer;
  /** The public key blob, known without the passphrase when possible. */
  publicBlob?: Buffer;
  encrypted: boolean;
  error?: string;
}

async function inspectKeyFile(file: string): Promise<KeyFileInfo> {
  let data: Buffer;
  try {
    data = await readFile(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return { path: file, missing: true, encrypted: false };
    return { path: file, missing: false, encrypted: false, error: `cannot be read (${code ?? (error as Error).message})` };
  }
  if (data.length > MAX_KEY_FILE_BYTES) {
    return { path: file, missing: false, encrypted: false, error: "is too large to be a private key" };
  }
  const parsed = ssh2.utils.parseKey(data);
  if (!(parsed instanceof Error)) {
    const key = Array.isArray(parsed) ? parsed[0] : parsed;
    if (!key.isPrivateKey()) return { path: file, missing: false, encrypted: false, error: "is a public key, not a private key" };
    return { path: file, missing: false, data, encrypted: false, publicBlob: key.getPublicSSH() };
  }
  if (!isEncryptedKeyError(parsed)) {
    return { path: file, missing: false, encrypted: false, error: `cannot be used (${parsed.message})` };
  }
  const publicBlob = (await publicBlobFromPubFile(file)) ?? openSshPublicBlob(data);
  return { path: file, missing: false, data, encrypted: true, publicBlob };
}

/** Decrypts a key file, asking for its passphrase; returns a reason string when skipped. */
async function loadPrivateKey(
  file: KeyFileInfo,
  ask: SshAuthOptions["passphrase"],
  onInteraction: SshAuthOptions["onInteraction"],
): Promise<ParsedKey | string> {
  const data = file.data!;
  if (!file.encrypted) return first(ssh2.utils.parseKey(data) as ParsedKey | ParsedKey[]);
  if (ask === undefined) return "encrypted, and no passphrase prompt is available (load it into ssh-agent)";
  for (let attempt = 1; attempt <= PASSPHRASE_ATTEMPTS; attempt++) {
    onInteraction?.(true);
    let answer: string | undefined;
    try {
      answer = await ask(file.path, attempt);
    } finally {
      onInteraction?.(false);
    }
    if (answer === undefined || answer === "") return "encrypted, passphrase not given";
    const parsed = ssh2.utils.parseKey(data, answer);
    if (!(parsed instanceof Error)) return first(parsed);
    if (!/passphrase/i.test(parsed.message)) return `cannot be used (${parsed.message})`;
  }
  return `encrypted, wrong passphrase ${PASSPHRASE_ATTEMPTS} times`;
}

function first(key: ParsedKey | ParsedKey[]): ParsedKey {
  // OpenSSH's file format holds one key in practice; ssh2 returns an array for it.
  return Array.isArray(key) ? key[0] : key;
}

function isEncryptedKeyError(error: Error): boolean {
  return /no passphrase given/i.test(error.message);
}

async function publicBlobFromPubFile(file: string): Promise<Buffer | undefined> {
  const text = await readFile(`${file}.pub`, "utf8").catch(() => undefined);
  if (text === undefined || text.length > MAX_KEY_FILE_BYTES) return undefined;
  const parsed = ssh2.utils.parseKey(text);
  if (parsed instanceof Error) return undefined;
  return first(parsed).getPublicSSH();
}

/**
 * Reads the public key stored in clear in the header of an OpenSSH-format private key
 * ("openssh-key-v1": magic, cipher, kdf, kdf options, key count, public keys), so an
 * encrypted key can be matched against agent keys without asking for its passphrase.
 */
export function openSshPublicBlob(data: Buffer): Buffer | undefined {
  const text = data.toString("latin1");
  const match = /-----BEGIN OPENSSH PRIVATE KEY-----([\s\S]+?)-----END OPENSSH PRIVATE KEY-----/.exec(text);
  if (match === null) return undefined;
  const body = Buffer.from(match[1].replace(/\s+/g, ""), "base64");
  const magic = "openssh-key-v1\0";
  if (body.toString("latin1", 0, magic.length) !== magic) return undefined;
  let offset = magic.length;
  const readString = (): Buffer | undefined => {
    if (offset + 4 > body.length) return undefined;
    const length = body.readUInt32BE(offset);
    if (offset + 4 + length > body.length) return undefined;
    const value = body.subarray(offset + 4, offset + 4 + length);
    offset += 4 + length;
    return value;
  };
  for (let field = 0; field < 3; field++) if (readString() === undefined) return undefined;
  if (offset + 4 > body.length || body.readUInt32BE(offset) < 1) return undefined;
  offset += 4;
  const blob = readString();
  return blob === undefined || blob.length === 0 ? undefined : Buffer.from(blob);
}

function keyboardInteractive(user: string, password: string): KeyboardInteractiveAuthMethod {
  return {
    type: "keyboard-interactive",
    username: user,
    // Answers only the usual single hidden "Password:" prompt; anything else (an OTP, a
    // second factor) is not ours to answer, and an empty reply lets the server refuse.
    prompt: (_name, _instructions, _lang, prompts, finish) => {
      if (prompts.length === 1 && prompts[0].echo !== true) finish([password]);
      else finish(prompts.map(() => ""));
    },
  };
}

function agentLabel(agentPath: string): string {
  if (agentPath === PAGEANT) return "Pageant";
  if (agentPath === WINDOWS_OPENSSH_AGENT_PIPE) return "Windows OpenSSH agent";
  return `ssh-agent at ${agentPath}`;
}
