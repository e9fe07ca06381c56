/**
 * The benchmark's data set: a generated, Codex-like workspace that is byte-for-byte the same
 * for a given seed and size on every machine.
 *
 * What it holds (defaults for 5,000 files / 300 MiB):
 * - many small Markdown notes (headings, paragraphs, lists, code blocks) and JSON configs,
 *   spread over nested folders, about 10% of the bytes (notes of a few KiB each);
 * - Codex rollouts: append-only JSONL transcripts in Codex's line format
 *   (`{"timestamp":…,"type":"response_item","payload":{…}}`), under
 *   `codex/sessions/YYYY/MM/DD/rollout-…-<uuid>.jsonl`, about 75% of the bytes in a hundred or
 *   more files of up to several MiB;
 * - binary assets (incompressible bytes), about 15% of the bytes.
 *
 * Text comes from a word list drawn with a Zipf-like bias, so compression ratios resemble
 * real notes; reasoning items carry base64 "encrypted_content" as real transcripts do, which
 * does not compress. Sizes follow log-normal distributions scaled to the byte budget.
 *
 * {@link mutateOnePercent} makes the "1% change" of the benchmark: appends to 20 rollouts and
 * mid-file edits in 30 Markdown notes (50 files: 1% of the default 5,000).
 */
import { appendFileSync, closeSync, mkdirSync, openSync, readdirSync, readFileSync, writeFileSync, writeSync } from "node:fs";
import path from "node:path";
import { Prng } from "./prng.ts";
import { COMMON_WORDS, IDENTIFIERS, SHELL_COMMANDS, TECH_WORDS, VERBS } from "./words.ts";

const MIB = 1024 * 1024;

/** What to generate. Counts and byte budgets not given are derived from `files` and `totalBytes`. */
export interface DatasetOptions {
  /**
   * Seed of every random choice; the same seed and sizes give the same bytes.
   *
   * @default {1}
   */
  seed?: number;
  /**
   * Number of files in total.
   *
   * @default {5000}
   */
  files?: number;
  /**
   * Total size in bytes (approximate: within a few percent).
   *
   * @default {300 MiB}
   */
  totalBytes?: number;
  /**
   * Number of Codex rollouts (JSONL transcripts).
   *
   * @default {2.4% of files, at least 2}
   */
  rollouts?: number;
  /**
   * Number of binary assets.
   *
   * @default {0.8% of files, at least 1}
   */
  binaries?: number;
}

/** The resolved recipe of a data set: exact counts and byte budgets. */
export interface DatasetPlan {
  seed: number;
  markdownFiles: number;
  jsonFiles: number;
  rolloutFiles: number;
  binaryFiles: number;
  /** Bytes shared by the Markdown and JSON files. */
  smallBytes: number;
  rolloutBytes: number;
  binaryBytes: number;
}

/** Files and bytes of one kind of file. */
export interface KindSummary {
  files: number;
  bytes: number;
}

/** What {@link generateDataset} wrote. */
export interface DatasetSummary {
  plan: DatasetPlan;
  files: number;
  bytes: number;
  folders: number;
  byKind: { markdown: KindSummary; json: KindSummary; rollout: KindSummary; binary: KindSummary };
  generateMs: number;
}

/** Share of the bytes in rollouts, binaries and small files (the rest). */
const ROLLOUT_SHARE = 0.75;
const BINARY_SHARE = 0.15;

/** Turns options into exact counts and budgets. */
export function planDataset(options: DatasetOptions = {}): DatasetPlan {
  const { seed = 1, files = 5000, totalBytes = 300 * MIB } = options;
  if (!Number.isInteger(files) || files < 4) throw new RangeError(`Cannot plan a data set of ${files} files: need at least 4`);
  if (!(totalBytes >= files * 512)) {
    throw new RangeError(`Cannot plan a data set of ${totalBytes} bytes for ${files} files: need at least 512 bytes per file`);
  }
  const rolloutFiles = options.rollouts ?? Math.max(2, Math.round(files * 0.024));
  const binaryFiles = options.binaries ?? Math.max(1, Math.round(files * 0.008));
  const small = files - rolloutFiles - binaryFiles;
  if (small < 2) throw new RangeError(`Cannot plan a data set with ${rolloutFiles} rollouts and ${binaryFiles} binaries in ${files} files`);
  const rolloutBytes = Math.round(totalBytes * ROLLOUT_SHARE);
  const binaryBytes = Math.round(totalBytes * BINARY_SHARE);
  const markdownFiles = Math.round(small * 0.7);
  return {
    seed,
    markdownFiles,
    jsonFiles: small - markdownFiles,
    rolloutFiles,
    binaryFiles,
    smallBytes: totalBytes - rolloutBytes - binaryBytes,
    rolloutBytes,
    binaryBytes,
  };
}

