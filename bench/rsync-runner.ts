/**
 * rsync over the benchmark's sshd, as a careful user would run it: `rsync -a` (and `-az` for
 * the compressed variant) with `--stats`, through OpenSSH with the same key, known_hosts and
 * cipher as everyone else. The server side is `rsync --server` started by sshd, wrapped in GNU
 * time through `--rsync-path` so its peak RSS is measured the same way as the client's.
 *
 * Bytes: `--stats` gives rsync's own count of what it sent and received on its channel (the
 * payload inside SSH); ssh's `LogLevel=VERBOSE` counter gives the SSH packet bytes.
 */
import { mkdir, rm } from "node:fs/promises";
import { type ByteCounts, type Measurement, parseSshTransferred, runTimed, tail, TIME_PATH, waitForRssFile, withoutSshChatter } from "./measure.ts";
import { discard } from "./trash.ts";
import { inWork, opensshArgs, type Tool, type ToolContext } from "./tool.ts";

/**
 * Reads "Total bytes sent: 1,234" and "Total bytes received: 5,678" from `rsync --stats`
 * (rsync 3.1+ groups digits with commas, older versions do not), from the client's side.
 */
export function parseRsyncStats(stdout: string): ByteCounts | undefined {
  const sent = /Total bytes sent:\s+([\d,.]+)/.exec(stdout);
  const received = /Total bytes received:\s+([\d,.]+)/.exec(stdout);
  if (sent === null || received === null) return undefined;
  const number = (text: string): number => Number(text.replace(/[,.]/g, ""));
  return { sent: number(sent[1]!), received: number(received[1]!) };
}

/** Options for {@link RsyncRunner}. */
export interface RsyncRunnerOptions {
  /** Adds `-z` (rsync's own compression). */
  compress: boolean;
}

export class RsyncRunner implements Tool {
  readonly name: string;
  readonly #context: ToolContext;
  readonly #compress: boolean;
  #deviceA = "";
  readonly #server: string;
  readonly #deviceB: string;
  readonly #serverRss: string;
  readonly #clientRss: string;

  constructor(context: ToolContext, options: RsyncRunnerOptions) {
    this.#context = context;
    this.#compress = options.compress;
    this.name = options.compress ? "rsync -az" : "rsync -a";
    this.#server = inWork(context, "server");
    this.#deviceB = inWork(context, "device-b");
    this.#serverRss = inWork(context, "server-rss.txt");
    this.#clientRss = inWork(context, "client-rss.txt");
  }

  async unavailable(): Promise<string | undefined> {
    return undefined;
  }

  async prepare(deviceA: string): Promise<void> {
    this.#deviceA = deviceA;
  }

  async resetServer(): Promise<void> {
    await discard(this.#server);
  }

  push(): Promise<Measurement> {
    return this.#run(`${this.#deviceA}/`, `${this.#remote()}:${this.#server}/`);
  }

  sync(): Promise<Measurement> {
    return this.#run(`${this.#deviceA}/`, `${this.#remote()}:${this.#server}/`);
  }

  async preparePull(): Promise<void> {
    await discard(this.#deviceB);
    await mkdir(this.#deviceB, { recursive: true });
  }

  pull(): Promise<Measurement> {
    return this.#run(`${this.#remote()}:${this.#server}/`, `${this.#deviceB}/`);
  }

  secondDeviceRoot(): string {
    return this.#deviceB;
  }

  async dispose(): Promise<void> {
    await discard(this.#context.workDir);
  }

  #remote(): string {
    return `${this.#context.sshd.user}@${this.#context.sshd.host}`;
  }

  async #run(source: string, destination: string): Promise<Measurement> {
    await rm(this.#serverRss, { force: true });
    const args = [
      this.#compress ? "-az" : "-a",
      "--stats",
      "-e", ["ssh", ...opensshArgs(this.#context.sshd)].join(" "),
      // The remote shell runs this; -a appends, in case rsync ever opens a second session.
      `--rsync-path=${TIME_PATH} -a -f %M -o ${this.#serverRss} rsync`,
      source,
      destination,
    ];
    const run = await runTimed("rsync", args, { rssFile: this.#clientRss, timeoutMs: this.#context.timeoutMs });
    if (run.timedOut) throw new Error(`rsync timed out after ${this.#context.timeoutMs} ms`);
    if (run.code !== 0) throw new Error(`rsync exited with ${run.code ?? run.signal}: ${tail(withoutSshChatter(run.stderr))}`);
    const payload = parseRsyncStats(run.stdout);
    const ssh = parseSshTransferred(run.stderr);
    const serverRssKiB = await waitForRssFile(this.#serverRss);
    return {
      wallMs: run.wallMs,
      ...(payload === undefined ? {} : { payload }),
      ...(ssh === undefined ? {} : { ssh }),
      ...(run.clientRssKiB === undefined ? {} : { clientRssKiB: run.clientRssKiB }),
      ...(serverRssKiB === undefined ? {} : { serverRssKiB }),
    };
  }
}
