/**
 * Resolves a host alias the way `ssh alias` would, through the user's `~/.ssh/config`
 * (parsed by the `ssh-config` package): HostName, User, Port, IdentityFile, IdentitiesOnly,
 * UserKnownHostsFile. Explicit options (from the command line or the client's saved state)
 * win over the file, as `ssh -p/-l/-i` do.
 *
 * {@link resolveSshTarget} is pure: it takes the config text, the home dir and the local user
 * name, so tests need no files. {@link readSshConfigText} reads the file and inlines top-level
 * `Include` directives.
 *
 * Not supported, on purpose: `Match exec` (we never run shell commands found in a config
 * file), ProxyCommand/ProxyJump (the connection is a direct TCP socket), `Include` inside a
 * Host or Match block.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import fg from "fast-glob";
import SSHConfig from "ssh-config";
import { z } from "zod";
import { CwsError } from "../errors.ts";

/** What the caller knows explicitly; every field left out comes from the config file. */
export interface SshTargetOptions {
  /** The alias or host name the user typed. */
  host: string;
  port?: number;
  user?: string;
  /** Key files to try, before any from the config file (like `ssh -i`). */
  identityFiles?: string[];
  identitiesOnly?: boolean;
  /** A known_hosts file to use instead of the config's UserKnownHostsFile. */
  knownHostsPath?: string;
}

/** A fully resolved target: what to connect to, as whom, and with which files. */
export interface ResolvedSshTarget {
  /** What the user typed. */
  alias: string;
  /** The host name to connect to (HostName, or the alias itself). */
  host: string;
  port: number;
  user: string;
  /** Key files in the order to try them, `~` and `%` tokens expanded. */
  identityFiles: string[];
  /**
   * True when no key file was named anywhere and `identityFiles` holds OpenSSH's defaults,
   * which are skipped silently when they do not exist.
   */
  defaultIdentityFiles: boolean;
  identitiesOnly: boolean;
  /** known_hosts files in order; the first is where new host keys are recorded. */
  knownHostsFiles: string[];
}

export interface SshConfigContext {
  /** The text of `~/.ssh/config`, or undefined when there is none. */
  configText?: string;
  /** The local user's home dir, for `~` and `%d`. */
  homeDir: string;
  /** The local user name: the default remote user and `%u`. */
  localUser: string;
}

/** The key files OpenSSH tries when none is configured (the ones ssh2 can use). */
export const DEFAULT_IDENTITY_FILE_NAMES = ["id_rsa", "id_ecdsa", "id_ed25519"] as const;

const Port = z.coerce.number().int().min(1).max(65535);

// A host or user name that reaches a socket or a log line: no whitespace or control bytes.
const NamePart = z.string().min(1).max(255).regex(/^[^\s\x00-\x1f\x7f]+$/, "no spaces or control characters");

/**
 * Resolves `options.host` through the config text. Explicit options win.
 *
 * @throws {CwsError} INVALID_ARGUMENT when the resulting port, host or user is not valid.
 */
export function resolveSshTarget(options: SshTargetOptions, context: SshConfigContext): ResolvedSshTarget {
  const alias = options.host;
  const computed = computeConfig(alias, options.user, context.configText);

  // HostName may use %h for the alias, e.g. `HostName %h.example.org`.
  const host = expandTokens(first(computed.hostname) ?? alias, { alias, host: alias, user: "", context, port: 22 });
  const portSource = options.port ?? first(computed.port) ?? 22;
  const port = parseField(Port, portSource, `port "${portSource}" for host "${alias}"`);
  const user = parseField(NamePart, options.user ?? first(computed.user) ?? context.localUser, `user for host "${alias}"`);
  parseField(NamePart, host, `host name "${host}"`);

  const tokens = { alias, host, user, context, port };
  const configuredFiles = list(computed.identityfile).filter((file) => file.toLowerCase() !== "none");
  const explicitFiles = options.identityFiles ?? [];
  const named = [...explicitFiles, ...configuredFiles].map((file) => expandPath(file, tokens));
  const defaultIdentityFiles = named.length === 0;
  const identityFiles = defaultIdentityFiles
    ? DEFAULT_IDENTITY_FILE_NAMES.map((name) => path.join(context.homeDir, ".ssh", name))
    : [...new Set(named)];

  const identitiesOnly = options.identitiesOnly ?? yes(first(computed.identitiesonly));

  const knownHostsFiles =
    options.knownHostsPath !== undefined
      ? [expandPath(options.knownHostsPath, tokens)]
      : knownHostsFromConfig(computed.userknownhostsfile, tokens);

  return { alias, host, port, user, identityFiles, defaultIdentityFiles, identitiesOnly, knownHostsFiles };
}

/**
 * Reads `<homeDir>/.ssh/config`, inlining top-level `Include` directives (globs allowed;
 * relative paths are relative to `~/.ssh`, as in OpenSSH). Returns undefined when the file
 * does not exist.
 */