/**
 * The plan of the scale scenario: `factor` times the file count. The extra files are Markdown
 * notes and JSON configs of the same average size (a tree that grows the way a workspace
 * grows); rollouts and binaries stay as they are, so the bytes do not grow tenfold too.
 */
export function scalePlan(plan: DatasetPlan, factor: number): DatasetPlan {
  const total = plan.markdownFiles + plan.jsonFiles + plan.rolloutFiles + plan.binaryFiles;
  const small = plan.markdownFiles + plan.jsonFiles;
  const scaledSmall = total * factor - plan.rolloutFiles - plan.binaryFiles;
  const markdownFiles = Math.round(scaledSmall * (plan.markdownFiles / small));
  return {
    ...plan,
    markdownFiles,
    jsonFiles: scaledSmall - markdownFiles,
    smallBytes: Math.round(plan.smallBytes * (scaledSmall / small)),
  };
}

/** Total files of a plan. */
export function planFiles(plan: DatasetPlan): number {
  return plan.markdownFiles + plan.jsonFiles + plan.rolloutFiles + plan.binaryFiles;
}

/** Total bytes of a plan (approximate, as generated files overshoot their target slightly). */
export function planBytes(plan: DatasetPlan): number {
  return plan.smallBytes + plan.rolloutBytes + plan.binaryBytes;
}

/**
 * Writes the data set described by `plan` into `dir` (created if missing; should be empty).
 * Big files are written in pieces of about 1 MiB so memory stays flat.
 */
