/**
 * Footguns and unclear failures on the device (issue 11, finding 5, client side): roots that
 * must never be synced, rebinding by accident, a full disk, an agent that dies before its
 * hello, a closed stdout. Each ends in one sentence with the next step, an exit code by class
 * (src/cli/failure.ts) and no stack trace. The full disk is a real tmpfs of 1 MiB (root only).
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { makeCluster, REPO, type TestCluster, type TestDevice } from "./helpers/cluster.ts";
import { oneSentence } from "./helpers/one-sentence.ts";

let cluster: TestCluster;
before(async () => { cluster = await makeCluster(); });
after(async () => { await cluster.close(); });

const isRoot = process.getuid?.() === 0;

test("roots that must never be synced are refused with what to do instead", async () => {
  const a = await cluster.device("roots");
  const file = join(cluster.dir, "a-file.txt");
  await writeFile(file, "not a folder\n");
  const serverLike = join(cluster.dir, "copied-server");
  await mkdir(join(serverLike, "store"), { recursive: true });
  await writeFile(join(serverLike, "server.json"), "{}");
  const cases = [
    { root: "/", says: /root of the file system/ },
    { root: cluster.dir, says: /contains .*cws's own state/ },
    { root: join(a.home, "bases"), says: /lies inside .*cws's own state/ },
    { root: file, says: /is a file, not a folder/ },
    { root: serverLike, says: /server's data dir/ },
  ];
  for (const [i, { root, says }] of cases.entries()) {
    for (const command of ["create-superproject", "attach-superproject"]) {
      const result = await a.cli([command, `roots-${i}`, "--root", root]);
      assert.equal(result.code, 1, `${command} --root ${root}: ${result.stderr}`);
      assert.match(oneSentence(result), says, `${command} --root ${root}`);
    }
  }
  assert.deepEqual(Object.keys((await a.state()).data.superprojects), [], "nothing was bound");
});

test("attach-superproject refuses to rebind a bound superproject unless --rebind is given", async () => {
  const { a, b, rootA, rootB } = await cluster.pair("rebind");
  await writeFile(join(rootA, "a.md"), "# a\n");
  await a.sync("rebind");
  await b.sync("rebind");
  const other = await cluster.folder("rebind-elsewhere");
  const refused = await b.cli(["attach-superproject", "rebind", "--root", other]);
  assert.equal(refused.code, 1);
  assert.match(oneSentence(refused), /already bound here to .*--rebind/);
  const state = await b.state();
  assert.equal(state.binding("rebind").root, rootB);
  assert.notEqual(state.binding("rebind").base, null, "the base was kept");
  const rebound = await b.cli(["attach-superproject", "rebind", "--root", other, "--rebind"]);
  assert.equal(rebound.code, 0, rebound.stderr);
  assert.equal((await b.state()).binding("rebind").root, other);
});

test("a full disk during a pull ends in one sentence, leaves no temp file, and the retry succeeds once there is room", { skip: !isRoot && "mounting a tmpfs needs root" }, async (t) => {
  const { a, b } = await cluster.pair("full-disk");
  const small = join(cluster.dir, "full-disk-mount");
  await mkdir(small);
  assert.equal(spawnSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", small]).status, 0);
  t.after(() => { spawnSync("umount", ["-l", small]); });
  const rootA = (await a.state()).binding("full-disk").root;
  await writeFile(join(rootA, "small.md"), "# fits\n");
  await writeFile(join(rootA, "big.bin"), randomBytes(3_000_000));
  await a.sync("full-disk");
  const state = await b.state();
  await state.update((s) => { s.superprojects["full-disk"].root = join(small, "p"); });
  await mkdir(join(small, "p"));

  const failed = await b.cli(["sync", "full-disk"]);
  assert.equal(failed.code, 4, failed.stderr);
  assert.match(oneSentence(failed), /disk is full \(ENOSPC\): free some space and run the command again/);
  const left = await readdir(join(small, "p"));
  assert.deepEqual(left.filter((n) => n.endsWith(".cws-tmp")), [], "no temp file fills the disk further");

  assert.equal(spawnSync("mount", ["-o", "remount,size=16m", small]).status, 0);
  const retried = await b.cli(["sync", "full-disk", "--json"]);
  assert.equal(retried.code, 0, retried.stderr);
  assert.equal(JSON.parse(retried.stdout).pulled.files, 2);
  assert.equal(await readFile(join(small, "p", "small.md"), "utf8"), "# fits\n");
});

test("an agent killed before its hello is reported as such, not as a missing installation", async () => {
  const { a } = await cluster.pair("no-hello");
  const result = await a.cli(["sync", "no-hello"], { CWS_FAULT: "agent-before-hello" });
  assert.equal(result.code, 3, result.stderr);
  const line = oneSentence(result);
  assert.match(line, /agent was stopped by SIGKILL before it was ready.*Run the command again/);
  assert.doesNotMatch(line, /installed/);
});

test("`cws sync | head` (a reader that goes away) ends without an EPIPE trace, and the sync still completes", async () => {
  const { a, rootA } = await cluster.pair("closed-stdout");
  await writeFile(join(rootA, "a.md"), "# a\n");
  const result = await cliWithClosedStdout(a, ["sync", "closed-stdout", "--json"]);
  assert.equal(result.code, 0, result.stderr);
  assert.doesNotMatch(result.stderr, /EPIPE|^\s+at /m);
  const conn = await a.connect();
  assert.notEqual((await conn.call("head", { slug: "closed-stdout" })).snapshot, null, "the push landed");
  await conn.close();
});

/** Runs `cws` with a stdout pipe whose reader is closed before the command writes anything. */
function cliWithClosedStdout(device: TestDevice, args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(REPO, "src", "cli", "cws.ts"), ...args], {
      env: { ...process.env, CWS_HOME: device.home },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout.destroy();
    let stderr = "";
    child.stderr.on("data", (piece) => { stderr += piece; });
    child.on("close", (code) => resolve({ code, stderr }));
  });
}
