import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { PassThrough } from "node:stream";
import { isCwsError } from "../errors.ts";
import type { FirstJoinQuestion } from "../client/first-join.ts";
import { answerFromFlags, firstJoinCli, firstJoinOutcomeLines, formatFirstJoinPlan, promptFirstJoin } from "./first-join-prompt.ts";
import type { FirstJoinFlags } from "./first-join-options.ts";

function question(overrides: Partial<FirstJoinQuestion["groups"]> = {}, dryRun = false): FirstJoinQuestion {
  return {
    slug: "notes",
    root: "/home/b/notes",
    head: { id: 7, parent: 6, deviceId: "d", deviceName: "laptop-a", createdAt: 0, kind: "push", manifestHash: "0123456789abcdef", files: 3, bytes: 10 },
    groups: { identical: ["plan.md"], localOnly: ["diary.md"], serverOnly: ["todo.md"], differing: ["a.md", "b.md"], codex: { localOnly: 0, serverOnly: 0, differing: 0, identical: 0 }, ...overrides },
    dryRun,
    keepBothNames: { "a.md": "a (laptop-b).md", "b.md": "b (laptop-b).md" },
  };
}

/** Runs the prompt with `typed` already waiting on its input, as a pipe delivers it. */
async function answer(typed: string, q = question()) {
  const input = new PassThrough();
  const output = new PassThrough();
  let shown = "";
  output.on("data", (piece) => { shown += piece; });
  input.end(typed);
  let value: unknown;
  let error: unknown;
  await promptFirstJoin(q, { input, output }).then((v) => { value = v; }, (e: unknown) => { error = e; });
  return { value, error, shown };
}

describe("answerFromFlags", () => {
  const cases: Array<{ flags: FirstJoinFlags; answer?: unknown; error?: RegExp }> = [
    { flags: {}, answer: undefined },
    { flags: { adopt: true }, answer: { choice: "adopt" } },
    { flags: { replace: true }, answer: { choice: "replace" } },
    { flags: { merge: true }, answer: { choice: "merge", prefer: "both" } },
    { flags: { merge: true, prefer: "local" }, answer: { choice: "merge", prefer: "local" } },
    { flags: { adopt: true, merge: true }, error: /--adopt and --merge contradict/ },
    { flags: { prefer: "server" }, error: /--prefer goes with --merge/ },
    { flags: { merge: true, prefer: "mine" }, error: /--prefer takes server, local or both/ },
  ];
  for (const c of cases) {
    it(`${JSON.stringify(c.flags)} → ${c.error ? "refused" : JSON.stringify(c.answer)}`, () => {
      if (c.error) assert.throws(() => answerFromFlags(c.flags), (e: unknown) => isCwsError(e, "INVALID_ARGUMENT") && c.error!.test(e.message));
      else assert.deepEqual(answerFromFlags(c.flags), c.answer);
    });
  }
});

describe("promptFirstJoin", () => {
  it("asks again after an answer it does not know", async () => {
    const { value, shown } = await answer("x\na\n");
    assert.deepEqual(value, { choice: "adopt" });
    assert.match(shown, /Please answer a, m, r, q\./);
  });

  it("takes a merge default for all differing files, both when the line is empty", async () => {
    assert.deepEqual((await answer("m\nl\n")).value, { choice: "merge", prefer: "local" });
    assert.deepEqual((await answer("m\n\n")).value, { choice: "merge", prefer: "both" });
  });

  it("asks for each file, and a capital letter answers the rest", async () => {
    assert.deepEqual((await answer("m\ne\nl\ns\n")).value, { choice: "merge", prefer: "both", perFile: { "a.md": "local", "b.md": "server" } });
    const { value, shown } = await answer("m\ne\nS\n");
    assert.deepEqual(value, { choice: "merge", prefer: "both", perFile: { "a.md": "server", "b.md": "server" } });
    assert.doesNotMatch(shown, /b\.md — keep/);
  });

  it("merge asks nothing more when no file differs", async () => {
    assert.deepEqual((await answer("m\n", question({ differing: [] }))).value, { choice: "merge", prefer: "both" });
  });

  for (const typed of ["q\n", "", "m\n"]) {
    it(`${JSON.stringify(typed)} cancels (quit, or the input ends)`, async () => {
      const { error } = await answer(typed);
      assert.ok(isCwsError(error, "CANCELLED"), String(error));
    });
  }
});

describe("formatFirstJoinPlan", () => {
  it("lists each group, with at most 20 paths and the rest counted", () => {
    const many = Array.from({ length: 25 }, (_, i) => `n${String(i).padStart(2, "0")}.md`);
    const lines = formatFirstJoinPlan(question({ localOnly: many, serverOnly: [] }));
    assert.ok(lines.includes("  only here — would be uploaded (25):"));
    assert.ok(lines.includes("    n19.md"));
    assert.ok(!lines.includes("    n20.md"));
    assert.ok(lines.includes("    … and 5 more (`--json` lists them all)"));
    assert.ok(lines.includes("  only on the server — would be downloaded: none"));
    assert.ok(lines.includes("  on both, with different content (2):"));
  });
});

describe("firstJoinCli", () => {
  it("refuses without a terminal, naming the flags and carrying the plan", async () => {
    const cli = firstJoinCli({ json: true }, { interactive: false });
    await assert.rejects(cli.ask(question()), (e: unknown) => isCwsError(e, "CONFLICT") && /--adopt/.test(e.message) && (e.data?.firstJoin as { differing: string[] }).differing.length === 2);
  });

  it("decides nothing on a dry run without a choice", async () => {
    const cli = firstJoinCli({ json: true }, { interactive: true });
    assert.equal(await cli.ask(question({}, true)), null);
  });
});

describe("firstJoinOutcomeLines", () => {
  const record = { question: question(), answer: { choice: "merge" as const, prefer: "both" as const }, renames: [{ from: "a.md", to: "a (laptop-b).md" }] };
  it("names both real paths, and says would on a dry run", () => {
    assert.deepEqual(firstJoinOutcomeLines(record, "/home/b/notes", false), ["  kept both versions of a.md: the server's is at /home/b/notes/a.md, this device's at /home/b/notes/a (laptop-b).md"]);
    assert.deepEqual(firstJoinOutcomeLines(record, "/home/b/notes", true), ["  would keep both versions of a.md: the server's at /home/b/notes/a.md, this device's renamed to /home/b/notes/a (laptop-b).md"]);
  });

  it("says a flag was not needed when nothing was asked", () => {
    assert.match(firstJoinOutcomeLines({ question: null, answer: { choice: "adopt" }, renames: [] }, "/x", false)[0]!, /--adopt was not needed/);
  });
});