export function generateDataset(dir: string, plan: DatasetPlan): DatasetSummary {
  const started = performance.now();
  const rng = new Prng(plan.seed, "layout");
  const byKind = {
    markdown: { files: 0, bytes: 0 },
    json: { files: 0, bytes: 0 },
    rollout: { files: 0, bytes: 0 },
    binary: { files: 0, bytes: 0 },
  };
  const folders = new Set<string>();
  const ensureDir = (relative: string): void => {
    if (folders.has(relative)) return;
    mkdirSync(path.join(dir, relative), { recursive: true });
    // Record every ancestor too, so the folder count is the number of folders on disk.
    for (let p = relative; p !== "." && p !== ""; p = path.posix.dirname(p)) folders.add(p);
  };
  mkdirSync(dir, { recursive: true });

  // Folders for notes and configs: a few areas, each with nested topic folders, about one
  // folder per 25 small files (real workspaces have many shallow-to-medium folders).
  const small = plan.markdownFiles + plan.jsonFiles;
  const noteFolders = makeFolderTree(rng, ["notes", "plans", "docs", "research", "meetings", "skills"], Math.max(4, Math.round(small / 25)));
  const configFolders = makeFolderTree(rng, ["config", "data", "meta"], Math.max(2, Math.round(small / 80)));

  // Sizes: log-normal weights, scaled so each kind meets its budget.
  const mdWeights = weights(rng, plan.markdownFiles, 0.9, 1);
  const jsonWeights = weights(rng, plan.jsonFiles, 0.8, 0.2);
  const smallScale = plan.smallBytes / (sum(mdWeights) + sum(jsonWeights) || 1);
  const pool = sentencePool(plan.seed);
  const text = new TextGenerator(new Prng(plan.seed, "text"), pool);

  // Every workspace has these two at its root; they count towards the Markdown files.
  for (const [name, size, title] of [["AGENTS.md", 6000, "Agent instructions"], ["README.md", 3000, "Workspace"]] as const) {
    const content = markdownDocument(text, size, title);
    writeFileSync(path.join(dir, name), content);
    byKind.markdown.files++;
    byKind.markdown.bytes += content.length;
  }

  for (let i = byKind.markdown.files; i < plan.markdownFiles; i++) {
    const folder = rng.pick(noteFolders);
    ensureDir(folder);
    const size = Math.max(200, Math.round(mdWeights[i]! * smallScale));
    const name = folder.startsWith("skills/") && rng.chance(0.3) ? `SKILL-${i}.md` : `${text.slug()}-${i}.md`;
    const content = markdownDocument(text, size, text.title());
    writeFileSync(path.join(dir, folder, name), content);
    byKind.markdown.files++;
    byKind.markdown.bytes += content.length;
  }

  for (let i = 0; i < plan.jsonFiles; i++) {
    const folder = rng.pick(configFolders);
    ensureDir(folder);
    const size = Math.max(120, Math.round(jsonWeights[i]! * smallScale));
    const content = jsonDocument(text, size);
    writeFileSync(path.join(dir, folder, `${text.slug()}-${i}.json`), content);
    byKind.json.files++;
    byKind.json.bytes += content.length;
  }

  // Rollouts: dated folders and file names as Codex writes them (local time, colons as "-").
  const rolloutWeights = weights(rng, plan.rolloutFiles, 0.8, 1);
  const rolloutScale = plan.rolloutBytes / (sum(rolloutWeights) || 1);
  for (let i = 0; i < plan.rolloutFiles; i++) {
    const fileRng = new Prng(plan.seed, "rollout", i);
    const startMs = Date.UTC(2026, 0, 5) + fileRng.int(150 * 86_400_000);
    const stamp = new Date(startMs).toISOString();
    const folder = `codex/sessions/${stamp.slice(0, 4)}/${stamp.slice(5, 7)}/${stamp.slice(8, 10)}`;
    ensureDir(folder);
    const id = fileRng.uuid();
    const name = `rollout-${stamp.slice(0, 19).replaceAll(":", "-")}-${id}.jsonl`;
    const target = Math.max(4096, Math.round(rolloutWeights[i]! * rolloutScale));
    byKind.rollout.bytes += writeRollout(path.join(dir, folder, name), new RolloutWriter(fileRng, id, startMs, pool), target);
    byKind.rollout.files++;
  }

  const binaryWeights = weights(rng, plan.binaryFiles, 1.0, 1);
  const binaryScale = plan.binaryBytes / (sum(binaryWeights) || 1);
  const extensions = ["png", "pdf", "zip", "woff2", "jpg", "bin"];
  for (let i = 0; i < plan.binaryFiles; i++) {
    const folder = `assets/${rng.pick(["images", "exports", "fonts", "archives"])}`;
    ensureDir(folder);
    const size = Math.max(1024, Math.round(binaryWeights[i]! * binaryScale));
    writeBinary(path.join(dir, folder, `${text.slug()}-${i}.${rng.pick(extensions)}`), new Prng(plan.seed, "binary", i), size);
    byKind.binary.files++;
    byKind.binary.bytes += size;
  }

  const files = byKind.markdown.files + byKind.json.files + byKind.rollout.files + byKind.binary.files;
  const bytes = byKind.markdown.bytes + byKind.json.bytes + byKind.rollout.bytes + byKind.binary.bytes;
  return { plan, files, bytes, folders: folders.size, byKind, generateMs: performance.now() - started };
}

/** What {@link mutateOnePercent} changed. */
export interface MutationSummary {
  appended: string[];
  edited: string[];
  bytesAdded: number;
}

/** Options for {@link mutateOnePercent}. */
export interface MutateOptions {
  /**
   * Rollouts to append a turn to.
   *
   * @default {20}
   */
  jsonlFiles?: number;
  /**
   * Markdown notes to edit in the middle.
   *
   * @default {30}
   */
  markdownFiles?: number;
}

/**
 * Makes the benchmark's "1% change" in `dir`: appends one Codex turn (16–64 KiB) to each of
 * 20 rollouts and inserts a paragraph near the middle of each of 30 Markdown notes. The files
 * are chosen and the new bytes generated from `seed` and the sorted file list alone, so the
 * same call on two identical copies makes identical changes. Every edited file grows, so a
 * tool cannot miss a change because its size and mtime second happen to match.
 */
