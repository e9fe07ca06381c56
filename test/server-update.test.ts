/**
 * The server install and updater (scripts/server/install.sh, update.sh) against a temp install
 * dir: install from a git repository with commits made here, update to a newer commit with a
 * pre-update backup and a restart of the hub through the service manager, refuse a release
 * that cannot load without touching the hub, and roll back a release whose hub does not come
 * up. systemd does not run here, so CWS_SYSTEMCTL names test/helpers/fake-systemctl.sh, which
 * runs the installed unit's own ExecStart= line.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, readdir, readlink, realpath, rm, writeFile } from "node:fs/promises";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";

const REPO = join(import.meta.dirname, "..");
const FAKE_SYSTEMCTL = join(REPO, "test", "helpers", "fake-systemctl.sh");
const UNIT = "codex-workspace-sync.service";

interface Run { code: number | null; stdout: string; stderr: string }

function run(command: string, args: string[], options: { env: NodeJS.ProcessEnv; cwd?: string; input?: string }): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { env: options.env, cwd: options.cwd, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (piece) => { stdout += piece; });
    child.stderr.on("data", (piece) => { stderr += piece; });
    child.stdin.end(options.input ?? "");
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

function git(cwd: string, ...args: string[]): string {
  return execFileSync("git", ["-c", "user.name=cws test", "-c", "user.email=test@example.invalid", ...args], { cwd, encoding: "utf8" }).trim();
}

/** Edits one file of the source repository and commits the change; returns the commit. */
async function commit(src: string, file: string, edit: (text: string) => string, message: string): Promise<string> {
  const path = join(src, file);
  await writeFile(path, edit(await readFile(path, "utf8")));
  git(src, "commit", "--quiet", "--all", "--message", message);
  return git(src, "rev-parse", "HEAD");
}

const bumpVersion = (text: string) => text.replace(/"0\.1\.0"/, '"0.1.1"');

