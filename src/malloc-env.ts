/**
 * glibc's allocator settings for the long-lived processes cws starts itself: the hub on the
 * server (server-agent/hub/hub-client.ts) and a device's kept session (kept-session-wire.ts).
 * Node's Buffers, zstd's contexts and SQLite's pages come from malloc, and by default glibc
 * keeps what was freed: it raises its mmap threshold to the largest block freed so far
 * (scrypt's 32 MiB at the first enrollment, say), after which every buffer comes from arenas,
 * one per thread of the thread pool, that give memory back only from their top. Measured on a
 * 5,000-file push: the hub kept 123 MiB after it, 88 MiB with these; a kept session's peak over
 * a 5,000-file 1% change went from 115 to 105 MiB. One arena, buffers of 32 KiB and more
 * mapped on their own (unmapped when freed), and the top of the heap trimmed past 64 KiB of
 * free space. They only take effect at a process's start, so they go into its environment
 * (the user's own settings, if any, win). Other platforms ignore them.
 */
export const LOW_MEMORY_MALLOC_ENV = { MALLOC_ARENA_MAX: "1", MALLOC_MMAP_THRESHOLD_: "32768", MALLOC_TRIM_THRESHOLD_: "65536" } as const;

/**
 * The settings a command that may push or pull a whole tree restarts with (see
 * restartWithLowMemoryMalloc): LOW_MEMORY_MALLOC_ENV's, but Buffers are mapped on their own
 * only from 64 KiB. ssh2 makes two or three Buffers of up to 35,000 bytes for every SSH packet
 * each way; with a 32 KiB threshold each was an mmap and munmap of its own, and a 5,000-file push
 * made 160,000–172,000 page faults and 2.0–2.1 s of system time against 46,000–49,000 and
 * 1.0–1.1 s with 64 KiB, at the same peak (160–169 MiB against 167–169; the pull 157–162
 * against 157–165). The larger blocks (SFTP requests and replies of 255 KiB, read blocks,
 * download buffers) are still mapped and unmapped on their own.
 */
export const BULK_CLI_MALLOC_ENV = { ...LOW_MEMORY_MALLOC_ENV, MALLOC_MMAP_THRESHOLD_: "65536", MALLOC_TRIM_THRESHOLD_: "131072" } as const;

/**
 * Whether this process should start again with BULK_CLI_MALLOC_ENV before it runs a command
 * that may move a whole tree (see restartWithLowMemoryMalloc): on Linux (glibc reads these
 * variables; other systems' allocators do not), where Node can replace the process
 * (`process.execve`), unless any of the settings is in the environment already (the restarted
 * process itself, or a user's own choice) or CWS_MALLOC_RESTART=0 turns it off.
 */
export function wantsLowMemoryRestart(env: Readonly<Record<string, string | undefined>>, platform: NodeJS.Platform, canReplace: boolean): boolean {
  if (platform !== "linux" || !canReplace || env.CWS_MALLOC_RESTART === "0") return false;
  return Object.keys(BULK_CLI_MALLOC_ENV).every((name) => env[name] === undefined);
}

/**
 * Replaces this process by a fresh Node running the same command line with
 * BULK_CLI_MALLOC_ENV, when wantsLowMemoryRestart says so; returns (and the command runs
 * here, with glibc's defaults) otherwise or if the replacement fails. Same pid, terminal,
 * descriptors and arguments: to the user and to whoever waits for the process it is one
 * command. It costs one more start of Node (about 40 ms on an idle machine) and is meant for
 * the commands that may push or pull a whole tree (src/cli/cws.mjs), where the CLI process
 * itself holds the transfer's buffers: with these settings a 5,000-file push and pull peaked
 * about 10–20 MiB lower, a 50,000-file push 10–15 MiB and a pull 45–70 MiB lower
 * (docs/performance.md, "The client's memory, sixth round").
 */
export function restartWithLowMemoryMalloc(): void {
  if (!wantsLowMemoryRestart(process.env, process.platform, typeof process.execve === "function")) return;
  try {
    process.execve!(process.execPath, [process.execPath, ...process.execArgv, ...process.argv.slice(1)], { ...process.env, ...BULK_CLI_MALLOC_ENV });
  } catch {
    // Not replaced (the binary cannot be run again, say): the command runs in this process.
  }
}
