/**
 * Binding superprojects to local folders: create one on the server, attach an existing one,
 * disconnect a binding. Plain functions: options in, data out; the CLI only wires flags.
 */
import { cp, mkdir, readdir, rm, stat } from "node:fs/promises";
import { existsSync, statSync } from "node:fs";
import { resolve, join } from "node:path";
import { isAbsoluteFor, type PathPlatform } from "../../core/codex-paths.ts";
import { CwsError } from "../../errors.ts";
import { Slug } from "../../protocol/messages.ts";
import type { AgentConnection } from "../../transport/connection.ts";
import type { StateStore } from "../state.ts";
import { journaledPaths } from "../journal-file.ts";
import { baseOverlayPath, codexCachePath } from "../codex/state.ts";
import { checkRootForState } from "../root-check.ts";

/** Where the superproject templates live in this checkout. */
export const TEMPLATES_DIR = join(import.meta.dirname, "..", "..", "..", "templates");

export function checkSlug(slug: string): string {
  const parsed = Slug.safeParse(slug);
  if (!parsed.success) throw new CwsError("INVALID_ARGUMENT", `"${slug}" is not a valid superproject name: ${parsed.error.issues[0]?.message}`);
  return parsed.data;
}

async function checkRootFree(state: StateStore, slug: string, root: string): Promise<void> {
  checkRootForState(root, state);
  for (const [other, bound] of Object.entries(state.data.superprojects)) {
    if (other !== slug && resolve(bound.root) === root) {
      throw new CwsError("ALREADY_EXISTS", `${root} is already bound to superproject ${other}. Use another folder, or \`cws disconnect-superproject ${other}\` first.`);
    }
  }
}

/** How a binding finds this device's Codex threads (see codex-source.ts). */
export interface CodexBindingOptions {
  /** CODEX_HOME for this binding; null turns Codex thread sync off; absent finds it as Codex does. */
  codexHome?: string | null;
  /** The folder Codex records as cwd for this superproject, when it is not the root (e.g. a symlink). */
  codexRoot?: string;
  /**
   * Whose path rules `codexRoot` must follow. Only tests, which play a Windows device on
   * Linux (or a device whose folders are elsewhere), set it; then the folder's existence is
   * not checked, only its form.
   *
   * @default this device's platform, and the folder must exist
   */
  codexPlatform?: PathPlatform;
}

export interface CreateOptions extends CodexBindingOptions {
  slug: string;
  root: string;
  /** A template folder name under templates/ to copy into an empty root. */
  template?: string;
}

/** The Codex fields of a new binding, with paths made absolute and `codexRoot` checked. */
function codexFields(options: CodexBindingOptions): { codexHome?: string | null; codexRoot?: string } {
  const fields: { codexHome?: string | null; codexRoot?: string } = {};
  if (options.codexHome !== undefined) fields.codexHome = options.codexHome === null ? null : resolve(options.codexHome);
  if (options.codexRoot !== undefined) fields.codexRoot = checkCodexRoot(options.codexRoot, options.codexPlatform);
  return fields;
}

/**
 * A Codex root is the folder Codex records on this device, so it must be an absolute path by
 * this device's rules and exist: a Windows path given on Linux, or a relative one, would
 * otherwise silently match no thread at all.
 */
export function checkCodexRoot(codexRoot: string, testPlatform?: PathPlatform): string {
  const platform = testPlatform ?? (process.platform === "win32" ? "win32" : "posix");
  const kind = platform === "win32" ? "Windows" : "POSIX";
  if (!isAbsoluteFor(codexRoot, platform)) {
    throw new CwsError(
      "INVALID_ARGUMENT",
      `--codex-root "${codexRoot}" is not an absolute ${kind} path; give the folder as Codex on this device records it (e.g. ${platform === "win32" ? "C:\\Users\\me\\work\\proj" : "/home/me/work/proj"})`,
      { data: { codexRoot, platform } },
    );
  }
  if (testPlatform === undefined) {
    let isDir = false;
    try {
      isDir = statSync(codexRoot).isDirectory();
    } catch {
      isDir = false;
    }
    if (!isDir) {
      throw new CwsError("NOT_FOUND", `--codex-root "${codexRoot}" is not an existing folder on this device; Codex records folders that exist where it runs`, { data: { codexRoot } });
    }
  }
  return codexRoot;
}