test("install, update to a newer commit, refuse a release that cannot load, roll back one whose hub does not start, update from a tarball", { skip: process.getuid?.() !== 0 && "install.sh needs root", timeout: 300_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "cws-server-update-"));
  const src = join(dir, "src");
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    CWS_ENV_FILE: join(dir, "etc", "cws.env"),
    CWS_BIN_DIR: join(dir, "bin"),
    CWS_UNIT_DIR: join(dir, "units"),
    CWS_SYSTEMCTL: FAKE_SYSTEMCTL,
    FAKE_SYSTEMCTL_DIR: join(dir, "systemd"),
    CWS_HEALTH_TIMEOUT: "30",
  };
  const bin = (name: string) => join(dir, "bin", name);
  t.after(async () => {
    await run(FAKE_SYSTEMCTL, ["stop", UNIT], { env });
    await rm(dir, { recursive: true, force: true });
  });

  // The source: this worktree's tracked files, committed to a fresh repository.
  await mkdir(src, { recursive: true });
  const files = execFileSync("git", ["ls-files", "-z"], { cwd: REPO, encoding: "utf8" }).split("\0").filter((f) => f && existsSync(join(REPO, f)));
  execFileSync("tar", ["--null", "-T", "-", "-c", "-f", join(dir, "src.tar")], { cwd: REPO, input: files.join("\0") });
  execFileSync("tar", ["-x", "-f", join(dir, "src.tar"), "-C", src]);
  git(src, "init", "--quiet", "--initial-branch", "main");
  git(src, "add", "--all");
  git(src, "commit", "--quiet", "--message", "v1");

  await mkdir(join(dir, "etc"));
  await writeFile(env.CWS_ENV_FILE!, [
    `CWS_USER=${userInfo().username}`,
    `CWS_DATA_DIR=${join(dir, "data")}`,
    `CWS_INSTALL_DIR=${join(dir, "opt")}`,
    `CWS_BACKUP_DIR=${join(dir, "backups")}`,
    "CWS_UPDATE_KIND=git",
    `CWS_UPDATE_SOURCE=${src}`,
    "CWS_UPDATE_REF=main",
    // The Node 24 running this test: no runtime download in CI.
    `CWS_NODE=${process.execPath}`,
    "CWS_KEEP_RELEASES=2",
    "",
  ].join("\n"));

  // Install: one release, production dependencies only, wrappers and units in place.
  const installed = await run("bash", [join(src, "scripts", "server", "install.sh")], { env, cwd: src });
  assert.equal(installed.code, 0, installed.stderr);
  const current = () => realpath(join(dir, "opt", "current"));
  const first = await current();
  assert.ok(existsSync(join(first, "node_modules", "commander")), "production dependencies are installed");
  for (const dev of ["typescript", "@openai/codex", "node", "@types/node"]) {
    assert.ok(!existsSync(join(first, "node_modules", dev)), `the devDependency ${dev} is not installed`);
  }
  assert.match(await readFile(join(dir, "units", UNIT), "utf8"), new RegExp(`^EnvironmentFile=${env.CWS_ENV_FILE}$`, "m"));
  if (existsSync("/usr/bin/systemd-analyze")) {
    const verified = await run("systemd-analyze", ["verify", ...(await readdir(join(dir, "units"))).map((u) => join(dir, "units", u))], { env });
    assert.equal(verified.code, 0, verified.stderr);
    assert.equal(verified.stderr, "", "the installed units verify without a warning");
  }

  const init = await run(bin("cws-server"), ["init", "--passphrase-file", "-"], { env, input: "a passphrase\n" });
  assert.equal(init.code, 0, init.stderr);
  assert.equal((await run(FAKE_SYSTEMCTL, ["enable", "--now", UNIT], { env })).code, 0);
  const statusPid = async () => {
    const status = await run(bin("cws-server"), ["status", "--json"], { env });
    return status.code === 0 ? (JSON.parse(status.stdout) as { hub: { pid: number } }).hub.pid : null;
  };
  let pid: number | null = null;
  for (let i = 0; i < 100 && pid === null; i++) pid = await statusPid();
  assert.ok(pid, "the hub started by the unit answers");

  // Update to a newer commit: backup, restart through the service manager, new code running.
  const v2 = await commit(src, "src/version.ts", bumpVersion, "v2: 0.1.1");
  const updated = await run(bin("update-codex-workspace"), [], { env });
  assert.equal(updated.code, 0, updated.stderr);
  assert.match(updated.stdout, /backing up the data to/);
  const second = await current();
  assert.notEqual(second, first);
  assert.equal(await readlink(join(dir, "opt", "previous")), `releases/${first.split("/").pop()}`);
  assert.match(await readFile(join(second, ".cws-release"), "utf8"), new RegExp(v2));
  assert.equal((await run(bin("cws-server"), ["--version"], { env })).stdout.trim(), "0.1.1");
  const afterUpdate = await statusPid();
  assert.ok(afterUpdate !== null && afterUpdate !== pid, "a new hub process answers");
  assert.equal((await readdir(join(dir, "backups"))).filter((n) => n.startsWith("pre-update-")).length, 1);
  assert.ok(existsSync(join(dir, "backups", (await readdir(join(dir, "backups")))[0]!, "hub.sqlite")), "the backup holds the database");

  const again = await run(bin("update-codex-workspace"), [], { env });
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /already at/);
  assert.equal(await statusPid(), afterUpdate, "nothing to do leaves the hub alone");

  // A release that cannot even load is refused before the hub is touched.
  await commit(src, "server-agent/hub/hub-lock.ts", (text) => `${text}\nexport const broken = ;\n`, "v3: a syntax error");
  const unloadable = await run(bin("update-codex-workspace"), [], { env });
  assert.equal(unloadable.code, 1);
  assert.match(unloadable.stderr, /cannot start .*the running hub was not touched/);
  assert.equal(await current(), second);
  assert.equal(await statusPid(), afterUpdate);

  // A release whose hub does not come up is rolled back: the old one runs again.
  git(src, "revert", "--no-edit", "HEAD");
  await commit(src, "server-agent/server-main.ts", (text) => text.replace("hub = await startHub(", 'throw new Error("this release cannot serve");\n    hub = await startHub('), "v4: the hub fails at start");
  const failing = await run(bin("update-codex-workspace"), [], { env });
  assert.equal(failing.code, 1);
  assert.match(failing.stderr, /rolling back to/);
  assert.match(failing.stderr, /rolled back: .* runs again/);
  assert.equal(await current(), second);
  assert.equal((await readdir(join(dir, "opt", "releases"))).length, 2, "the failed release was removed");
  const afterRollback = await statusPid();
  assert.ok(afterRollback !== null && afterRollback !== afterUpdate, "the old release's hub was started again");
  assert.equal((await run(bin("cws-server"), ["--version"], { env })).stdout.trim(), "0.1.1");

  // One hub per data dir: a hub started by hand beside the service's is refused.
  const second_hub = await run(bin("cws-server"), ["serve"], { env });
  assert.equal(second_hub.code, 1);
  assert.match(second_hub.stderr, /already runs one/);

  // --rollback goes back to the previous release, through the same checks.
  const back = await run(bin("update-codex-workspace"), ["--rollback"], { env });
  assert.equal(back.code, 0, back.stderr);
  assert.equal(await current(), first);
  assert.equal((await run(bin("cws-server"), ["--version"], { env })).stdout.trim(), "0.1.0");
  assert.notEqual(await statusPid(), null);

  // A release tarball (a GitHub-style archive with one top folder) updates the same way.
  const tarball = join(dir, "codex-workspace-sync-0.1.1.tar.gz");
  git(src, "archive", "--format=tar.gz", "--prefix=codex-workspace-sync-0.1.1/", "--output", tarball, v2);
  const fromTarball = await run(bin("update-codex-workspace"), ["--tarball", tarball], { env });
  assert.equal(fromTarball.code, 0, fromTarball.stderr);
  assert.match(await readFile(join(await current(), ".cws-release"), "utf8"), /^source=tarball /m);
  assert.equal((await run(bin("cws-server"), ["--version"], { env })).stdout.trim(), "0.1.1");
});

test("the systemd units of the repository pass systemd-analyze verify", { skip: !existsSync("/usr/bin/systemd-analyze") && "systemd-analyze is not installed" }, async () => {
  const units = join(REPO, "scripts", "server", "systemd");
  const verified = await run("systemd-analyze", ["verify", ...(await readdir(units)).map((u) => join(units, u))], { env: process.env });
  assert.equal(verified.code, 0, verified.stderr);
  assert.equal(verified.stderr, "");
});