export function mutateOnePercent(dir: string, seed: number, options: MutateOptions = {}): MutationSummary {
  const { rollouts, notes } = mutationTargets(listFiles(dir), seed, options);
  let bytesAdded = 0;

  for (const [index, relative] of rollouts.entries()) {
    const fileRng = new Prng(seed, "append", index);
    const id = fileRng.uuid();
    const target = fileRng.range(16 * 1024, 64 * 1024);
    const startMs = Date.UTC(2026, 5, 1) + (seed % 1000) * 3_600_000;
    const writer = new RolloutWriter(fileRng, id, startMs);
    let chunk = "";
    while (chunk.length < target) chunk += writer.turn();
    appendFileSync(path.join(dir, relative), chunk);
    bytesAdded += chunk.length;
  }

  for (const [index, relative] of notes.entries()) {
    const fileRng = new Prng(seed, "edit", index);
    const text = new TextGenerator(fileRng);
    const file = path.join(dir, relative);
    const before = readFileSync(file, "utf8");
    // Insert at a paragraph boundary between 35% and 65% of the file, so the edit is truly in
    // the middle: chunks before it and after it are unchanged, only the ones around it differ.
    // A short note may have no paragraph break after that point other than its final one;
    // then the last break before it is used, and failing that the middle of a line.
    const from = Math.floor(before.length * (0.35 + 0.3 * fileRng.next()));
    let boundary = before.indexOf("\n\n", from);
    if (boundary === -1 || boundary + 2 >= before.length) boundary = before.lastIndexOf("\n\n", from);
    const at = boundary > 0 && boundary + 2 < before.length ? boundary + 2 : from;
    const inserted = `${text.paragraph(fileRng.range(3, 7))}\n\n`;
    writeFileSync(file, before.slice(0, at) + inserted + before.slice(at));
    bytesAdded += inserted.length;
  }
  return { appended: rollouts, edited: notes, bytesAdded };
}

/**
 * The files {@link mutateOnePercent} would change for `seed`, given the data set's sorted file
 * list (the list does not change, as mutations only modify files); lets a caller prepare those
 * files before the first sync.
 */
export function mutationTargets(files: readonly string[], seed: number, options: MutateOptions = {}): { rollouts: string[]; notes: string[] } {
  const { jsonlFiles = 20, markdownFiles = 30 } = options;
  const rng = new Prng(seed, "mutate");
  const rollouts = sample(rng, files.filter((f) => f.endsWith(".jsonl")), jsonlFiles);
  const notes = sample(rng, files.filter((f) => f.endsWith(".md")), markdownFiles);
  return { rollouts, notes };
}

/** All regular files under `dir`, as sorted `/`-separated relative paths. */
export function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (relative: string): void => {
    for (const entry of readdirSync(path.join(dir, relative), { withFileTypes: true })) {
      const child = relative === "" ? entry.name : `${relative}/${entry.name}`;
      if (entry.isDirectory()) walk(child);
      else if (entry.isFile()) out.push(child);
    }
  };
  walk("");
  return out.sort();
}

// ---------------------------------------------------------------------------------------------
// Text

/** Sentences in a data set's pool: enough that a note rarely repeats one (see TextGenerator). */
const POOL_SENTENCES = 16_384;

/** A pool of distinct generated sentences for one seed. */
export function sentencePool(seed: number): string[] {
  const text = new TextGenerator(new Prng(seed, "pool"));
  return Array.from({ length: POOL_SENTENCES }, () => text.sentence());
}

/**
 * Generates words, sentences and paragraphs with a Zipf-like word frequency.
 *
 * With a pool, sentences are drawn from it instead of being built word by word: about five
 * times faster, which matters for hundreds of MiB. A pool of 16,384 sentences (≈ 1.5 MiB)
 * keeps repeats within one file rare, so per-file compression stays realistic; across files
 * a repeat is usually far outside rsync's 32 KiB zlib window, and no repeat is long enough to
 * make two content-defined chunks (≥ 16 KiB) equal.
 */
