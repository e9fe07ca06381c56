import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { makeManifest, type Manifest, type ManifestEntry } from "../core/manifest.ts";
import { maskHeld, nextHeldRecord, recordHeld, type HeldLocalItem, type HeldStatus } from "./quarantine-held.ts";

function file(path: string, content = path): ManifestEntry {
  const hash = (content.length.toString(16) + "0".repeat(16)).slice(0, 16);
  const size = content.length;
  return { path, kind: "file", size, mtimeMs: 1, mode: 0o644, hash, chunks: [[hash, size]] };
}

function dir(path: string): ManifestEntry {
  return { path, kind: "dir", size: 0, mtimeMs: 1, mode: 0o755, hash: "", chunks: [] };
}

function manifest(...entries: ManifestEntry[]): Manifest {
  return makeManifest(entries);
}

function paths(m: Manifest): string[] {
  return m.entries.map((e) => `${e.path}${e.kind === "file" ? `:${e.size}` : "/"}`);
}

/** An item holding the delete of `files/a.md` (server kept `kept`). */
function heldDelete(id: number, kept: ManifestEntry): HeldLocalItem {
  return { id, reason: "protected-delete", summary: "deletes a.md", proposed: { [kept.path]: null }, kept: { [kept.path]: kept } };
}

const none: HeldStatus = { pending: [], rejected: [], settled: [] };

describe("maskHeld()", () => {
  const old = file("files/a.md", "old content");
  const server = manifest(old, file("files/b.md"));

  it("leaves a pending held delete out of the plan: the local scan reads as the server there", () => {
    const local = manifest(file("files/b.md"));
    const result = maskHeld(local, server, server, { ...none, pending: [heldDelete(7, old)] });
    assert.deepEqual(paths(result.local), paths(server));
    assert.deepEqual(result.waiting.map((w) => w.id), [7]);
  });

  it("does not mask a path the user changed again since it was held", () => {
    const local = manifest(file("files/a.md", "rewritten"), file("files/b.md"));
    const result = maskHeld(local, server, server, { ...none, pending: [heldDelete(7, old)] });
    assert.equal(result.local, local);
    assert.deepEqual(result.waiting, []);
  });

  it("does not mask a path the server changed since it was held", () => {
    const moved = manifest(file("files/a.md", "newer on server"), file("files/b.md"));
    const local = manifest(file("files/b.md"));
    const result = maskHeld(local, moved, server, { ...none, pending: [heldDelete(7, old)] });
    assert.equal(result.local, local);
  });

  it("makes a rejected held change read as agreed before, so the server's version is pulled back", () => {
    const local = manifest(file("files/b.md"));
    const result = maskHeld(local, server, server, { ...none, rejected: [heldDelete(8, old)] });
    assert.deepEqual(paths(result.base), ["files/b.md:10"]);
    assert.deepEqual(result.restoring, [8]);
  });

  it("skips an item whose masking would put an entry below a file", () => {
    // The user turned the folder into a file; the held delete of its content cannot be masked.
    const inFolder = file("files/d/x.md");
    const serverWithFolder = manifest(dir("files/d"), inFolder);
    const local = manifest(file("files/d"));
    const item: HeldLocalItem = { id: 9, reason: "folder-emptied", summary: "", proposed: { "files/d/x.md": null }, kept: { "files/d/x.md": inFolder } };
    const result = maskHeld(local, serverWithFolder, serverWithFolder, { ...none, pending: [item] });
    assert.equal(result.local, local);
    assert.deepEqual(result.waiting, []);
  });
});

describe("recordHeld() and nextHeldRecord()", () => {
  it("records what was proposed and what the server kept, and drops decided items", () => {
    const kept = file("files/a.md", "old content");
    const [recorded] = recordHeld(
      [{ id: 3, reason: "markdown-drift", summary: "s", paths: ["files/a.md"], heldPaths: ["files/a.md"], duplicate: false }],
      manifest(file("files/a.md", "cut")),
      manifest(kept),
    );
    assert.deepEqual(recorded.proposed["files/a.md"], file("files/a.md", "cut"));
    assert.deepEqual(recorded.kept["files/a.md"], kept);
    const pending = heldDelete(1, kept);
    const next = nextHeldRecord({ pending: [pending], rejected: [heldDelete(2, kept)], settled: [heldDelete(4, kept)] }, [recorded]);
    assert.deepEqual(next.map((i) => i.id), [1, 3]);
  });
});
