import assert from "node:assert/strict";
import { test } from "node:test";
import {
  effectiveThreadNames,
  formatIndexEntry,
  mergeSessionIndex,
  parseSessionIndex,
  selectIndexEntries,
  updatedAtKey,
  type SessionIndexEntry,
} from "./codex-index.ts";

const A = "019e2a4b-7c1d-7e3f-9a0b-1c2d3e4f5a6b";
const B = "019e2f00-1111-7222-8333-444455556666";
const OTHER = "019e9999-0000-7000-8000-00000000ffff";

const entry = (id: string, threadName: string, updatedAt: string): SessionIndexEntry => ({ id, threadName, updatedAt });
const lineOf = (e: SessionIndexEntry): string => formatIndexEntry(e) + "\n";

test("parseSessionIndex skips and counts bad lines", () => {
  const text =
    lineOf(entry(A, "One", "2026-05-18T06:10:00Z")) +
    "not json\n" +
    '{"id":"x","thread_name":"no time"}\n' +
    '{"id":"x","thread_name":"bad time","updated_at":"yesterday"}\n' +
    "\n" +
    '{"id":"' + B + '","thread_name":"Zwei – ü","updated_at":"2026-05-18T08:00:00+02:00"}';
  const { entries, badLines } = parseSessionIndex(text);
  assert.equal(badLines, 3);
  assert.deepEqual(entries.map((e) => e.threadName), ["One", "Zwei – ü"]);
  assert.deepEqual(selectIndexEntries(text, new Set([B])), [entry(B, "Zwei – ü", "2026-05-18T08:00:00+02:00")]);
});

test("updatedAtKey orders sub-millisecond times and offsets correctly", () => {
  const k = (t: string): bigint => {
    const key = updatedAtKey(t);
    assert.ok(key !== null, t);
    return key;
  };
  assert.ok(k("2026-05-18T06:10:00.123456Z") < k("2026-05-18T06:10:00.123457Z"));
  assert.equal(k("2026-05-18T08:00:00+02:00"), k("2026-05-18T06:00:00Z"));
  assert.equal(k("2026-05-18T06:00:00.5Z"), k("2026-05-18T06:00:00.500000000Z"));
  for (const bad of ["2026-02-30T00:00:00Z", "2026-05-18 06:00:00Z", "2026-05-18T06:00:00", "x"]) {
    assert.equal(updatedAtKey(bad), null, bad);
  }
});

test("merging the newest name of an owned thread makes it the last line for that id", () => {
  const local = lineOf(entry(A, "Old name", "2026-05-18T06:10:00Z")) + lineOf(entry(OTHER, "Foreign", "2026-05-18T06:20:00Z"));
  const merged = mergeSessionIndex(local, [entry(A, "New name", "2026-05-18T07:00:00Z")], new Set([A]));
  assert.equal(merged, local + lineOf(entry(A, "New name", "2026-05-18T07:00:00Z")));
  assert.equal(effectiveThreadNames(merged).get(A)?.threadName, "New name");
});

test("an older incoming name is kept in history but does not win", () => {
  const local = lineOf(entry(A, "Newest", "2026-05-18T09:00:00Z"));
  const merged = mergeSessionIndex(local, [entry(A, "Older", "2026-05-18T08:00:00Z")], new Set([A]));
  assert.equal(merged, lineOf(entry(A, "Older", "2026-05-18T08:00:00Z")) + local);
  assert.equal(effectiveThreadNames(merged).get(A)?.threadName, "Newest");
});

test("other threads' lines keep their bytes and order, and foreign incoming entries are ignored", () => {
  const local =
    '{"id":"' + OTHER + '", "thread_name":"spaced \\u00fc","updated_at":"2026-05-18T10:00:00Z"}\r\n' +
    "garbage line\n" +
    lineOf(entry(A, "A1", "2026-05-18T06:00:00Z")) +
    '{"id":"' + OTHER + '","thread_name":"earlier but later in file","updated_at":"2026-05-18T05:00:00Z"}';
  const merged = mergeSessionIndex(
    local,
    [entry(A, "A2", "2026-05-18T11:00:00Z"), entry(OTHER, "hijack", "2026-05-19T00:00:00Z")],
    new Set([A]),
  );
  const out = merged.split("\n");
  // Others (with the garbage line glued to its predecessor) stay in their relative order and bytes.
  const others = out.filter((l) => !l.includes(A) && l !== "");
  assert.deepEqual(others, [
    '{"id":"' + OTHER + '", "thread_name":"spaced \\u00fc","updated_at":"2026-05-18T10:00:00Z"}\r',
    "garbage line",
    '{"id":"' + OTHER + '","thread_name":"earlier but later in file","updated_at":"2026-05-18T05:00:00Z"}',
  ]);
  assert.ok(!merged.includes("hijack"));
  assert.equal(effectiveThreadNames(merged).get(A)?.threadName, "A2");
  assert.equal(effectiveThreadNames(merged).get(OTHER)?.threadName, "earlier but later in file");
  assert.ok(merged.endsWith("\n"));
});

test("a merge with nothing new returns the local text unchanged", () => {
  const local = lineOf(entry(A, "A1", "2026-05-18T06:00:00Z")) + "bad\r\n" + formatIndexEntry(entry(B, "B1", "2026-05-18T07:00:00Z"));
  const incoming = [entry(A, "A1", "2026-05-18T06:00:00Z"), entry(B, "B1", "2026-05-18T07:00:00Z")];
  assert.equal(mergeSessionIndex(local, incoming, new Set([A, B])), local);
  assert.equal(mergeSessionIndex(local, [], new Set()), local);
  assert.equal(mergeSessionIndex("", [], new Set([A])), "");
});

test("an unsorted local index gets its owned entries sorted by time", () => {
  const late = entry(A, "late", "2026-05-18T09:00:00Z");
  const early = entry(A, "early", "2026-05-18T08:00:00Z");
  const local = lineOf(late) + formatIndexEntry(early); // no final newline
  const merged = mergeSessionIndex(local, [], new Set([A]));
  // A rewritten index always ends with a newline, so Codex's next append starts a new line.
  assert.equal(merged, lineOf(early) + lineOf(late));
  assert.equal(effectiveThreadNames(merged).get(A)?.threadName, "late");
});

test("incoming entries are validated and merged into an empty index", () => {
  const incoming = [
    entry(B, "B late", "2026-05-18T09:00:00.000001Z"),
    entry(A, "A", "2026-05-18T09:00:00Z"),
    entry(B, "bad time", "tomorrow"),
    { id: B, threadName: 42, updatedAt: "2026-05-18T10:00:00Z" } as unknown as SessionIndexEntry,
    entry(B, "B late", "2026-05-18T09:00:00.000001Z"),
  ];
  const merged = mergeSessionIndex("", incoming, new Set([A, B]));
  assert.equal(merged, lineOf(incoming[1]) + lineOf(incoming[0]));
});
