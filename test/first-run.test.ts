/**
 * What a new user meets before and around set-up, through the real `cws` and `cws-server`
 * launchers (bin/*.mjs) in child processes: clear errors instead of waits and stack traces.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { REPO_ROOT } from "./helpers/sshd.ts";

const CWS = path.join(REPO_ROOT, "bin", "cws.mjs");
const CWS_SERVER = path.join(REPO_ROOT, "bin", "cws-server.mjs");
const NODE = path.join(REPO_ROOT, "node_modules", ".bin", "node");

function run(bin: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(NODE, [bin, ...args], { env: { PATH: process.env.PATH, CWS_KEEP_SESSION: "0", ...env }, timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, stdout, stderr });
    });
  });
}

async function scratch(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "cws-firstrun-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test("cws-server maintenance commands on a data dir that was never initialised fail with the next step, no stack trace, and create nothing", async (t) => {
  const dir = await scratch(t);
  const wrong = path.join(dir, "not-a-data-dir");
  for (const args of [["verify"], ["gc"], ["settings", "x"], ["backup", path.join(dir, "backup")], ["status"], ["devices"]]) {
    const result = await run(CWS_SERVER, [...args, "--data", wrong], { HOME: dir });
    assert.equal(result.code, 1, `${args[0]}: ${result.stderr}`);
    assert.match(result.stderr, /is not an initialised cws server data dir.*cws-server init --data/s, args[0]);
    assert.doesNotMatch(result.stderr, /\n\s+at /, `${args[0]} printed a stack trace`);
  }
  assert.equal(existsSync(wrong), false, "no hub was started there and no folder made");
});

test("cws-server init writes an agent launcher that exists at once and prints its absolute path", async (t) => {
  const dir = await scratch(t);
  const data = path.join(dir, "data");
  await writeFile(path.join(dir, "pass"), "a long passphrase\n");
  const result = await run(CWS_SERVER, ["init", "--data", data, "--passphrase-file", path.join(dir, "pass")], { HOME: dir });
  assert.equal(result.code, 0, result.stderr);
  const printed = /give:\n\s+(\S+) --stdio/.exec(result.stdout)?.[1];
  assert.equal(printed, path.join(data, "bin", "cws-agent"));
  assert.ok(existsSync(printed));
  const devices = await run(CWS_SERVER, ["devices", "--data", data], { HOME: dir });
  assert.match(devices.stdout, /no device is enrolled yet/);
  await run(CWS_SERVER, ["stop", "--data", data], { HOME: dir });
});

test("sync before enrolling says to enroll first; --json prints its error once, as JSON", async (t) => {
  const dir = await scratch(t);
  const env = { HOME: dir, XDG_STATE_HOME: "", XDG_CONFIG_HOME: "", XDG_DATA_HOME: "" };
  const text = await run(CWS, ["sync", "my-research"], env);
  assert.equal(text.code, 1);
  assert.match(text.stderr, /not enrolled yet.*cws enroll-device/);
  const json = await run(CWS, ["sync", "my-research", "--json"], env);
  assert.equal(json.code, 1);
  assert.equal(json.stderr, "");
  assert.equal(JSON.parse(json.stdout).error.code, "NOT_ENROLLED");
});

test("a superproject named twice (`sync A --superproject B`) is refused as ambiguous", async (t) => {
  const dir = await scratch(t);
  const result = await run(CWS, ["sync", "alpha", "--superproject", "beta"], { HOME: dir });
  assert.equal(result.code, 1);
  assert.match(result.stderr, /Two superprojects were named: alpha and --superproject beta/);
});

test("status with the server unreachable shows this device's enrollment and bindings, and why", async (t) => {
  const dir = await scratch(t);
  const data = path.join(dir, "data");
  const env = { HOME: dir, XDG_STATE_HOME: "", XDG_CONFIG_HOME: "", XDG_DATA_HOME: "" };
  await writeFile(path.join(dir, "pass"), "a long passphrase\n");
  assert.equal((await run(CWS_SERVER, ["init", "--data", data, "--passphrase-file", path.join(dir, "pass")], env)).code, 0);
  const enrolled = await run(CWS, ["enroll-device", "--server-data", data, "--passphrase-file", path.join(dir, "pass"), "--device-name", "laptop"], env);
  assert.equal(enrolled.code, 0, enrolled.stderr);
  await run(CWS_SERVER, ["stop", "--data", data], env);
  // The server goes away (its data dir moved): status still says what this device knows.
  const { rename } = await import("node:fs/promises");
  await rename(data, `${data}.moved`);
  const status = await run(CWS, ["status"], env);
  assert.equal(status.code, 1);
  assert.match(status.stdout, /device: laptop \(.+\), enrolled with local /);
  assert.match(status.stdout, /server: NOT reachable: .*not an initialised cws server data dir/);
});
