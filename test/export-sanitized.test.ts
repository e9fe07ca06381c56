/**
 * Publishing cannot leak: tools/export-sanitized.ts exports only tracked files minus the deny
 * list, and refuses the whole export when any of them holds a secret. Every secret below is
 * built at run time, so this file itself stays clean for the scan of the repository.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { planExport } from "../tools/export-sanitized.ts";

const REPO = join(import.meta.dirname, "..");
const EXPORT = join(REPO, "tools", "export-sanitized.ts");

/**
 * Random characters of an alphabet, so no planted secret is a fixed string; the first is a
 * letter and the last a digit (as in every real token), so no draw is ever all letters.
 */
function random(length: number, alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"): string {
  const middle = Array.from(randomBytes(length - 2), (byte) => alphabet[byte % alphabet.length]).join("");
  return `Q${middle}7`;
}
const UPPER_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

let repo: string;
let dir: string;

function git(...args: string[]): void {
  execFileSync("git", ["-C", repo, "-c", "user.name=cws test", "-c", "user.email=test@example.invalid", ...args], { stdio: "ignore" });
}

async function put(path: string, text: string): Promise<void> {
  await mkdir(dirname(join(repo, path)), { recursive: true });
  await writeFile(join(repo, path), text);
  git("add", "--force", path);
}

async function unplant(path: string): Promise<void> {
  git("rm", "--cached", "--quiet", path);
  await rm(join(repo, path), { force: true });
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "cws-export-"));
  repo = join(dir, "repo");
  await mkdir(repo);
  git("init", "--quiet");
  await put("README.md", "# A project\n\nRun `cws-server status --data /home/you/cws-data` on the server.\n");
  await put("src/main.ts", 'export const token = z.string(); // a schema, not a secret\nconst passphrase = await askSecret("Passphrase");\n');
  await put("docs/paths.md", "On Windows, `C:\\Users\\a\\proj`; on Linux, `/home/b/work/proj`.\n");
  // Tracked by mistake, but on the deny list: left out, never scanned, never published.
  await put(".npmrc", `//registry.npmjs.org/:_authToken=npm_${random(36)}\n`);
  await put("data/server.json", '{"passphrase":"scrypt$..."}\n');
  await put("keys/id_ed25519", "not really a key\n");
  await put("backups/push_tmp_repo/README.md", "old\n");
  await put("scripts/windows/push-config.local.ps1", "$RepoUrl = 'git@example.invalid:me/cws.git'\n");
  git("commit", "--quiet", "--message", "clean tree");
});
after(async () => { await rm(dir, { recursive: true, force: true }); });

