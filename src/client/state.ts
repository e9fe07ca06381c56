/**
 * The client's small persistent state: which device this is, how to reach the server, and
 * which superprojects are bound to which local folders with the snapshot each last agreed on.
 * Kept with lowdb in the platform's app-data folder (%LOCALAPPDATA%\CodexWorkspaceSync on
 * Windows, XDG dirs elsewhere, or $CWS_HOME), validated with zod on every read and written
 * crash-safely (temp, fsync, rename). Base manifests and stat caches live in separate files
 * beside it because they are large and change on every sync: each a snapshot plus a journal of
 * the changes since (journal-file.ts), so a sync writes what it changed, not the whole file.
 */
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { Low, type Adapter } from "lowdb";
import { z } from "zod";
import { CwsError } from "../errors.ts";
import { writeFileAtomic } from "../fs-atomic.ts";
import { applyManifestDelta, diffManifests, emptyManifest, MANIFEST_FORMAT, MAX_PATH_LENGTH, type Manifest, type ManifestDelta, type ManifestEntry } from "../core/manifest.ts";
import { safeParseManifest } from "../core/manifest-check.ts";
import { decodeManifestRow, decodeManifestRows, isManifestRows, manifestRows, ManifestRowsDecoder, type Row } from "../core/manifest-rows.ts";
import { clientHome } from "./home.ts";
import { keepingParsedFiles, keptValue, keepValue } from "./file-memo.ts";
import { appendRecord, journaledPaths, readJournal, readSnapshot, snapshotEpoch, writeSnapshot, type JournalOrigin } from "./journal-file.ts";
import { snapshotLines } from "./snapshot-lines.ts";

// Kept importable from here, where it always was; it lives in home.ts so that the hand-off path
// of `cws sync` (src/cli/kept-sync.ts) can find the state folder without loading zod and lowdb.
export { clientHome };

export const ServerTarget = z.discriminatedUnion("transport", [
  z.object({
    transport: z.literal("ssh"),
    // host is the resolved host name (after ~/.ssh/config), port and user likewise.
    host: z.string().min(1),
    port: z.number().int().min(1).max(65535),
    user: z.string().min(1),
    // identityFiles are the key files to try, in order (empty: OpenSSH's default names).
    identityFiles: z.array(z.string().min(1)).default([]),
    // identitiesOnly offers only those keys, also through agents.
    identitiesOnly: z.boolean().default(false),
    // useAgents asks ssh-agent / Pageant / the Windows OpenSSH agent for keys.
    useAgents: z.boolean().default(true),
    // knownHostsPath is where the server's host key is checked (and was recorded at enrollment).
    knownHostsPath: z.string().min(1),
    // agentCommand starts the agent on the server (an absolute path: remote PATHs are minimal).
    agentCommand: z.string().min(1),
    // hostKeyFingerprint is the SHA256 fingerprint trusted at enrollment, for `status`.
    hostKeyFingerprint: z.string().optional(),
  }),
  z.object({
    // The local transport runs the agent as a child process on this machine (demo, tests).
    transport: z.literal("local"),
    dataDir: z.string().min(1),
  }),
]);
export type ServerTarget = z.infer<typeof ServerTarget>;

export const BoundSuperproject = z.object({
  root: z.string().min(1),
  base: z.number().int().positive().nullable(),
  lastSyncAt: z.number().nullable(),
  // codexHome is this binding's CODEX_HOME: absent = found as Codex does, null = Codex sync off.
  codexHome: z.string().min(1).nullable().optional(),
  // codexRoot is the folder Codex records as cwd for this superproject, when it is not `root`.
  codexRoot: z.string().min(1).optional(),
});
export type BoundSuperproject = z.infer<typeof BoundSuperproject>;

export const ClientState = z.object({
  format: z.literal(1),
  device: z.object({ id: z.string(), name: z.string() }).nullable(),
  server: ServerTarget.nullable(),
  superprojects: z.record(z.string(), BoundSuperproject),
});
export type ClientState = z.infer<typeof ClientState>;

/** A lowdb adapter that validates on read and writes crash-safely. */
class ValidatedJsonFile<T> implements Adapter<T> {
  private readonly path: string;
  private readonly schema: z.ZodType<T>;

  constructor(path: string, schema: z.ZodType<T>) {
    this.path = path;
    this.schema = schema;
  }

