/**
 * The push and pull helpers' warning (tools/branch-status.ts) against real git repositories: a
 * published bare repository and a working clone, moved into each state.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { branchStatus, describeStatus } from "../tools/branch-status.ts";

const TOOL = join(import.meta.dirname, "..", "tools", "branch-status.ts");

function git(cwd: string, ...args: string[]): string {
  return execFileSync("git", ["-c", "user.name=cws test", "-c", "user.email=test@example.invalid", ...args], { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
}

async function commitFile(repo: string, name: string): Promise<void> {
  await writeFile(join(repo, name), `${name}\n`);
  git(repo, "add", name);
  git(repo, "commit", "--quiet", "--message", name);
}

test("branchStatus() tells same, ahead, behind, diverged and unpublished apart, and the CLI exits 10/11 for the warnings", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "cws-branch-status-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const published = join(dir, "published.git");
  const work = join(dir, "work");
  const other = join(dir, "other");
  git(dir, "init", "--quiet", "--bare", "--initial-branch", "main", published);
  git(dir, "clone", "--quiet", published, work);
  git(work, "checkout", "--quiet", "-b", "main");
  await commitFile(work, "a");

  assert.equal(branchStatus(work, { branch: "main" }).state, "unpublished");
  git(work, "push", "--quiet", "origin", "main");
  assert.deepEqual(branchStatus(work, { branch: "main" }), { state: "same", ahead: 0, behind: 0, published: "origin/main" });

  await commitFile(work, "b");
  assert.deepEqual(branchStatus(work), { state: "ahead", ahead: 1, behind: 0, published: "origin/main" });
  git(work, "push", "--quiet", "origin", "main");

  // Someone else publishes two commits: the working branch is behind.
  git(dir, "clone", "--quiet", published, other);
  await commitFile(other, "c");
  await commitFile(other, "d");
  git(other, "push", "--quiet", "origin", "main");
  const behind = branchStatus(work);
  assert.deepEqual(behind, { state: "behind", ahead: 0, behind: 2, published: "origin/main" });
  assert.match(describeStatus(behind), /^WARNING: the working branch is 2 commit\(s\) behind origin\/main/);
  const behindCli = spawnSync(process.execPath, [TOOL, "--repo", work], { encoding: "utf8" });
  assert.equal(behindCli.status, 10);

  // A local commit on top: diverged.
  await commitFile(work, "e");
  const diverged = branchStatus(work);
  assert.deepEqual(diverged, { state: "diverged", ahead: 1, behind: 2, published: "origin/main" });
  assert.match(describeStatus(diverged), /^WARNING, DIVERGED/);
  const divergedCli = spawnSync(process.execPath, [TOOL, "--repo", work, "--json"], { encoding: "utf8" });
  assert.equal(divergedCli.status, 11);
  assert.deepEqual(JSON.parse(divergedCli.stdout), diverged);
});
