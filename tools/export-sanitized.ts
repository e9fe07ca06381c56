#!/usr/bin/env node
/**
 * Exports a sanitized copy of this repository for publishing: only files tracked by git,
 * minus local configuration and anything that looks like a secret or live sync data. Used by
 * scripts/windows/push-repo.ps1; usable on its own:
 *
 *   node tools/export-sanitized.ts --out <dir> [--clean]
 *
 * --clean removes files in <dir> (except .git) that are not part of the export.
 */
import { execFileSync } from "node:child_process";
import { copyFile, mkdir, readdir, rm } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { parseArgs } from "node:util";

const REPO = join(import.meta.dirname, "..");

/** Never published, even when tracked by mistake. */
const EXCLUDED = [
  /(^|\/)\.env(\..*)?$/,
  /(^|\/)push-config\.local\.(cmd|ps1)$/,
  /(^|\/)github\.env$/,
  /(^|\/)(id_rsa|id_ed25519|id_ecdsa)(\.pub)?$/,
  /\.(pem|key|p12|pfx)$/,
  /(^|\/)auth\.json$/,
  /(^|\/)\.credentials\.json$/,
  /\.sqlite(-wal|-shm)?$/,
  /^backups\//,
  /^bench\/results\/.*\.tmp$/,
];

export function isExcluded(path: string): boolean {
  return EXCLUDED.some((rule) => rule.test(path));
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { out: { type: "string" }, clean: { type: "boolean", default: false } } });
  if (!values.out) {
    process.stderr.write("usage: node tools/export-sanitized.ts --out <dir> [--clean]\n");
    process.exitCode = 2;
    return;
  }
  const out = values.out;
  const tracked = execFileSync("git", ["-C", REPO, "ls-files", "-z"], { encoding: "utf8" }).split("\0").filter(Boolean);
  const exported = tracked.filter((path) => !isExcluded(path));
  await mkdir(out, { recursive: true });
  for (const path of exported) {
    await mkdir(dirname(join(out, path)), { recursive: true });
    await copyFile(join(REPO, path), join(out, path));
  }
  if (values.clean) {
    const keep = new Set(exported);
    for (const name of await readdir(out, { recursive: true })) {
      const path = relative(out, join(out, name)).split("\\").join("/");
      if (path === ".git" || path.startsWith(".git/")) continue;
      if (!keep.has(path) && !exported.some((e) => e.startsWith(`${path}/`))) await rm(join(out, path), { recursive: true, force: true });
    }
  }
  process.stdout.write(`exported ${exported.length} files (${tracked.length - exported.length} excluded) to ${out}\n`);
}

if (import.meta.main) await main();
