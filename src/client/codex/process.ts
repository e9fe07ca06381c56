/**
 * Is Codex running on this device, and which files does it hold open?
 *
 * A pull must never write into a rollout Codex is appending to: Codex keeps the file open in
 * append mode, so replacing it by rename would send its next lines into the replaced
 * (unlinked) file, and they would be lost. On Linux the open files of every process named
 * `codex…` are read from /proc, so exactly those rollouts are left alone. Elsewhere only the
 * process list is available (`tasklist` on Windows, `ps` on macOS): a running Codex then
 * produces a warning, and the pull relies on the rollout's size and mtime being unchanged
 * since the scan and not being very recent (see sink.ts). On Windows, Codex's open
 * handle also makes the replacing rename fail, which the sink reports as a skipped thread.
 */
import { execFile } from "node:child_process";
import { readFile, readdir, readlink } from "node:fs/promises";
import { basename } from "node:path";

export interface CodexProcesses {
  /** Process ids of running Codex processes (never this process). */
  pids: number[];
  /** Absolute paths those processes hold open, or null when this platform cannot tell. */
  openFiles: Set<string> | null;
}

/** Finds running Codex processes; never throws (an unreadable process table is "none found"). */
export type CodexProbe = () => Promise<CodexProcesses>;

// The native binary is `codex`; helpers are `codex-…` (comm is cut to 15 characters on Linux).
function isCodexName(name: string): boolean {
  const base = basename(name.trim()).toLowerCase().replace(/\.exe$/, "");
  return base === "codex" || base.startsWith("codex-");
}

async function probeLinux(): Promise<CodexProcesses> {
  const pids: number[] = [];
  const openFiles = new Set<string>();
  let names: string[];
  try {
    names = await readdir("/proc");
  } catch {
    return { pids, openFiles: null };
  }
  for (const name of names) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    // comm is the executable's name unless the program renamed its main thread (Node calls
    // it "MainThread"), so argv[0] is checked too.
    let comm: string;
    let argv0: string;
    try {
      comm = await readFile(`/proc/${name}/comm`, "utf8");
      argv0 = (await readFile(`/proc/${name}/cmdline`, "utf8")).split("\0")[0] ?? "";
    } catch {
      continue; // the process ended meanwhile
    }
    if (!isCodexName(comm) && !isCodexName(argv0)) continue;
    pids.push(Number(name));
    let fds: string[] = [];
    try {
      fds = await readdir(`/proc/${name}/fd`);
    } catch {
      continue; // another user's process: it is still reported as running
    }
    for (const fd of fds) {
      try {
        openFiles.add(await readlink(`/proc/${name}/fd/${fd}`));
      } catch {
        // Closed meanwhile.
      }
    }
  }
  return { pids, openFiles };
}

function run(command: string, args: string[]): Promise<string> {
  return new Promise((resolve) => {
    execFile(command, args, { timeout: 3_000, windowsHide: true, maxBuffer: 4 * 1024 * 1024 }, (error, stdout) => {
      resolve(error === null ? stdout : "");
    });
  });
}

async function probeWindows(): Promise<CodexProcesses> {
  // CSV lines: "Image Name","PID","Session Name","Session#","Mem Usage".
  const out = await run("tasklist", ["/FO", "CSV", "/NH"]);
  const pids: number[] = [];
  for (const line of out.split(/\r?\n/)) {
    const m = /^"([^"]*)","(\d+)"/.exec(line);
    if (m !== null && isCodexName(m[1]) && Number(m[2]) !== process.pid) pids.push(Number(m[2]));
  }
  return { pids, openFiles: null };
}

async function probePs(): Promise<CodexProcesses> {
  const out = await run("ps", ["-A", "-o", "pid=,comm="]);
  const pids: number[] = [];
  for (const line of out.split("\n")) {
    const m = /^\s*(\d+)\s+(.+)$/.exec(line);
    if (m !== null && isCodexName(m[2]) && Number(m[1]) !== process.pid) pids.push(Number(m[1]));
  }
  return { pids, openFiles: null };
}

/** The probe for this platform. */
export function defaultCodexProbe(platform: NodeJS.Platform = process.platform): CodexProbe {
  if (platform === "linux") return probeLinux;
  if (platform === "win32") return probeWindows;
  return probePs;
}
