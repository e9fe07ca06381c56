/**
 * The first-join question on the command line (see src/client/first-join.ts): the flags that
 * answer it for scripts (`--adopt`, `--merge [--prefer server|local|both]`, `--replace`), the
 * grouped plan as a person reads it, the interactive prompt, and the refusal of a run that
 * can neither ask nor was told (it shows the plan, names the flags and exits non-zero).
 */
import { join } from "node:path";
import type { Readable, Writable } from "node:stream";
import { CwsError } from "../errors.ts";
import { type FirstJoinAnswer, KEEP_CHOICES, type KeepChoice } from "../core/first-join.ts";
import { type AskFirstJoin, type FirstJoinHook, firstJoinHook, type FirstJoinQuestion, type FirstJoinRecord } from "../client/first-join.ts";
import type { StateStore } from "../client/state.ts";
import { LineQuestions } from "../terminal/line-questions.ts";
import type { FirstJoinFlags } from "./first-join-options.ts";

/** How many paths of a group the text shows (`--json` lists them all). */
const LIST_LIMIT = 20;

/** The answer the flags give, or undefined when they give none. */
export function answerFromFlags(flags: FirstJoinFlags): FirstJoinAnswer | undefined {
  const given = (["adopt", "merge", "replace"] as const).filter((name) => flags[name] === true);
  if (given.length > 1) throw new CwsError("INVALID_ARGUMENT", `--${given.join(" and --")} contradict each other; give one of them.`);
  if (flags.prefer !== undefined && !KEEP_CHOICES.includes(flags.prefer as KeepChoice)) {
    throw new CwsError("INVALID_ARGUMENT", `--prefer takes server, local or both, not ${JSON.stringify(flags.prefer)}.`);
  }
  if (flags.prefer !== undefined && given[0] !== "merge") throw new CwsError("INVALID_ARGUMENT", "--prefer goes with --merge (it says what merge keeps of a file both sides hold differently).");
  switch (given[0]) {
    case "adopt":
      return { choice: "adopt" };
    case "replace":
      return { choice: "replace" };
    case "merge":
      return { choice: "merge", prefer: (flags.prefer as KeepChoice | undefined) ?? "both" };
    default:
      return undefined;
  }
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** The grouped plan, as a person reads it. */
export function formatFirstJoinPlan(question: FirstJoinQuestion): string[] {
  const { groups, head } = question;
  const lines = [
    `${question.slug}: this is this device's first sync, and both this folder and the server already hold files.`,
    `  this folder: ${question.root}`,
    `  the server:  snapshot ${head.id} from ${head.deviceName}, ${new Date(head.createdAt).toLocaleString()}`,
    question.dryRun ? "Dry run: nothing will be uploaded or changed." : "Nothing has been uploaded or changed yet.",
    "",
  ];
  const group = (title: string, paths: readonly string[]) => {
    if (paths.length === 0) return lines.push(`  ${title}: none`);
    lines.push(`  ${title} (${paths.length}):`);
    for (const path of paths.slice(0, LIST_LIMIT)) lines.push(`    ${path}`);
    if (paths.length > LIST_LIMIT) lines.push(`    … and ${paths.length - LIST_LIMIT} more (\`--json\` lists them all)`);
  };
  group("identical on both", groups.identical);
  group("only here — would be uploaded", groups.localOnly);
  group("only on the server — would be downloaded", groups.serverOnly);
  group("on both, with different content", groups.differing);
  const c = groups.codex;
  // Shown when threads would move; with Codex sync off the server's threads stand in for this
  // device's, and there is nothing to say.
  if (c.localOnly + c.serverOnly + c.differing > 0) {
    lines.push(`  Codex threads: merged whatever you choose (${c.localOnly} only here, ${c.serverOnly} only on the server, ${c.differing} on both that differ, ${c.identical} identical)`);
  }
  return lines;
}

/** The three choices, with what each does to the files of this plan. */
function choiceLines(question: FirstJoinQuestion): string[] {
  const { groups, head } = question;
  const here = groups.localOnly.length;
  const there = groups.serverOnly.length;
  const differ = groups.differing.length;
  return [
    `How should this folder join ${question.slug}?`,
    `  a  adopt    take the server's state: ${plural(here, "file")} only here and ${plural(differ, "differing file")} are backed up, then removed or replaced; ${plural(there, "file")} downloaded`,
    `  m  merge    upload ${plural(here, "file")} only here, download ${plural(there, "file")}; for each differing file keep the server's, this device's, or both`,
    `  r  replace  make this folder the server's state: ${plural(here + differ, "file")} uploaded, ${plural(there, "file")} deleted on the server (snapshot ${head.id} stays as a checkpoint)`,
    "  q  quit     change nothing",
  ];
}

/** The lines a refusal prints, and the error it throws. */
function refusal(question: FirstJoinQuestion, why: string): CwsError {
  return new CwsError(
    "CONFLICT",
    `${question.slug}: ${why}; nothing was uploaded or changed. Choose how this folder joins the server: --adopt (take the server's state), --merge [--prefer server|local|both] (upload what is only here; differing files keep both by default), or --replace (make this folder the server's state).`,
    { data: { firstJoin: { root: question.root, head: question.head.id, ...question.groups } } },
  );
}

/**
 * Asks the question on a terminal (or any stream pair): one letter for the choice, and for
 * merge a default for the differing files, or an answer for each.
 *
 * @throws {CwsError} CANCELLED on quit, Ctrl+C or the end of the input
 */
export async function promptFirstJoin(question: FirstJoinQuestion, io: { input: Readable; output: Writable }): Promise<FirstJoinAnswer> {
  const out = (line = "") => io.output.write(`${line}\n`);
  for (const line of formatFirstJoinPlan(question)) out(line);
  out();
  for (const line of choiceLines(question)) out(line);
  const questions = new LineQuestions(io.input, io.output);
  const cancelled = () => new CwsError("CANCELLED", `Nothing was uploaded or changed. Run the sync again to choose, or give --adopt, --merge or --replace.`);
  try {
    const letter = await pick(questions, "Choice [a/m/r/q]: ", ["a", "m", "r", "q"], undefined, out);
    if (letter === null || letter === "q") throw cancelled();
    if (letter === "a") return { choice: "adopt" };
    if (letter === "r") return { choice: "replace" };
    const differing = question.groups.differing;
    if (differing.length === 0) return { choice: "merge", prefer: "both" };
    const example = question.keepBothNames[differing[0]!];
    out();
    out(`For the ${plural(differing.length, "file")} on both sides with different content, keep:`);
    out("  s  the server's version (this device's is backed up first)");
    out(`  l  this device's version (uploaded; the server's stays in snapshot ${question.head.id})`);
    out(`  b  both: this device's copy is renamed beside the server's (e.g. ${example})`);
    out("  e  ask for each file");
    const keep = await pick(questions, "Keep [s/l/b/e] (b): ", ["s", "l", "b", "e"], "b", out);
    if (keep === null) throw cancelled();
    if (keep !== "e") return { choice: "merge", prefer: keepOf(keep) };
    out("For each file: s, l or b; a capital letter answers the same for every file left.");
    const perFile: Record<string, KeepChoice> = {};
    let rest: KeepChoice | undefined;
    for (const path of differing) {
      if (rest !== undefined) {
        perFile[path] = rest;
        continue;
      }
      const answer = await pick(questions, `  ${path} — keep [s]erver's, [l]ocal, [b]oth (as ${question.keepBothNames[path]})? (b): `, ["s", "l", "b", "S", "L", "B"], "b", out, true);
      if (answer === null) throw cancelled();
      perFile[path] = keepOf(answer.toLowerCase());
      if (answer !== answer.toLowerCase()) rest = perFile[path];
    }
    return { choice: "merge", prefer: "both", perFile };
  } finally {
    questions.close();
  }
}

function keepOf(letter: string): KeepChoice {
  return letter === "s" ? "server" : letter === "l" ? "local" : "both";
}

/** Asks until one of `letters` (or the default on an empty line) is given; null at the end of the input. */
async function pick(questions: LineQuestions, prompt: string, letters: readonly string[], fallback: string | undefined, out: (line: string) => void, caseSensitive = false): Promise<string | null> {
  for (;;) {
    const line = await questions.ask(prompt);
    if (line === null) return null;
    const answer = line === "" ? fallback : caseSensitive ? line.slice(0, 1) : line.slice(0, 1).toLowerCase();
    if (answer !== undefined && letters.includes(answer)) return answer;
    out(`Please answer ${letters.filter((l) => caseSensitive || l === l.toLowerCase()).join(", ")}.`);
  }
}

/** How a command answers the first-join question. */
export interface FirstJoinCli {
  /** Passed to syncSuperproject (through firstJoinHook). */
  ask: AskFirstJoin;
  record: FirstJoinRecord;
}

/**
 * The question function of a command: the flags' answer if they give one; on a dry run
 * without one, the plan is shown and nothing decided; on a terminal, the prompt; otherwise a
 * refusal that shows the plan and names the flags.
 *
 * @param options.interactive whether a person can be asked (default: stdin is a terminal and no --json)
 * @param options.beforeAsk called before anything is printed (e.g. to clear a progress line)
 */
export function firstJoinCli(flags: FirstJoinFlags & { json?: boolean }, options: { interactive?: boolean; io?: { input: Readable; output: Writable }; beforeAsk?: () => void } = {}): FirstJoinCli {
  const given = answerFromFlags(flags);
  // The flags' answer is recorded up front: when no question comes up, the output can say the
  // flag was not needed (the binding already synced, or one side was empty).
  const record: FirstJoinRecord = { question: null, answer: given ?? null, renames: [] };
  const interactive = options.interactive ?? (process.stdin.isTTY === true && flags.json !== true);
  const print = (lines: string[]) => {
    if (flags.json !== true) for (const line of lines) process.stdout.write(`${line}\n`);
  };
  const ask: AskFirstJoin = async (question) => {
    options.beforeAsk?.();
    if (given !== undefined) {
      print([...formatFirstJoinPlan(question), `Chosen by --${given.choice}${given.choice === "merge" ? ` (differing files: keep ${given.prefer})` : ""}.`, ""]);
      return given;
    }
    if (question.dryRun) {
      print([...formatFirstJoinPlan(question), "", ...choiceLines(question).slice(0, 4), "A real sync asks this question; --adopt, --merge or --replace answer it (with --dry-run too, to see the result)."]);
      return null;
    }
    if (!interactive) {
      print(formatFirstJoinPlan(question));
      throw refusal(question, flags.json === true ? "this is this device's first sync and both this folder and the server hold files (--json never asks)" : "this is this device's first sync and both this folder and the server hold files, and there is no terminal to ask on");
    }
    return promptFirstJoin(question, options.io ?? { input: process.stdin, output: process.stderr });
  };
  return { ask, record };
}

/** What the first join did, one line each (after the sync's own summary). */
export function firstJoinOutcomeLines(record: FirstJoinRecord, root: string, dryRun: boolean): string[] {
  const lines: string[] = [];
  if (record.question === null && record.answer !== null) {
    lines.push(`  note: --${record.answer.choice} was not needed: it answers only the first sync of a folder that already holds files, when the server does too`);
  }
  for (const rename of record.renames) {
    lines.push(dryRun
      ? `  would keep both versions of ${rename.from}: the server's at ${join(root, rename.from)}, this device's renamed to ${join(root, rename.to)}`
      : `  kept both versions of ${rename.from}: the server's is at ${join(root, rename.from)}, this device's at ${join(root, rename.to)}`);
  }
  return lines;
}

/**
 * The first-join hook of one command run, and the record of what it asked and decided.
 * The device name (for "keep both" copies) is read only when the question comes up, so a
 * device that is not enrolled gets the connection's own error.
 */
export function firstJoinFor(state: StateStore, slug: string, flags: FirstJoinFlags & { json?: boolean }, options: Parameters<typeof firstJoinCli>[1] = {}): { hook: FirstJoinHook; record: FirstJoinRecord } {
  const cli = firstJoinCli(flags, options);
  const hook: FirstJoinHook = (view) => firstJoinHook({ slug, deviceName: state.enrolled().device.name, ask: cli.ask, record: cli.record })(view);
  return { hook, record: cli.record };
}
