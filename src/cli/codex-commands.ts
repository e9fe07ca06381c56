/**
 * Commands for a superproject's Codex threads: `cws threads <slug>` and
 * `cws refresh-thread <slug> --thread <id>`. Logic lives in src/client/commands/threads.ts;
 * this file only wires flags and prints.
 */
import type { Command } from "commander";
import { CwsError } from "../errors.ts";
import type { AgentConnection } from "../transport/connection.ts";
import type { StateStore } from "../client/state.ts";
import { printJson, println } from "./output.ts";

// Each command loads its code when it runs, so that other commands do not pay for it (see program.ts).
const threadsCode = () => import("../client/commands/threads.ts");

async function openDeviceSession(): Promise<{ state: StateStore; conn: AgentConnection }> {
  const { StateStore } = await import("../client/state.ts");
  const { connectAsDevice } = await import("../client/connect.ts");
  const state = await StateStore.open();
  return { state, conn: await connectAsDevice(state) };
}

function slugOf(positional: string | undefined, flags: { superproject?: string }): string {
  const slug = positional ?? flags.superproject;
  if (!slug) throw new CwsError("INVALID_ARGUMENT", "Name the superproject: `cws <command> <slug>` (or --superproject <slug>).");
  return slug;
}

function clip(text: string, max: number): string {
  const line = text.replace(/\s+/g, " ").trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

export function registerCodexCommands(program: Command): void {
  program
    .command("threads")
    .description("List a superproject's Codex threads: name, last update, whether each is on this device, on the server, or both, and whether Codex on this device lists it (under which folder and name).")
    .argument("[slug]")
    .option("--superproject <slug>", "the older way to name it")
    .option("--json", "print machine-readable output")
    .action(async (positional: string | undefined, flags: { superproject?: string; json?: boolean }) => {
      const slug = slugOf(positional, flags);
      const { state, conn } = await openDeviceSession();
      try {
        const listing = await (await threadsCode()).listSuperprojectThreads({ state, conn, slug });
        if (flags.json) {
          printJson({ ok: true, ...listing });
          return;
        }
        println(listing.home === null ? `${slug}: Codex thread sync is off on this device` : `${slug}: threads of ${listing.root} (CODEX_HOME ${listing.home})`);
        if (listing.threads.length === 0) println("  no threads yet");
        for (const t of listing.threads) {
          const where = t.where === "both" ? (t.inSync ? "here and on the server" : "here and on the server (differs: sync to settle)") : t.where === "local" ? "only here (not pushed yet)" : "only on the server (not pulled yet)";
          const title = t.name ?? (t.preview === null ? "(unnamed)" : `"${clip(t.preview, 60)}"`);
          println(`  ${t.id}  ${new Date(t.updatedMs).toLocaleString()}  ${title}${t.archived ? " [archived]" : ""}`);
          println(`      ${where}${t.cwd ? `, in ${t.cwd}` : ""}`);
          if (t.codex !== null) {
            println(
              t.codex.listed
                ? `      Codex here lists it under ${t.codex.cwd}${t.codex.name !== null ? ` as "${t.codex.name}"` : " (no name)"}`
                : `      Codex here does not list it under its folder (Codex reports cwd ${t.codex.cwd ?? "unknown"}); \`cws refresh-thread ${slug} --thread ${t.id}\` registers it again`,
            );
          }
        }
        if (listing.codexCheck === "not installed") println("  Codex CLI not found on this device (PATH, or set CWS_CODEX): the threads are synced, but what Codex lists here was not checked");
        else if (listing.codexCheck !== "asked" && listing.codexCheck !== "off") println(`  warning: ${listing.codexCheck}`);
        for (const c of listing.conflicts) println(`  diverged ${c.id}: the server's version is live; your copy is at ${c.backup}`);
        for (const p of listing.problems) println(`  warning ${p.path}: ${p.reason}`);
      } finally {
        await conn.close();
      }
    });

  program
    .command("refresh-thread")
    .description("Write one Codex thread again from the server (your local copy is backed up first).")
    .argument("[slug]")
    .option("--superproject <slug>", "the older way to name it")
    .requiredOption("--thread <id>", "the thread's id (see `cws threads <slug>`)")
    .option("--json", "print machine-readable output")
    .action(async (positional: string | undefined, flags: { superproject?: string; thread: string; json?: boolean }) => {
      const slug = slugOf(positional, flags);
      const { state, conn } = await openDeviceSession();
      try {
        const result = await (await threadsCode()).refreshThread({ state, conn, slug, thread: flags.thread });
        if (flags.json) {
          printJson({ ok: true, ...result });
          return;
        }
        println(`Thread ${result.id} written again from snapshot ${result.snapshot}${result.backup ? `; the previous copy is at ${result.backup}` : ""}.`);
        if (result.codex !== null) {
          println(result.codex.listed ? `Codex here lists it under ${result.codex.cwd}${result.codex.name !== null ? ` as "${result.codex.name}"` : ""}.` : `Codex here does not list it under its folder (it reports cwd ${result.codex.cwd ?? "unknown"}).`);
        }
        for (const warning of result.warnings) println(`warning: ${warning}`);
      } finally {
        await conn.close();
      }
    });
}