export class TextGenerator {
  readonly rng: Prng;
  readonly #pool: readonly string[] | undefined;

  constructor(rng: Prng, pool?: readonly string[]) {
    this.rng = rng;
    this.#pool = pool;
  }

  /** One word; common words far more often than rare ones, as in real prose. */
  word(): string {
    const r = this.rng.next();
    // Cubing a uniform value skews the index towards the start of each (frequency-ordered) list.
    if (r < 0.55) return COMMON_WORDS[Math.floor(COMMON_WORDS.length * this.rng.next() ** 3)]!;
    if (r < 0.93) return TECH_WORDS[Math.floor(TECH_WORDS.length * this.rng.next() ** 1.6)]!;
    if (r < 0.98) return VERBS[this.rng.int(VERBS.length)]!;
    return IDENTIFIERS[this.rng.int(IDENTIFIERS.length)]!;
  }

  sentence(): string {
    if (this.#pool !== undefined) return this.#pool[this.rng.int(this.#pool.length)]!;
    const count = this.rng.range(6, 22);
    let out = this.word();
    out = out[0]!.toUpperCase() + out.slice(1);
    for (let i = 1; i < count; i++) {
      out += this.rng.chance(0.06) ? `, ${this.word()}` : ` ${this.word()}`;
      if (this.rng.chance(0.015)) out += ` \`${this.rng.pick(IDENTIFIERS)}\``;
    }
    return `${out}.`;
  }

  paragraph(sentences: number): string {
    let out = this.sentence();
    for (let i = 1; i < sentences; i++) out += ` ${this.sentence()}`;
    return out;
  }

  title(): string {
    const count = this.rng.range(2, 6);
    const words: string[] = [];
    for (let i = 0; i < count; i++) {
      const w = this.rng.chance(0.5) ? this.rng.pick(TECH_WORDS) : this.word();
      words.push(w[0]!.toUpperCase() + w.slice(1));
    }
    return words.join(" ");
  }

  slug(): string {
    return `${this.rng.pick(TECH_WORDS)}-${this.rng.pick(TECH_WORDS)}`;
  }
}

/** A Markdown note of about `size` bytes: headings, paragraphs, lists and code blocks. */
function markdownDocument(text: TextGenerator, size: number, title: string): string {
  const rng = text.rng;
  let out = `# ${title}\n\n${text.paragraph(rng.range(1, 3))}\n\n`;
  while (out.length < size) {
    const r = rng.next();
    if (r < 0.15) out += `## ${text.title()}\n\n`;
    else if (r < 0.22) out += `### ${text.title()}\n\n`;
    else if (r < 0.34) {
      const items = rng.range(2, 6);
      for (let i = 0; i < items; i++) out += `- ${rng.chance(0.3) ? `[${rng.chance(0.5) ? "x" : " "}] ` : ""}${text.sentence()}\n`;
      out += "\n";
    } else if (r < 0.4) {
      out += "```ts\n";
      const lines = rng.range(2, 8);
      for (let i = 0; i < lines; i++) {
        out += `const ${rng.pick(IDENTIFIERS)} = ${rng.pick(IDENTIFIERS)}.${rng.pick(VERBS)}(${rng.pick(IDENTIFIERS)}, ${rng.int(1000)});\n`;
      }
      out += "```\n\n";
    } else out += `${text.paragraph(rng.range(2, 6))}\n\n`;
  }
  return out;
}

/** A pretty-printed JSON config of about `size` bytes. */
function jsonDocument(text: TextGenerator, size: number): string {
  const rng = text.rng;
  const doc: Record<string, unknown> = {
    name: text.slug(),
    version: `${rng.int(5)}.${rng.int(20)}.${rng.int(50)}`,
    enabled: rng.chance(0.8),
    settings: {} as Record<string, unknown>,
    items: [] as unknown[],
  };
  const settings = doc.settings as Record<string, unknown>;
  for (let i = rng.range(3, 10); i > 0; i--) settings[rng.pick(IDENTIFIERS)] = jsonValue(text);
  const items = doc.items as unknown[];
  // Each item is about 150–400 bytes pretty-printed; add items until the target is met.
  let estimate = JSON.stringify(doc, null, 2).length;
  while (estimate < size) {
    const item: Record<string, unknown> = { id: rng.uuid().slice(0, 8) };
    for (let i = rng.range(2, 7); i > 0; i--) item[rng.pick(IDENTIFIERS)] = jsonValue(text);
    items.push(item);
    estimate += JSON.stringify(item, null, 2).length + 6;
  }
  return `${JSON.stringify(doc, null, 2)}\n`;
}

function jsonValue(text: TextGenerator): unknown {
  const rng = text.rng;
  const r = rng.next();
  if (r < 0.25) return rng.int(100_000);
  if (r < 0.35) return rng.chance(0.5);
  if (r < 0.5) return [text.word(), text.word(), text.word()];
  if (r < 0.6) return `/${text.word()}/${text.slug()}`;
  return text.sentence();
}

// ---------------------------------------------------------------------------------------------
// Codex rollouts

const CWD = "/home/bench/superproject";

/** Writes one rollout of about `target` bytes in ~1 MiB pieces; returns the bytes written. */
function writeRollout(file: string, writer: RolloutWriter, target: number): number {
  const fd = openSync(file, "w");
  let written = 0;
  try {
    let pending = writer.sessionMeta();
    while (written + pending.length < target) {
      pending += writer.turn();
      if (pending.length >= MIB) {
        written += writeSync(fd, pending);
        pending = "";
      }
    }
    if (pending.length > 0) written += writeSync(fd, pending);
  } finally {
    closeSync(fd);
  }
  return written;
}

/** Emits Codex rollout lines with increasing timestamps. */
class RolloutWriter {
  readonly #rng: Prng;
  readonly #text: TextGenerator;
  readonly #id: string;
  #clockMs: number;
  #turn = 0;
  #tokens = 0;

