/**
 * Codex rollouts (one JSONL transcript per thread) made portable between devices whose
 * superproject lives at different absolute paths.
 *
 * The server keeps each rollout in a *normalized* form: inside `session_meta.payload.cwd`,
 * `turn_context.payload.cwd` and `turn_context.payload.sandbox_policy.writable_roots[]` the
 * device's superproject root is replaced by the placeholder `${CWS_ROOT}`, followed by the
 * rest of the path with `/` separators. Each device *materializes* it with its own root in
 * its native form. Everything else is passed through byte for byte: we never re-serialize a
 * line, because Codex's serde output and `JSON.stringify` differ in details (escapes of `/`,
 * non-ASCII, `\u` forms, key order after a round trip), and a rollout that changed under
 * Codex's feet would look like a divergent copy on the next sync.
 *
 * How a root is recognised and written back (the "spelling" rules):
 *
 * - The canonical spelling of a root is the device's root as configured, with native
 *   separators and without trailing separators (`C:\Users\a\proj`, `/home/b/work/proj`).
 * - A path value whose leading part is that spelling, byte for byte after JSON decoding,
 *   becomes `${CWS_ROOT}` + suffix.
 * - A path value that is inside the root only after folding (Windows drive-letter or other
 *   case, the `\\?\` prefix, `/` used as separator in the root part, doubled separators) keeps
 *   its original root part as a hint: `${CWS_ROOT:d:\Projects\X}/sub`. VS Code on Windows
 *   often records `d:\…` while the user configured `D:\…`, and without the hint those threads
 *   would either stay unportable or come back with different bytes on the device that wrote
 *   them. Materializing uses the hint only when it denotes the device's own root (so the
 *   writing device gets its exact bytes back); every other device writes its own root.
 * - Every rewrite is verified: a value is normalized only if materializing it on the same
 *   device gives back the exact original JSON token. Values that cannot round-trip (a `/` in
 *   a Windows suffix, a `\` in a POSIX suffix, a `}` in a hint, unusual escapes) are left
 *   untouched; they stay device-specific but are never corrupted.
 * - Hinted values are stable only on devices that agree with the hint; another device that
 *   materializes and re-normalizes writes the plain placeholder. `normalizeRolloutExtension`
 *   therefore reuses the server's normalized lines for the part a device already had, and
 *   normalizes only what the device appended.
 *
 * All functions take the text as a string or as bytes and give back the same kind. The byte
 * form is the one to use for files: a line that is not valid UTF-8 (a torn final write) is
 * passed through untouched instead of being "repaired" by a decoder.
 */
import { z } from "zod";
import { CwsError } from "../errors.ts";
import { comparablePath, isAbsoluteFor, type PathPlatform } from "./codex-paths.ts";

/** The separator style of the device whose root is applied. */
export type PathStyle = "windows" | "posix";

/** Stands for the device's superproject root inside normalized rollouts. */
export const ROOT_PLACEHOLDER = "${CWS_ROOT}";

/** The kind of text a caller passed in, and gets back. */
export type RolloutText = string | Uint8Array;

// ---- line plumbing ---------------------------------------------------------------------

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true });
const lenientDecoder = new TextDecoder("utf-8");

/**
 * Applies `rewrite` to every line that contains one of `needles` and copies all other bytes
 * unchanged. The needles are cheap evidence that a line may hold a value to rewrite (the
 * root's last folder name when normalizing, the placeholder when materializing), so the
 * bulk of a rollout, model output that never mentions the root, is neither decoded nor
 * parsed. `rewrite` gets the line without its `\n` (a `\r` before it stays part of the line,
 * and is JSON whitespace) and returns the new line or null to keep it.
 */