export async function readSshConfigText(homeDir: string, configPath?: string): Promise<string | undefined> {
  const file = configPath ?? path.join(homeDir, ".ssh", "config");
  const text = await readFile(file, "utf8").catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return undefined;
    throw error;
  });
  if (text === undefined) return undefined;
  return inlineIncludes(text, homeDir, 0);
}

// Deep enough for any real layout; a cycle stops here instead of looping forever.
const MAX_INCLUDE_DEPTH = 8;
// A config file is small; a huge one is a mistake (or a device file) and is refused.
const MAX_CONFIG_BYTES = 1024 * 1024;

async function inlineIncludes(text: string, homeDir: string, depth: number): Promise<string> {
  if (text.length > MAX_CONFIG_BYTES) {
    throw new CwsError("INVALID_ARGUMENT", `Cannot read ssh config as it exceeds ${MAX_CONFIG_BYTES} bytes`);
  }
  const out: string[] = [];
  let inBlock = false;
  for (const line of text.split(/\r?\n/)) {
    const match = /^\s*include\s*[=\s]\s*(.+?)\s*$/i.exec(line);
    if (/^\s*(host|match)\b/i.test(line)) inBlock = true;
    if (match === null || inBlock || depth >= MAX_INCLUDE_DEPTH) {
      out.push(line);
      continue;
    }
    for (const pattern of splitWords(match[1])) {
      const expanded = pattern.startsWith("~") ? path.join(homeDir, pattern.slice(1)) : pattern;
      const absolute = path.isAbsolute(expanded) ? expanded : path.join(homeDir, ".ssh", expanded);
      // Only the last segment may hold wildcards (`Include config.d/*`), which covers real use.
      const files = /[*?[]/.test(path.basename(absolute))
        ? (await fg(`${fg.convertPathToPattern(path.dirname(absolute))}/${path.basename(absolute)}`, { onlyFiles: true, dot: true })).sort()
        : [absolute];
      for (const file of files) {
        const included = await readFile(file, "utf8").catch(() => undefined);
        if (included !== undefined) out.push(await inlineIncludes(included, homeDir, depth + 1));
      }
    }
  }
  return out.join("\n");
}

type Computed = Record<string, string | string[]>;

function computeConfig(alias: string, user: string | undefined, configText: string | undefined): Computed {
  if (configText === undefined || configText.trim() === "") return {};
  try {
    const config = SSHConfig.parse(configText);
    // Match exec would run shell commands from the file; we never do that.
    const query = user === undefined ? { Host: alias } : { Host: alias, User: user };
    return config.compute(query, { ignoreCase: true, matchExec: false });
  } catch (error) {
    throw new CwsError("INVALID_ARGUMENT", `Cannot parse ssh config: ${(error as Error).message}`, { cause: error });
  }
}

interface Tokens {
  alias: string;
  host: string;
  user: string;
  port: number;
  context: SshConfigContext;
}

/** Expands `~` at the start and OpenSSH's `%` tokens (ssh_config(5) "TOKENS"). */
function expandPath(value: string, tokens: Tokens): string {
  let expanded = expandTokens(value, tokens);
  if (expanded === "~" || expanded.startsWith("~/") || expanded.startsWith("~\\")) {
    expanded = path.join(tokens.context.homeDir, expanded.slice(1));
  }
  return path.normalize(expanded);
}

function expandTokens(value: string, tokens: Tokens): string {
  return value.replace(/%(.)/g, (whole, letter: string) => {
    switch (letter) {
      case "%":
        return "%";
      case "d":
        return tokens.context.homeDir;
      case "u":
        return tokens.context.localUser;
      case "h":
        return tokens.host;
      case "n":
        return tokens.alias;
      case "r":
        return tokens.user;
      case "p":
        return String(tokens.port);
      default:
        // Unknown tokens stay as typed; OpenSSH would refuse, but a literal is more useful
        // in the error the file open produces than a guess here.
        return whole;
    }
  });
}

function knownHostsFromConfig(value: string | string[] | undefined, tokens: Tokens): string[] {
  // The parser already splits a multi-value directive (honouring quotes) into an array.
  const words = (typeof value === "string" ? splitWords(value) : list(value)).filter((word) => word.toLowerCase() !== "none");
  const files = words.length > 0 ? words : ["~/.ssh/known_hosts", "~/.ssh/known_hosts2"];
  return files.map((file) => expandPath(file, tokens));
}

function splitWords(value: string): string[] {
  const words: string[] = [];
  for (const match of value.matchAll(/"([^"]*)"|(\S+)/g)) words.push(match[1] ?? match[2]);
  return words;
}

function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function list(value: string | string[] | undefined): string[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? value : [value];
}

function yes(value: string | undefined): boolean {
  return value !== undefined && /^(yes|true)$/i.test(value);
}

function parseField<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    throw new CwsError("INVALID_ARGUMENT", `Cannot use ${what}: ${parsed.error.issues[0]?.message ?? "invalid"}`, {
      data: { value: String(value) },
    });
  }
  return parsed.data;
}
