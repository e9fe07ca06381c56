/**
 * Commands around keeping and getting back data: the server's quarantine (held changes),
 * checkpoints and restore, and the local backup area. Logic lives in src/client/commands/;
 * this file only wires flags and prints.
 */
import type { Command } from "commander";
import { CwsError } from "../errors.ts";
import type { StateStore } from "../client/state.ts";
import type { AgentConnection } from "../transport/connection.ts";
import { snapshotNumber, type QuarantineItemInfo } from "../protocol/messages.ts";
import { formatBytes, printJson, println } from "./output.ts";
import { displayPath } from "../core/paths.ts";

// Each command loads its code when it runs, so that other commands do not pay for it (see program.ts).
const quarantineCode = () => import("../client/commands/quarantine.ts");
const checkpointsCode = () => import("../client/commands/checkpoints.ts");
const backupsCode = () => import("../client/commands/backups.ts");

async function openState(): Promise<StateStore> {
  const { StateStore } = await import("../client/state.ts");
  return StateStore.open();
}

/** Runs `work` with a device session, closing it afterwards. */
async function withConnection<T>(work: (conn: AgentConnection, state: StateStore) => Promise<T>): Promise<T> {
  const state = await openState();
  const { connectAsDevice } = await import("../client/connect.ts");
  const conn = await connectAsDevice(state);
  try {
    return await work(conn, state);
  } finally {
    await conn.close();
  }
}

function when(ms: number | null): string {
  return ms === null ? "-" : new Date(ms).toLocaleString();
}

function pathsLine(item: QuarantineItemInfo, max: number): string {
  const shown = item.paths.slice(0, max).map(displayPath);
  const more = item.pathCount - shown.length;
  return `${shown.join(", ")}${more > 0 ? `, … and ${more} more` : ""}`;
}

function itemHeadline(item: QuarantineItemInfo): string {
  const state = item.status === "pending" ? "held" : item.status;
  return `#${item.id} ${item.slug} [${state}] ${item.reason}: ${item.summary}`;
}

function positiveInt(text: string, what: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n <= 0) throw new CwsError("INVALID_ARGUMENT", `${what} takes a positive whole number, got "${text}".`);
  return n;
}

