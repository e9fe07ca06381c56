/**
 * The benchmark's results and their three renderings: a text table for the terminal, a
 * Markdown section for docs/performance.md, and a hand-written SVG bar chart of the time
 * ratio against rsync per scenario. `results` is also written as JSON; its shape is
 * {@link BenchResults}, checked with zod when read back (for `--docs-only`).
 */
import { readFile } from "node:fs/promises";
import { z } from "zod";
import { median } from "./measure.ts";

/** The tool every ratio is relative to. */
export const BASELINE = "rsync -a";

export const SCENARIOS = ["push", "noop", "change", "pull"] as const;
export type Scenario = (typeof SCENARIOS)[number];

/** What each scenario does, for tables and docs. */
export const SCENARIO_LABELS: Record<Scenario, string> = {
  push: "initial push",
  noop: "no-op sync",
  change: "1% change",
  pull: "pull, 2nd device",
};

const Bytes = z.object({ sent: z.number(), received: z.number() });

const MeasurementSchema = z.object({
  wallMs: z.number(),
  payload: Bytes.optional(),
  ssh: Bytes.optional(),
  clientRssKiB: z.number().optional(),
  serverRssKiB: z.number().optional(),
});

/** Medians over the runs (time, bytes) and peaks (RSS). */
const SummarySchema = z.object({
  wallMs: z.number(),
  payloadBytes: z.number().optional(),
  sshBytes: z.number().optional(),
  clientRssKiB: z.number().optional(),
  serverRssKiB: z.number().optional(),
});
export type Summary = z.infer<typeof SummarySchema>;

const ScenarioResultSchema = z.object({
  dataset: z.string(),
  scenario: z.enum(SCENARIOS),
  tool: z.string(),
  runs: z.array(MeasurementSchema),
  summary: SummarySchema.optional(),
  error: z.string().optional(),
  skipped: z.string().optional(),
  verified: z.boolean().optional(),
});
export type ScenarioResult = z.infer<typeof ScenarioResultSchema>;

const DatasetSchema = z.object({
  name: z.string(),
  files: z.number(),
  bytes: z.number(),
  folders: z.number(),
  byKind: z.record(z.string(), z.object({ files: z.number(), bytes: z.number() })),
  generateMs: z.number(),
  /** Runs of the initial push and the pull. */
  runs: z.number(),
  /** Runs of the no-op and 1% change syncs. */
  syncRuns: z.number(),
});
export type DatasetInfo = z.infer<typeof DatasetSchema>;

export const BenchResultsSchema = z.object({
  format: z.literal(1),
  startedAt: z.string(),
  finishedAt: z.string(),
  durationMs: z.number(),
  command: z.string(),
  options: z.record(z.string(), z.unknown()),
  machine: z.object({ cpu: z.string(), cores: z.number(), memoryGiB: z.number(), os: z.string(), kernel: z.string() }),
  versions: z.record(z.string(), z.string()),
  cipher: z.string(),
  baseline: z.string(),
  tools: z.array(z.string()),
  datasets: z.array(DatasetSchema),
  results: z.array(ScenarioResultSchema),
  notes: z.array(z.string()),
});
export type BenchResults = z.infer<typeof BenchResultsSchema>;

/** Reads and validates a results file written by an earlier run. */
export async function readResults(file: string): Promise<BenchResults> {
  const text = await readFile(file, "utf8");
  const parsed = BenchResultsSchema.safeParse(JSON.parse(text));
  if (!parsed.success) throw new Error(`Cannot read ${file} as benchmark results: ${parsed.error.message}`);
  return parsed.data;
}

/** Medians of time and bytes, peaks of RSS, over a scenario's runs. */
export function summarize(runs: readonly z.infer<typeof MeasurementSchema>[]): Summary | undefined {
  if (runs.length === 0) return undefined;
  const total = (b: { sent: number; received: number } | undefined): number | undefined => (b === undefined ? undefined : b.sent + b.received);
  const defined = (values: (number | undefined)[]): number[] => values.filter((v): v is number => v !== undefined);
  const payload = defined(runs.map((r) => total(r.payload)));
  const ssh = defined(runs.map((r) => total(r.ssh)));
  const client = defined(runs.map((r) => r.clientRssKiB));
  const server = defined(runs.map((r) => r.serverRssKiB));
  return {
    wallMs: median(runs.map((r) => r.wallMs))!,
    ...(payload.length === runs.length ? { payloadBytes: median(payload)! } : {}),
    ...(ssh.length === runs.length ? { sshBytes: median(ssh)! } : {}),
    ...(client.length > 0 ? { clientRssKiB: Math.max(...client) } : {}),
    ...(server.length > 0 ? { serverRssKiB: Math.max(...server) } : {}),
  };
}