  async read(): Promise<T | null> {
    let text: string;
    try {
      text = await readFile(this.path, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw error;
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      throw new CwsError("CORRUPT", `${this.path} is not valid JSON. Restore it from a backup, or move it away and run \`cws enroll-device\` again.`);
    }
    const parsed = this.schema.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new CwsError("CORRUPT", `${this.path} is not a valid cws state file (${issue?.path.join(".")}: ${issue?.message}). Restore it from a backup, or move it away and enroll again.`);
    }
    return parsed.data;
  }

  async write(data: T): Promise<void> {
    await writeFileAtomic(this.path, JSON.stringify(data, null, 2) + "\n", { mode: 0o600 });
  }
}

export class StateStore {
  readonly home: string;
  private readonly db: Low<ClientState>;
  /** The base of each superproject as this store last read or wrote it (what writeBase appends to). */
  readonly #loaded = new Map<string, LoadedBase>();

  private constructor(home: string, db: Low<ClientState>) {
    this.home = home;
    this.db = db;
  }

  static async open(home = clientHome()): Promise<StateStore> {
    await mkdir(home, { recursive: true, mode: 0o700 });
    await mkdir(join(home, "bases"), { recursive: true, mode: 0o700 });
    await mkdir(join(home, "cache"), { recursive: true, mode: 0o700 });
    await mkdir(join(home, "logs"), { recursive: true, mode: 0o700 });
    const db = new Low<ClientState>(new ValidatedJsonFile(join(home, "state.json"), ClientState), {
      format: 1, device: null, server: null, superprojects: {},
    });
    await db.read();
    return new StateStore(home, db);
  }

  get data(): ClientState {
    return this.db.data;
  }

  async update(change: (state: ClientState) => void): Promise<void> {
    await this.db.update(change);
  }

  /** The device and server, or a clear error telling the user to enroll first. */
  enrolled(): { device: { id: string; name: string }; server: ServerTarget } {
    const { device, server } = this.db.data;
    if (device === null || server === null) {
      throw new CwsError("NOT_ENROLLED", `This device is not enrolled yet (state in ${this.home}). Run \`cws enroll-device\` first.`);
    }
    return { device, server };
  }

  binding(slug: string): BoundSuperproject {
    const bound = this.db.data.superprojects[slug];
    if (bound === undefined) {
      const known = Object.keys(this.db.data.superprojects);
      throw new CwsError("NOT_FOUND", `Superproject ${slug} is not bound to a folder on this device${known.length ? ` (bound: ${known.join(", ")})` : ""}. Run \`cws attach-superproject ${slug} --root <folder>\` or \`cws create-superproject ${slug} --root <folder>\`.`);
    }
    return bound;
  }

  basePath(slug: string): string {
    return join(this.home, "bases", `${slug}.json`);
  }

  statCachePath(slug: string): string {
    return join(this.home, "cache", `${slug}.stat.json`);
  }

  backupsDir(slug: string): string {
    return join(this.home, "backups", slug);
  }

  logsDir(): string {
    return join(this.home, "logs");
  }

  /**
   * The base manifest of a superproject: what this device last agreed with the server. It is
   * stored as a snapshot and a journal of the changes since (journal-file.ts), so a sync writes
   * only what it changed.
   */
  async readBase(slug: string): Promise<Manifest> {
    const path = this.basePath(slug);
    const files = journaledPaths(path);
    const kept = keptValue<LoadedBase>(files);
    if (kept !== undefined) {
      this.#loaded.set(slug, kept);
      return kept.manifest;
    }
    const damaged = () => new CwsError("CORRUPT", `The base manifest ${path} is damaged. Delete it and run \`cws sync ${slug}\`: every difference will then be treated as a conflict and backed up, never lost.`);
    // The base is read on every sync: it is kept in the compact form and checked by hand
    // (manifest-rows.ts), the zod schema alone having cost a third of a no-op sync of a large
    // workspace. One in the layout of lines hands its rows over as they are parsed
    // (snapshot-lines.ts); one written on one line (an older cws) is parsed whole, and one
    // written by a still older cws is in the plain form (manifest-check.ts).
    const rows = new ManifestRowsDecoder();
    const snapshot = await readSnapshot(path, { names: ["rows"], item: (_section, row) => rows.add(row) });
    if (snapshot === undefined) return emptyManifest();
    const json = snapshot.json;
    let manifest: Manifest | null;
    if (snapshot.sectioned) manifest = json === undefined ? null : rows.manifest(json);
    else if (isManifestRows(json)) manifest = decodeManifestRows(json);
    else {
      const parsed = safeParseManifest(json);
      manifest = parsed.success ? parsed.data : null;
    }
    if (manifest === null) throw damaged();
    const journal = await readJournal(path, snapshot, snapshotEpoch(json));
    if (journal.records.length > 0) {
      const delta = deltaOfRecords(journal.records);
      if (delta === null) throw damaged();
      manifest = applyManifestDelta(manifest, delta);
    }
    const loaded = keepBase(files, { manifest, origin: journal.origin });
    this.#loaded.set(slug, loaded);
    return loaded.manifest;
  }

