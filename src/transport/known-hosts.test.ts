import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm, stat, symlink, writeFile, lstat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { isCwsError } from "../errors.ts";
import { makeClientKey, sshKeygenFingerprint } from "../../test/helpers/sshd.ts";
import {
  appendKnownHost,
  checkHostKey,
  fingerprintSha256,
  hostKeyFromBlob,
  hostKeyMismatchError,
  parseKnownHosts,
  readKnownHosts,
  type HostKey,
} from "./known-hosts.ts";

let dir: string;
let keyA: HostKey;
let keyB: HostKey;
let keyAPub: string;
let lineA: string;
let lineB: string;

function hostKeyOf(publicLine: string): HostKey {
  const [, base64] = publicLine.split(" ");
  return hostKeyFromBlob(Buffer.from(base64, "base64"));
}

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cws-known-hosts-"));
  const a = await makeClientKey(dir, "host_a");
  const b = await makeClientKey(dir, "host_b", { type: "ecdsa" });
  keyAPub = `${a.keyPath}.pub`;
  keyA = hostKeyOf(a.publicKey);
  keyB = hostKeyOf(b.publicKey);
  lineA = a.publicKey.split(" ").slice(0, 2).join(" ");
  lineB = b.publicKey.split(" ").slice(0, 2).join(" ");
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("fingerprintSha256()", () => {
  it("equals what ssh-keygen -lf prints", () => {
    assert.equal(fingerprintSha256(keyA.blob), sshKeygenFingerprint(keyAPub));
    assert.equal(keyA.algorithm, "ssh-ed25519");
    assert.equal(keyB.algorithm, "ecdsa-sha2-nistp256");
  });
});

describe("checkHostKey()", () => {
  it("matches plain names, [host]:port names, comma lists and wildcards", () => {
    const lines = parseKnownHosts(
      [
        "# a comment",
        "",
        `alpha,10.0.0.1 ${lineA}`,
        `[beta]:2222 ${lineA} a comment`,
        `*.lab,!bad.lab ${lineA}`,
      ].join("\n"),
    );
    assert.equal(checkHostKey(lines, "alpha", 22, keyA).status, "match");
    assert.equal(checkHostKey(lines, "10.0.0.1", 22, keyA).status, "match");
    assert.equal(checkHostKey(lines, "ALPHA", 22, keyA).status, "match", "names are case-insensitive");
    assert.equal(checkHostKey(lines, "beta", 2222, keyA).status, "match");
    assert.equal(checkHostKey(lines, "beta", 22, keyA).status, "unknown", "the port is part of the name");
    assert.equal(checkHostKey(lines, "x.lab", 22, keyA).status, "match");
    assert.equal(checkHostKey(lines, "bad.lab", 22, keyA).status, "unknown", "a negated pattern wins");
    assert.equal(checkHostKey(lines, "gamma", 22, keyA).status, "unknown");
  });

  it("reports a different key for a known host as a mismatch with the known fingerprints", () => {
    const lines = parseKnownHosts(`[hub]:2222 ${lineA}\n`, "/k/known_hosts");
    const check = checkHostKey(lines, "hub", 2222, keyB);
    assert.equal(check.status, "mismatch");
    assert.deepEqual(
      check.knownKeys.map((key) => [key.fingerprint, key.file, key.line]),
      [[fingerprintSha256(keyA.blob), "/k/known_hosts", 1]],
    );
  });

  it("reads hashed names written by ssh-keygen -H", async () => {
    const file = path.join(dir, "hashed_hosts");
    await writeFile(file, `[hub.example.org]:2222 ${lineA}\nplain ${lineB}\n`);
    execFileSync("ssh-keygen", ["-H", "-f", file], { stdio: "ignore" });
    const lines = await readKnownHosts([file, path.join(dir, "missing")]);
    assert.ok(lines[0].hosts.startsWith("|1|"), "ssh-keygen did not hash the file");
    assert.equal(checkHostKey(lines, "hub.example.org", 2222, keyA).status, "match");
    assert.equal(checkHostKey(lines, "hub.example.org", 22, keyA).status, "unknown");
    assert.equal(checkHostKey(lines, "plain", 22, keyA).status, "mismatch");
  });

  it("refuses a @revoked key and never lets a @cert-authority line vouch for one", () => {
    const lines = parseKnownHosts(`@revoked hub ${lineA}\n@cert-authority other ${lineA}\n@bogus hub ${lineB}\n`);
    const revoked = checkHostKey(lines, "hub", 22, keyA);
    assert.equal(revoked.status, "mismatch");
    assert.equal(revoked.revoked, true);
    assert.equal(checkHostKey(lines, "other", 22, keyA).status, "unknown");
    assert.equal(checkHostKey(lines, "hub", 22, keyB).status, "unknown", "an unknown marker line is skipped");
  });

  it("skips lines whose key type does not match the blob or whose base64 is broken", () => {
    const [, base64A] = lineA.split(" ");
    const lines = parseKnownHosts(`hub ssh-rsa ${base64A}\nhub ssh-ed25519 !!!notbase64\nhub\n`);
    assert.deepEqual(lines, []);
  });
});