function mapCandidateLines(input: string, needles: readonly string[], rewrite: (line: string) => string | null): string;
function mapCandidateLines(input: Uint8Array, needles: readonly string[], rewrite: (line: string) => string | null): Uint8Array;
function mapCandidateLines(input: RolloutText, needles: readonly string[], rewrite: (line: string) => string | null): RolloutText;
function mapCandidateLines(input: RolloutText, needles: readonly string[], rewrite: (line: string) => string | null): RolloutText {
  if (typeof input === "string") {
    const parts: string[] = [];
    let copiedUpTo = 0;
    let pos = 0;
    while (pos < input.length) {
      const nl = input.indexOf("\n", pos);
      const end = nl === -1 ? input.length : nl;
      const line = input.slice(pos, end);
      if (needles.some((n) => line.includes(n))) {
        const replaced = rewrite(line);
        if (replaced !== null && replaced !== line) {
          parts.push(input.slice(copiedUpTo, pos), replaced);
          copiedUpTo = end;
        }
      }
      pos = end + 1;
    }
    if (parts.length === 0) return input;
    parts.push(input.slice(copiedUpTo));
    return parts.join("");
  }

  // Bytes: find needles with one forward search each (not one per line, which would be
  // quadratic on big files with rare candidates), and decode only candidate lines.
  const needleBytes = needles.map((n) => Buffer.from(n));
  const buf = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  const nextAt = needleBytes.map(() => -2);
  const parts: Uint8Array[] = [];
  let copiedUpTo = 0;
  let pos = 0;
  while (pos < buf.length) {
    const nl = buf.indexOf(0x0a, pos);
    const end = nl === -1 ? buf.length : nl;
    let candidate = false;
    for (let i = 0; i < needleBytes.length; i++) {
      if (nextAt[i] !== -1 && nextAt[i] < pos) nextAt[i] = buf.indexOf(needleBytes[i], pos);
      if (nextAt[i] !== -1 && nextAt[i] + needleBytes[i].length <= end) candidate = true;
    }
    if (candidate) {
      let line: string | null = null;
      try {
        line = strictDecoder.decode(input.subarray(pos, end));
      } catch {
        line = null; // not UTF-8: Codex did not write it whole, so it stays as it is
      }
      const replaced = line === null ? null : rewrite(line);
      if (replaced !== null && replaced !== line) {
        parts.push(input.subarray(copiedUpTo, pos), encoder.encode(replaced));
        copiedUpTo = end;
      }
    }
    pos = end + 1;
  }
  if (parts.length === 0) return input;
  parts.push(input.subarray(copiedUpTo));
  return concatBytes(parts);
}

function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const p of parts) total += p.length;
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// ---- locating string tokens in a raw line ----------------------------------------------

type JsonPath = readonly (string | number)[];

interface StringSpan {
  path: JsonPath;
  /** Offsets of the whole token in the line, quotes included. */
  start: number;
  end: number;
}

// Deeper nesting than this is not something Codex writes; such a line is left untouched
// rather than risking the stack.
const MAX_SCAN_DEPTH = 128;

class ScanError extends Error {}

/**
 * Walks one JSON text and reports the exact source spans of the string values whose path
 * `want` accepts. This is what lets us replace a value in place without re-serializing the
 * line. It is a strict RFC 8259 scanner; anything it rejects makes the caller keep the line.
 */
