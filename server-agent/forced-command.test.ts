/**
 * The forced command's decisions and the authorized_keys line, without SSH (the real sshd
 * runs them in test/forced-command.test.ts).
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { PassThrough } from "node:stream";
import { describe, it } from "node:test";
import { isCwsError } from "../src/errors.ts";
import { authorizedKeysLine, authorizedKeysLineForThisInstall, installAuthorizedKey, keyBlobOf } from "./authorized-keys.ts";
import { classifyOriginalCommand, runForcedCommand, splitWords } from "./forced-command.ts";

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyBlobForTestsOnly0123456789abcdefghij me@laptop";
const BLOB = KEY.split(" ")[1];

describe("forced command: what a request may run", () => {
  const cases: [string | undefined, "agent" | "sftp" | "refused"][] = [
    ["cws-agent --stdio", "agent"],
    ["/opt/cws/bin/cws-agent --stdio --data /elsewhere --device someone-else", "agent"],
    ["'/srv/cws/node_modules/.bin/node' '/srv/cws/server-agent/agent/main.ts' --stdio --data '/x y'", "agent"],
    ["node --no-warnings /srv/cws/server-agent/agent/main.ts --stdio", "agent"],
    ["'/srv/cws/node_modules/.bin/node' '/srv/cws/server-agent/agent/main.mjs' --stdio --data /srv/cws", "agent"],
    ["node /srv/cws/server-agent/agent/main.mjs", "refused"],
    ["internal-sftp", "sftp"],
    ["/usr/lib/openssh/sftp-server -l INFO -u 022", "sftp"],
    ["sftp-server", "sftp"],
    ["cws-agent", "refused"],
    ["cws-agent --stdio; sh", "refused"],
    ["cws-agent --stdio $(id)", "refused"],
    ["sh -c id", "refused"],
    ["scp -t /tmp", "refused"],
    ["/bin/bash", "refused"],
    ["node -e 'require(\"child_process\")'", "refused"],
    ["rsync --server -e.LsfxC . /tmp", "refused"],
    ["", "refused"],
    [undefined, "refused"],
    ["'unbalanced", "refused"],
  ];
  for (const [command, kind] of cases) {
    it(`${kind === "refused" ? "refuses" : `runs the ${kind} for`} ${JSON.stringify(command)}`, () => {
      assert.equal(classifyOriginalCommand(command).kind, kind);
    });
  }

  it("splits words like a shell for plain words and quotes, and refuses shell syntax", () => {
    assert.deepEqual(splitWords(`a 'b c' "d \\"e\\"" f\\ g`), ["a", "b c", 'd "e"', "f g"]);
    assert.deepEqual(splitWords("'it'\\''s'"), ["it's"]);
    assert.equal(splitWords("a | b"), undefined);
    assert.equal(splitWords('"$HOME"'), undefined);
    assert.equal(splitWords("a\nb"), undefined);
  });

  it("refuses a shell with a message that says what the key is for, and exit code 1", async () => {
    const stderr = new PassThrough();
    let said = "";
    stderr.on("data", (piece: Buffer) => (said += piece.toString()));
    const code = await runForcedCommand({
      dataDir: "/nonexistent",
      deviceId: "d",
      originalCommand: "sh -c id",
      input: new PassThrough(),
      output: new PassThrough(),
      stderr,
    });
    assert.equal(code, 1);
    assert.match(said, /refused "sh -c id": this SSH key is restricted to the cws agent/);
  });
});

describe("authorized_keys line", () => {
  const base = { publicKey: KEY, dataDir: "/srv/cws data", deviceId: "0b5e7c1a-1111-4222-8333-944445555666", nodePath: "/usr/bin/node", repoDir: "/opt/cws" };

  it("restricts the key to the forced command with the pinned data dir and device", () => {
    assert.equal(
      authorizedKeysLine(base),
      `restrict,command="exec /usr/bin/node /opt/cws/server-agent/forced-command.mjs --data '/srv/cws data' --device 0b5e7c1a-1111-4222-8333-944445555666" ${KEY}`,
    );
  });

  it("points at this installation's forced command and Node", () => {
    const line = authorizedKeysLineForThisInstall({ publicKey: KEY, dataDir: "/srv/cws", deviceId: "d1" });
    const entry = path.join(path.resolve(import.meta.dirname, ".."), "server-agent", "forced-command.mjs");
    assert.ok(line.includes(entry), line);
    assert.ok(line.includes(` --data /srv/cws --device d1" ${KEY}`), line);
    assert.match(line, /^restrict,command="exec '?\/[^"]*node'? /);
  });

  it("names the install's stable current/ paths when run.sh gives them, so device keys survive updates", () => {
    const saved = { root: process.env.CWS_STABLE_ROOT, node: process.env.CWS_STABLE_NODE };
    process.env.CWS_STABLE_ROOT = "/opt/codex-workspace-sync/current";
    process.env.CWS_STABLE_NODE = "/opt/codex-workspace-sync/current/runtime/node_modules/.bin/node";
    try {
      const line = authorizedKeysLineForThisInstall({ publicKey: KEY, dataDir: "/srv/cws", deviceId: "d1" });
      assert.ok(line.startsWith(`restrict,command="exec /opt/codex-workspace-sync/current/runtime/node_modules/.bin/node /opt/codex-workspace-sync/current/server-agent/forced-command.mjs --data /srv/cws`), line);
    } finally {
      for (const [key, value] of [["CWS_STABLE_ROOT", saved.root], ["CWS_STABLE_NODE", saved.node]] as const) {
        if (value === undefined) delete process.env[key];
        else process.env[key] = value;
      }
    }
  });

  it("quotes a single quote for the shell", () => {
    const line = authorizedKeysLine({ ...base, dataDir: "/srv/o'brien" });
    assert.ok(line.includes(`--data '/srv/o'\\''brien'`), line);
  });

  it("refuses values that would break out of the option or the line", () => {
    for (const change of [
      { dataDir: '/srv/a"b' },
      { dataDir: "/srv/a\\b" },
      { dataDir: "/srv/a\nb" },
      { dataDir: "relative/dir" },
      { nodePath: "node" },
      { repoDir: '/opt/"x' },
      { deviceId: "../other" },
      { deviceId: "a b" },
      { publicKey: "not a key" },
      { publicKey: `${KEY}\nssh-ed25519 AAAA second` },
    ]) {
      assert.throws(() => authorizedKeysLine({ ...base, ...change }), (error) => isCwsError(error, "INVALID_ARGUMENT"), JSON.stringify(change));
    }
  });

  it("finds the key blob after options with quoted spaces", () => {
    assert.equal(keyBlobOf(authorizedKeysLine(base)), BLOB);
    assert.equal(keyBlobOf(`command="echo \\"a b\\" ssh-rsa X",restrict ${KEY}`), BLOB);
    assert.equal(keyBlobOf("# ssh-ed25519 AAAA comment"), undefined);
  });

  it("installs the line in place of the key's old lines and keeps the others", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "cws-authkeys-"));
    try {
      const file = path.join(dir, ".ssh", "authorized_keys");
      const restricted = authorizedKeysLine(base);
      assert.deepEqual(await installAuthorizedKey(file, restricted), { replaced: 0 });
      assert.equal((await stat(file)).mode & 0o777, 0o600);
      assert.equal((await stat(path.dirname(file))).mode & 0o777, 0o700);

      const other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtherKeyStaysExactlyAsItWas000000000000 admin";
      await writeFile(file, `# my keys\n${other}\n${KEY}\n`);
      assert.deepEqual(await installAuthorizedKey(file, restricted), { replaced: 1 });
      assert.equal(await readFile(file, "utf8"), `# my keys\n${other}\n${restricted}\n`);
      // Installing again replaces the restricted line itself: one line per key, always.
      assert.deepEqual(await installAuthorizedKey(file, restricted), { replaced: 1 });
      assert.equal((await readFile(file, "utf8")).split(BLOB).length - 1, 1);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
