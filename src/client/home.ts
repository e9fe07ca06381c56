/**
 * Where the client keeps its files. Apart from state.ts, which loads zod and lowdb, so that the
 * hand-off path of `cws sync` (src/cli/kept-sync.ts) finds the state folder without them.
 */
import { homedir } from "node:os";
import { join } from "node:path";

/** Where the client keeps its files: $CWS_HOME, else the platform's app-data folder. */
export function clientHome(env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform, home = homedir()): string {
  if (env.CWS_HOME) return env.CWS_HOME;
  if (platform === "win32") return join(env.LOCALAPPDATA ?? join(home, "AppData", "Local"), "CodexWorkspaceSync");
  if (platform === "darwin") return join(home, "Library", "Application Support", "CodexWorkspaceSync");
  const base = env.XDG_STATE_HOME && env.XDG_STATE_HOME.startsWith("/") ? env.XDG_STATE_HOME : join(home, ".local", "state");
  return join(base, "codex-workspace-sync");
}
