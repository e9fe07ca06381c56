/**
 * The first sync of a binding without a base, when the folder and the server both hold files:
 * the hook `syncSuperproject` calls after its scan and before anything is sent. It groups the
 * difference (core/first-join.ts), asks the caller's question function for one choice (flags,
 * a prompt, or a refusal that shows the plan), and returns the base and local manifest the
 * three-way plan then runs with. "Keep both" renames this device's copies here, before the
 * plan's pushes and pulls: the renamed file is pushed under its new name and the server's
 * version is pulled into the old one, so no file is ever overwritten.
 *
 * Nothing reaches the server before the question is answered: the sync has only read the
 * server's head and manifest by then.
 */
import { constants } from "node:fs";
import { copyFile, link, lstat, unlink } from "node:fs/promises";
import { CwsError } from "../errors.ts";
import { resolveInside } from "../core/paths.ts";
import type { Manifest } from "../core/manifest.ts";
import type { SnapshotInfo } from "../protocol/messages.ts";
import {
  applyRenames,
  type FirstJoinAnswer,
  type FirstJoinGroups,
  firstJoinNeedsChoice,
  groupFirstJoin,
  type KeepBothRename,
  keepBothName,
  resolveFirstJoin,
} from "../core/first-join.ts";

/** What the sync shows the hook: the manifests it is about to plan with. */
export interface FirstJoinView {
  local: Manifest;
  server: Manifest;
  /** The base the plan would use (empty but for Codex overlay entries). */
  base: Manifest;
  head: SnapshotInfo;
  root: string;
  dryRun: boolean;
  signal?: AbortSignal | undefined;
}

/** What the plan runs with once a choice is made. */
export interface FirstJoinPlanned {
  local: Manifest;
  base: Manifest;
  /** The choice was replace: the commit is an override of the server's state. */
  replace: boolean;
  /** The scanned folder's manifest as it is after the choice (renamed copies under their new names). */
  scan(files: Manifest): Manifest;
}

/** Called by `syncSuperproject` for a binding without a base; null lets the sync plan as usual. */
export type FirstJoinHook = (view: FirstJoinView) => Promise<FirstJoinPlanned | null>;

/** The question put to a person or a script. */
export interface FirstJoinQuestion {
  slug: string;
  root: string;
  /** The server head the plan was made against. */
  head: SnapshotInfo;
  groups: FirstJoinGroups;
  dryRun: boolean;
  /** The name "keep both" gives this device's copy of each differing file (relative paths). */
  keepBothNames: Record<string, string>;
}

/**
 * Answers the question: an answer, or null on a dry run without a choice (the plan is shown,
 * nothing is decided). Throws to stop the sync (no choice possible, or the person quit).
 */
export type AskFirstJoin = (question: FirstJoinQuestion) => Promise<FirstJoinAnswer | null>;

/** What a first join asked and decided, for the command's output. */
export interface FirstJoinRecord {
  question: FirstJoinQuestion | null;
  answer: FirstJoinAnswer | null;
  renames: KeepBothRename[];
}

/**
 * Builds the hook for one sync.
 *
 * @param record filled in as the hook runs: whether it asked, the answer, the renames
 */
export function firstJoinHook(options: { slug: string; deviceName: string; ask: AskFirstJoin; record?: FirstJoinRecord }): FirstJoinHook {
  const record = options.record ?? { question: null, answer: null, renames: [] };
  return async (view) => {
    const groups = groupFirstJoin(view.local, view.server);
    if (!firstJoinNeedsChoice(groups)) return null;
    const taken = new Set([...view.local.entries, ...view.server.entries].map((e) => e.path.toLowerCase()));
    const keepBothNames: Record<string, string> = {};
    for (const path of groups.differing) keepBothNames[path] = keepBothName(`files/${path}`, options.deviceName, taken).slice("files/".length);
    const question: FirstJoinQuestion = { slug: options.slug, root: view.root, head: view.head, groups, dryRun: view.dryRun, keepBothNames };
    record.question = question;
    const answer = await options.ask(question);
    if (answer === null) return null;
    view.signal?.throwIfAborted();
    record.answer = answer;
    const resolved = resolveFirstJoin(view.local, view.server, view.base, answer, options.deviceName);
    if (!view.dryRun) {
      for (const rename of resolved.renames) {
        await renameNoClobber(view.root, rename);
        // Recorded one by one: if a later rename fails, the output still lists those done.
        record.renames.push(rename);
      }
    } else {
      record.renames = resolved.renames;
    }
    return { local: resolved.local, base: resolved.base, replace: resolved.replace, scan: (files) => applyRenames(files, resolved.renames) };
  };
}

/**
 * Renames one local file to its "keep both" name without ever replacing a file: a hard link
 * under the new name (which fails if the name is taken), then the old name is removed. Both
 * steps leave the content under at least one name, so a crash between them loses nothing.
 */
async function renameNoClobber(root: string, rename: KeepBothRename): Promise<void> {
  const from = resolveInside(root, rename.from);
  const to = resolveInside(root, rename.to);
  const info = await lstat(from).catch(() => null);
  if (info === null || !info.isFile()) {
    throw new CwsError("CONFLICT", `${from} changed while you chose (it is no longer a file); nothing was uploaded. Run the sync again to see the new plan.`);
  }
  try {
    await link(from, to);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EEXIST") throw new CwsError("CONFLICT", `Cannot keep both versions of ${rename.from}: ${to} appeared meanwhile; nothing was uploaded. Run the sync again.`);
    // File systems without hard links (FAT, some network drives): an exclusive copy, which
    // also never replaces a file.
    if (code === "EPERM" || code === "ENOTSUP" || code === "ENOSYS" || code === "EXDEV") {
      await copyFile(from, to, constants.COPYFILE_EXCL);
      await unlink(from);
      return;
    }
    throw new CwsError("INVALID_ARGUMENT", `Cannot keep both versions of ${rename.from}: renaming it to ${to} failed (${(error as Error).message}); nothing was uploaded.`, { cause: error });
  }
  await unlink(from);
}
