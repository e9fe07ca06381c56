/**
 * Measures SFTP throughput over loopback against a throwaway sshd, to choose the transfer
 * defaults in src/transport/sftp-transfer.ts. Not a test; run it by hand:
 *
 *   node_modules/.bin/node test/helpers/measure-sftp.ts [sizeMiB]
 *
 * It compares ssh2's fastPut/fastGet with cws's pipelined, resumable writer/reader at several
 * concurrency × chunk size settings, over one connection (the same cipher as production).
 */
import { randomBytes } from "node:crypto";
import { readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import type { SFTPWrapper } from "ssh2";
import { downloadFile, uploadResumable } from "../../src/transport/sftp-transfer.ts";
import { openSshSession } from "../../src/transport/ssh-session.ts";
import { sessionTarget, startSshd } from "./sshd.ts";

const sizeMiB = Number(process.argv[2] ?? 64);
const sshd = await startSshd();
try {
  const session = await openSshSession(sessionTarget(sshd));
  const sftp = await session.sftp();
  const limits = sftp as unknown as { _maxWriteLen?: number; _maxReadLen?: number };
  console.log(`file ${sizeMiB} MiB; server limits: write ${limits._maxWriteLen} B, read ${limits._maxReadLen} B`);
  const source = path.join(sshd.dir, "source.bin");
  const remote = path.join(sshd.dir, "remote.bin");
  const back = path.join(sshd.dir, "back.bin");
  const data = randomBytes(sizeMiB * 1024 * 1024);
  await writeFile(source, data);

  const fast = (method: "fastPut" | "fastGet", from: string, to: string, concurrency: number, chunkSize: number) =>
    new Promise<void>((resolve, reject) =>
      (sftp as SFTPWrapper)[method](from, to, { concurrency, chunkSize }, (error) => (error ? reject(error) : resolve())),
    );
  const settings = process.env.CWS_MEASURE_SETTINGS
    ? process.env.CWS_MEASURE_SETTINGS.split(",").map((pair) => pair.split("x").map(Number) as [number, number])
    : ([
    [64, 32 * 1024], // ssh2's fastPut/fastGet defaults
    [32, 64 * 1024],
    [16, 128 * 1024],
    [8, 255 * 1024], // cws's defaults: 255 KiB is OpenSSH's largest request
  ] as [number, number][]);
  const variants: [string, (concurrency: number, chunkSize: number) => Promise<unknown>][] = [
    ["upload   ssh2 fastPut ", (c, k) => fast("fastPut", source, remote, c, k)],
    ["upload   cws pipelined", async (c, k) => {
      await rm(remote, { force: true });
      await uploadResumable(sftp, source, remote, { concurrency: c, chunkSize: k });
    }],
    ["download ssh2 fastGet ", (c, k) => fast("fastGet", source, back, c, k)],
    ["download cws pipelined", (c, k) => downloadFile(sftp, source, back, { concurrency: c, chunkSize: k })],
  ];
  // The machine is shared, so variants are interleaved round by round and the median is
  // reported, with the client's own CPU time (which other load does not inflate much).
  const rounds = Number(process.argv[3] ?? 5);
  const samples = new Map<string, { ms: number[]; cpu: number[] }>();
  for (let round = 0; round < rounds; round++) {
    for (const [concurrency, chunkSize] of settings) {
      for (const [name, run] of variants) {
        const key = `${name}  c${String(concurrency).padStart(2)} × ${String(Math.round(chunkSize / 1024)).padStart(3)} KiB`;
        const cpuBefore = process.cpuUsage();
        const started = performance.now();
        await run(concurrency, chunkSize);
        const ms = performance.now() - started;
        const cpu = process.cpuUsage(cpuBefore);
        const entry = samples.get(key) ?? { ms: [], cpu: [] };
        entry.ms.push(ms);
        entry.cpu.push((cpu.user + cpu.system) / 1000);
        samples.set(key, entry);
      }
    }
    if (!(await readFile(back)).equals(data)) throw new Error("download differs");
  }
  const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
  for (const [key, entry] of [...samples].sort(([a], [b]) => a.localeCompare(b))) {
    const ms = median(entry.ms);
    console.log(
      `${key}: ${(sizeMiB / (ms / 1000)).toFixed(0).padStart(4)} MiB/s median of ${rounds} ` +
        `(best ${(sizeMiB / (Math.min(...entry.ms) / 1000)).toFixed(0)}), client CPU ${(median(entry.cpu) / sizeMiB).toFixed(1)} ms/MiB`,
    );
  }
  const before = session.counters();
  await uploadResumable(sftp, source, remote);
  const after = session.counters();
  const wire = after.sent - before.sent + (after.received - before.received);
  console.log(`wire bytes for an upload with the defaults: ${wire} for ${data.length} (+${(((wire - data.length) / data.length) * 100).toFixed(2)}%)`);
  await session.close();
} finally {
  await sshd.stop();
}
