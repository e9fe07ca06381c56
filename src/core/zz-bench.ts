import { evaluatePush } from "./policy.ts";
import { makeManifest } from "./manifest.ts";
import type { ManifestEntry } from "./manifest.ts";
function file(path: string, h: string): ManifestEntry { return { path, kind: "file", size: 1, mtimeMs: 0, mode: 0o644, hash: h, chunks: [[h, 1]] }; }
const N = 100_000;
const before = makeManifest(Array.from({ length: N }, (_, i) => file(`files/d${Math.floor(i / 100)}/f${i}.txt`, "0000000000000000")));
const after = makeManifest(Array.from({ length: N }, (_, i) => file(`files/e${Math.floor(i / 100)}/g${i}.txt`, "0000000000000000")));
let t = performance.now();
const d = evaluatePush({ before, after });
console.log("all-same-content moves", performance.now() - t, d.held.length);
const after2 = makeManifest(before.entries.filter((_, i) => i % 3 !== 0));
t = performance.now();
const d2 = evaluatePush({ before, after: after2, settings: { maxDeleteCount: 1e9, maxDeleteShare: 1 } });
console.log("33k deletes no mass", performance.now() - t, d2.held.length);