describe("hostKeyMismatchError()", () => {
  it("names both fingerprints and the ssh-keygen -R fix", () => {
    const lines = parseKnownHosts(`[hub]:2222 ${lineA}\n`, "/home/ada/.ssh/known_hosts");
    const error = hostKeyMismatchError("hub", 2222, keyB, checkHostKey(lines, "hub", 2222, keyB));
    assert.ok(isCwsError(error, "HOST_KEY_MISMATCH"));
    assert.match(error.message, new RegExp(fingerprintSha256(keyA.blob).replaceAll("+", "\\+")));
    assert.match(error.message, new RegExp(fingerprintSha256(keyB.blob).replaceAll("+", "\\+")));
    assert.match(error.message, /ssh-keygen -R '\[hub\]:2222' -f '\/home\/ada\/\.ssh\/known_hosts'/);
  });
});

describe("appendKnownHost()", () => {
  it("appends plain and hashed entries that ssh-keygen -F finds, keeping the file mode", async () => {
    const file = path.join(dir, "append_hosts");
    await writeFile(file, `# mine\nother ${lineB}`, { mode: 0o644 });
    await appendKnownHost(file, "127.0.0.1", 2222, keyA);
    await appendKnownHost(file, "hub.example.org", 22, keyA, { hashed: true });

    const text = await readFile(file, "utf8");
    assert.ok(text.startsWith(`# mine\nother ${lineB}\n`), "existing content was not kept");
    assert.equal((await stat(file)).mode & 0o777, 0o644);
    for (const name of ["[127.0.0.1]:2222", "hub.example.org"]) {
      const found = execFileSync("ssh-keygen", ["-F", name, "-f", file], { encoding: "utf8" });
      assert.match(found, /ssh-ed25519/, `ssh-keygen -F did not find ${name}`);
    }
    const lines = await readKnownHosts([file]);
    assert.equal(checkHostKey(lines, "127.0.0.1", 2222, keyA).status, "match");
    assert.equal(checkHostKey(lines, "hub.example.org", 22, keyA).status, "match");
    assert.ok(!text.includes("hub.example.org"), "the hashed entry leaked the host name");
  });

  it("creates a missing file and its folder privately, and writes through a symlink", async () => {
    const file = path.join(dir, "new", ".ssh", "known_hosts");
    await appendKnownHost(file, "hub", 22, keyA);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    const link = path.join(dir, "linked_hosts");
    await symlink(file, link);
    await appendKnownHost(link, "hub2", 22, keyB);
    assert.ok((await lstat(link)).isSymbolicLink(), "the symlink was replaced by a file");
    const lines = await readKnownHosts([file]);
    assert.equal(checkHostKey(lines, "hub2", 22, keyB).status, "match");
  });
});
