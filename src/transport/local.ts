/**
 * The local transport: the agent as a child process on this machine, speaking the protocol
 * over its stdio, with bundles copied through the server data dir's staging folders. It is
 * what the demo and most tests use, and it behaves like the SSH transport in every way the
 * client can see (same agent, same protocol, same staging), minus the network.
 */
import { spawn } from "node:child_process";
import { copyFile, open, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as delayed } from "node:timers";
import { CwsError, isCwsError } from "../errors.ts";
import type { AgentConnection, DownloadBytesOptions, TransferOptions } from "./connection.ts";
import { openRpc } from "./rpc-client.ts";

/** The agent's entry point in this checkout, started with the same Node binary as the client. */
export const LOCAL_AGENT_MAIN = join(import.meta.dirname, "..", "..", "server-agent", "agent", "main.mjs");

export interface LocalTarget {
  dataDir: string;
  /** Extra environment for the agent process (tests use it to pass a fake clock, etc.). */
  env?: NodeJS.ProcessEnv;
}

export async function connectLocal(target: LocalTarget, options: { signal?: AbortSignal } = {}): Promise<AgentConnection> {
  const child = spawn(process.execPath, [LOCAL_AGENT_MAIN, "--stdio", "--data", target.dataDir], {
    stdio: ["pipe", "pipe", "pipe"],
    env: { ...process.env, ...target.env },
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once("close", (code, signal) => resolve({ code, signal })));
  // What the agent says on stderr before its hello, for the error when it never comes.
  let said = "";
  const collect = (piece: Buffer) => { if (said.length < 4096) said += piece.toString(); };
  child.stderr.on("data", collect);
  const spawnError = new Promise<never>((_, reject) => child.once("error", (error) => reject(new CwsError("AGENT_MISSING", `Cannot start the local agent (${LOCAL_AGENT_MAIN}): ${error.message}`))));
  spawnError.catch(() => {});
  let rpc;
  try {
    rpc = await Promise.race([openRpc({ input: child.stdout, output: child.stdin, stderr: child.stderr }, options), spawnError]);
  } catch (error) {
    // The stream ended without a hello: the exit status (arriving just after) says why.
    const ended = isCwsError(error, "AGENT_MISSING") ? await Promise.race([exited, delay(3_000)]) : undefined;
    child.kill("SIGKILL");
    throw ended === undefined ? error : agentEndedEarly(error, ended, said);
  }
  child.stderr.off("data", collect);
  let fileSent = 0;
  let fileReceived = 0;
  const session = rpc;

  return {
    hello: session.hello,
    call: session.call,
    async upload(localPath: string, name: string, transfer: TransferOptions = {}) {
      const target = join(session.hello.staging.incoming, name);
      const { size } = await stat(localPath);
      // Copy under a temporary name first, so the agent never ingests half a bundle. A copy
      // that fails leaves nothing behind in the server's staging folder.
      try {
        await copyFile(localPath, `${target}.part`);
        await rename(`${target}.part`, target);
      } catch (error) {
        await rm(`${target}.part`, { force: true }).catch(() => {});
        const code = (error as NodeJS.ErrnoException)?.code;
        if (code === "ENOSPC" || code === "EDQUOT") {
          throw new CwsError("DISK_FULL", `The server's disk is full: a bundle could not be copied into ${session.hello.staging.incoming}. Free space on the server (\`cws-server gc\` removes old snapshots and leftovers) and sync again.`, { cause: error });
        }
        throw error;
      }
      fileSent += size;
      transfer.onProgress?.({ bytes: size, total: size });
    },
    async download(name: string, localPath: string, transfer: TransferOptions = {}) {
      const source = join(session.hello.staging.outgoing, name);
      await copyFile(source, localPath);
      const { size } = await stat(localPath);
      fileReceived += size;
      transfer.onProgress?.({ bytes: size, total: size });
    },
    async downloadBytes(name: string, transfer: DownloadBytesOptions) {
      const handle = await open(join(session.hello.staging.outgoing, name), "r");
      try {
        const { size } = await handle.stat();
        if (size > transfer.maxBytes) throw new CwsError("FRAME_TOO_LARGE", `Cannot download bundle "${name}" as it has ${size} bytes, more than the ${transfer.maxBytes} expected`);
        const data = transfer.into !== undefined && transfer.into.byteLength >= size ? transfer.into.subarray(0, size) : Buffer.allocUnsafe(size);
        let filled = 0;
        while (filled < size) {
          const { bytesRead } = await handle.read(data, filled, size - filled, filled);
          if (bytesRead === 0) throw new CwsError("CORRUPT", `Cannot download bundle "${name}" as it shrank while it was read`);
          filled += bytesRead;
        }
        fileReceived += size;
        transfer.onProgress?.({ bytes: size, total: size });
        return data;
      } finally {
        await handle.close();
      }
    },
    counters() {
      const rpcCounters = session.counters();
      return { sent: rpcCounters.sent + fileSent, received: rpcCounters.received + fileReceived };
    },
    async close() {
      await session.end().catch(() => {});
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Why the local agent ended before its hello, with what to do next. */
function agentEndedEarly(error: unknown, status: { code: number | null; signal: NodeJS.Signals | null }, said: string): CwsError {
  const detail = said.trim() === "" ? "" : `; it said: ${said.trim().slice(-500)}`;
  const how = status.signal !== null ? `was stopped by ${status.signal}` : `exited with code ${status.code}`;
  // When the agent process was killed or crashed while starting (a signal, the OOM killer, a bad data dir).
  return new CwsError("AGENT_MISSING", `The cws agent ${how} before it was ready${detail}. Run the command again; if it keeps happening, check the server data dir with \`cws-server status\` and the machine's memory`, {
    cause: error,
    data: { exitCode: status.code, signal: status.signal },
  });
}

function delay(ms: number): Promise<undefined> {
  return new Promise((resolve) => delayed(() => resolve(undefined), ms).unref());
}
