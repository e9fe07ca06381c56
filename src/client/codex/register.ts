/**
 * Tells Codex on this device about threads a sync wrote, through Codex's own app-server, and
 * reads back what Codex then shows. cws never writes Codex's SQLite state database.
 *
 * What Codex 0.169 does with a rollout that arrives from elsewhere (seen from outside, see
 * docs/codex.md): it lists the file (filesystem-first listing read-repairs new ids), but
 * - names live in its state DB: a thread named on another device lists with `name: null`
 *   until `thread/name/set` registers the name here;
 * - a row it already has keeps its cwd when the file changes (a thread indexed under an older
 *   root keeps showing that root in `thread/read`); `thread/name/set` and
 *   `thread/metadata/update` both re-read the rollout into the row;
 * - `thread/read {includeTurns}` serves a transcript cache filled when Codex loads the
 *   thread: `thread/resume {excludeTurns}` then `thread/unsubscribe` catches it up. Because
 *   every path field was remapped, the resumed thread's recorded cwd already is this device's
 *   folder, so the resume appends nothing to the rollout (no line that would ping-pong).
 *
 * Then every thread is looked up in `thread/list` filtered by its folder, page by page, so a
 * Codex home with many newer threads of its own does not hide the arrived ones.
 */
import { accessSync, constants } from "node:fs";
import { stat, utimes } from "node:fs/promises";
import { delimiter, isAbsolute, join } from "node:path";
import { comparablePath, type PathPlatform } from "../../core/codex-paths.ts";
import { CwsError } from "../../errors.ts";
import { CodexAppServer, type CodexCommand } from "./app-server.ts";

/** The environment variable that names the Codex CLI to use, or `off` to never start it. */
export const CODEX_BIN_ENV = "CWS_CODEX";

/**
 * Finds the Codex CLI: `$CWS_CODEX` (a path; a `.js` file is run with this Node), else
 * `codex` on PATH. Null when Codex is not installed or `CWS_CODEX=off`.
 */
export function findCodexCommand(env: Readonly<Record<string, string | undefined>> = process.env, platform: NodeJS.Platform = process.platform): CodexCommand | null {
  const named = env[CODEX_BIN_ENV];
  if (named === "off") return null;
  if (named !== undefined && named !== "") {
    if (!isAbsolute(named)) throw new CwsError("INVALID_ARGUMENT", `${CODEX_BIN_ENV}="${named}" must be an absolute path to the codex executable (or "off")`);
    return named.endsWith(".js") ? { command: process.execPath, args: [named] } : { command: named, args: [] };
  }
  const names = platform === "win32" ? ["codex.exe", "codex.cmd"] : ["codex"];
  for (const dir of (env.PATH ?? env.Path ?? "").split(delimiter)) {
    if (dir === "") continue;
    for (const name of names) {
      const candidate = join(dir, name);
      try {
        accessSync(candidate, platform === "win32" ? constants.F_OK : constants.X_OK);
        // A .cmd shim cannot be spawned without a shell; its node script is what it runs.
        return { command: candidate, args: [] };
      } catch {
        // not here
      }
    }
  }
  return null;
}

/** A thread as this device holds it, to be registered with and checked against Codex. */
export interface ArrivedThread {
  id: string;
  /** The name from the merged session index, or null. */
  name: string | null;
  /** The folder Codex should list it under: its latest cwd as written on this device. */
  cwd: string;
  archived: boolean;
  /** The rollout's absolute path (an archived thread's mtime is put back after renaming it). */
  file: string;
  /** The thread's own sandbox mode and approval policy (latest turn_context), restated on resume. */
  settings: { sandbox: string | null; permissionProfile: string | null; approvalPolicy: string | null };
  /** session_meta.git, to re-state unchanged with thread/metadata/update. */
  git: { sha: string | null; branch: string | null; originUrl: string | null };
}

/** What Codex on this device shows for one thread. */
export interface CodexThreadView {
  id: string;
  /** Whether `thread/list` filtered by the thread's folder (and archive state) lists it. */
  listed: boolean;
  /** The cwd and name Codex reports (thread/read), null when Codex does not know the thread. */
  cwd: string | null;
  name: string | null;
  /** Number of turns thread/read returns, when asked. */
  turns?: number;
}

export interface CodexRegistration {
  views: CodexThreadView[];
  /** What was done, per thread id (for the summary and the tests). */
  actions: Record<string, string[]>;
}

interface ThreadOut {
  id: string;
  cwd: string;
  name: string | null;
  turns?: unknown[];
}

const PAGE = 100;
const MAX_PAGES = 100;

/** Pages through `thread/list` for these folders and returns id → listed thread. */
export async function listedThreads(server: CodexAppServer, cwds: readonly string[], archived: boolean, wanted: ReadonlySet<string>): Promise<Map<string, ThreadOut>> {
  const found = new Map<string, ThreadOut>();
  if (cwds.length === 0) return found;
  let cursor: string | null = null;
  for (let page = 0; page < MAX_PAGES; page++) {
    const res: { data: ThreadOut[]; nextCursor?: string | null } = await server.request("thread/list", {
      cwd: [...cwds],
      archived,
      modelProviders: [],
      sortKey: "updated_at",
      limit: PAGE,
      ...(cursor === null ? {} : { cursor }),
    });
    for (const t of res.data) if (wanted.has(t.id)) found.set(t.id, t);
    cursor = res.nextCursor ?? null;
    if (cursor === null || found.size === wanted.size) break;
  }
  return found;
}