/** Ratios of a result to the baseline's in the same data set and scenario. */
export interface Ratios {
  time?: number;
  bytes?: number;
  /** Which byte counts the bytes ratio compares: the tools' own payload counts, or SSH bytes. */
  bytesBasis?: "payload" | "ssh";
}

export function ratiosFor(results: BenchResults, row: ScenarioResult): Ratios {
  const base = results.results.find((r) => r.dataset === row.dataset && r.scenario === row.scenario && r.tool === results.baseline);
  const a = row.summary;
  const b = base?.summary;
  if (a === undefined || b === undefined || row.error !== undefined || base?.error !== undefined) return {};
  const out: Ratios = { time: a.wallMs / b.wallMs };
  if (a.payloadBytes !== undefined && b.payloadBytes !== undefined && b.payloadBytes > 0) {
    out.bytes = a.payloadBytes / b.payloadBytes;
    out.bytesBasis = "payload";
  } else if (a.sshBytes !== undefined && b.sshBytes !== undefined && b.sshBytes > 0) {
    out.bytes = a.sshBytes / b.sshBytes;
    out.bytesBasis = "ssh";
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Formatting

export function formatBytes(bytes: number | undefined): string {
  if (bytes === undefined) return "n/a";
  if (bytes < 1024) return `${Math.round(bytes)} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value >= 100 ? value.toFixed(0) : value.toFixed(1)} ${units[unit]}`;
}

export function formatTime(ms: number | undefined): string {
  if (ms === undefined) return "n/a";
  if (ms < 10_000) return `${(ms / 1000).toFixed(2)} s`;
  return `${(ms / 1000).toFixed(1)} s`;
}

function formatRss(kib: number | undefined): string {
  return kib === undefined ? "n/a" : `${(kib / 1024).toFixed(0)} MiB`;
}

function formatRatio(value: number | undefined, suffix = ""): string {
  if (value === undefined) return "";
  // Two decimals, except where that would print 0.00 for a real difference (392 B against 2 MiB).
  const text = value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value >= 0.01 || value === 0 ? value.toFixed(2) : value.toPrecision(1);
  return `${text}×${suffix}`;
}

/** "median of 3 runs per scenario", or the two counts when push/pull ran fewer times. */
export function runsLabel(d: DatasetInfo): string {
  const runs = (n: number): string => `${n} run${n === 1 ? "" : "s"}`;
  return d.runs === d.syncRuns
    ? `median of ${runs(d.runs)} per scenario`
    : `median of ${runs(d.syncRuns)} for no-op and 1% change, ${runs(d.runs)} for push and pull`;
}

export function datasetLabel(d: DatasetInfo): string {
  return `${d.name}: ${d.files.toLocaleString("en-US")} files, ${formatBytes(d.bytes)} in ${d.folders.toLocaleString("en-US")} folders`;
}

function scenarioTitle(results: BenchResults, row: ScenarioResult): string {
  const prefix = results.datasets.length > 1 && row.dataset !== results.datasets[0]?.name ? `${row.dataset}: ` : "";
  return `${prefix}${SCENARIO_LABELS[row.scenario]}`;
}

const HEADERS = ["Scenario", "Tool", "Time", "Payload", "SSH bytes", "Client RSS", "Server RSS", "Time vs rsync", "Bytes vs rsync"];

/** One row of cells per result, in data-set, scenario and tool order. */
function tableRows(results: BenchResults): string[][] {
  const rows: string[][] = [];
  let lastGroup = "";
  for (const row of results.results) {
    const group = `${row.dataset}/${row.scenario}`;
    const title = group === lastGroup ? "" : scenarioTitle(results, row);
    lastGroup = group;
    if (row.skipped !== undefined) {
      rows.push([title, row.tool, `skipped: ${row.skipped}`]);
      continue;
    }
    if (row.error !== undefined) {
      rows.push([title, row.tool, `failed: ${row.error}`]);
      continue;
    }
    const s = row.summary;
    const r = ratiosFor(results, row);
    rows.push([
      title,
      row.tool,
      formatTime(s?.wallMs),
      formatBytes(s?.payloadBytes),
      formatBytes(s?.sshBytes),
      formatRss(s?.clientRssKiB),
      formatRss(s?.serverRssKiB),
      formatRatio(r.time),
      formatRatio(r.bytes, r.bytesBasis === "ssh" ? " (ssh)" : ""),
    ]);
  }
  return rows;
}

/** The results as an aligned text table (a failed or skipped row spans the figure columns). */
export function renderTextTable(results: BenchResults): string {
  const rows = tableRows(results);
  const widths = HEADERS.map((h, i) => Math.max(h.length, ...rows.filter((r) => r.length === HEADERS.length).map((r) => r[i]!.length)));
  const line = (cells: string[]): string =>
    cells
      .map((cell, i) => (cells.length < HEADERS.length && i === cells.length - 1 ? cell : i >= 2 ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  const out = [line(HEADERS), widths.map((w) => "-".repeat(w)).join("  ")];
  let previous = "";
  for (const row of rows) {
    if (row[0] !== "" && previous !== "") out.push("");
    out.push(line(row));
    previous = row[0]!;
  }
  return out.join("\n");
}

function escapeMarkdown(text: string): string {
  return text.replaceAll("|", "\\|").replaceAll("\n", " ");
}

/** The results as a Markdown table. */
export function renderMarkdownTable(results: BenchResults): string {
  const rows = tableRows(results).map((r) => (r.length < HEADERS.length ? [...r, ...new Array<string>(HEADERS.length - r.length).fill("")] : r));
  const align = HEADERS.map((_, i) => (i >= 2 ? "---:" : "---"));
  return [HEADERS, align, ...rows].map((r) => `| ${r.map(escapeMarkdown).join(" | ")} |`).join("\n");
}

/** The generated section of docs/performance.md (between the markers). */
export function renderDocsSection(results: BenchResults): string {
  const m = results.machine;
  const lines = [
    `Last run: ${results.finishedAt.slice(0, 16).replace("T", " ")} UTC, \`${results.command}\`, ${formatTime(results.durationMs)} in all.`,
    "",
    `Machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB memory, ${m.os}, Linux ${m.kernel}.`,
    `Versions: ${Object.entries(results.versions).map(([k, v]) => `${k} ${v}`).join("; ")}.`,
    `Cipher for every tool: \`${results.cipher}\`.`,
    "",
    "Data sets:",
    "",
    ...results.datasets.map((d) => `- ${datasetLabel(d)}; ${runsLabel(d)}`),
    "",
    renderMarkdownTable(results),
    "",
    "![Time relative to rsync -a per scenario](../bench/results/latest.svg)",
  ];
  if (results.notes.length > 0) lines.push("", "Notes from this run:", "", ...results.notes.map((n) => `- ${n}`));
  return lines.join("\n");
}

export const DOCS_START = "<!-- bench:results:start (generated by `node bench/run.ts --write-docs`; edits here are overwritten) -->";
export const DOCS_END = "<!-- bench:results:end -->";

/** Replaces the generated section of a performance.md text; throws if the markers are gone. */
export function replaceDocsSection(markdown: string, section: string): string {
  const start = markdown.indexOf(DOCS_START);
  const end = markdown.indexOf(DOCS_END);
  if (start === -1 || end === -1 || end < start) {
    throw new Error(`Cannot update docs/performance.md as its markers are missing: keep "${DOCS_START}" and "${DOCS_END}" in the file`);
  }
  return `${markdown.slice(0, start + DOCS_START.length)}\n${section}\n${markdown.slice(end)}`;
}

// ---------------------------------------------------------------------------------------------
// SVG chart

const COLORS: Record<string, string> = { cws: "#1f6feb", "rsync -az": "#8b949e", unison: "#d4762c" };
const FALLBACK_COLORS = ["#2da44e", "#a371f7", "#bf3989"];

function escapeXml(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll('"', "&quot;");
}

/**
 * A grouped bar chart of wall time relative to rsync -a, one group per scenario, on a log₂
 * axis so that "twice as fast" and "twice as slow" look the same size. Bars start at 1× (the
 * baseline): up is slower than rsync, down is faster. Failed or skipped tools get a label.
 */
export function renderSvg(results: BenchResults): string {
  // cws first: it is what the chart is about; the other tools follow in run order.
  const tools = results.tools.filter((t) => t !== results.baseline).sort((a, b) => Number(b === "cws") - Number(a === "cws"));
  const groups: { scenario: string; dataset: string; rows: ScenarioResult[] }[] = [];
  for (const d of results.datasets) {
    for (const s of SCENARIOS) {
      const rows = tools.map((t) => results.results.find((r) => r.dataset === d.name && r.scenario === s && r.tool === t)).filter((r): r is ScenarioResult => r !== undefined);
      if (rows.length > 0) groups.push({ scenario: SCENARIO_LABELS[s], dataset: d.name, rows });
    }
  }
  const ratios = groups.flatMap((g) => g.rows.map((r) => ratiosFor(results, r).time).filter((v): v is number => v !== undefined && v > 0));
  const maxExp = Math.min(6, Math.max(1, Math.ceil(Math.log2(Math.max(1, ...ratios)))));
  const minExp = Math.max(-6, Math.min(-1, Math.floor(Math.log2(Math.min(1, ...ratios)))));

  const barWidth = 24;
  const gap = 8;
  const groupWidth = Math.max(120, Math.max(1, tools.length) * (barWidth + gap) + 28);
  const left = 64;
  const top = 56;
  const plotHeight = 300;
  const width = Math.max(640, left + groups.length * groupWidth + 24);
  const height = top + plotHeight + 110;
  const y = (ratio: number): number => top + ((maxExp - Math.log2(ratio)) / (maxExp - minExp)) * plotHeight;

  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif" font-size="12">`);
  parts.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`);
  const subtitle = results.datasets.map((d) => `${d.name}: ${d.files.toLocaleString("en-US")} files, ${formatBytes(d.bytes)}`).join(" · ");
  parts.push(`<text x="${left}" y="22" font-size="15" font-weight="600">Wall time relative to ${escapeXml(results.baseline)} (lower is faster)</text>`);
  parts.push(`<text x="${left}" y="40" fill="#57606a">${escapeXml(`${subtitle} · ${results.finishedAt.slice(0, 10)} · ${results.machine.cores} cores`)}</text>`);
  for (let e = minExp; e <= maxExp; e++) {
    const ratio = 2 ** e;
    const yy = y(ratio).toFixed(1);
    const label = e >= 0 ? `${ratio}×` : `1/${2 ** -e}×`;
    parts.push(`<line x1="${left}" x2="${width - 16}" y1="${yy}" y2="${yy}" stroke="${e === 0 ? "#24292f" : "#d0d7de"}" stroke-width="${e === 0 ? 1.5 : 1}"/>`);
    parts.push(`<text x="${left - 8}" y="${yy}" text-anchor="end" dominant-baseline="middle" fill="#57606a">${label}</text>`);
  }
  groups.forEach((group, gi) => {
    const x0 = left + 16 + gi * groupWidth;
    group.rows.forEach((row, ti) => {
      const x = x0 + ti * (barWidth + gap);
      const color = COLORS[row.tool] ?? FALLBACK_COLORS[ti % FALLBACK_COLORS.length]!;
      const ratio = ratiosFor(results, row).time;
      if (ratio === undefined || ratio <= 0) {
        const why = row.skipped !== undefined ? "skipped" : "failed";
        parts.push(`<text x="${x + barWidth / 2}" y="${(y(1) - 6).toFixed(1)}" text-anchor="start" transform="rotate(-90 ${x + barWidth / 2} ${(y(1) - 6).toFixed(1)})" fill="${color}" font-size="11">${escapeXml(`${row.tool} ${why}`)}</text>`);
        return;
      }
      const clamped = Math.min(2 ** maxExp, Math.max(2 ** minExp, ratio));
      const y1 = Math.min(y(1), y(clamped));
      const h = Math.max(1, Math.abs(y(clamped) - y(1)));
      parts.push(`<rect x="${x}" y="${y1.toFixed(1)}" width="${barWidth}" height="${h.toFixed(1)}" fill="${color}"><title>${escapeXml(`${row.tool}, ${group.dataset}, ${group.scenario}: ${formatRatio(ratio)} (${formatTime(row.summary?.wallMs)})`)}</title></rect>`);
      const labelY = ratio >= 1 ? y1 - 4 : y1 + h + 11;
      parts.push(`<text x="${x + barWidth / 2}" y="${labelY.toFixed(1)}" text-anchor="middle" font-size="10" fill="#24292f">${escapeXml(formatRatio(ratio))}</text>`);
    });
    const cx = x0 + (group.rows.length * (barWidth + gap)) / 2;
    parts.push(`<text x="${cx}" y="${top + plotHeight + 18}" text-anchor="middle" fill="#24292f">${escapeXml(group.scenario)}</text>`);
    parts.push(`<text x="${cx}" y="${top + plotHeight + 33}" text-anchor="middle" fill="#57606a" font-size="11">${escapeXml(group.dataset)}</text>`);
    // A thin rule between data sets.
    if (gi > 0 && groups[gi - 1]!.dataset !== group.dataset) {
      const xs = (x0 - 16 + 4).toFixed(1);
      parts.push(`<line x1="${xs}" x2="${xs}" y1="${top}" y2="${top + plotHeight + 36}" stroke="#8c959f" stroke-dasharray="4 3"/>`);
    }
  });
  let lx = left;
  const ly = top + plotHeight + 56;
  tools.forEach((tool, ti) => {
    const color = COLORS[tool] ?? FALLBACK_COLORS[ti % FALLBACK_COLORS.length]!;
    parts.push(`<rect x="${lx}" y="${ly - 10}" width="12" height="12" fill="${color}"/>`);
    parts.push(`<text x="${lx + 18}" y="${ly}">${escapeXml(tool)}</text>`);
    lx += 30 + tool.length * 8;
  });
  parts.push(`<text x="${left}" y="${ly + 26}" fill="#57606a">${escapeXml(`1× = ${results.baseline} in the same run; median of the runs per scenario; cipher ${results.cipher}.`)}</text>`);
  parts.push("</svg>");
  return `${parts.join("\n")}\n`;
}
