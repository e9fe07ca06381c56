/**
 * README.md, run as a new user would: the commands of its "Server set-up" and "Device set-up"
 * sections are read from the README itself (so this test breaks when the README and the code
 * disagree) and run against a real sshd on loopback, with
 *
 * - a throw-away server account (`useradd`, removed afterwards) with its own HOME and only a
 *   password: no key of any device is in its authorized_keys at the start;
 * - two devices, each its own HOME holding only `~/.ssh/id_ed25519` (no ssh-agent) and a
 *   `~/.ssh/config` that names the server `my-server`, as the README's commands do.
 *
 * What a person types at the prompts comes from the flags the README names for scripts
 * (`--passphrase-file`, `--password-file`, `--trust-host-key`, `--agent-command`); the agent
 * command is the one `cws-server init` printed. The README's placeholder account `you` becomes
 * the throw-away account's name; `npm ci` is taken as done (this checkout is installed).
 *
 * Needs root (useradd, sshd checking passwords); skipped otherwise, e.g. on a developer's
 * machine that is not a CI container. Set CWS_README_TRANSCRIPT=<file> to keep a transcript.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile, appendFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { REPO_ROOT, shellQuote, SSHD_MISSING_MESSAGE, startSshd, type SshdHandle } from "./helpers/sshd.ts";
import { accountsAvailable, createAccount, runCommand as run, type TestAccount } from "./helpers/account.ts";

const README = path.join(REPO_ROOT, "README.md");

/** The `sh` code blocks of one `## ` section of a Markdown text, each as its command lines. */
export function shellBlocks(markdown: string, heading: string): string[][] {
  const start = markdown.indexOf(`\n## ${heading}\n`);
  if (start < 0) throw new Error(`README.md has no "## ${heading}" section`);
  const rest = markdown.slice(start + heading.length + 5);
  const end = rest.search(/\n## /);
  const section = end < 0 ? rest : rest.slice(0, end);
  const blocks: string[][] = [];
  for (const match of section.matchAll(/```sh\n([\s\S]*?)```/g)) {
    blocks.push(match[1].split("\n").map((line) => line.replace(/\s+#.*$/, "").trim()).filter((line) => line !== "" && !line.startsWith("#")));
  }
  return blocks;
}

interface Step {
  who: string;
  command: string;
  ms: number;
  out: string;
}

const canRun = accountsAvailable();

test("README: server set-up and device set-up work as written, through to two devices in sync", { skip: canRun ? false : `needs root, useradd and OpenSSH (${SSHD_MISSING_MESSAGE})`, timeout: 300_000 }, async (t) => {
  const markdown = await readFile(README, "utf8");
  const [serverBlock] = shellBlocks(markdown, "Server set-up");
  const [installBlock, firstDevice, nextDevice] = shellBlocks(markdown, "Device set-up");
  assert.ok(serverBlock && installBlock && firstDevice && nextDevice, "the README's set-up sections have their code blocks");

  const scratch = await mkdtemp(path.join(os.tmpdir(), "cws-readme-"));
  await chmod(scratch, 0o755);
  const accountHome = path.join(scratch, "server-home");
  let user: TestAccount | undefined;
  let account = "";
  let password = "";
  const passphrase = "correct horse battery staple";
  const steps: Step[] = [];
  let sshd: SshdHandle | undefined;
  let dataDir: string | undefined;

  const record = (who: string, command: string, started: number, out: string): void => {
    steps.push({ who, command, ms: Math.round(performance.now() - started), out: out.trim() });
  };

  /** Runs one line as the server account, in the checkout, through its login shell. */
  const asAccount = async (command: string): Promise<string> => {
    const started = performance.now();
    const out = await run("su", ["-", account, "-c", `cd ${shellQuote(REPO_ROOT)} && ${command}`], { env: { ...process.env, CI: "true" } });
    record(`${account}@server`, command, started, out);
    return out;
  };

  try {
    user = createAccount("cwsr", accountHome);
    ({ name: account, password } = user);
    sshd = await startSshd({ authorizedKeysFile: ".ssh/authorized_keys", passwordAuthentication: true, extraConfig: [`AllowUsers ${account}`] });

    // ---- Server set-up, as the README says.
    const passphraseFile = path.join(accountHome, "passphrase");
    await writeFile(passphraseFile, `${passphrase}\n`, { mode: 0o600 });
    execFileSync("chown", [account, passphraseFile]);
    assert.ok(markdown.includes("--passphrase-file"), "the README names --passphrase-file for scripts");
    let agentCommand: string | undefined;
    for (const line of serverBlock) {
      if (line === "npm ci") continue;
      const isInit = /cws-server(\.mjs)? init\b/.test(line);
      const command = isInit ? `${line} --passphrase-file ${shellQuote(passphraseFile)}` : line;
      const out = await asAccount(command);
      if (isInit) {
        agentCommand = /give:\n\s+(.+)\n/.exec(out)?.[1]?.trim();
        dataDir = /--data (\S+)/.exec(line)?.[1]?.replace(/^~/, accountHome);
      }
    }
    assert.ok(agentCommand, "cws-server init printed the agent command");
    assert.ok(dataDir !== undefined && existsSync(path.join(dataDir, "server.json")), "the data dir is initialised");

    // ---- Two devices, each with only ~/.ssh/id_ed25519 and no ssh-agent.
    const device = async (name: string) => {
      const home = path.join(scratch, name);
      await mkdir(path.join(home, ".ssh"), { recursive: true, mode: 0o700 });
      execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", `${name}@readme-test`, "-f", path.join(home, ".ssh", "id_ed25519")]);
      await writeFile(path.join(home, ".ssh", "config"), `Host my-server\n  HostName ${sshd!.host}\n  Port ${sshd!.port}\n`, { mode: 0o600 });
      const passwordFile = path.join(home, "password");
      await writeFile(passwordFile, `${password}\n`, { mode: 0o600 });
      const devicePassphraseFile = path.join(home, "passphrase");
      await writeFile(devicePassphraseFile, `${passphrase}\n`, { mode: 0o600 });
      const env: NodeJS.ProcessEnv = {
        HOME: home,
        USER: "root",
        PATH: `${path.join(home, ".local", "bin")}:/usr/local/bin:/usr/bin:/bin`,
        CI: "true",
        LANG: "C.UTF-8",
        CWS_KEEP_SESSION: "0",
      };
      const scriptFlags = [
        `--trust-host-key ${sshd!.hostKeyFingerprint}`,
        `--agent-command ${shellQuote(agentCommand!)}`,
        `--passphrase-file ${shellQuote(devicePassphraseFile)}`,
        `--password-file ${shellQuote(passwordFile)}`,
      ];
      for (const flag of scriptFlags) assert.ok(markdown.includes(flag.split(" ")[0]), `the README names ${flag.split(" ")[0]} for scripts`);
      const sh = async (line: string): Promise<string> => {
        if (line === "npm ci") return "";
        let command = line.replace(/--user you\b/, `--user ${account}`);
        if (command.startsWith("cws enroll-device")) command = `${command} ${scriptFlags.join(" ")}`;
        const started = performance.now();
        const out = await run("bash", ["-c", `cd ${shellQuote(REPO_ROOT)} && ${command}`], { env });
        record(name, command, started, out);
        return out;
      };
      return { name, home, env, sh };
    };

    const laptop = await device("laptop");
    const desktop = await device("desktop");
    for (const line of [...installBlock, ...firstDevice]) await laptop.sh(line);
    const slug = /cws sync (\S+)/.exec(firstDevice.join("\n"))?.[1];
    const rootArg = /--root (\S+)/.exec(firstDevice.join("\n"))?.[1];
    assert.ok(slug && rootArg, "the README names a superproject and its folder");
    const laptopRoot = rootArg.replace(/^~/, laptop.home);
    await writeFile(path.join(laptopRoot, "from-laptop.md"), "# written on the laptop\n");
    await laptop.sh(`cws sync ${slug}`);

    for (const line of [...installBlock, ...nextDevice]) await desktop.sh(line);
    const desktopRoot = (/--root (\S+)/.exec(nextDevice.join("\n"))?.[1] ?? "").replace(/^~/, desktop.home);
    assert.equal(await readFile(path.join(desktopRoot, "from-laptop.md"), "utf8"), "# written on the laptop\n");

    await writeFile(path.join(desktopRoot, "from-desktop.md"), "# written on the desktop\n");
    await desktop.sh(`cws sync ${slug}`);
    await laptop.sh(`cws sync ${slug}`);
    assert.equal(await readFile(path.join(laptopRoot, "from-desktop.md"), "utf8"), "# written on the desktop\n");

    // Both keys were installed by the password logins, restricted to cws and pinned.
    const authorized = await readFile(path.join(accountHome, ".ssh", "authorized_keys"), "utf8");
    const lines = authorized.trim().split("\n");
    assert.equal(lines.length, 2, authorized);
    for (const line of lines) assert.match(line, /^restrict,command="exec .*forced-command\.mjs'? --data .* --device /);
    const devices = await asAccount(`bin/cws-server.mjs devices --data ${shellQuote(dataDir!)}`);
    assert.match(devices, /laptop|desktop|enrolled/);
    const status = await laptop.sh("cws status");
    assert.match(status, /enrolled on the server as/);
  } finally {
    const transcript = steps.map((s) => `[${(s.ms / 1000).toFixed(1)} s] ${s.who}$ ${s.command}${s.out ? `\n${s.out.replace(/^/gm, "    ")}` : ""}`).join("\n");
    t.diagnostic(`transcript:\n${transcript}`);
    if (process.env.CWS_README_TRANSCRIPT) await appendFile(process.env.CWS_README_TRANSCRIPT, transcript + "\n");
    if (dataDir !== undefined) await run("su", ["-", account, "-c", `cd ${shellQuote(REPO_ROOT)} && bin/cws-server.mjs stop --data ${shellQuote(dataDir)}`]).catch(() => "");
    await sshd?.stop();
    await user?.remove();
    await rm(scratch, { recursive: true, force: true });
  }
});
