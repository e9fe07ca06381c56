/**
 * The first sync of a binding (a device that has never agreed with the server: no base) when
 * both its folder and the server already hold files. A plain three-way sync with an empty base
 * would push every local-only file and make the server's version live for every file both
 * sides hold differently, without asking. Instead the difference is shown grouped, and the
 * person chooses one of three ways to join:
 *
 *   adopt    the server's state: local-only files are removed and differing files replaced,
 *            each backed up first (the pull does that); nothing is uploaded.
 *   merge    local-only files are uploaded, server-only files downloaded, and each differing
 *            file keeps the server's version, this device's version, or both side by side
 *            (this device's copy renamed, e.g. `notes (laptop).md`).
 *   replace  this folder becomes the server's state (the old head stays as a checkpoint).
 *
 * Each choice is expressed as the base the ordinary three-way plan runs with (and, for "keep
 * both", a local manifest with the renamed copies), so the plan's folder rules, the pull's
 * backups and the push pipeline apply unchanged:
 *
 *   adopt    base = the local files        every difference is a server change: pull
 *   replace  base = the server's files     every difference is a local change: push
 *   merge    base = empty, except          local-only: push, server-only: pull; per differing
 *            "server": base = local        path "server" pulls, "local" pushes, "both" renames
 *            "local":  base = server       the local copy (a new local-only path: push) and
 *                                          pulls the server's into the old name
 *
 * Only the `files/` namespace is decided here. Codex threads (`codex/`) keep their usual
 * first-sync rules whatever the choice: a thread is one append-only rollout per UUID, so
 * threads from both sides are merged (a rollout on both sides that one extends is brought up
 * to date; a real divergence keeps the server's live and backs this device's up).
 *
 * Pure: no I/O; lists are sorted by path.
 */
import { makeManifest, type Manifest, type ManifestEntry, sameContent } from "./manifest.ts";

/** The namespace of the superproject folder in manifests. */
const FILES = "files/";
const CODEX = "codex/";

/** How a device joins a superproject whose server copy already holds files. */
export type FirstJoinChoice = "adopt" | "merge" | "replace";
export const FIRST_JOIN_CHOICES: readonly FirstJoinChoice[] = ["adopt", "merge", "replace"];

/** What merge keeps of a file both sides hold with different content. */
export type KeepChoice = "server" | "local" | "both";
export const KEEP_CHOICES: readonly KeepChoice[] = ["server", "local", "both"];

/** The grouped difference between a folder and the server before the first sync. */
export interface FirstJoinGroups {
  /** Files both sides hold with the same content (paths relative to the folder). */
  identical: string[];
  /** Files only this folder holds: merge and replace upload them, adopt removes them. */
  localOnly: string[];
  /** Files only the server holds: adopt and merge download them, replace deletes them. */
  serverOnly: string[];
  /** Paths both sides hold with different content (or a file on one side, a folder on the other). */
  differing: string[];
  /** Codex threads (rollouts and the name index), merged whatever the choice. */
  codex: { localOnly: number; serverOnly: number; differing: number; identical: number };
}

/** A person's (or a script's) answer. */
export type FirstJoinAnswer =
  | { choice: "adopt" }
  | { choice: "replace" }
  | {
      choice: "merge";
      /** What to keep of a differing file without its own answer. */
      prefer: KeepChoice;
      /** Answers for single differing files (paths relative to the folder). */
      perFile?: Readonly<Record<string, KeepChoice>>;
    };

/** A local file renamed so that both versions are kept ("keep both"). */
export interface KeepBothRename {
  /** The path the server's version takes (relative to the folder). */
  from: string;
  /** The new name of this device's version, beside it. */
  to: string;
}

/** What the three-way plan runs with once the person chose. */
export interface FirstJoinResolution {
  /** The local manifest to plan with: the scan, with "keep both" copies under their new names. */
  local: Manifest;
  /** The base to plan with (see the module comment). */
  base: Manifest;
  /** Local files to rename before anything else happens. */
  renames: KeepBothRename[];
  /** True for replace: the commit is an override of the server's state. */
  replace: boolean;
}

/**
 * Groups the `files/` entries of the local scan and the server head as the first-join
 * question shows them. Folders are not listed (a folder holds nothing of its own); a path that
 * is a file on one side and a folder on the other is listed as differing.
 */
export function groupFirstJoin(local: Manifest, server: Manifest): FirstJoinGroups {
  const groups: FirstJoinGroups = { identical: [], localOnly: [], serverOnly: [], differing: [], codex: { localOnly: 0, serverOnly: 0, differing: 0, identical: 0 } };
  const serverByPath = new Map(server.entries.map((e) => [e.path, e]));
  const localByPath = new Map(local.entries.map((e) => [e.path, e]));
  for (const l of local.entries) {
    const s = serverByPath.get(l.path);
    if (l.path.startsWith(CODEX)) {
      if (s === undefined) groups.codex.localOnly++;
      else if (sameContent(l, s)) groups.codex.identical++;
      else groups.codex.differing++;
      continue;
    }
    if (!l.path.startsWith(FILES)) continue;
    const relative = l.path.slice(FILES.length);
    if (s === undefined) {
      if (l.kind === "file") groups.localOnly.push(relative);
    } else if (sameContent(l, s)) {
      if (l.kind === "file") groups.identical.push(relative);
    } else {
      groups.differing.push(relative);
    }
  }
  for (const s of server.entries) {
    if (localByPath.has(s.path)) continue;
    if (s.path.startsWith(CODEX)) groups.codex.serverOnly++;
    else if (s.path.startsWith(FILES) && s.kind === "file") groups.serverOnly.push(s.path.slice(FILES.length));
  }
  return groups;
}