function scanStrings(text: string, want: (path: JsonPath) => boolean): StringSpan[] | null {
  const spans: StringSpan[] = [];
  const path: (string | number)[] = [];
  let i = 0;

  const ws = (): void => {
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++;
      else break;
    }
  };
  const stringToken = (): number => {
    // Returns the end offset of the string starting at i (which is a quote).
    let j = i + 1;
    for (;;) {
      if (j >= text.length) throw new ScanError("unterminated string");
      const c = text.charCodeAt(j);
      if (c === 0x22) return j + 1;
      if (c < 0x20) throw new ScanError("control character in string");
      if (c === 0x5c) {
        const e = text[j + 1];
        if (e === "u") {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(j + 2, j + 6))) throw new ScanError("bad \\u escape");
          j += 6;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) j += 2;
        else throw new ScanError("bad escape");
      } else j++;
    }
  };
  const number = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
  const value = (depth: number): void => {
    if (depth > MAX_SCAN_DEPTH) throw new ScanError("too deep");
    ws();
    const c = text[i];
    if (c === '"') {
      const end = stringToken();
      if (want(path)) spans.push({ path: [...path], start: i, end });
      i = end;
    } else if (c === "{") {
      i++;
      ws();
      if (text[i] === "}") {
        i++;
        return;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') throw new ScanError("expected key");
        const end = stringToken();
        const raw = text.slice(i + 1, end - 1);
        const key = raw.includes("\\") ? (JSON.parse(text.slice(i, end)) as string) : raw;
        i = end;
        ws();
        if (text[i] !== ":") throw new ScanError("expected colon");
        i++;
        path.push(key);
        value(depth + 1);
        path.pop();
        ws();
        if (text[i] === ",") i++;
        else if (text[i] === "}") {
          i++;
          return;
        } else throw new ScanError("expected , or }");
      }
    } else if (c === "[") {
      i++;
      ws();
      if (text[i] === "]") {
        i++;
        return;
      }
      for (let index = 0; ; index++) {
        path.push(index);
        value(depth + 1);
        path.pop();
        ws();
        if (text[i] === ",") i++;
        else if (text[i] === "]") {
          i++;
          return;
        } else throw new ScanError("expected , or ]");
      }
    } else if (text.startsWith("true", i)) i += 4;
    else if (text.startsWith("false", i)) i += 5;
    else if (text.startsWith("null", i)) i += 4;
    else {
      number.lastIndex = i;
      if (!number.test(text)) throw new ScanError("unexpected character");
      i = number.lastIndex;
    }
  };

  try {
    ws();
    if (text[i] !== "{") return null; // every rollout line is an object
    value(0);
    ws();
    if (i !== text.length) return null;
    return spans;
  } catch (error) {
    if (error instanceof ScanError) return null;
    throw error;
  }
}

/**
 * Replaces path-valued string tokens of one line with `replace(decodedValue, token)` (null
 * keeps a token). Every string value of the line is offered, whatever its field: the rule
 * for what is a path lies in `replace` (a value that is, as a whole, an absolute path equal
 * to or under the root), not in a list of fields, because each Codex release adds fields
 * that hold the workspace (0.169: `runtime_workspace_roots`, permission-profile entries,
 * `thread_settings_applied`, `world_state` environments). Object keys are never rewritten.
 * Returns null when the line is not a JSON object or nothing changed.
 */
function rewritePathValues(line: string, replace: (value: string, token: string) => string | null): string | null {
  const spans = scanStrings(line, () => true);
  if (spans === null) return null;
  let out = line;
  let changed = false;
  // Back to front, so earlier offsets stay valid while later tokens change length.
  for (let k = spans.length - 1; k >= 0; k--) {
    const s = spans[k];
    const token = line.slice(s.start, s.end);
    const next = replace(token.includes("\\") ? (JSON.parse(token) as string) : token.slice(1, -1), token);
    if (next === null) continue;
    // JSON.stringify escapes exactly what serde_json escapes for well-formed strings (`"`,
    // `\`, control characters, lower-case \u00xx) and leaves `/` and non-ASCII alone.
    const nextToken = JSON.stringify(next);
    if (nextToken === token) continue;
    out = out.slice(0, s.start) + nextToken + out.slice(s.end);
    changed = true;
  }
  return changed ? out : null;
}

// ---- root spelling ---------------------------------------------------------------------

interface RootRules {
  platform: PathPlatform;
  sep: "\\" | "/";
  /** The canonical spelling: native separators, no trailing separator. */
  spelling: string;
  comparable: string;
  /**
   * Text one of which every line holding a path under the root contains: the root's last
   * folder name as spelled, in lower and in upper case (Windows paths differ in case; a name
   * in mixed case that matches none of these is a documented limit), JSON-escaped.
   */
  needles: string[];
}

function rootRules(root: string, style: PathStyle): RootRules {
  if (style !== "windows" && style !== "posix") {
    throw new CwsError("INVALID_ARGUMENT", `unknown path style "${String(style)}"; use "windows" or "posix"`);
  }
  const platform: PathPlatform = style === "windows" ? "win32" : "posix";
  const sep = style === "windows" ? "\\" : "/";
  let spelling = style === "windows" ? root.replaceAll("/", "\\") : root;
  while (spelling.endsWith(sep)) spelling = spelling.slice(0, -1);
  const comparable = comparablePath(spelling, platform);
  // A filesystem root (`/`, `C:\`) as superproject root would claim every path on the device.
  const isFsRoot = comparable === "" || comparable === "/" || /^[a-z]:$/.test(comparable) || comparable === "\\\\";
  if (!isAbsoluteFor(root, platform) || isFsRoot) {
    throw new CwsError(
      "INVALID_ARGUMENT",
      `superproject root "${root}" must be an absolute ${style} path below a filesystem root`,
      { data: { root, style } },
    );
  }
  const last = spelling.slice(spelling.lastIndexOf(sep) + 1);
  const forms = platform === "win32" ? [last, last.toLowerCase(), last.toUpperCase()] : [last];
  const needles = [...new Set(forms.map((f) => JSON.stringify(f).slice(1, -1)))];
  return { platform, sep, spelling, comparable, needles };
}

