#!/usr/bin/env node
/**
 * How the working branch stands against the published one, for the push and pull helpers
 * (scripts/windows/push-repo.ps1, pull-repo.ps1):
 *
 *   node tools/branch-status.ts [--repo <dir>] [--remote origin] [--branch main] [--no-fetch] [--json]
 *
 * Fetches the published branch, counts the commits on each side and prints one of:
 *   same      nothing to do
 *   ahead     the working branch has commits the published one lacks (normal before a push)
 *   behind    the published branch has commits the working one lacks: pull first, or a push
 *             would publish a tree without them (warning)
 *   diverged  both have commits the other lacks: publishing replaces the published tree with
 *             this one and drops what only it has (strong warning)
 *   unpublished  the remote has no such branch yet
 * Exit code: 0 same/ahead/unpublished, 10 behind, 11 diverged, 2 when git fails.
 */
import { execFileSync } from "node:child_process";
import { parseArgs } from "node:util";

export type BranchState = "same" | "ahead" | "behind" | "diverged" | "unpublished";

export interface BranchStatus {
  state: BranchState;
  /** Commits on the working branch (HEAD) that the published branch lacks. */
  ahead: number;
  /** Commits on the published branch that the working branch lacks. */
  behind: number;
  published: string;
}

/** Compares HEAD of `repo` with `<remote>/<branch>`, fetching it first unless `fetch` is false. */
export function branchStatus(repo: string, options: { remote?: string; branch?: string; fetch?: boolean } = {}): BranchStatus {
  const { remote = "origin", fetch = true } = options;
  const git = (...args: string[]) => execFileSync("git", ["-C", repo, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
  const branch = options.branch ?? git("rev-parse", "--abbrev-ref", "HEAD");
  const published = `${remote}/${branch}`;
  if (fetch) {
    try {
      git("fetch", "--quiet", remote, `+refs/heads/${branch}:refs/remotes/${remote}/${branch}`);
    } catch {
      return { state: "unpublished", ahead: 0, behind: 0, published };
    }
  }
  try {
    git("rev-parse", "--verify", "--quiet", `refs/remotes/${published}`);
  } catch {
    return { state: "unpublished", ahead: 0, behind: 0, published };
  }
  const [ahead, behind] = git("rev-list", "--left-right", "--count", `HEAD...refs/remotes/${published}`).split(/\s+/).map(Number) as [number, number];
  const state: BranchState = ahead === 0 && behind === 0 ? "same" : behind === 0 ? "ahead" : ahead === 0 ? "behind" : "diverged";
  return { state, ahead, behind, published };
}

/** The sentence the helpers print for a status. */
export function describeStatus(status: BranchStatus): string {
  const { state, ahead, behind, published } = status;
  switch (state) {
    case "same": return `The working branch is the same as ${published}.`;
    case "ahead": return `The working branch is ${ahead} commit(s) ahead of ${published}.`;
    case "unpublished": return `${published} does not exist yet; publishing creates it.`;
    case "behind": return `WARNING: the working branch is ${behind} commit(s) behind ${published}. Pull first (pull-repo), or the published tree will lose what those commits changed.`;
    case "diverged": return `WARNING, DIVERGED: the working branch and ${published} each have commits the other lacks (${ahead} here, ${behind} there). Publishing now replaces the published tree with this one and drops what only ${published} has. Rebase on it first (pull-repo), or publish only if you mean to discard those commits.`;
  }
}

const EXIT_CODES: Record<BranchState, number> = { same: 0, ahead: 0, unpublished: 0, behind: 10, diverged: 11 };

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      repo: { type: "string", default: process.cwd() },
      remote: { type: "string", default: "origin" },
      branch: { type: "string" },
      "no-fetch": { type: "boolean", default: false },
      json: { type: "boolean", default: false },
    },
  });
  try {
    const status = branchStatus(values.repo, { remote: values.remote, fetch: !values["no-fetch"], ...(values.branch ? { branch: values.branch } : {}) });
    process.stdout.write(values.json ? `${JSON.stringify(status)}\n` : `${describeStatus(status)}\n`);
    process.exitCode = EXIT_CODES[status.state];
  } catch (error) {
    process.stderr.write(`branch-status: cannot compare with the published branch: ${(error as Error).message}\n`);
    process.exitCode = 2;
  }
}