export function registerRecoveryCommands(program: Command): void {
  const quarantine = program
    .command("quarantine")
    .description("Changes the server held back for review (suspicious deletes, Markdown files losing most of their content, rewritten Codex threads).");

  quarantine
    .command("list")
    .description("List held items (pending ones unless --all).")
    .argument("[slug]", "only this superproject")
    .option("--all", "include accepted and rejected items")
    .option("--json", "print machine-readable output")
    .action(async (slug: string | undefined, flags: { all?: boolean; json?: boolean }) => {
      const items = await withConnection(async (conn) => (await quarantineCode()).listQuarantine(conn, { slug, all: flags.all }));
      if (flags.json) return printJson({ ok: true, items });
      if (items.length === 0) return println(flags.all ? "No quarantine items." : "Nothing is held in quarantine.");
      for (const item of items) {
        println(itemHeadline(item));
        println(`    pushed by ${item.deviceName} at ${when(item.createdAt)}; ${item.pathCount} path(s): ${pathsLine(item, 5)}`);
      }
      if (!flags.all) println("Review one with `cws quarantine show <id>`, then `cws quarantine accept <id>` or `cws quarantine reject <id>`.");
    });

  quarantine
    .command("show")
    .description("Show one held item: why it was held, the numbers, every path, and a diff for Markdown.")
    .argument("<id>", "the item id (from `cws quarantine list`)")
    .option("--json", "print machine-readable output")
    .action(async (idText: string, flags: { json?: boolean }) => {
      const { shown, numbers } = await withConnection(async (conn) => {
        const { showQuarantine, parseItemId } = await quarantineCode();
        const shown = await showQuarantine(conn, parseItemId(idText));
        if (flags.json) return { shown, numbers: new Map<number, number>() };
        // Items name snapshots by their hub-wide id; people know them by their number in the superproject.
        const { snapshots } = await conn.call("listSnapshots", { slug: shown.item.slug, limit: 10_000 });
        return { shown, numbers: new Map(snapshots.map((s) => [s.id, snapshotNumber(s)])) };
      });
      if (flags.json) return printJson({ ok: true, ...shown });
      const { item } = shown;
      const number = (id: number | null, none: string): string => (id === null ? none : String(numbers.get(id) ?? `(id ${id}, no longer kept)`));
      println(itemHeadline(item));
      println(`  pushed by ${item.deviceName} at ${when(item.createdAt)}, against snapshot ${number(item.baseSnapshot, "(none)")}; the rest of that push is snapshot ${number(item.snapshotId, "-")}`);
      if (item.status !== "pending") println(`  ${item.status} by ${item.resolvedBy ?? "?"} at ${when(item.resolvedAt)}${item.resolvedSnapshot ? ` (snapshot ${number(item.resolvedSnapshot, "-")})` : ""}`);
      if (!item.contentAvailable) println("  its held content has been removed by `cws-server gc`");
      println("  metrics:");
      for (const [name, value] of Object.entries(item.metrics)) println(`    ${name}: ${Number.isInteger(value) ? value : Number(value.toFixed(4))}`);
      println(`  paths (${item.pathCount}):`);
      const byPath = new Map(shown.changes.map((c) => [c.path, c]));
      for (const path of item.paths.slice(0, 200)) {
        const change = byPath.get(path);
        const what = change === undefined ? "" : change.proposed === null ? " (delete)" : change.previous === null ? " (add)" : ` (${change.previous.size} → ${change.proposed.size} bytes)`;
        println(`    ${displayPath(path)}${what}`);
      }
      if (item.pathCount > 200) println(`    … and ${item.pathCount - 200} more (--json lists them all)`);
      for (const diff of shown.diffs) {
        println(`  diff of ${displayPath(diff.path)} (live version → held version):`);
        if (diff.note) println(`    (${diff.note})`);
        for (const line of diff.diff.split("\n")) if (line !== "") println(`    ${line}`);
      }
      if (item.status === "pending") println(`Accept with \`cws quarantine accept ${item.id}\`, or reject with \`cws quarantine reject ${item.id}\`.`);
    });

  quarantine
    .command("accept")
    .description("Apply a held item to the server's current state as a new snapshot; every device gets it at its next sync.")
    .argument("<id>", "the item id")
    .option("--json", "print machine-readable output")
    .action(async (idText: string, flags: { json?: boolean }) => {
      const result = await withConnection(async (conn, state) => {
        const { acceptQuarantine, parseItemId } = await quarantineCode();
        return acceptQuarantine(conn, state, parseItemId(idText));
      });
      if (flags.json) return printJson({ ok: true, ...result });
      println(`Accepted #${result.item.id} (${result.item.reason}): ${result.item.summary}`);
      println(`${result.item.slug} is now at snapshot ${snapshotNumber(result.snapshot)}; devices get the change at their next sync (their copies are backed up first).`);
    });

  quarantine
    .command("reject")
    .description("Drop a held item: the server keeps its version, and the device that pushed it gets that version back at its next sync.")
    .argument("<id>", "the item id")
    .option("--json", "print machine-readable output")
    .action(async (idText: string, flags: { json?: boolean }) => {
      const result = await withConnection(async (conn, state) => {
        const { rejectQuarantine, parseItemId } = await quarantineCode();
        return rejectQuarantine(conn, state, parseItemId(idText));
      });
      if (flags.json) return printJson({ ok: true, ...result });
      println(`Rejected #${result.item.id} (${result.item.reason}): ${result.item.summary}`);
      println(`The server keeps its version. ${result.item.deviceName} gets it back at its next sync (its own version goes to its local backups). Until \`cws-server gc\` runs, \`cws quarantine accept ${result.item.id}\` can still apply it.`);
    });

  const checkpoints = program.command("checkpoints").description("The snapshots the server keeps of a superproject.");
  checkpoints
    .command("list")
    .description("List a superproject's checkpoints, newest first.")
    .argument("<slug>")
    .option("--limit <n>", "show at most this many", "50")
    .option("--json", "print machine-readable output")
    .action(async (slug: string, flags: { limit: string; json?: boolean }) => {
      const snapshots = await withConnection(async (conn) => (await checkpointsCode()).listCheckpoints(conn, slug, positiveInt(flags.limit, "--limit")));
      if (flags.json) return printJson({ ok: true, slug, checkpoints: snapshots });
      if (snapshots.length === 0) return println(`${slug} has no checkpoint yet.`);
      for (const s of snapshots) {
        println(`${String(snapshotNumber(s)).padStart(6)}  ${when(s.createdAt)}  ${s.kind.padEnd(17)} ${s.deviceName}: ${s.files} files, ${formatBytes(s.bytes)}${s.id === snapshots[0].id ? "  (head)" : ""}`);
      }
      println(`Restore one with \`cws restore ${slug} --checkpoint <number>\`.`);
    });

  program
    .command("restore")
    .description("Make an old checkpoint the superproject's state again, as a new snapshot (the current state stays a checkpoint). Devices get it at their next sync.")
    .argument("<slug>")
    .requiredOption("--checkpoint <number>", "the checkpoint's number (from `cws checkpoints list`; each superproject counts its own)")
    .option("--json", "print machine-readable output")
    .action(async (slug: string, flags: { checkpoint: string; json?: boolean }) => {
      const result = await withConnection(async (conn, state) => (await checkpointsCode()).restoreCheckpointNumber(conn, state, slug, positiveInt(flags.checkpoint, "--checkpoint")));
      if (flags.json) return printJson({ ok: true, ...result });
      if (result.unchanged) return println(`${slug} is already at checkpoint ${snapshotNumber(result.snapshot)}; nothing was changed.`);
      println(`${slug} is now at snapshot ${snapshotNumber(result.snapshot)}, a copy of checkpoint ${flags.checkpoint}. Devices get it at their next sync (their changed files are backed up first).`);
      if (result.previousHeadNumber !== null) println(`To undo: \`cws restore ${slug} --checkpoint ${result.previousHeadNumber}\`.`);
    });

  const backups = program.command("backups").description("This device's local backups: every file a sync replaced or deleted here.");
  backups
    .command("list")
    .description("List backup sets, newest first.")
    .argument("[slug]", "only this superproject")
    .option("--json", "print machine-readable output")
    .action(async (slug: string | undefined, flags: { json?: boolean }) => {
      const state = await openState();
      const sets = await (await backupsCode()).listBackups(state, slug);
      if (flags.json) return printJson({ ok: true, backups: sets });
      if (sets.length === 0) return println("No local backups.");
      for (const set of sets) println(`${set.slug}  ${set.id}  ${set.files} file(s), ${formatBytes(set.bytes)}  ${set.dir}`);
      println("Restore with `cws backups restore <slug> <backup-id> [--path <file or folder>]`.");
    });
  backups
    .command("restore")
    .description("Copy backed-up files back into the superproject folder; newer local files are never overwritten, and replaced ones are backed up first.")
    .argument("<slug>")
    .argument("<backup-id>", "the backup set (from `cws backups list`)")
    .option("--path <path>", "only this file or folder (relative to the superproject folder)")
    .option("--json", "print machine-readable output")
    .action(async (slug: string, backupId: string, flags: { path?: string; json?: boolean }) => {
      const state = await openState();
      const result = await (await backupsCode()).restoreBackup(state, slug, backupId, { path: flags.path });
      if (flags.json) return printJson({ ok: true, ...result });
      for (const path of result.restored) println(`restored ${path}`);
      for (const skip of result.skipped) println(`skipped ${skip.path}: ${skip.reason}`);
      if (result.savedTo) println(`The local files it replaced were backed up in ${result.savedTo}.`);
      if (result.restored.length > 0) println(`Run \`cws sync ${slug}\` to share the restored files.`);
    });
}
