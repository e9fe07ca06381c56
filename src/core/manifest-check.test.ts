import assert from "node:assert/strict";
import { test } from "node:test";
import { Manifest } from "./manifest.ts";
import { CheckedManifest, safeParseManifest } from "./manifest-check.ts";

const H1 = "0123456789abcdef";
const H2 = "fedcba9876543210";

function valid(): Record<string, unknown> {
  return {
    format: 1,
    entries: [
      { path: "files/a", kind: "dir", size: 0, mtimeMs: 5, mode: 0o755, hash: "", chunks: [] },
      { path: "files/a/b.md", kind: "file", size: 30, mtimeMs: 1.5, mode: 0o644, hash: H1, chunks: [[H1, 10], [H2, 20]] },
      { path: "files/a/empty", kind: "file", size: 0, mtimeMs: 0, mode: 0o600, hash: H2, chunks: [] },
    ],
  };
}

/** Every way the fixture can be damaged, one at a time, plus shapes the schema strips. */
function variants(): Array<[string, unknown]> {
  const out: Array<[string, unknown]> = [["valid", valid()]];
  const entryEdits: Array<[string, (e: Record<string, unknown>) => void]> = [
    ["empty path", (e) => { e.path = ""; }],
    ["long path", (e) => { e.path = "files/" + "x".repeat(5000); }],
    ["bad kind", (e) => { e.kind = "link"; }],
    ["negative size", (e) => { e.size = -1; }],
    ["fractional size", (e) => { e.size = 1.5; }],
    ["infinite mtime", (e) => { e.mtimeMs = Infinity; }],
    ["negative mtime", (e) => { e.mtimeMs = -1; }],
    ["string mtime", (e) => { e.mtimeMs = "5"; }],
    ["mode too big", (e) => { e.mode = 0o17777; }],
    ["upper-case hash", (e) => { e.hash = H1.toUpperCase(); }],
    ["short hash", (e) => { e.hash = "abc"; }],
    ["no hash on a file", (e) => { e.hash = ""; }],
    ["chunks not an array", (e) => { e.chunks = {}; }],
    ["chunk of three", (e) => { e.chunks = [[H1, 10, 1], [H2, 20]]; }],
    ["chunk too long", (e) => { e.chunks = [[H1, 300_000]]; e.size = 300_000; }],
    ["chunks not adding up", (e) => { e.size = 31; }],
    ["bad chunk hash", (e) => { e.chunks = [["x", 10], [H2, 20]]; }],
    ["missing key", (e) => { delete e.mode; }],
    ["extra key", (e) => { e.extra = true; }],
    ["folder with a size", (e) => { e.kind = "dir"; }],
  ];
  for (const [name, edit] of entryEdits) {
    const manifest = valid();
    edit((manifest.entries as Record<string, unknown>[])[1]);
    out.push([name, manifest]);
  }
  const unsorted = valid();
  (unsorted.entries as unknown[]).reverse();
  out.push(["unsorted", unsorted]);
  const duplicated = valid();
  (duplicated.entries as unknown[]).push((duplicated.entries as unknown[])[2]);
  out.push(["duplicate path", duplicated]);
  out.push(["extra top-level key", { ...valid(), note: "x" }]);
  out.push(["format 2", { ...valid(), format: 2 }]);
  out.push(["entries not an array", { format: 1, entries: {} }]);
  out.push(["an array", []]);
  out.push(["null", null]);
  out.push(["empty", { format: 1, entries: [] }]);
  return out;
}

test("safeParseManifest() gives exactly the schema's result, damaged or not", () => {
  for (const [name, value] of variants()) {
    const fast = safeParseManifest(structuredClone(value));
    const slow = Manifest.safeParse(structuredClone(value));
    assert.equal(fast.success, slow.success, name);
    if (slow.success) assert.deepEqual(fast.data, slow.data, name);
  }
});

test("safeParseManifest() accepts a well-formed manifest as it is, without the schema's copy", () => {
  const value = valid();
  const parsed = safeParseManifest(value);
  assert.ok(parsed.success);
  assert.equal(parsed.data, value);
});

test("safeParseManifest() strips unknown keys as the schema does", () => {
  const value = valid();
  (value.entries as Record<string, unknown>[])[0].extra = 1;
  const parsed = safeParseManifest(value);
  assert.ok(parsed.success);
  assert.equal("extra" in parsed.data.entries[0], false);
});

test("CheckedManifest accepts and refuses what the Manifest schema does, with the same issues, and passes a well-formed manifest through uncopied", () => {
  for (const [name, value] of variants()) {
    const checked = CheckedManifest.safeParse(structuredClone(value));
    const schema = Manifest.safeParse(structuredClone(value));
    assert.equal(checked.success, schema.success, name);
    if (schema.success) assert.deepEqual(checked.data, schema.data, name);
    else assert.deepEqual(checked.error?.issues.map((i) => [i.path, i.message]), schema.error.issues.map((i) => [i.path, i.message]), name);
  }
  const value = valid();
  const parsed = CheckedManifest.safeParse(value);
  assert.ok(parsed.success);
  assert.equal(parsed.data, value);
});
