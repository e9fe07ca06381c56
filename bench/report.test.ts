import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseCwsSummary } from "./cws-runner.ts";
import { median, parseRssFile, parseSshTransferred } from "./measure.ts";
import {
  type BenchResults,
  DOCS_END,
  DOCS_START,
  ratiosFor,
  renderMarkdownTable,
  renderSvg,
  renderTextTable,
  replaceDocsSection,
  summarize,
} from "./report.ts";
import { parseRsyncStats } from "./rsync-runner.ts";

describe("parsers of tool output", () => {
  it("parseRsyncStats() reads digit-grouped totals from the client's side", () => {
    const stdout = "Number of files: 5,001\nTotal bytes sent: 317,845,120\nTotal bytes received: 95,123\n\nsent 317,845,120 bytes";
    assert.deepEqual(parseRsyncStats(stdout), { sent: 317_845_120, received: 95_123 });
    assert.equal(parseRsyncStats("no stats here"), undefined);
  });

  it("parseSshTransferred() adds up one line per connection", () => {
    const stderr = "Authenticated to 127.0.0.1\nTransferred: sent 3388, received 103472 bytes, in 0.2 seconds\n" +
      "Transferred: sent 12, received 8 bytes, in 0.0 seconds\n";
    assert.deepEqual(parseSshTransferred(stderr), { sent: 3400, received: 103_480 });
    assert.equal(parseSshTransferred("nothing"), undefined);
  });

  it("parseRssFile() takes the largest record and skips GNU time's exit-status line", () => {
    assert.equal(parseRssFile("Command exited with non-zero status 1\n8228\n"), 8228);
    assert.equal(parseRssFile("6592\n20304\n9000\n"), 20304);
    assert.equal(parseRssFile(""), undefined);
  });

  it("parseCwsSummary() finds the wire bytes in JSON output, also after log lines", () => {
    assert.deepEqual(parseCwsSummary('{"pushed":3,"wire":{"sent":10,"received":20}}'), { payload: { sent: 10, received: 20 } });
    assert.deepEqual(parseCwsSummary('progress…\n{"wire":{"sent":1,"received":2,"sshSent":5,"sshReceived":6}}\n'), {
      payload: { sent: 1, received: 2 },
      ssh: { sent: 5, received: 6 },
    });
    assert.equal(parseCwsSummary('{"ok":true}'), undefined);
    assert.equal(parseCwsSummary("not json"), undefined);
  });
});

describe("summaries and ratios", () => {
  it("median() takes the middle value, or the mean of the middle two", () => {
    assert.equal(median([3, 1, 2]), 2);
    assert.equal(median([4, 1, 3, 2]), 2.5);
    assert.equal(median([]), undefined);
  });

  it("summarize() reports median time and bytes and peak memory", () => {
    const summary = summarize([
      { wallMs: 300, payload: { sent: 10, received: 0 }, clientRssKiB: 10, serverRssKiB: 5 },
      { wallMs: 100, payload: { sent: 30, received: 0 }, clientRssKiB: 30, serverRssKiB: 1 },
      { wallMs: 200, payload: { sent: 20, received: 0 }, clientRssKiB: 20 },
    ]);
    assert.deepEqual(summary, { wallMs: 200, payloadBytes: 20, clientRssKiB: 30, serverRssKiB: 5 });
  });

  const results: BenchResults = {
    format: 1,
    startedAt: "2026-01-01T00:00:00.000Z",
    finishedAt: "2026-01-01T00:05:00.000Z",
    durationMs: 300_000,
    command: "node bench/run.ts --quick",
    options: {},
    machine: { cpu: "Test CPU", cores: 2, memoryGiB: 4, os: "Debian", kernel: "6.1" },
    versions: { rsync: "3.2.7" },
    cipher: "aes128-gcm@openssh.com",
    baseline: "rsync -a",
    tools: ["rsync -a", "unison", "cws"],
    datasets: [{ name: "base", files: 10, bytes: 1000, folders: 2, byKind: {}, generateMs: 1, runs: 1, syncRuns: 1 }],
    results: [
      { dataset: "base", scenario: "push", tool: "rsync -a", runs: [], summary: { wallMs: 1000, payloadBytes: 400, sshBytes: 500 } },
      { dataset: "base", scenario: "push", tool: "unison", runs: [], summary: { wallMs: 3000, sshBytes: 1000 } },
      { dataset: "base", scenario: "push", tool: "cws", runs: [], summary: { wallMs: 500, payloadBytes: 200 } },
      { dataset: "base", scenario: "noop", tool: "rsync -a", runs: [], summary: { wallMs: 100 } },
      { dataset: "base", scenario: "noop", tool: "cws", runs: [], error: "cws sync exited with 1: boom | with a pipe" },
    ],
    notes: [],
  };

  it("ratiosFor() compares payloads where both tools count them, else SSH bytes", () => {
    assert.deepEqual(ratiosFor(results, results.results[2]!), { time: 0.5, bytes: 0.5, bytesBasis: "payload" });
    assert.deepEqual(ratiosFor(results, results.results[1]!), { time: 3, bytes: 2, bytesBasis: "ssh" });
    assert.deepEqual(ratiosFor(results, results.results[4]!), {});
  });

  it("the renderings show failures as text and never print NaN", () => {
    const text = renderTextTable(results);
    assert.match(text, /cws\s+failed: cws sync exited with 1/);
    assert.match(text, /0\.50×/);
    const markdown = renderMarkdownTable(results);
    assert.match(markdown, /boom \\\| with a pipe/);
    const svg = renderSvg(results);
    assert.match(svg, /^<svg /);
    assert.match(svg, /cws failed/);
    for (const out of [text, markdown, svg]) assert.doesNotMatch(out, /NaN|undefined|Infinity/);
  });

  it("replaceDocsSection() swaps only the text between the markers", () => {
    const doc = `# Title\n\nintro\n\n${DOCS_START}\nold\n${DOCS_END}\n\nafter\n`;
    const updated = replaceDocsSection(doc, "new table");
    assert.equal(updated, `# Title\n\nintro\n\n${DOCS_START}\nnew table\n${DOCS_END}\n\nafter\n`);
    assert.throws(() => replaceDocsSection("# no markers", "x"), /markers are missing/);
  });
});
