#!/usr/bin/env node
/**
 * Exports a sanitized copy of this repository for publishing, or refuses to.
 *
 *   node tools/export-sanitized.ts --out <dir> [--clean] [--repo <dir>] [--dry-run]
 *
 * 1. Allow list: only files git tracks (`git ls-files`), as they are in the working tree.
 * 2. Deny list: minus local configuration, credentials, keys, databases and backups, even when
 *    they were tracked by mistake (DENIED below).
 * 3. Scan: every remaining file is searched for secrets (tools/secret-scan.ts: provider tokens,
 *    private key blocks, high-entropy assignments, home paths, and this machine's home folder).
 *    Any finding refuses the whole export with the list `file:line  kind  redacted`, exit 1,
 *    and nothing is written. A symlink is copied as a link, never followed, and only when it
 *    stays inside the tree.
 * 4. Copy. --clean removes files in <dir> (except .git) that are not part of the export.
 *
 * Used by scripts/windows/push-repo.ps1; usable on its own. --dry-run scans and lists only.
 */
import { execFileSync } from "node:child_process";
import { copyFile, lstat, mkdir, readFile, readdir, readlink, rm, symlink } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join, posix, relative } from "node:path";
import { parseArgs } from "node:util";
import { formatFindings, scanText, type Finding } from "./secret-scan.ts";

const REPO = join(import.meta.dirname, "..");

/** Never published, even when tracked by mistake. */
const DENIED = [
  /(^|\/)\.env(\..*)?$/,
  /(^|\/)\.(npmrc|pypirc|netrc|git-credentials)$/,
  /(^|\/)push-config\.local\.(cmd|ps1)$/,
  /(^|\/)github\.env$/,
  /(^|\/)(id_rsa|id_ed25519|id_ecdsa|id_dsa)(\.pub)?$/,
  /(^|\/)(known_hosts|authorized_keys)$/,
  /\.(pem|key|p12|pfx|ppk|kdbx)$/,
  /(^|\/)auth\.json$/,
  /(^|\/)\.credentials\.json$/,
  // The cws server's config (passphrase hash) and client state.
  /(^|\/)server\.json$/,
  /(^|\/)\.codex\//,
  /\.(sqlite|db)(-wal|-shm|-journal)?$/,
  /\.log$/,
  /^backups\//,
  /^bench\/results\/.*\.tmp$/,
];

export function isDenied(path: string): boolean {
  return DENIED.some((rule) => rule.test(path));
}

/** The result of planning an export: what goes out, what is left out, and what refuses it. */
export interface ExportPlan {
  exported: string[];
  denied: string[];
  findings: Finding[];
}

/** Lists, filters and scans the tracked files of `repo`; writes nothing. */
export async function planExport(repo: string): Promise<ExportPlan> {
  const tracked = execFileSync("git", ["-C", repo, "ls-files", "-z", "--cached"], { encoding: "utf8" }).split("\0").filter(Boolean);
  const exported: string[] = [];
  const denied: string[] = [];
  const findings: Finding[] = [];
  // This machine's home folder must not appear in anything published (unless it is root's).
  const home = homedir();
  const extra = home && home !== "/" && home !== "/root" ? [home] : [];
  for (const path of tracked) {
    if (isDenied(path)) {
      denied.push(path);
      continue;
    }
    let info;
    try {
      info = await lstat(join(repo, path));
    } catch {
      continue; // Deleted in the working tree: not part of the export.
    }
    if (info.isSymbolicLink()) {
      const target = await readlink(join(repo, path));
      const resolved = posix.normalize(posix.join(posix.dirname(path), target.split("\\").join("/")));
      if (posix.isAbsolute(target) || resolved.startsWith("../") || resolved === "..") {
        findings.push({ path, line: 0, kind: "symlink-outside-tree", redacted: "(link target not shown)" });
        continue;
      }
      findings.push(...scanText(path, target, extra));
    } else if (info.isFile()) {
      findings.push(...scanText(path, (await readFile(join(repo, path))).toString("latin1"), extra));
    } else {
      continue;
    }
    exported.push(path);
  }
  return { exported, denied, findings };
}

async function writeExport(repo: string, out: string, plan: ExportPlan, clean: boolean): Promise<void> {
  await mkdir(out, { recursive: true });
  for (const path of plan.exported) {
    const from = join(repo, path);
    const to = join(out, path);
    await mkdir(dirname(to), { recursive: true });
    const info = await lstat(from);
    await rm(to, { force: true });
    if (info.isSymbolicLink()) await symlink(await readlink(from), to);
    else await copyFile(from, to);
  }
  if (clean) {
    const keep = new Set(plan.exported);
    for (const name of await readdir(out, { recursive: true })) {
      const path = relative(out, join(out, name)).split("\\").join("/");
      if (path === ".git" || path.startsWith(".git/")) continue;
      if (!keep.has(path) && !plan.exported.some((e) => e.startsWith(`${path}/`))) await rm(join(out, path), { recursive: true, force: true });
    }
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: "string" },
      repo: { type: "string", default: REPO },
      clean: { type: "boolean", default: false },
      "dry-run": { type: "boolean", default: false },
    },
  });
  if (!values.out && !values["dry-run"]) {
    process.stderr.write("usage: node tools/export-sanitized.ts --out <dir> [--clean] [--repo <dir>] [--dry-run]\n");
    process.exitCode = 2;
    return;
  }
  const repo = values.repo;
  const plan = await planExport(repo);
  if (plan.findings.length > 0) {
    process.stderr.write(
      `Cannot publish as ${plan.findings.length} possible secret(s) were found; nothing was exported:\n${formatFindings(plan.findings)}\n` +
      "Remove each (and rotate any credential that was ever committed or pushed), untrack files that are local only, " +
      "or, for a deliberate example, put the marker `cws-export: allow` on its line.\n",
    );
    process.exitCode = 1;
    return;
  }
  if (values["dry-run"] || !values.out) {
    process.stdout.write(`would export ${plan.exported.length} files (${plan.denied.length} left out by the deny list${plan.denied.length ? `: ${plan.denied.join(", ")}` : ""}); no secrets found\n`);
    return;
  }
  await writeExport(repo, values.out, plan, values.clean);
  process.stdout.write(`exported ${plan.exported.length} files (${plan.denied.length} left out by the deny list${plan.denied.length ? `: ${plan.denied.join(", ")}` : ""}) to ${values.out}; no secrets found\n`);
}

if (import.meta.main) await main();