const PLACEHOLDER_START = "${CWS_ROOT";
const PLACEHOLDER = /^\$\{CWS_ROOT(?::([^}]*))?\}/;

/** The normalized form of one path value, or null to keep it as it is. */
function normalizeValue(value: string, rules: RootRules): string | null {
  if (value.startsWith(PLACEHOLDER_START) && isPlaceholderValue(value)) {
    throw new CwsError(
      "INVALID_ARGUMENT",
      `a rollout path field already starts with ${ROOT_PLACEHOLDER} ("${value}"); the rollout looks normalized already, ` +
        "so materialize it before normalizing again",
      { data: { value } },
    );
  }
  // Every string of a candidate line comes here, most of them text: only absolute paths go on.
  if (!isAbsoluteFor(value, rules.platform) || value.length < rules.comparable.length) return null;
  // Most values outside the root are rejected here, before the per-separator search.
  const whole = comparablePath(value, rules.platform);
  const sepChar = rules.platform === "win32" ? "\\" : "/";
  if (whole !== rules.comparable && !whole.startsWith(rules.comparable + sepChar)) return null;
  const isSep = (ch: string): boolean => ch === "/" || (rules.platform === "win32" && ch === "\\");
  // The root part ends at a separator boundary; take the shortest prefix that denotes the root.
  let split = -1;
  for (let i = 1; i <= value.length; i++) {
    if (i < value.length && !isSep(value[i])) continue;
    if (comparablePath(value.slice(0, i), rules.platform) === rules.comparable) {
      split = i;
      break;
    }
  }
  if (split === -1) return null;
  const prefix = value.slice(0, split);
  let suffix = value.slice(split);
  if (rules.platform === "win32") suffix = suffix.replaceAll("\\", "/");
  else if (suffix.includes("\\")) return null; // a POSIX name with `\` would become a separator on Windows
  if (prefix === rules.spelling) return ROOT_PLACEHOLDER + suffix;
  if (prefix.includes("}")) return null;
  return "${CWS_ROOT:" + prefix + "}" + suffix;
}

/** True when `value` is a normalized path (the placeholder, then nothing or `/…`). */
function isPlaceholderValue(value: string): boolean {
  const m = PLACEHOLDER.exec(value);
  if (m === null) return false;
  const rest = value.slice(m[0].length);
  return rest === "" || rest.startsWith("/");
}

/** The materialized form of one path value, or null when it holds no placeholder. */
function materializeValue(value: string, rules: RootRules): string | null {
  const m = PLACEHOLDER.exec(value);
  if (m === null) return null;
  const rest = value.slice(m[0].length);
  if (rest !== "" && !rest.startsWith("/")) return null; // never produced by normalizeValue
  const hint = m[1];
  const base =
    hint !== undefined && comparablePath(hint, rules.platform) === rules.comparable ? hint : rules.spelling;
  return base + (rules.platform === "win32" ? rest.replaceAll("/", "\\") : rest);
}

// ---- public: normalize / materialize -----------------------------------------------------

/**
 * Replaces the device's superproject `root` in the root-bearing fields by `${CWS_ROOT}` (see
 * the module comment for the spelling rules). Paths outside the root, and every other byte,
 * stay as they are. Throws INVALID_ARGUMENT for a root that is not absolute in `style`, and
 * for a rollout that already contains the placeholder in such a field.
 */
