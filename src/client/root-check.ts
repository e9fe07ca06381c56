/**
 * Which folders may be a superproject's root. A sync uploads everything below its root, so a
 * root that is the whole file system, or that holds cws's own state (the device's keys and
 * bases) or a cws server's data dir, would upload what must never leave the machine, and keep
 * changing under its own sync. Such roots are refused when a superproject is bound, and again
 * before each sync (bindings made by older versions were not checked).
 */
import { statSync } from "node:fs";
import { homedir } from "node:os";
import { isAbsolute, join, parse, relative, resolve } from "node:path";
import { CwsError } from "../errors.ts";
import type { StateStore } from "./state.ts";

export interface RootCheckOptions {
  /** The client's state dir (CWS_HOME). */
  stateHome: string;
  /** Server data dirs this machine may hold (a local server, $CWS_DATA_DIR, the default place). */
  serverDataDirs?: readonly string[];
}

/** Checks a root against this device's state dir and every server data dir it knows of. */
export function checkRootForState(root: string, state: StateStore): void {
  const server = state.data.server;
  const local = server?.transport === "local" ? [server.dataDir] : [];
  checkSuperprojectRoot(root, { stateHome: state.home, serverDataDirs: [...local, ...defaultServerDataDirs()] });
}

/** The places a cws server keeps its data on this machine by default (see server-config.ts). */
export function defaultServerDataDirs(env: NodeJS.ProcessEnv = process.env): string[] {
  const dirs = [join(homedir(), ".local", "share", "cws-server")];
  if (env.XDG_DATA_HOME) dirs.push(join(env.XDG_DATA_HOME, "cws-server"));
  if (env.CWS_DATA_DIR) dirs.push(env.CWS_DATA_DIR);
  return dirs;
}

/**
 * Refuses a root that must not be synced, with what to do instead.
 *
 * @throws {CwsError} INVALID_ARGUMENT for the file system's root, a file, a folder that holds
 *   (or lies inside) the client's state or a server data dir.
 */
export function checkSuperprojectRoot(root: string, options: RootCheckOptions): void {
  const absolute = resolve(root);
  if (parse(absolute).root === absolute) {
    // When --root is "/" (or a drive root such as "C:\").
    throw new CwsError("INVALID_ARGUMENT", `Cannot use "${absolute}" as a superproject folder as it is the root of the file system: cws would sync every file on this machine. Give the superproject a folder of its own, e.g. --root ~/projects/<name>`, { data: { root: absolute } });
  }
  const kind = kindOf(absolute);
  if (kind === "other") {
    // When --root names an existing file.
    throw new CwsError("INVALID_ARGUMENT", `Cannot use "${absolute}" as a superproject folder as it is a file, not a folder. Give a folder (a missing one is created)`, { data: { root: absolute } });
  }
  const guarded: Array<{ path: string; what: string; fix: string }> = [
    { path: resolve(options.stateHome), what: "cws's own state (this device's keys and sync bases)", fix: "choose a folder that does not hold it, or move the state elsewhere with CWS_HOME" },
    ...(options.serverDataDirs ?? []).map((dir) => ({ path: resolve(dir), what: "a cws server's data dir", fix: "choose a folder that does not hold it" })),
  ];
  for (const { path, what, fix } of guarded) {
    if (isInside(path, absolute) && (path === resolve(options.stateHome) || kindOf(path) === "dir")) {
      // When the superproject folder would hold the state or data it syncs through.
      throw new CwsError("INVALID_ARGUMENT", `Cannot use "${absolute}" as a superproject folder as it ${path === absolute ? "is" : `contains ${path},`} ${what}: ${fix}`, { data: { root: absolute, holds: path } });
    }
    if (isInside(absolute, path)) {
      throw new CwsError("INVALID_ARGUMENT", `Cannot use "${absolute}" as a superproject folder as it lies inside ${path}, ${what}: ${fix}`, { data: { root: absolute, inside: path } });
    }
  }
  if (kind === "dir" && looksLikeServerDataDir(absolute)) {
    throw new CwsError("INVALID_ARGUMENT", `Cannot use "${absolute}" as a superproject folder as it is a cws server's data dir (it holds server.json and store/): choose a folder of its own`, { data: { root: absolute } });
  }
}

/** True when `child` is `parent` or below it. */
function isInside(child: string, parent: string): boolean {
  const rel = relative(parent, child);
  return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel));
}

function kindOf(path: string): "dir" | "missing" | "other" {
  try {
    return statSync(path).isDirectory() ? "dir" : "other";
  } catch {
    return "missing";
  }
}

function looksLikeServerDataDir(dir: string): boolean {
  return kindOf(join(dir, "server.json")) === "other" && kindOf(join(dir, "store")) === "dir";
}
