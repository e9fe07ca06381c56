import assert from "node:assert/strict";
import { test } from "node:test";
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isTreeTempName, removeTreeLeftovers, removeWorkDirLeftovers, treeTempName } from "./leftovers.ts";
import { deadPid } from "../../test/helpers/dead-pid.ts";


test("treeTempName() makes names isTreeTempName() recognises, and user files are never taken for them", () => {
  assert.ok(isTreeTempName(treeTempName("0a1b2c3d", 0)));
  assert.ok(isTreeTempName(treeTempName("0a1b2c3d", 123_456)));
  assert.ok(isTreeTempName(".0a1b2c3d-1z.cws-tmp"), "the name of older versions, without a pid");
  for (const name of ["notes.cws-tmp", ".cws-tmp", "0a1b2c3d-1-2.cws-tmp", ".0a1b2c3d-1-2.cws-tmp.md", ".0A1B2C3D-1-2.cws-tmp"]) {
    assert.ok(!isTreeTempName(name), name);
  }
});

test("removeTreeLeftovers() and removeWorkDirLeftovers() remove what dead or old runs left, never a live run's", async () => {
  const dir = await mkdtemp(join(tmpdir(), "leftovers-test-"));
  try {
    const dead = deadPid();
    const names = {
      deadTemp: `.0a1b2c3d-${dead}-0.cws-tmp`,
      liveTemp: `.0a1b2c3d-${process.pid}-1.cws-tmp`,
      oldTemp: ".0a1b2c3d-2.cws-tmp",
      freshOldTemp: ".0a1b2c3d-3.cws-tmp",
    };
    for (const name of Object.values(names)) await writeFile(join(dir, name), "partial");
    // An hour and more ago (ctime cannot be set back, so "now" moves forward instead).
    const later = Date.now() + 2 * 60 * 60 * 1000;
    assert.equal(removeTreeLeftovers([join(dir, names.deadTemp), join(dir, names.liveTemp), join(dir, names.freshOldTemp)]), 1);
    assert.equal(removeTreeLeftovers([join(dir, names.oldTemp)], later), 1);
    assert.deepEqual((await readdir(dir)).sort(), [names.freshOldTemp, names.liveTemp].sort());

    const work = join(dir, "tmp");
    for (const name of [`cws-pull-${dead}-aB3dE6`, `cws-push-${process.pid}-aB3dE6`, "cws-fetch-aB3dE6", "cws-test-aB3dE6"]) await mkdir(join(work, name), { recursive: true });
    await utimes(join(work, "cws-fetch-aB3dE6"), new Date(0), new Date(0));
    assert.equal(await removeWorkDirLeftovers(work), 1);
    assert.equal(await removeWorkDirLeftovers(work, later), 1);
    assert.deepEqual((await readdir(work)).sort(), [`cws-push-${process.pid}-aB3dE6`, "cws-test-aB3dE6"]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