export function normalizeRollout(text: string, root: string, style: PathStyle): string;
export function normalizeRollout(text: Uint8Array, root: string, style: PathStyle): Uint8Array;
export function normalizeRollout(text: RolloutText, root: string, style: PathStyle): RolloutText;
export function normalizeRollout(text: RolloutText, root: string, style: PathStyle): RolloutText {
  const rules = rootRules(root, style);
  // The placeholder is a needle too: a value that already holds it must be refused, or the
  // device would get a path back where Codex wrote the placeholder's text.
  return mapCandidateLines(text, [...rules.needles, PLACEHOLDER_START], (line) =>
    rewritePathValues(line, (value, token) => {
      const normalized = normalizeValue(value, rules);
      if (normalized === null) return null;
      // Only rewrite what comes back byte-exact on this device (see the module comment):
      // compare encoded tokens, so a value spelled with foreign escapes stays as it is.
      const back = materializeValue(normalized, rules);
      return back !== null && JSON.stringify(back) === token ? normalized : null;
    }),
  );
}

/**
 * The inverse of `normalizeRollout`: writes this device's root, in native form, wherever a
 * root-bearing field starts with the placeholder. On the device that normalized the text
 * this gives back the original bytes exactly.
 */
export function materializeRollout(text: string, root: string, style: PathStyle): string;
export function materializeRollout(text: Uint8Array, root: string, style: PathStyle): Uint8Array;
export function materializeRollout(text: RolloutText, root: string, style: PathStyle): RolloutText;
export function materializeRollout(text: RolloutText, root: string, style: PathStyle): RolloutText {
  const rules = rootRules(root, style);
  return mapCandidateLines(text, [PLACEHOLDER_START], (line) => rewritePathValues(line, (value) => materializeValue(value, rules)));
}

// ---- append-only updates -----------------------------------------------------------------

function toBytes(text: RolloutText): Uint8Array {
  return typeof text === "string" ? encoder.encode(text) : text;
}

function startsWithBytes(whole: Uint8Array, prefix: Uint8Array): boolean {
  if (prefix.length > whole.length) return false;
  return Buffer.from(whole.buffer, whole.byteOffset, prefix.length).equals(
    Buffer.from(prefix.buffer, prefix.byteOffset, prefix.byteLength),
  );
}

/**
 * How a new version of a rollout relates to an old one. Codex only appends, so a new
 * version is either the same, an extension (it starts with every byte of the old one, even
 * when the old one ended in the middle of a line), or divergent: both sides appended
 * different lines, which is a conflict and must never be merged line by line.
 */
export function classifyRolloutUpdate(oldText: RolloutText, newText: RolloutText): "same" | "extension" | "divergent" {
  const a = toBytes(oldText);
  const b = toBytes(newText);
  if (a.length === b.length) return startsWithBytes(b, a) ? "same" : "divergent";
  return a.length < b.length && startsWithBytes(b, a) ? "extension" : "divergent";
}

/** Offset just after the last `\n`, or 0. */
function completeLinesLength(bytes: Uint8Array): number {
  return bytes.lastIndexOf(0x0a) + 1;
}

/**
 * Normalizes a local rollout that extends what this device got from the server. The lines
 * the device already had are taken from `previousNormalized` verbatim, and only the bytes
 * after them are normalized, so a hinted root (`${CWS_ROOT:d:\…}`) written by another device
 * survives this device's appends. A partial last line of the previous version is normalized
 * again together with its completion. Returns null when `localText` is not the same as or an
 * extension of `materializeRollout(previousNormalized)` on this device: that is a conflict.
 */
export function normalizeRolloutExtension(
  previousNormalized: RolloutText,
  localText: string,
  root: string,
  style: PathStyle,
): string | null;
export function normalizeRolloutExtension(
  previousNormalized: RolloutText,
  localText: Uint8Array,
  root: string,
  style: PathStyle,
): Uint8Array | null;
export function normalizeRolloutExtension(
  previousNormalized: RolloutText,
  localText: RolloutText,
  root: string,
  style: PathStyle,
): RolloutText | null {
  const previous = toBytes(previousNormalized);
  const local = toBytes(localText);
  const materialized = materializeRollout(previous, root, style);
  if (classifyRolloutUpdate(materialized, local) === "divergent") return null;
  // Line i of a materialized text corresponds to line i of its normalized form, so the
  // complete lines of both end after the same number of newlines.
  const keptLocal = completeLinesLength(materialized);
  const keptNormalized = completeLinesLength(previous);
  const tail = normalizeRollout(local.subarray(keptLocal), root, style);
  const out = concatBytes([previous.subarray(0, keptNormalized), tail]);
  return typeof localText === "string" ? lenientDecoder.decode(out) : out;
}