  /**
   * Records `manifest` as the new base. When the base on disk is still the one this store read
   * or wrote, only the difference is appended to its journal (the journal's fsync is then the
   * commit point); otherwise, or when the journal is due for compaction, a whole snapshot is
   * written (temp, fsync, rename). A base of the plain form (an older cws) is migrated so.
   */
  async writeBase(slug: string, manifest: Manifest): Promise<void> {
    const path = this.basePath(slug);
    const previous = this.#loaded.get(slug);
    let origin: JournalOrigin | null = null;
    if (previous !== undefined) {
      const { upserts, removes } = diffManifests(previous.manifest, manifest);
      // The rows are made as the record is encoded, which stops once it is too large for the journal.
      origin = await appendRecord(path, previous.origin, { u: manifestRows(upserts), r: removes } satisfies Record<keyof BaseRecord, unknown>, "client-base-mid-append");
    }
    // Written in pieces, a row at a time (snapshot-lines.ts), never as one string of the whole tree.
    origin ??= await writeSnapshot(path, (epoch) => snapshotLines({ format: MANIFEST_FORMAT, journal: epoch }, [["rows", manifestRows(manifest.entries)]]), {
      midWrite: "client-base-mid-snapshot",
      beforeReset: "client-base-before-journal-reset",
    });
    this.#loaded.set(slug, keepBase(journaledPaths(path), { manifest, origin }));
  }
}

/** A base as read or written by this process, and the files it was read from or written to. */
interface LoadedBase {
  manifest: Manifest;
  origin: JournalOrigin;
}

/** One record of a base's journal: the rows added or changed and the paths removed by one sync. */
interface BaseRecord {
  u: Row[];
  r: string[];
}

/** The largest number of rows or paths one record may hold, far above any workspace. */
const MAX_RECORD_ITEMS = 10_000_000;

/**
 * The net change of a journal's records, applied oldest first, as one delta; null when a record
 * breaks a rule (a row that is not a valid entry, a path that is not a string).
 */
function deltaOfRecords(records: readonly unknown[]): ManifestDelta | null {
  const changes = new Map<string, ManifestEntry | null>();
  for (const raw of records) {
    const record = raw as Partial<BaseRecord> | null;
    if (typeof record !== "object" || record === null || !Array.isArray(record.u) || !Array.isArray(record.r)) return null;
    if (record.u.length > MAX_RECORD_ITEMS || record.r.length > MAX_RECORD_ITEMS) return null;
    for (const path of record.r as unknown[]) {
      if (typeof path !== "string" || path.length === 0 || path.length > MAX_PATH_LENGTH) return null;
      changes.set(path, null);
    }
    for (const row of record.u as unknown[]) {
      const entry = decodeManifestRow(row);
      if (entry === null) return null;
      changes.set(entry.path, entry);
    }
  }
  const delta: ManifestDelta = { upserts: [], removes: [] };
  for (const [path, entry] of changes) {
    if (entry === null) delta.removes.push(path);
    else delta.upserts.push(entry);
  }
  return delta;
}

/**
 * Keeps a base manifest in memory in a kept session (file-memo.ts). It is frozen first: the same
 * object then serves the next syncs, and code that changed it in place would throw rather than
 * silently change what a later sync takes for this device's base.
 */
function keepBase(files: readonly string[], loaded: LoadedBase): LoadedBase {
  if (!keepingParsedFiles()) return loaded;
  const { manifest } = loaded;
  for (const entry of manifest.entries) {
    // Entries carried over from the last base are frozen already: only new ones need it.
    if (Object.isFrozen(entry)) continue;
    if (entry.kind === "file") {
      for (const chunk of entry.chunks) Object.freeze(chunk);
      Object.freeze(entry.chunks);
    }
    Object.freeze(entry);
  }
  Object.freeze(manifest.entries);
  const kept = Object.freeze({ manifest: Object.freeze(manifest), origin: loaded.origin });
  keepValue(files, kept, loaded.origin.identity);
  return kept;
}