  constructor(rng: Prng, id: string, startMs: number, pool?: readonly string[]) {
    this.#rng = rng;
    this.#text = new TextGenerator(rng, pool);
    this.#id = id;
    this.#clockMs = startMs;
  }

  #line(type: string, payload: unknown): string {
    this.#clockMs += this.#rng.range(5, 4000);
    return `${JSON.stringify({ timestamp: new Date(this.#clockMs).toISOString(), type, payload })}\n`;
  }

  sessionMeta(): string {
    return this.#line("session_meta", {
      id: this.#id,
      timestamp: new Date(this.#clockMs).toISOString(),
      cwd: CWD,
      originator: "codex_cli_rs",
      cli_version: "0.131.0",
      source: "cli",
      model_provider: "openai",
      base_instructions: { text: this.#text.paragraph(40) },
      git: { commit_hash: this.#rng.uuid().replaceAll("-", "").slice(0, 40), branch: "main" },
    });
  }

  /** One user turn: context, the prompt, a few tool calls with reasoning, and the answer. */
  turn(): string {
    const rng = this.#rng;
    const text = this.#text;
    const turnId = `turn-${this.#turn++}`;
    let out = this.#line("turn_context", {
      turn_id: turnId,
      cwd: CWD,
      current_date: new Date(this.#clockMs).toISOString().slice(0, 10),
      timezone: "Europe/Berlin",
      approval_policy: "on-request",
      sandbox_policy: { type: "workspace-write", writable_roots: [CWD], network_access: false },
      model: "gpt-5-codex",
      effort: "medium",
      summary: "auto",
    });
    const prompt = text.paragraph(rng.range(1, 4));
    out += this.#line("event_msg", { type: "user_message", message: prompt, images: [], local_images: [] });
    out += this.#line("response_item", { type: "message", role: "user", content: [{ type: "input_text", text: prompt }] });
    for (let calls = rng.range(1, 6); calls > 0; calls--) {
      // Reasoning is sent back encrypted: base64 of opaque bytes, which no compressor shrinks.
      const opaque = rng.fill(new Uint8Array(rng.range(400, 2400)));
      out += this.#line("response_item", {
        type: "reasoning",
        summary: [{ type: "summary_text", text: `**${text.title()}**\n\n${text.paragraph(rng.range(1, 3))}` }],
        content: null,
        encrypted_content: `gAAAAA${Buffer.from(opaque).toString("base64")}`,
      });
      const callId = `call_${rng.uuid().replaceAll("-", "").slice(0, 24)}`;
      out += this.#line("response_item", {
        type: "function_call",
        name: "shell",
        arguments: JSON.stringify({ command: ["bash", "-lc", rng.pick(SHELL_COMMANDS)], workdir: CWD, timeout_ms: 120000 }),
        call_id: callId,
      });
      out += this.#line("response_item", {
        type: "function_call_output",
        call_id: callId,
        output: JSON.stringify({ output: this.#toolOutput(), metadata: { exit_code: rng.chance(0.9) ? 0 : 1, duration_seconds: rng.int(3000) / 100 } }),
      });
    }
    let answer = text.paragraph(rng.range(2, 6));
    if (rng.chance(0.5)) answer += `\n\n- ${text.sentence()}\n- ${text.sentence()}\n- ${text.sentence()}`;
    out += this.#line("response_item", { type: "message", role: "assistant", content: [{ type: "output_text", text: answer }] });
    out += this.#line("event_msg", { type: "agent_message", message: answer });
    this.#tokens += rng.range(2000, 30000);
    out += this.#line("event_msg", {
      type: "token_count",
      info: { total_token_usage: { input_tokens: this.#tokens, cached_input_tokens: Math.floor(this.#tokens * 0.8), output_tokens: Math.floor(this.#tokens / 20), total_tokens: Math.floor(this.#tokens * 1.05) } },
    });
    return out;
  }

  /** Output of a shell command: file listings, grep hits or test results. */
  #toolOutput(): string {
    const rng = this.#rng;
    const text = this.#text;
    const lines = rng.range(3, 60);
    let out = "";
    const style = rng.int(3);
    for (let i = 0; i < lines; i++) {
      if (style === 0) out += `src/${text.slug()}/${rng.pick(IDENTIFIERS)}.ts:${rng.range(1, 900)}:  ${text.sentence()}\n`;
      else if (style === 1) out += `ok ${i + 1} - ${rng.pick(IDENTIFIERS)}() ${text.sentence().toLowerCase()} (${rng.int(900) / 10}ms)\n`;
      else out += `-rw-r--r-- 1 user user ${rng.range(100, 90000)} May ${rng.range(1, 28)} 12:${rng.range(10, 59)} ${text.slug()}.md\n`;
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers

/** Writes `size` incompressible bytes in 1 MiB pieces. */
function writeBinary(file: string, rng: Prng, size: number): void {
  const fd = openSync(file, "w");
  try {
    const piece = new Uint8Array(Math.min(size, MIB));
    for (let left = size; left > 0; left -= piece.length) {
      rng.fill(piece);
      writeSync(fd, piece, 0, Math.min(left, piece.length));
    }
  } finally {
    closeSync(fd);
  }
}

/** Nested folder paths under the given roots, 1–4 levels deep. */
function makeFolderTree(rng: Prng, roots: readonly string[], count: number): string[] {
  const out = new Set<string>();
  while (out.size < count) {
    let folder = rng.pick(roots);
    for (let depth = rng.range(0, 3); depth > 0; depth--) folder += `/${rng.pick(TECH_WORDS)}-${rng.int(Math.max(2, Math.ceil(count / 8)))}`;
    out.add(folder);
  }
  return [...out];
}

function weights(rng: Prng, count: number, sigma: number, scale: number): number[] {
  const out = new Array<number>(count);
  // Capped at 20x the median so one giant file cannot swallow a kind's whole budget.
  for (let i = 0; i < count; i++) out[i] = scale * Math.min(20, rng.logNormal(1, sigma));
  return out;
}

function sum(values: readonly number[]): number {
  let total = 0;
  for (const v of values) total += v;
  return total;
}

/** `count` distinct elements of `items`, chosen by `rng` (partial Fisher–Yates shuffle). */
function sample<T>(rng: Prng, items: readonly T[], count: number): T[] {
  const pool = [...items];
  const n = Math.min(count, pool.length);
  for (let i = 0; i < n; i++) {
    const j = i + rng.int(pool.length - i);
    [pool[i], pool[j]] = [pool[j]!, pool[i]!];
  }
  return pool.slice(0, n);
}