// ---- thread metadata -----------------------------------------------------------------------

/** What a sync needs to know about a thread, read from its rollout. */
export interface ThreadMeta {
  /** Thread id from the first session_meta line (equals the UUID in the file name). */
  id: string;
  /** Working directory at creation (`session_meta.payload.cwd`). */
  cwd: string;
  /** Session start from session_meta (payload timestamp, else the line's). */
  timestamp: string | null;
  modelProvider: string | null;
  originator: string | null;
  cliVersion: string | null;
  /** `session_meta.git.repository_url`: a machine-independent key for the project. */
  gitRepositoryUrl: string | null;
  /** `session_meta.git.commit_hash` and `.branch`. */
  gitSha: string | null;
  gitBranch: string | null;
  /**
   * The thread's latest cwd: `turn_context.payload.cwd` of the last turn_context line, or
   * `thread_settings.cwd` of a later `event_msg` `thread_settings_applied` (Codex 0.169).
   */
  latestTurnCwd: string | null;
  /**
   * The sandbox mode and approval policy of the latest turn_context (`sandbox_policy.type`) or
   * thread_settings_applied (derived from its permission profile), so a resume can restate the
   * thread's own settings instead of the device's defaults.
   */
  sandboxMode: string | null;
  /** The named permission profile in force (`active_permission_profile.id`, e.g. `:read-only`), if any. */
  permissionProfile: string | null;
  approvalPolicy: string | null;
  /** Text of the first `event_msg` `user_message` (what Codex shows as the title). */
  preview: string | null;
  /** Name from the last `event_msg` `thread_name_updated`, if the thread was renamed. */
  threadName: string | null;
  /** Number of lines (a final line without `\n` counts). */
  lineCount: number;
  /** Number of bytes read. */
  byteCount: number;
  /**
   * Lines that are not JSON objects (Codex skips these too) or too long to inspect. Lines
   * without a type we look at are only checked for their `{…}` shape, not parsed.
   */
  unparsedLines: number;
}

const SessionMetaLine = z.object({
  timestamp: z.string().optional(),
  payload: z.object({
    id: z.string().min(1).max(200),
    cwd: z.string().max(32 * 1024),
    timestamp: z.string().optional(),
    model_provider: z.string().nullish(),
    originator: z.string().nullish(),
    cli_version: z.string().nullish(),
    // SessionMetaLine flattens the meta and puts `git` beside it, i.e. inside the payload.
    git: z.object({ repository_url: z.string().nullish(), commit_hash: z.string().nullish(), branch: z.string().nullish() }).nullish(),
  }),
});
const TurnContextLine = z.object({
  payload: z.object({
    cwd: z.string().max(32 * 1024),
    approval_policy: z.unknown().optional(),
    sandbox_policy: z.object({ type: z.unknown().optional() }).passthrough().nullish(),
    active_permission_profile: z.object({ id: z.unknown().optional() }).passthrough().nullish(),
  }),
});
const EventMsgLine = z.object({
  payload: z.object({
    type: z.string(),
    message: z.unknown().optional(),
    thread_name: z.unknown().optional(),
    item: z.object({ type: z.unknown().optional(), content: z.unknown().optional() }).passthrough().optional(),
    thread_settings: z
      .object({
        cwd: z.string().max(32 * 1024).optional(),
        approval_policy: z.unknown().optional(),
        active_permission_profile: z.object({ id: z.unknown().optional() }).passthrough().nullish(),
        permission_profile: z
          .object({ file_system: z.object({ type: z.unknown().optional(), entries: z.array(z.object({ access: z.unknown().optional() }).passthrough()).optional() }).passthrough().optional() })
          .passthrough()
          .nullish(),
      })
      .passthrough()
      .optional(),
  }),
});

