/**
 * Unison over the benchmark's sshd: `unison <local> ssh://user@127.0.0.1:PORT//<server>` in
 * batch mode, keeping modification times (as `rsync -a` does), through OpenSSH with the same
 * key, known_hosts and cipher as everyone else.
 *
 * Client and server run as the same user on the same machine, so each side gets its own
 * archive folder (the `UNISON` variable; the server's through `-servercmd`), as if they were
 * two machines. The server command is wrapped in GNU time to measure its peak RSS.
 *
 * Bytes: Unison does not report what it sent, so only the SSH packet bytes (ssh's own counter
 * at `LogLevel=VERBOSE`) are given; the payload column says "n/a".
 */
import { execFileSync } from "node:child_process";
import { mkdir, rm } from "node:fs/promises";
import { type Measurement, parseSshTransferred, runTimed, tail, TIME_PATH, waitForRssFile, withoutSshChatter } from "./measure.ts";
import { discard } from "./trash.ts";
import { inWork, opensshArgs, type Tool, type ToolContext } from "./tool.ts";

/** The Unison binary, if one is on PATH. */
export function unisonVersion(): string | undefined {
  try {
    return execFileSync("unison", ["-version"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return undefined;
  }
}

export class UnisonRunner implements Tool {
  readonly name = "unison";
  readonly #context: ToolContext;
  #deviceA = "";
  readonly #server: string;
  readonly #deviceB: string;
  readonly #archivesA: string;
  readonly #archivesB: string;
  readonly #archivesServerA: string;
  readonly #archivesServerB: string;
  readonly #serverRss: string;
  readonly #clientRss: string;

  constructor(context: ToolContext) {
    this.#context = context;
    this.#server = inWork(context, "server");
    this.#deviceB = inWork(context, "device-b");
    this.#archivesA = inWork(context, "unison-a");
    this.#archivesB = inWork(context, "unison-b");
    // The server keeps one archive per pair of replicas; separate folders for the pairs with
    // device A and device B let a fresh second device start without the old pair's archive.
    this.#archivesServerA = inWork(context, "unison-server-a");
    this.#archivesServerB = inWork(context, "unison-server-b");
    this.#serverRss = inWork(context, "server-rss.txt");
    this.#clientRss = inWork(context, "client-rss.txt");
  }

  async unavailable(): Promise<string | undefined> {
    return unisonVersion() === undefined ? "unison is not installed (apt-get install -y unison)" : undefined;
  }

  async prepare(deviceA: string): Promise<void> {
    this.#deviceA = deviceA;
  }

  async resetServer(): Promise<void> {
    // A fresh replica on both ends: without its archives, Unison would treat the old state as
    // the common ancestor and see the emptied server as a deletion to propagate.
    for (const dir of [this.#server, this.#archivesServerA, this.#archivesA]) {
      await discard(dir);
      await mkdir(dir, { recursive: true });
    }
  }

  push(): Promise<Measurement> {
    return this.#run(this.#deviceA, this.#archivesA, this.#archivesServerA);
  }

  sync(): Promise<Measurement> {
    return this.#run(this.#deviceA, this.#archivesA, this.#archivesServerA);
  }

  async preparePull(): Promise<void> {
    for (const dir of [this.#deviceB, this.#archivesB, this.#archivesServerB]) {
      await discard(dir);
      await mkdir(dir, { recursive: true });
    }
  }

  pull(): Promise<Measurement> {
    return this.#run(this.#deviceB, this.#archivesB, this.#archivesServerB);
  }

  secondDeviceRoot(): string {
    return this.#deviceB;
  }

  async dispose(): Promise<void> {
    await discard(this.#context.workDir);
  }

  async #run(localRoot: string, archives: string, serverArchives: string): Promise<Measurement> {
    await rm(this.#serverRss, { force: true });
    const { sshd } = this.#context;
    // Unison splits -sshargs on white space, which is why opensshArgs() refuses paths with any.
    // The port is in the URL, so it is left out of -sshargs.
    const sshArgs = opensshArgs(sshd);
    const portAt = sshArgs.indexOf("-p");
    sshArgs.splice(portAt, 2);
    const args = [
      localRoot,
      `ssh://${sshd.user}@${sshd.host}:${sshd.port}/${this.#server}`,
      "-batch",
      "-times",
      "-confirmbigdel=false",
      "-ui", "text",
      "-log=false",
      "-sshcmd", "ssh",
      "-sshargs", sshArgs.join(" "),
      "-servercmd", `${TIME_PATH} -a -f %M -o ${this.#serverRss} env UNISON=${serverArchives} unison`,
    ];
    const run = await runTimed("unison", args, {
      rssFile: this.#clientRss,
      timeoutMs: this.#context.timeoutMs,
      env: { ...process.env, UNISON: archives },
    });
    if (run.timedOut) throw new Error(`unison timed out after ${this.#context.timeoutMs} ms`);
    // Exit code 1 means "some files were skipped"; anything but 0 means the replicas differ.
    if (run.code !== 0) throw new Error(`unison exited with ${run.code ?? run.signal}: ${tail(withoutSshChatter(run.stderr + run.stdout))}`);
    const ssh = parseSshTransferred(run.stderr);
    const serverRssKiB = await waitForRssFile(this.#serverRss);
    return {
      wallMs: run.wallMs,
      ...(ssh === undefined ? {} : { ssh }),
      ...(run.clientRssKiB === undefined ? {} : { clientRssKiB: run.clientRssKiB }),
      ...(serverRssKiB === undefined ? {} : { serverRssKiB }),
    };
  }
}
