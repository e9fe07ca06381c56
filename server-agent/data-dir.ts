/**
 * Where the server's data lives and where its hub listens. Kept apart from the rest of the
 * server code, with no dependencies, because the per-connection relay needs both and must start
 * in a few milliseconds.
 */
import { homedir } from "node:os";
import { join } from "node:path";

/** `$CWS_DATA_DIR`, else `$XDG_DATA_HOME/cws-server`, else `~/.local/share/cws-server`. */
export function defaultServerDataDir(env: NodeJS.ProcessEnv = process.env, home = homedir()): string {
  if (env.CWS_DATA_DIR) return env.CWS_DATA_DIR;
  const base = env.XDG_DATA_HOME && env.XDG_DATA_HOME.startsWith("/") ? env.XDG_DATA_HOME : join(home, ".local", "share");
  return join(base, "cws-server");
}

/** The hub's Unix socket (mode 0600): hub requests and relayed client sessions. */
export function hubSocketPath(dataDir: string): string {
  return join(dataDir, "hub.sock");
}
