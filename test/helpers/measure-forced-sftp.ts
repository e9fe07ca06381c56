/**
 * Compares the restricted SFTP server (server-agent/sftp) with OpenSSH's own, over loopback
 * against a throwaway sshd. Not a test; run it by hand:
 *
 *   node_modules/.bin/node test/helpers/measure-forced-sftp.ts [sizeMiB=50] [rounds=3]
 *
 * Servers: OpenSSH's internal-sftp (a plain key), OpenSSH's sftp-server binary behind a
 * forced command, and cws's forced command (restricted server). Clients: ssh2's
 * fastPut/fastGet with their defaults, and cws's pipelined upload/download. Rounds are
 * interleaved and the median is reported, as the machine is shared.
 */
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { SFTPWrapper } from "ssh2";
import { authorizedKeysLine } from "../../server-agent/authorized-keys.ts";
import { downloadFile, uploadResumable } from "../../src/transport/sftp-transfer.ts";
import { openSshSession } from "../../src/transport/ssh-session.ts";
import { REPO_NODE, REPO_ROOT, sessionTarget, startSshd } from "./sshd.ts";

const sizeMiB = Number(process.argv[2] ?? 50);
const rounds = Number(process.argv[3] ?? 3);
const sshd = await startSshd();
const work = await mkdtemp(path.join(os.tmpdir(), "cws-measure-forced-"));
try {
  const dataDir = path.join(work, "data");
  const incoming = path.join(dataDir, "staging", "incoming");
  const outgoing = path.join(dataDir, "staging", "outgoing");
  await mkdir(incoming, { recursive: true });
  await mkdir(outgoing, { recursive: true });
  const source = path.join(work, "source.bin");
  const back = path.join(work, "back.bin");
  const data = randomBytes(sizeMiB * 1024 * 1024);
  await writeFile(source, data);
  await writeFile(path.join(outgoing, "down.bundle"), data);

  const servers: [string, string][] = [
    ["openssh internal-sftp", sshd.clientPublicKey],
    ["openssh sftp-server  ", `restrict,command="exec /usr/lib/openssh/sftp-server" ${sshd.clientPublicKey}`],
    ["cws restricted       ", authorizedKeysLine({ publicKey: sshd.clientPublicKey, dataDir, deviceId: "measure", nodePath: REPO_NODE, repoDir: REPO_ROOT })],
  ];
  const fast = (sftp: SFTPWrapper, method: "fastPut" | "fastGet", from: string, to: string) =>
    new Promise<void>((resolve, reject) => sftp[method](from, to, (error) => (error ? reject(error) : resolve())));
  const clients: [string, (sftp: SFTPWrapper) => Promise<unknown>][] = [
    ["upload   ssh2 fastPut", (sftp) => fast(sftp, "fastPut", source, path.join(incoming, "up.bundle"))],
    ["upload   cws pipelined", async (sftp) => {
      await rm(path.join(incoming, "up.bundle"), { force: true });
      await uploadResumable(sftp, source, path.join(incoming, "up.bundle"));
    }],
    ["download ssh2 fastGet", (sftp) => fast(sftp, "fastGet", path.join(outgoing, "down.bundle"), back)],
    ["download cws pipelined", (sftp) => downloadFile(sftp, path.join(outgoing, "down.bundle"), back)],
  ];

  const samples = new Map<string, number[]>();
  for (let round = 0; round < rounds; round++) {
    for (const [server, line] of servers) {
      await sshd.setAuthorizedKeys([line]);
      const session = await openSshSession(sessionTarget(sshd));
      try {
        const sftp = await session.sftp();
        for (const [client, run] of clients) {
          const started = performance.now();
          await run(sftp);
          const key = `${client.padEnd(22)}  ${server}`;
          samples.set(key, [...(samples.get(key) ?? []), performance.now() - started]);
        }
      } finally {
        await session.close();
      }
      if (!(await readFile(path.join(incoming, "up.bundle"))).equals(data) || !(await readFile(back)).equals(data)) {
        throw new Error(`a transfer through ${server.trim()} changed the data`);
      }
    }
  }
  const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
  console.log(`${sizeMiB} MiB over loopback, median of ${rounds}:`);
  for (const [key, ms] of [...samples].sort(([a], [b]) => a.localeCompare(b))) {
    console.log(`${key}: ${(sizeMiB / (median(ms) / 1000)).toFixed(0).padStart(4)} MiB/s (${median(ms).toFixed(0)} ms)`);
  }
} finally {
  await sshd.stop();
  await rm(work, { recursive: true, force: true });
}
