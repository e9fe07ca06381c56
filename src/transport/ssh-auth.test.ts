import assert from "node:assert/strict";
import { readFile, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { makeClientKey } from "../../test/helpers/sshd.ts";
import { defaultAgents, openSshPublicBlob, PAGEANT, WINDOWS_OPENSSH_AGENT_PIPE } from "./ssh-auth.ts";

describe("defaultAgents()", () => {
  it("uses SSH_AUTH_SOCK on POSIX and nothing without it", () => {
    assert.deepEqual(defaultAgents({ SSH_AUTH_SOCK: "/tmp/agent.1" }, "linux"), ["/tmp/agent.1"]);
    assert.deepEqual(defaultAgents({}, "darwin"), []);
  });

  it("falls back to the Windows OpenSSH agent pipe, then Pageant, on Windows", () => {
    assert.deepEqual(defaultAgents({}, "win32"), [WINDOWS_OPENSSH_AGENT_PIPE, PAGEANT]);
    assert.deepEqual(defaultAgents({ SSH_AUTH_SOCK: "\\\\.\\pipe\\custom" }, "win32"), ["\\\\.\\pipe\\custom", PAGEANT]);
  });
});

describe("openSshPublicBlob()", () => {
  it("reads the public key of an encrypted OpenSSH key without its passphrase", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "cws-ssh-auth-"));
    try {
      const { keyPath, publicKey } = await makeClientKey(dir, "locked", { passphrase: "secret" });
      const blob = openSshPublicBlob(await readFile(keyPath));
      assert.equal(blob?.toString("base64"), publicKey.split(" ")[1]);
      assert.equal(openSshPublicBlob(Buffer.from("not a key")), undefined);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
