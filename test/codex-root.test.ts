/**
 * `--codex-root` is checked against this device (absolute by its rules, an existing folder),
 * and a binding whose root matches none of the threads in CODEX_HOME, while the server has
 * the superproject's threads, says so instead of silently syncing nothing.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { realpath } from "node:fs/promises";
import { join } from "node:path";
import { makeCluster, type TestCluster } from "./helpers/cluster.ts";
import { attachSuperproject, checkCodexRoot, createSuperproject } from "../src/client/commands/superprojects.ts";
import { isCwsError } from "../src/errors.ts";
import { installRecorded } from "./fixtures/codex/recorded.ts";

let cluster: TestCluster;
before(async () => {
  cluster = await makeCluster();
});
after(async () => {
  await cluster.close();
});

test("--codex-root must be an absolute path by this device's rules and an existing folder", async () => {
  const folder = await realpath(await cluster.folder("root-check"));
  assert.equal(checkCodexRoot(folder), folder);
  assert.throws(() => checkCodexRoot("work/proj"), (e) => isCwsError(e, "INVALID_ARGUMENT") && /not an absolute POSIX path/.test(e.message));
  assert.throws(() => checkCodexRoot("C:\\Users\\me\\proj"), (e) => isCwsError(e, "INVALID_ARGUMENT"), "a Windows path on Linux");
  assert.throws(() => checkCodexRoot(join(folder, "missing")), (e) => isCwsError(e, "NOT_FOUND") && /not an existing folder/.test(e.message));
  // The test hook that plays a Windows device checks the form only.
  assert.equal(checkCodexRoot("C:\\Users\\me\\proj", "win32"), "C:\\Users\\me\\proj");
  assert.throws(() => checkCodexRoot("/home/me/proj", "win32"), (e) => isCwsError(e, "INVALID_ARGUMENT") && /Windows/.test(e.message));

  const device = await cluster.device("root-cli");
  const run = await device.cli(["create-superproject", "rootcli", "--root", await cluster.folder("root-cli"), "--codex-root", "C:\\Users\\me\\proj"]);
  assert.notEqual(run.code, 0);
  assert.match(run.stderr + run.stdout, /--codex-root "C:\\Users\\me\\proj" is not an absolute POSIX path/);
});

test("a binding whose root matches none of CODEX_HOME's threads, while the server has some, warns", async () => {
  const a = await cluster.device("warn-a");
  const b = await cluster.device("warn-b");
  const homeA = await cluster.folder("warn-codex-home-a");
  const homeB = await cluster.folder("warn-codex-home-b");
  const rootA = await realpath(await cluster.folder("warn-a"));
  const realB = await realpath(await cluster.folder("warn-b-real"));
  const wrongB = await realpath(await cluster.folder("warn-b-wrong"));
  await installRecorded("0.169.0", homeA, { flavour: "linux", root: rootA });
  // B's Codex has the project's threads under the folder it really uses.
  await installRecorded("0.169.0", homeB, { flavour: "linux", root: realB, keys: ["main"] });
  let conn = await a.connect();
  await createSuperproject(conn, await a.state(), { slug: "warn", root: rootA, codexHome: homeA });
  await conn.close();
  conn = await b.connect();
  await attachSuperproject(conn, await b.state(), { slug: "warn", root: await cluster.folder("warn-b-files"), codexHome: homeB, codexRoot: wrongB });
  await conn.close();
  const pushed = await a.sync("warn");
  assert.equal(pushed.codex.threads, 4);
  const synced = await b.sync("warn", { dryRun: true });
  assert.equal(synced.codex.threads, 0);
  assert.ok(
    synced.codex.warnings.some((w) => w.includes(`none of the 1 thread(s) in ${homeB} lies under ${wrongB}, while the server has 4`) && w.includes("--codex-root")),
    synced.codex.warnings.join("\n"),
  );
});
