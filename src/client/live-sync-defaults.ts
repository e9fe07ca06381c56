/**
 * Live sync's default periods, apart from live-sync.ts so that the command line can show them
 * in its help without loading the sync machinery (it loads a command's code only when run).
 */

/** Heartbeat period: a quarter of the lease's 120 s, inside the 15–30 s the design asks for. */
export const DEFAULT_HEARTBEAT_MS = 20_000;
/** Changes are pushed once the folder has been quiet this long. */
export const DEFAULT_QUIET_MS = 2_000;
/** A full rescan runs this often even without watcher events (the watcher can miss events). */
export const DEFAULT_RESCAN_MS = 60_000;