function samePath(a: string | null, b: string, platform: PathPlatform): boolean {
  return a !== null && comparablePath(a, platform) === comparablePath(b, platform);
}

async function registerOne(server: CodexAppServer, t: ArrivedThread, platform: PathPlatform, done: string[]): Promise<void> {
  let read: { thread: ThreadOut };
  try {
    read = await server.request("thread/read", { threadId: t.id });
  } catch {
    done.push("unknown to Codex");
    return;
  }
  const sizeBefore = (await stat(t.file)).size;
  if (!t.archived) {
    // Loads the thread (catching up Codex's transcript cache) without changing it: the
    // recorded cwd is already this device's (every path field was remapped).
    // Codex applies this device's configured sandbox and approval policy to a resumed thread
    // and appends a thread_settings_applied line when they differ from the thread's; the
    // thread's own settings are restated so that loading it changes nothing.
    await server.request("thread/resume", {
      threadId: t.id,
      excludeTurns: true,
      // A named profile is restated as the config default Codex took it from; an explicit
      // sandbox mode as the resume parameter.
      ...(t.settings.permissionProfile !== null
        ? { config: { default_permissions: t.settings.permissionProfile } }
        : t.settings.sandbox !== null
          ? { sandbox: t.settings.sandbox }
          : {}),
      ...(t.settings.approvalPolicy !== null ? { approvalPolicy: t.settings.approvalPolicy } : {}),
    });
    await server.request("thread/unsubscribe", { threadId: t.id });
    done.push("loaded");
    // A safety net for settings cws could not restate: Codex's line is then an ordinary
    // append that syncs once, and the caller says so.
    const grown = (await stat(t.file)).size - sizeBefore;
    if (grown > 0) done.push(`appended ${grown} bytes`);
  }
  if (t.name !== null && read.thread.name !== t.name) {
    // Registers the name in Codex's state DB; Codex also re-reads the rollout into the row.
    // Codex 0.169 names only active threads, so an archived one is unarchived for it and
    // archived again; the renames touch its mtime, which is put back (the bytes are the same).
    if (t.archived) {
      const { mtime } = await stat(t.file);
      await server.request("thread/unarchive", { threadId: t.id });
      try {
        await server.request("thread/name/set", { threadId: t.id, name: t.name });
      } finally {
        await server.request("thread/archive", { threadId: t.id });
        await utimes(t.file, mtime, mtime);
      }
    } else {
      await server.request("thread/name/set", { threadId: t.id, name: t.name });
    }
    done.push("named");
  } else if (!samePath(read.thread.cwd, t.cwd, platform)) {
    // A row indexed under an older root keeps it until Codex re-reads the rollout.
    await server.request("thread/metadata/update", { threadId: t.id, gitInfo: t.git });
    done.push("re-indexed");
  }
}

/**
 * Registers arrived threads with Codex (names, stale cwd rows, turn cache) and reports what
 * Codex then lists. `register: false` only looks.
 */
export async function syncWithCodex(options: {
  codex: CodexCommand;
  codexHome: string;
  threads: readonly ArrivedThread[];
  platform: PathPlatform;
  register: boolean;
  countTurns?: boolean;
}): Promise<CodexRegistration> {
  const { threads, platform } = options;
  const actions: Record<string, string[]> = {};
  const server = await CodexAppServer.start({ codex: options.codex, codexHome: options.codexHome });
  try {
    for (const t of options.register ? threads : []) {
      const done: string[] = (actions[t.id] = []);
      try {
        await registerOne(server, t, platform, done);
      } catch (error) {
        done.push(`failed: ${(error as Error).message}`);
      }
    }
    const views: CodexThreadView[] = [];
    const listed = new Map<string, ThreadOut>();
    for (const archived of [false, true]) {
      const group = threads.filter((t) => t.archived === archived);
      const cwds = [...new Set(group.map((t) => t.cwd))];
      for (const [id, t] of await listedThreads(server, cwds, archived, new Set(group.map((g) => g.id)))) listed.set(id, t);
    }
    for (const t of threads) {
      let read: ThreadOut | null = null;
      try {
        read = ((await server.request("thread/read", { threadId: t.id, includeTurns: options.countTurns === true })) as { thread: ThreadOut }).thread;
      } catch {
        read = null;
      }
      views.push({
        id: t.id,
        listed: listed.has(t.id) && samePath(listed.get(t.id)!.cwd, t.cwd, platform),
        cwd: read?.cwd ?? listed.get(t.id)?.cwd ?? null,
        name: read?.name ?? listed.get(t.id)?.name ?? null,
        ...(options.countTurns === true && read !== null ? { turns: read.turns?.length ?? 0 } : {}),
      });
    }
    return { views, actions };
  } finally {
    await server.close();
  }
}
