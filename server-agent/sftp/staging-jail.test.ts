import assert from "node:assert/strict";
import { mkdir, mkdtemp, realpath, rm, symlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { isStagingName, JailRefusal, openStagingJail } from "./staging-jail.ts";

describe("staging jail", () => {
  let work: string;
  let dataDir: string;
  before(async () => {
    work = await realpath(await mkdtemp(path.join(os.tmpdir(), "cws-jail-")));
    dataDir = path.join(work, "data");
    await mkdir(path.join(dataDir, "staging", "incoming"), { recursive: true });
    await mkdir(path.join(dataDir, "staging", "outgoing"), { recursive: true });
  });
  after(() => rm(work, { recursive: true, force: true }));

  it("takes bundle names and their .part, up to 128 characters before the suffix", () => {
    const longest = `a${"b".repeat(127)}`;
    for (const name of ["b1", "abc.def_1-2", `${longest}`, `${longest}.part`, "x.part"]) assert.ok(isStagingName(name), name);
    for (const name of ["", ".part", ".x", "-x", "a..b", "a/b", "a b", `${longest}c`, `${longest}c.part`, "é"]) assert.ok(!isStagingName(name), name);
  });

  it("resolves relative paths from incoming and absolute ones into either folder", () => {
    const jail = openStagingJail(dataDir);
    assert.deepEqual(jail.resolve("b1"), { kind: "file", area: "incoming", name: "b1", fsPath: path.join(dataDir, "staging", "incoming", "b1"), clientPath: "b1" });
    assert.equal(jail.resolve("").kind, "folder");
    assert.equal(jail.resolve("../outgoing/").kind, "folder");
    const out = jail.resolve(`${dataDir}//staging/./outgoing/o1`);
    assert.equal(out.kind === "file" && out.area, "outgoing");
  });

  it("accepts the data dir's path through a symlink and reaches the disk by the real path", async () => {
    const alias = path.join(work, "alias");
    await symlink(dataDir, alias);
    const jail = openStagingJail(alias);
    const target = jail.resolve(path.join(dataDir, "staging", "incoming", "b2"));
    assert.equal(target.fsPath, path.join(dataDir, "staging", "incoming", "b2"));
    assert.equal(jail.resolve(path.join(alias, "staging", "incoming", "b2")).fsPath, target.fsPath);
  });

  it("refuses everything else, naming the rule", () => {
    const jail = openStagingJail(dataDir);
    assert.throws(() => jail.resolve("/etc/passwd"), (error) => error instanceof JailRefusal && /outside the staging folders/.test(error.message));
    assert.throws(() => jail.resolve("../../hub.sqlite"), JailRefusal);
    assert.throws(() => jail.resolve(path.join(dataDir, "staging")), JailRefusal);
    assert.throws(() => jail.resolve("a\0b"), /NUL/);
    assert.throws(() => jail.resolve("..x"), /not a bundle name/);
  });

  it("refuses to start when the staging folders are missing", () => {
    assert.throws(() => openStagingJail(path.join(work, "nothing")), /staging folder .* is missing/);
  });
});