test("a clean tree exports its tracked files without the denied ones", async () => {
  const out = join(dir, "out-clean");
  const result = spawnSync(process.execPath, [EXPORT, "--repo", repo, "--out", out], { encoding: "utf8" });
  assert.equal(result.status, 0, result.stderr);
  assert.match(result.stdout, /exported 3 files \(5 left out by the deny list/);
  assert.deepEqual((await readdir(out, { recursive: true })).sort(), ["README.md", "docs", "docs/paths.md", "src", "src/main.ts"]);
  assert.equal(await readFile(join(out, "src/main.ts"), "utf8"), await readFile(join(repo, "src/main.ts"), "utf8"));
});

test("the export refuses a planted secret, lists file:line, kind and a redaction, and writes nothing", async () => {
  const secret = `ghp_${random(36)}`;
  await put("secrets.json", `{\n  "note": "ci",\n  "github": "${secret}"\n}\n`);
  try {
    const out = join(dir, "out-refused");
    const result = spawnSync(process.execPath, [EXPORT, "--repo", repo, "--out", out], { encoding: "utf8" });
    assert.equal(result.status, 1);
    assert.match(result.stderr, /Cannot publish as 1 possible secret\(s\) were found; nothing was exported/);
    assert.match(result.stderr, /secrets\.json:3 {2}github-token {2}ghp_…\(40 chars\)/);
    assert.ok(!result.stderr.includes(secret) && !result.stdout.includes(secret), "the secret itself is never printed");
    assert.ok(!existsSync(out), "nothing was written");
  } finally {
    await unplant("secrets.json");
  }
});

describe("each kind of secret refuses the export", () => {
  const cases: Array<{ kind: string; path: string; text: () => string | Promise<string> }> = [
    { kind: "github-token", path: "secrets.json", text: () => `{"token": "ghp_${random(36)}"}` },
    { kind: "github-token", path: "ci/env.sh", text: () => `export GH=github_pat_${random(22)}_${random(59)}` },
    { kind: "npm-token", path: "ci/publish.sh", text: () => `NPM=npm_${random(36)} npm publish` },
    { kind: "npm-auth-token", path: "config/registry.ini", text: () => `//registry.npmjs.org/:_authToken=${random(36)}` },
    { kind: "aws-access-key", path: "deploy/aws.txt", text: () => `key id: AKIA${random(16, UPPER_DIGITS)}` },
    { kind: "slack-token", path: "notify.ts", text: () => `const hook = "xoxb-${random(12, "0123456789")}-${random(24)}";` },
    { kind: "openai-key", path: "notes/openai.md", text: () => `Use sk-proj-${random(48)} for the model.` },
    { kind: "google-api-key", path: "maps.json", text: () => `{"k": "AIza${random(35)}"}` },
    {
      kind: "private-key",
      // A real key under a harmless name: the file name gives nothing away, the content does.
      path: "notes/backup.txt",
      text: async () => {
        const keyFile = join(dir, `key-${random(6)}`);
        execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", keyFile]);
        return readFile(keyFile, "utf8");
      },
    },
    { kind: "high-entropy-assignment", path: "src/config.ts", text: () => `export const clientSecret = "${random(32)}";` },
    { kind: "home-path", path: "docs/setup.md", text: () => `Clone into /home/${"mallory"}/src/cws first.` },
    { kind: "home-path", path: "scripts/windows/setup.ps1", text: () => `$root = 'C:\\Users\\${"Mallory Smith"}\\cws'` },
    { kind: "home-path", path: "test/fixture.json", text: () => `{"cwd": "C:\\\\Users\\\\${"mallory"}\\\\proj"}` },
  ];
  for (const { kind, path, text } of cases) {
    test(`${kind} in ${path}`, async () => {
      await put(path, `first line\n${await text()}\n`);
      try {
        const plan = await planExport(repo);
        assert.deepEqual(plan.findings.map((f) => [f.path, f.line, f.kind]), [[path, 2, kind]]);
      } finally {
        await unplant(path);
      }
    });
  }

  test("symlink-outside-tree for a tracked link that leaves the tree", async () => {
    await symlink("/etc/passwd", join(repo, "link"));
    git("add", "link");
    try {
      const plan = await planExport(repo);
      assert.deepEqual(plan.findings.map((f) => [f.path, f.kind]), [["link", "symlink-outside-tree"]]);
    } finally {
      await unplant("link");
    }
  });

  test("this-machine for the home folder of the account exporting", async () => {
    await put("notes/where.md", "first line\nthe checkout is in /srv/people/quinn/cws\n");
    try {
      const result = spawnSync(process.execPath, [EXPORT, "--repo", repo, "--dry-run"], { encoding: "utf8", env: { ...process.env, HOME: "/srv/people/quinn" } });
      assert.equal(result.status, 1);
      assert.match(result.stderr, /notes\/where\.md:2 {2}this-machine/);
    } finally {
      await unplant("notes/where.md");
    }
  });

  test("a deliberate example marked `cws-export: allow` passes", async () => {
    await put("docs/example.md", `first line\nexport NPM=npm_${random(36)}  <!-- cws-export: allow -->\n`);
    try {
      assert.deepEqual((await planExport(repo)).findings, []);
    } finally {
      await unplant("docs/example.md");
    }
  });
});

test("this repository itself exports clean", async () => {
  const plan = await planExport(REPO);
  assert.deepEqual(plan.findings, []);
  assert.ok(plan.exported.includes("tools/export-sanitized.ts"));
});