/**
 * True when the first sync must ask: the server holds files, and this folder holds files the
 * server lacks or holds differently. A folder that is empty, or holds only copies of the
 * server's files, simply receives the rest; an empty server simply receives the folder.
 */
export function firstJoinNeedsChoice(groups: FirstJoinGroups): boolean {
  const serverHasFiles = groups.identical.length + groups.serverOnly.length + groups.differing.length > 0;
  return serverHasFiles && groups.localOnly.length + groups.differing.length > 0;
}

/** The keep choice a merge applies to one differing path. */
export function keepFor(answer: FirstJoinAnswer & { choice: "merge" }, relative: string): KeepChoice {
  return answer.perFile?.[relative] ?? answer.prefer;
}

/**
 * Turns an answer into the local manifest and base the three-way plan runs with.
 *
 * @param local the local scan (with its `codex/` part), as the plan would see it
 * @param server the server head
 * @param base the base the plan would use without a choice (its `codex/` part is kept)
 * @param deviceName names the renamed copies of "keep both"
 */
export function resolveFirstJoin(local: Manifest, server: Manifest, base: Manifest, answer: FirstJoinAnswer, deviceName: string): FirstJoinResolution {
  const codexBase = base.entries.filter((e) => e.path.startsWith(CODEX));
  const filesOf = (m: Manifest) => m.entries.filter((e) => e.path.startsWith(FILES));
  if (answer.choice === "adopt") {
    return { local, base: makeManifest([...codexBase, ...filesOf(local)]), renames: [], replace: false };
  }
  if (answer.choice === "replace") {
    return { local, base: makeManifest([...codexBase, ...filesOf(server)]), renames: [], replace: true };
  }
  const serverByPath = new Map(server.entries.map((e) => [e.path, e]));
  const baseEntries: ManifestEntry[] = [...codexBase];
  const renames: KeepBothRename[] = [];
  // Names already used on either side (case folded: Windows and macOS cannot hold two names
  // that differ only in case), so a renamed copy never lands on another file.
  const taken = new Set<string>([...local.entries, ...server.entries].map((e) => e.path.toLowerCase()));
  for (const l of local.entries) {
    if (!l.path.startsWith(FILES)) continue;
    const s = serverByPath.get(l.path);
    if (s === undefined || sameContent(l, s)) continue;
    const keep = keepFor(answer, l.path.slice(FILES.length));
    if (keep === "server") baseEntries.push(l);
    else if (keep === "local") baseEntries.push(s);
    else if (l.kind === "file" && s.kind === "file") {
      const to = keepBothName(l.path, deviceName, taken);
      taken.add(to.toLowerCase());
      renames.push({ from: l.path.slice(FILES.length), to: to.slice(FILES.length) });
    }
    // "both" for a file on one side and a folder on the other has no side-by-side form: the
    // path stays a plain conflict (the server's version live, this device's backed up).
  }
  return { local: applyRenames(local, renames), base: makeManifest(baseEntries), renames, replace: false };
}

/** A manifest with the "keep both" copies under their new names (the scan, once they are renamed). */
export function applyRenames(manifest: Manifest, renames: readonly KeepBothRename[]): Manifest {
  if (renames.length === 0) return manifest;
  const to = new Map(renames.map((r) => [FILES + r.from, FILES + r.to]));
  return makeManifest(manifest.entries.map((e) => (to.has(e.path) ? { ...e, path: to.get(e.path)! } : e)));
}

/**
 * The name a "keep both" copy takes beside the original: the device name in parentheses
 * before the extension (`notes.md` → `notes (laptop).md`), then ` 2`, ` 3`… until the name is
 * free. The device name is reduced to characters every file system holds.
 *
 * @param manifestPath a `files/` path
 * @param taken lower-cased manifest paths already in use
 */
export function keepBothName(manifestPath: string, deviceName: string, taken: ReadonlySet<string>): string {
  const slash = manifestPath.lastIndexOf("/");
  const folder = manifestPath.slice(0, slash + 1);
  const name = manifestPath.slice(slash + 1);
  const dot = name.lastIndexOf(".");
  // A leading dot (".env") is part of the name, not an extension.
  const [stem, extension] = dot > 0 ? [name.slice(0, dot), name.slice(dot)] : [name, ""];
  const label = deviceName.replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^[-.]+|[-.]+$/g, "").slice(0, 40) || "this device";
  for (let n = 1; ; n++) {
    const suffix = ` (${label}${n === 1 ? "" : ` ${n}`})${extension}`;
    const candidate = `${folder}${fitStem(stem, suffix)}${suffix}`;
    if (!taken.has(candidate.toLowerCase())) return candidate;
  }
}

/** Longest name component every device holds (UTF-8 bytes, and UTF-16 units for Windows). */
const MAX_COMPONENT = 255;

/** Shortens `stem` (by whole code points) until `stem + suffix` is a name every device can hold. */
function fitStem(stem: string, suffix: string): string {
  const encoder = new TextEncoder();
  const fits = (name: string) => name.length <= MAX_COMPONENT && encoder.encode(name).length <= MAX_COMPONENT;
  let points = [...stem];
  while (points.length > 1 && !fits(points.join("") + suffix)) points = points.slice(0, -1);
  return points.join("");
}