/** Lines longer than this are counted but not inspected (a session_meta line never is). */
export const MAX_META_LINE_BYTES = 64 * 1024 * 1024;

const META_NEEDLE_BYTES = ['"session_meta"', '"turn_context"', '"user_message"', '"UserMessage"', '"thread_name_updated"', '"thread_settings_applied"'].map((n) =>
  Buffer.from(n),
);

function isJsonSpace(byte: number): boolean {
  return byte === 0x20 || byte === 0x09 || byte === 0x0d || byte === 0x0a;
}

/**
 * Reads thread metadata incrementally, so the I/O layer can stream a large (or
 * decompressing) rollout through it without holding the file. Push chunks in order, then
 * call `finish()`.
 */
export class ThreadMetaReader {
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  #overlong = false;
  #meta: Omit<ThreadMeta, "latestTurnCwd" | "sandboxMode" | "permissionProfile" | "approvalPolicy" | "preview" | "threadName" | "lineCount" | "byteCount" | "unparsedLines"> | null =
    null;
  #latestTurnCwd: string | null = null;
  #settings: { sandboxMode: string | null; permissionProfile: string | null; approvalPolicy: string | null } = {
    sandboxMode: null,
    permissionProfile: null,
    approvalPolicy: null,
  };
  #preview: string | null = null;
  #threadName: string | null = null;
  #lines = 0;
  #bytes = 0;
  #unparsed = 0;

  push(chunk: Uint8Array | string): void {
    const bytes = typeof chunk === "string" ? encoder.encode(chunk) : chunk;
    this.#bytes += bytes.length;
    const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    // Next position of each needle in this chunk, searched forward once (not once per line).
    const nextAt = META_NEEDLE_BYTES.map(() => -2);
    let pos = 0;
    while (pos < bytes.length) {
      const nl = view.indexOf(0x0a, pos);
      if (nl !== -1 && this.#pendingBytes === 0 && !this.#overlong) {
        // The common case: a whole line inside this chunk, inspected without copying it.
        let wanted = false;
        for (let i = 0; i < META_NEEDLE_BYTES.length; i++) {
          if (nextAt[i] !== -1 && nextAt[i] < pos) nextAt[i] = view.indexOf(META_NEEDLE_BYTES[i], pos);
          if (nextAt[i] !== -1 && nextAt[i] + META_NEEDLE_BYTES[i].length <= nl) wanted = true;
        }
        this.#lines++;
        this.#inspect(bytes.subarray(pos, nl), wanted);
        pos = nl + 1;
        continue;
      }
      const end = nl === -1 ? bytes.length : nl;
      this.#append(bytes.subarray(pos, end));
      if (nl === -1) break;
      this.#endLine();
      pos = nl + 1;
    }
  }

  finish(): ThreadMeta {
    if (this.#pendingBytes > 0 || this.#overlong) this.#endLine();
    if (this.#meta === null) {
      throw new CwsError(
        "INVALID_ARGUMENT",
        `the rollout has no valid session_meta line (${this.#lines} lines read), so it is not a Codex thread we can sync`,
        { data: { lineCount: this.#lines } },
      );
    }
    return {
      ...this.#meta,
      latestTurnCwd: this.#latestTurnCwd,
      ...this.#settings,
      preview: this.#preview,
      threadName: this.#threadName,
      lineCount: this.#lines,
      byteCount: this.#bytes,
      unparsedLines: this.#unparsed,
    };
  }

  #append(part: Uint8Array): void {
    if (this.#overlong || part.length === 0) return;
    if (this.#pendingBytes + part.length > MAX_META_LINE_BYTES) {
      this.#overlong = true;
      this.#pending = [];
      this.#pendingBytes = 0;
      return;
    }
    // The chunk buffer may be reused by the stream, so keep a copy of partial lines.
    this.#pending.push(part.slice());
    this.#pendingBytes += part.length;
  }

  #endLine(): void {
    this.#lines++;
    if (this.#overlong) {
      this.#unparsed++;
    } else if (this.#pendingBytes > 0) {
      const line = this.#pending.length === 1 ? this.#pending[0] : concatBytes(this.#pending);
      const view = Buffer.from(line.buffer, line.byteOffset, line.byteLength);
      this.#inspect(line, META_NEEDLE_BYTES.some((needle) => view.includes(needle)));
    }
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#overlong = false;
  }

  /**
   * Looks at one line. `wanted` says whether the raw bytes mention a type we read: most lines
   * are response items we do not need, so they are neither decoded nor parsed, but lines that
   * are not JSON objects at all are still counted, since a checkpoint records them.
   */
  #inspect(bytes: Uint8Array, wanted: boolean): void {
    if (!wanted) {
      let first = 0;
      let last = bytes.length - 1;
      while (first <= last && isJsonSpace(bytes[first])) first++;
      while (last >= first && isJsonSpace(bytes[last])) last--;
      if (first <= last && !(bytes[first] === 0x7b && bytes[last] === 0x7d)) this.#unparsed++;
      return;
    }
    const line = lenientDecoder.decode(bytes);
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      this.#unparsed++;
      return;
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      this.#unparsed++;
      return;
    }
    const type = (value as { type?: unknown }).type;
    if (type === "session_meta" && this.#meta === null) {
      const parsed = SessionMetaLine.safeParse(value);
      if (!parsed.success) return;
      const p = parsed.data.payload;
      this.#meta = {
        id: p.id,
        cwd: p.cwd,
        timestamp: p.timestamp ?? parsed.data.timestamp ?? null,
        modelProvider: p.model_provider ?? null,
        originator: p.originator ?? null,
        cliVersion: p.cli_version ?? null,
        gitRepositoryUrl: p.git?.repository_url ?? null,
        gitSha: p.git?.commit_hash ?? null,
        gitBranch: p.git?.branch ?? null,
      };
    } else if (type === "turn_context") {
      const parsed = TurnContextLine.safeParse(value);
      if (parsed.success) {
        const p = parsed.data.payload;
        this.#latestTurnCwd = p.cwd;
        this.#settings = {
          sandboxMode: typeof p.sandbox_policy?.type === "string" ? p.sandbox_policy.type : null,
          permissionProfile: typeof p.active_permission_profile?.id === "string" ? p.active_permission_profile.id : null,
          approvalPolicy: typeof p.approval_policy === "string" ? p.approval_policy : null,
        };
      }
    } else if (type === "event_msg") {
      const parsed = EventMsgLine.safeParse(value);
      if (!parsed.success) return;
      const p = parsed.data.payload;
      if (p.type === "user_message" && this.#preview === null && typeof p.message === "string") {
        this.#preview = p.message;
      } else if (p.type === "item_completed" && this.#preview === null && p.item?.type === "UserMessage" && Array.isArray(p.item.content)) {
        // Codex 0.169 records the user's message as a completed UserMessage item instead.
        const text = (p.item.content as Array<{ type?: unknown; text?: unknown }>).find((c) => c.type === "text" && typeof c.text === "string")?.text;
        if (typeof text === "string") this.#preview = text;
      } else if (p.type === "thread_name_updated" && typeof p.thread_name === "string") {
        this.#threadName = p.thread_name;
      } else if (p.type === "thread_settings_applied" && p.thread_settings !== undefined) {
        // Codex 0.169 restores a thread's cwd and settings from its latest applied settings.
        const ts = p.thread_settings;
        if (ts.cwd !== undefined) this.#latestTurnCwd = ts.cwd;
        const fs = ts.permission_profile?.file_system;
        this.#settings = {
          sandboxMode:
            fs === undefined
              ? this.#settings.sandboxMode
              : fs.type === "unrestricted"
                ? "danger-full-access"
                : (fs.entries ?? []).some((e) => e.access === "write")
                  ? "workspace-write"
                  : "read-only",
          permissionProfile: typeof ts.active_permission_profile?.id === "string" ? ts.active_permission_profile.id : null,
          approvalPolicy: typeof ts.approval_policy === "string" ? ts.approval_policy : this.#settings.approvalPolicy,
        };
      }
    }
  }
}

/** Reads a whole rollout's metadata at once (see ThreadMetaReader for streaming). */
export function readThreadMeta(text: RolloutText): ThreadMeta {
  const reader = new ThreadMetaReader();
  reader.push(text);
  return reader.finish();
}
