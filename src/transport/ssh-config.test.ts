import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { isCwsError } from "../errors.ts";
import { readSshConfigText, resolveSshTarget, type SshConfigContext } from "./ssh-config.ts";

const HOME = path.join(path.sep, "home", "ada");

const CONFIG = `
Host hub
  HostName hub.example.org
  User sync
  Port 2222
  IdentityFile ~/.ssh/hub_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile ~/.ssh/known_hosts_hub "/etc/ssh/other hosts"

Host *.lab
  HostName %h.internal
  IdentityFile %d/.ssh/lab_%r

Host *
  User fallback
  IdentityFile ~/.ssh/id_common
`;

function context(configText: string = CONFIG): SshConfigContext {
  return { configText, homeDir: HOME, localUser: "ada" };
}

describe("resolveSshTarget()", () => {
  it("takes HostName, User, Port, IdentityFile and IdentitiesOnly from the matching Host block", () => {
    const target = resolveSshTarget({ host: "hub" }, context());
    assert.equal(target.alias, "hub");
    assert.equal(target.host, "hub.example.org");
    assert.equal(target.user, "sync");
    assert.equal(target.port, 2222);
    assert.equal(target.identitiesOnly, true);
    assert.deepEqual(target.identityFiles, [
      path.join(HOME, ".ssh", "hub_ed25519"),
      path.join(HOME, ".ssh", "id_common"),
    ]);
    assert.equal(target.defaultIdentityFiles, false);
    assert.deepEqual(target.knownHostsFiles, [path.join(HOME, ".ssh", "known_hosts_hub"), path.normalize("/etc/ssh/other hosts")]);
  });

  it("lets explicit options win over the config file", () => {
    const target = resolveSshTarget(
      { host: "hub", port: 22, user: "root", identityFiles: ["~/k1"], identitiesOnly: false, knownHostsPath: "~/kh" },
      context(),
    );
    assert.equal(target.port, 22);
    assert.equal(target.user, "root");
    assert.equal(target.identitiesOnly, false);
    assert.equal(target.identityFiles[0], path.join(HOME, "k1"), "explicit keys are tried first, like ssh -i");
    assert.deepEqual(target.knownHostsFiles, [path.join(HOME, "kh")]);
  });

  it("expands %h, %d and %r tokens", () => {
    const target = resolveSshTarget({ host: "box.lab" }, context());
    assert.equal(target.host, "box.lab.internal");
    assert.equal(target.user, "fallback");
    assert.equal(target.identityFiles[0], path.join(HOME, ".ssh", "lab_fallback"));
  });

  it("falls back to the alias, port 22, the local user and OpenSSH's default keys without a config", () => {
    const target = resolveSshTarget({ host: "10.0.0.5" }, { homeDir: HOME, localUser: "ada" });
    assert.equal(target.host, "10.0.0.5");
    assert.equal(target.port, 22);
    assert.equal(target.user, "ada");
    assert.equal(target.defaultIdentityFiles, true);
    assert.ok(target.identityFiles.includes(path.join(HOME, ".ssh", "id_ed25519")));
    assert.deepEqual(target.knownHostsFiles, [path.join(HOME, ".ssh", "known_hosts"), path.join(HOME, ".ssh", "known_hosts2")]);
  });

  it("refuses an invalid port from the config with INVALID_ARGUMENT", () => {
    assert.throws(
      () => resolveSshTarget({ host: "bad" }, context("Host bad\n  Port 99999\n")),
      (error) => isCwsError(error, "INVALID_ARGUMENT") && /port "99999"/.test(error.message),
    );
  });

  it("never runs Match exec commands from the config", () => {
    const marker = path.join(os.tmpdir(), `cws-match-exec-${process.pid}`);
    const target = resolveSshTarget({ host: "x" }, context(`Match exec "touch ${marker}"\n  Port 2200\n`));
    assert.equal(target.port, 22);
    assert.equal(existsSync(marker), false, "the Match exec command ran");
  });
});

describe("readSshConfigText()", () => {
  it("inlines top-level Include files, globs included, and returns undefined without a config", async () => {
    const home = await mkdtemp(path.join(os.tmpdir(), "cws-ssh-config-"));
    try {
      assert.equal(await readSshConfigText(home), undefined);
      await mkdir(path.join(home, ".ssh", "config.d"), { recursive: true });
      await writeFile(path.join(home, ".ssh", "config.d", "a.conf"), "Host inc\n  Port 2201\n");
      await writeFile(path.join(home, ".ssh", "config"), "Include config.d/*.conf\n\nHost other\n  Port 2202\n");
      const text = await readSshConfigText(home);
      assert.ok(text !== undefined);
      const target = resolveSshTarget({ host: "inc" }, { configText: text, homeDir: home, localUser: "ada" });
      assert.equal(target.port, 2201);
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  });
});