export async function createSuperproject(conn: AgentConnection, state: StateStore, options: CreateOptions): Promise<{ slug: string; root: string; templated: boolean }> {
  const slug = checkSlug(options.slug);
  const root = resolve(options.root);
  if (state.data.superprojects[slug]) {
    throw new CwsError("ALREADY_EXISTS", `Superproject ${slug} is already bound here to ${state.data.superprojects[slug].root}.`);
  }
  await checkRootFree(state, slug, root);
  await mkdir(root, { recursive: true });
  let source: string | undefined;
  if (options.template) {
    source = join(TEMPLATES_DIR, options.template);
    if (!/^[a-z0-9-]+$/.test(options.template) || !existsSync(source)) {
      throw new CwsError("NOT_FOUND", `There is no template named ${options.template} (looked in ${TEMPLATES_DIR}).`);
    }
    if ((await readdir(root)).length > 0) throw new CwsError("INVALID_ARGUMENT", `${root} is not empty; a template is only copied into an empty folder.`);
  }
  await conn.call("createSuperproject", { slug });
  // The template is copied only once the server accepted the name; force: false never
  // overwrites a file, even if one appeared in the folder meanwhile.
  if (source !== undefined) await cp(source, root, { recursive: true, force: false });
  const templated = source !== undefined;
  await state.update((s) => {
    s.superprojects[slug] = { root, base: null, lastSyncAt: null, ...codexFields(options) };
  });
  return { slug, root, templated };
}

export interface AttachOptions extends CodexBindingOptions {
  slug: string;
  root: string;
  /**
   * Bind a superproject this device has already bound, forgetting the old binding's base (the
   * first sync then treats every difference as a conflict, and loses nothing).
   *
   * @default false
   */
  rebind?: boolean;
}

export async function attachSuperproject(conn: AgentConnection, state: StateStore, options: AttachOptions): Promise<{ slug: string; root: string; head: number | null }> {
  const slug = checkSlug(options.slug);
  const root = resolve(options.root);
  const existing = state.data.superprojects[slug];
  if (existing !== undefined && !options.rebind) {
    // When the slug is already bound here: attaching again would silently drop its base.
    throw new CwsError("ALREADY_EXISTS", `Superproject ${slug} is already bound here to ${existing.root}; nothing was changed. To bind it to ${root === resolve(existing.root) ? "the same folder afresh" : root} instead, run the command again with --rebind (the old binding's sync base is forgotten; no file is lost)`, {
      data: { slug, root: existing.root },
    });
  }
  await checkRootFree(state, slug, root);
  const { superprojects } = await conn.call("listSuperprojects", {});
  const remote = superprojects.find((s) => s.slug === slug);
  if (remote === undefined) {
    throw new CwsError("NOT_FOUND", `The server has no superproject ${slug}${superprojects.length ? ` (it has: ${superprojects.map((s) => s.slug).join(", ")})` : ""}. Create it with \`cws create-superproject ${slug}\`.`);
  }
  if (existsSync(root) && !(await stat(root)).isDirectory()) throw new CwsError("INVALID_ARGUMENT", `${root} exists and is not a folder.`);
  await mkdir(root, { recursive: true });
  if (existing !== undefined) await forgetBinding(state, slug);
  await state.update((s) => {
    // A fresh binding has no base: when the folder already holds files, its first sync shows
    // the difference and asks how to join before anything moves (first-join.ts).
    s.superprojects[slug] = { root, base: null, lastSyncAt: null, ...codexFields(options) };
  });
  return { slug, root, head: remote.head };
}

export async function disconnectSuperproject(state: StateStore, slug: string): Promise<{ slug: string; root: string }> {
  const bound = state.binding(slug);
  await state.update((s) => {
    delete s.superprojects[slug];
  });
  await forgetBinding(state, slug);
  return { slug, root: bound.root };
}

/** Removes what belongs to a binding: the base and stat cache; a later attach starts from scratch. */
async function forgetBinding(state: StateStore, slug: string): Promise<void> {
  // Each snapshot before its journal: a journal left alone names an epoch no later snapshot has.
  for (const path of [...journaledPaths(state.basePath(slug)), ...journaledPaths(state.statCachePath(slug))]) await rm(path, { force: true });
  await rm(codexCachePath(state.home, slug), { force: true });
  await rm(baseOverlayPath(state.home, slug), { force: true });
}
