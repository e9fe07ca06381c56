/**
 * Finds secrets in text before it is published: token formats of the common providers, private
 * key blocks, high-entropy values assigned to secret-looking names, and absolute paths into a
 * person's home folder (they name the account, and often the machine's layout).
 *
 * A finding names the file, line, kind and a redacted excerpt (never the secret itself), so
 * the list can be shown, logged or pasted without leaking what it found. A line that holds a
 * deliberate example can carry the marker `cws-export: allow` to be skipped.
 */

/** One thing that must not be published. */
export interface Finding {
  /** The file, relative to the tree that was scanned, `/`-separated. */
  path: string;
  /** 1-based line number. */
  line: number;
  /** What was found, e.g. "github-token" or "private-key". */
  kind: string;
  /** The match with all but its first characters replaced, e.g. "ghp_…(40 chars)". */
  redacted: string;
}

interface Rule {
  kind: string;
  pattern: RegExp;
  /** The capture group holding the secret (default: the whole match). */
  group?: number;
  /** Show the whole match: it names what was found without being secret (a key block's header). */
  showMatch?: boolean;
  /** Further check on the secret; false drops the match. `after` is the rest of the text after the match. */
  accept?: (secret: string, after: string) => boolean;
}

/** Home folder names that stand for "some user" in docs and tests, never a real account. */
const PLACEHOLDER_USERS = new Set([
  "user", "username", "you", "your-name", "yourname", "name", "me", "someone", "example", "test", "tester",
  "ada", "alice", "bob", "carol", "dave", "bench", "runner", "cws", "dev", "public", "default", "shared", "all users",
]);

function isPlaceholderUser(name: string): boolean {
  return name.length <= 2 || PLACEHOLDER_USERS.has(name.toLowerCase()) || /[<>${}%*]/.test(name);
}

/** Bits of Shannon entropy per character. */
export function entropy(text: string): number {
  const counts = new Map<string, number>();
  for (const char of text) counts.set(char, (counts.get(char) ?? 0) + 1);
  let bits = 0;
  for (const count of counts.values()) {
    const p = count / text.length;
    bits -= p * Math.log2(p);
  }
  return bits;
}

/** Looks random: long, high entropy, mixes letters and digits, not a ${VAR} or <placeholder>. */
function looksRandom(value: string): boolean {
  return value.length >= 16 && entropy(value) >= 3.5 && /[0-9]/.test(value) && /[A-Za-z]/.test(value) && !/^(x+|\*+)$/i.test(value);
}

const RULES: readonly Rule[] = [
  { kind: "github-token", pattern: /\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,}\b/g },
  { kind: "github-token", pattern: /\bgithub_pat_[A-Za-z0-9_]{40,}\b/g },
  { kind: "npm-token", pattern: /\bnpm_[A-Za-z0-9]{36}\b/g },
  // An .npmrc credential line: `//registry/:_authToken=…` (a ${VAR} reference is fine).
  { kind: "npm-auth-token", pattern: /_auth(?:Token)?\s*=\s*["']?([A-Za-z0-9._~+/=-]{8,})(?=["'\s]|$)/g, group: 1 },
  { kind: "aws-access-key", pattern: /\b(?:AKIA|ASIA)[0-9A-Z]{16}\b/g },
  { kind: "slack-token", pattern: /\bxox[abposr]-[A-Za-z0-9-]{10,}/g },
  { kind: "openai-key", pattern: /\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}/g, accept: (secret) => looksRandom(secret.replace(/^sk-(proj-|svcacct-|admin-)?/, "")) },
  { kind: "google-api-key", pattern: /\bAIza[0-9A-Za-z_-]{35}\b/g },
  // A key block, not code that parses one: the header is followed (on its line after a literal
  // "\n" as in JSON, or on the next line) by base64 or the headers of an encrypted PEM key.
  {
    kind: "private-key",
    pattern: /-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----/g,
    showMatch: true,
    accept: (_secret, after) => /^(?:\\r)?(?:\\n|\s*\n)\s*(?:[A-Za-z0-9+/=]{16,}|Proc-Type:|Comment:)/.test(after),
  },
  {
    kind: "high-entropy-assignment",
    pattern: /\b[A-Za-z0-9_.-]*(?:password|passwd|passphrase|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credential|auth)[A-Za-z0-9_]*["']?\s*[:=]\s*["']([A-Za-z0-9+/=_.~-]{16,})["']/gi,
    group: 1,
    accept: (secret) => looksRandom(secret),
  },
  {
    kind: "home-path",
    pattern: /(?:^|[^A-Za-z0-9_])(?:\/home\/|\/Users\/)([A-Za-z0-9._-]+)\//g,
    group: 1,
    accept: (user) => !isPlaceholderUser(user),
  },
  {
    kind: "home-path",
    pattern: /\b[A-Za-z]:(?:\\\\|\\|\/)Users(?:\\\\|\\|\/)([A-Za-z0-9._ -]+?)(?:\\\\|\\|\/)/gi,
    group: 1,
    accept: (user) => !isPlaceholderUser(user),
  },
];

const ALLOW_MARKER = "cws-export: allow";

/** Shows the first characters of a secret and its length, never the rest. */
export function redact(secret: string): string {
  const shown = secret.length > 12 ? 4 : Math.min(2, secret.length);
  return `${secret.slice(0, shown)}…(${secret.length} chars)`;
}

/** Every finding in one file's text. `extra` are literal strings that must not appear (e.g. this machine's home path). */
export function scanText(path: string, text: string, extra: readonly string[] = []): Finding[] {
  const findings: Finding[] = [];
  const lines = text.split("\n");
  for (const [index, line] of lines.entries()) {
    if (line.includes(ALLOW_MARKER)) continue;
    // One secret is reported once, by the first (most specific) rule that finds it.
    const seen = new Set<string>();
    for (const rule of RULES) {
      for (const match of line.matchAll(rule.pattern)) {
        const secret = match[rule.group ?? 0] ?? match[0];
        const after = `${line.slice(match.index + match[0].length)}\n${lines[index + 1] ?? ""}`;
        if (rule.accept && !rule.accept(secret, after)) continue;
        if ([...seen].some((known) => known.includes(secret) || secret.includes(known))) continue;
        seen.add(secret);
        findings.push({ path, line: index + 1, kind: rule.kind, redacted: rule.showMatch ? match[0] : redact(secret) });
      }
    }
    for (const literal of extra) {
      if (literal && line.includes(literal)) findings.push({ path, line: index + 1, kind: "this-machine", redacted: redact(literal) });
    }
  }
  return findings;
}

/** Formats findings one per line: `file:line  kind  redacted`. */
export function formatFindings(findings: readonly Finding[]): string {
  return findings.map((f) => `  ${f.path}:${f.line}  ${f.kind}  ${f.redacted}`).join("\n");
}
