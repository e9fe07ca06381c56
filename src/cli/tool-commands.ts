/**
 * Commands around the sync itself: the interactive shell, doctor, and shared skills.
 */
import type { Command } from "commander";
import { CwsError } from "../errors.ts";
import { printJson, println } from "./output.ts";

// Each command loads its code when it runs, so that other commands do not pay for it (see program.ts).
const skillsCode = () => import("../client/commands/skills.ts");
const openState = async () => (await import("../client/state.ts")).StateStore.open();

export function registerToolCommands(program: Command, build: (options?: { interrupt?: AbortSignal }) => Command): void {
  program
    .command("delete-superproject-server")
    .description("Delete a superproject and its history from the server (local folders are left alone; chunks are reclaimed by the server's gc).")
    .argument("[slug]")
    .option("--superproject <slug>", "the older way to name it")
    .option("--force", "do not ask for confirmation")
    .option("--json", "print machine-readable output")
    .action(async (positional: string | undefined, flags: { superproject?: string; force?: boolean; json?: boolean }) => {
      const slug = positional ?? flags.superproject;
      if (!slug) throw new CwsError("INVALID_ARGUMENT", "Name the superproject: `cws delete-superproject-server <slug>`.");
      const state = await openState();
      const { connectAsDevice } = await import("../client/connect.ts");
      const { deleteSuperprojectServer } = await import("../client/commands/delete-superproject.ts");
      const conn = await connectAsDevice(state);
      try {
        const result = await deleteSuperprojectServer(conn, state, slug, { force: flags.force });
        if (flags.json) printJson({ ok: true, ...result });
        else println(`Deleted ${result.slug} from the server${result.unbound ? " and unbound it on this device" : ""}; local files were left as they are.`);
      } finally {
        await conn.close();
      }
    });

  program
    .command("shell")
    .description("An interactive prompt for cws commands (type `help` inside).")
    .action(async () => {
      const { runShell } = await import("./shell.ts");
      await runShell(build);
    });

  program
    .command("doctor")
    .description("Check this device's set-up and the connection to the server; changes nothing.")
    .option("--json", "print machine-readable output")
    .action(async (flags: { json?: boolean }) => {
      const { runDoctor } = await import("../client/commands/doctor.ts");
      const checks = await runDoctor();
      if (flags.json) printJson({ ok: checks.every((c) => c.ok), checks });
      else for (const check of checks) println(`${check.ok ? "ok  " : "FAIL"} ${check.name}: ${check.detail}${check.fix ? `\n     fix: ${check.fix}` : ""}`);
      if (!checks.every((c) => c.ok)) process.exitCode = 1;
    });

  const skills = program.command("skills").description("Shared Codex skills that any superproject can pull.");
  skills
    .command("list")
    .description("List the shared skills (skills/shared/ of this cws installation).")
    .option("--json", "print machine-readable output")
    .action(async (flags: { json?: boolean }) => {
      const list = await (await skillsCode()).listSkills();
      if (flags.json) printJson({ ok: true, skills: list });
      else for (const skill of list) println(`${skill.name}: ${skill.problem ? `(unusable: ${skill.problem})` : skill.description}`);
    });
  skills
    .command("pull")
    .description("Copy shared skills into a superproject's .agents/skills/ (existing ones are left alone). Sync afterwards to share them.")
    .argument("<slug>", "the superproject")
    .argument("[names...]", "skills to pull (default: all)")
    .option("--json", "print machine-readable output")
    .action(async (slug: string, names: string[], flags: { json?: boolean }) => {
      const state = await openState();
      const result = await (await skillsCode()).pullSkills(state, slug, names);
      if (flags.json) printJson({ ok: true, ...result });
      else {
        for (const name of result.pulled) println(`pulled ${name}`);
        for (const skip of result.skipped) println(`skipped ${skip.name}: ${skip.reason}`);
      }
    });
}
