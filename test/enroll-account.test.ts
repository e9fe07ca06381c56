/**
 * Enrollment against a real sshd as a throw-away account that knows none of the devices' keys
 * (root only; see helpers/account.ts): a password login installs the device's key as
 * ssh-copy-id would (restricted by default, plain with --no-restrict-key), a key named by
 * `IdentityFile` in ~/.ssh/config is the one used and installed, and `cws-server devices
 * revoke` makes a device's key stop working (its authorized_keys lines go) and the agent
 * refuse the device.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { REPO_ROOT, shellQuote, startSshd, type SshdHandle } from "./helpers/sshd.ts";
import { accountsAvailable, createAccount, runCommand, type TestAccount } from "./helpers/account.ts";

const NODE = path.join(REPO_ROOT, "node_modules", ".bin", "node");
const CWS = path.join(REPO_ROOT, "bin", "cws.mjs");
const CWS_SERVER = path.join(REPO_ROOT, "bin", "cws-server.mjs");

test("password enrollment installs the key (restricted, or plain with --no-restrict-key); revoking removes it and the agent refuses the device", { skip: accountsAvailable() ? false : "needs root, useradd and OpenSSH", timeout: 300_000 }, async () => {
  const scratch = await mkdtemp(path.join(os.tmpdir(), "cws-enroll-"));
  await chmod(scratch, 0o755);
  let account: TestAccount | undefined;
  let sshd: SshdHandle | undefined;
  const data = path.join(scratch, "server-home", "data");
  try {
    account = createAccount("cwse", path.join(scratch, "server-home"));
    const asAccount = (args: string[]) => runCommand("su", ["-", account!.name, "-c", [NODE, CWS_SERVER, ...args].map(shellQuote).join(" ")]);
    await writeFile(path.join(scratch, "pass"), "a long passphrase\n", { mode: 0o644 });
    const init = await asAccount(["init", "--data", data, "--passphrase-file", path.join(scratch, "pass")]);
    const agentCommand = /give:\n\s+(.+)\n/.exec(init)![1].trim();
    sshd = await startSshd({ authorizedKeysFile: ".ssh/authorized_keys", passwordAuthentication: true, extraConfig: [`AllowUsers ${account.name}`] });
    await writeFile(path.join(scratch, "password"), `${account.password}\n`, { mode: 0o600 });

    /** A device whose only key is `keyName` (named in ~/.ssh/config when not a default name). */
    const device = async (name: string, keyName: string) => {
      const home = path.join(scratch, name);
      await mkdir(path.join(home, ".ssh"), { recursive: true, mode: 0o700 });
      execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", path.join(home, ".ssh", keyName)]);
      const identity = keyName === "id_ed25519" ? "" : `  IdentityFile ~/.ssh/${keyName}\n`;
      await writeFile(path.join(home, ".ssh", "config"), `Host server\n  HostName ${sshd!.host}\n  Port ${sshd!.port}\n  User ${account!.name}\n${identity}`);
      const env = { PATH: process.env.PATH, HOME: home, CWS_KEEP_SESSION: "0" };
      const cws = (args: string[]) => runCommand(NODE, [CWS, ...args], { env });
      const publicKey = (await readFile(path.join(home, ".ssh", `${keyName}.pub`), "utf8")).trim();
      return { name, home, cws, publicKey };
    };
    const enrollFlags = (extra: string[]) => ["enroll-device", "--host", "server", "--trust-host-key", sshd!.hostKeyFingerprint, "--agent-command", agentCommand, "--passphrase-file", path.join(scratch, "pass"), "--password-file", path.join(scratch, "password"), ...extra];
    const authorizedKeys = path.join(account.home, ".ssh", "authorized_keys");

    // Plain install, as ssh-copy-id: the key line itself.
    const plain = await device("plain", "id_ed25519");
    const enrolledPlain = await plain.cws(enrollFlags(["--device-name", "plain", "--no-restrict-key"]));
    assert.match(enrolledPlain, /installed on the server .*unrestricted/);
    assert.equal((await readFile(authorizedKeys, "utf8")).trim(), plain.publicKey);
    assert.match(await plain.cws(["status"]), /enrolled on the server as plain/);

    // Restricted install (the default), of the key ~/.ssh/config names.
    const pinned = await device("pinned", "cws_key");
    const enrolledPinned = await pinned.cws(enrollFlags(["--device-name", "pinned"]));
    assert.match(enrolledPinned, /cws_key is installed on the server, restricted to cws/);
    const lines = (await readFile(authorizedKeys, "utf8")).trim().split("\n");
    assert.equal(lines.length, 2);
    assert.match(lines[1], new RegExp(`^restrict,command=".*--device .*" ${pinned.publicKey.split(" ").slice(0, 2).join(" ").replace(/[+/]/g, "\\$&")}`));
    assert.match(await pinned.cws(["status"]), /enrolled on the server as pinned/);

    // Re-enrolling keeps the device id: no second record.
    await pinned.cws(enrollFlags(["--device-name", "pinned", "--force"]));
    const listed = await asAccount(["devices", "--data", data, "--json"]);
    assert.equal((JSON.parse(listed) as { devices: unknown[] }).devices.length, 2);

    // Revoking "pinned" removes its line: its key no longer logs in.
    const revoked = await asAccount(["devices", "revoke", "pinned", "--data", data]);
    assert.match(revoked, /revoked pinned .*1 line\(s\) removed/);
    assert.equal((await readFile(authorizedKeys, "utf8")).trim(), plain.publicKey);
    const refusedKey = await pinned.cws(["status"]).then(() => "", (error: Error) => error.message);
    assert.match(refusedKey, /server: NOT reachable: Cannot log in/);

    // Revoking "plain" with its key left in place (another file named): the agent refuses it.
    await asAccount(["devices", "revoke", "plain", "--data", data, "--authorized-keys", path.join(scratch, "elsewhere")]);
    const refusedDevice = await plain.cws(["status"]).then(() => "", (error: Error) => error.message);
    assert.match(refusedDevice, /server: NOT reachable: .*was revoked on the server/);
    const devices = await asAccount(["devices", "--data", data]);
    assert.equal(devices.match(/REVOKED/g)?.length, 2, devices);
  } finally {
    if (account !== undefined) await runCommand("su", ["-", account.name, "-c", [NODE, CWS_SERVER, "stop", "--data", data].map(shellQuote).join(" ")]).catch(() => "");
    await sshd?.stop();
    await account?.remove();
    await rm(scratch, { recursive: true, force: true });
  }
});
