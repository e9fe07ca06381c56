import assert from "node:assert/strict";
import { test } from "node:test";
import { Manifest } from "./manifest.ts";
import { decodeManifestRows, encodeManifestRows, isManifestRows } from "./manifest-rows.ts";

const H1 = "0123456789abcdef";
const H2 = "fedcba9876543210";

const manifest: Manifest = {
  format: 1,
  entries: [
    { path: "codex/index", kind: "file", size: 7, mtimeMs: 3.25, mode: 0o600, hash: H2, chunks: [[H2, 7]] },
    { path: "files/a", kind: "dir", size: 0, mtimeMs: 5, mode: 0o755, hash: "", chunks: [] },
    { path: "files/a/big", kind: "file", size: 300_000, mtimeMs: 9, mode: 0o644, hash: H1, chunks: [[H2, 200_000], [H1, 100_000]] },
    { path: "files/a/empty", kind: "file", size: 0, mtimeMs: 0, mode: 0o644, hash: H2, chunks: [] },
    // One chunk whose hash is not the file's (impossible from the chunker, but valid): kept as a list.
    { path: "files/a/odd", kind: "file", size: 5, mtimeMs: 1, mode: 0o644, hash: H1, chunks: [[H2, 5]] },
  ],
};

function rows(): unknown[] {
  return JSON.parse(encodeManifestRows(manifest)).rows;
}

test("a manifest comes back from its compact form unchanged", () => {
  const json = JSON.parse(encodeManifestRows(manifest));
  assert.ok(isManifestRows(json));
  assert.deepEqual(decodeManifestRows(json), manifest);
  assert.equal(json.rows[0][5], 1, "a single whole-file chunk is written as 1");
  assert.deepEqual(decodeManifestRows(JSON.parse(encodeManifestRows({ format: 1, entries: [] }))), { format: 1, entries: [] });
});

test("the compact form is refused wherever the Manifest schema would refuse the manifest", () => {
  const damaged: Array<[string, (r: unknown[][]) => void]> = [
    ["unsorted", (r) => r.reverse()],
    ["a duplicate", (r) => r.push(r[r.length - 1])],
    ["an empty path", (r) => { r[1][0] = ""; }],
    ["a negative mtime", (r) => { r[1][1] = -1; }],
    ["a mode too big", (r) => { r[1][2] = 0o17777; }],
    ["a fractional size", (r) => { r[2][1] = 1.5; }],
    ["an infinite mtime on a file", (r) => { r[2][2] = Infinity; }],
    ["a bad hash", (r) => { r[2][4] = "x"; }],
    ["no hash", (r) => { r[2][4] = ""; }],
    ["chunks not adding up", (r) => { r[2][1] = 300_001; }],
    ["a chunk too long", (r) => { r[2][5] = [H1, 300_000]; }],
    ["an odd chunk list", (r) => { r[2][5] = [H1]; }],
    ["a whole chunk for an empty file", (r) => { r[3][5] = 1; }],
    ["a whole chunk for a long file", (r) => { r[2][5] = 1; }],
    ["a row of the wrong length", (r) => { r[3].push(0); }],
    ["a row that is not an array", (r) => { (r as unknown[])[0] = {}; }],
  ];
  for (const [name, damage] of damaged) {
    const r = rows() as unknown[][];
    damage(r);
    assert.equal(decodeManifestRows({ format: 1, rows: r }), null, name);
  }
  assert.equal(decodeManifestRows({ format: 2, rows: rows() }), null, "another format");
  assert.equal(isManifestRows({ format: 1, entries: [] }), false, "the plain form is told apart");
});

test("whatever the compact form decodes to passes the Manifest schema", () => {
  const decoded = decodeManifestRows(JSON.parse(encodeManifestRows(manifest)));
  assert.ok(Manifest.safeParse(decoded).success);
});
