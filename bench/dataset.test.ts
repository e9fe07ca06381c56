import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { generateDataset, listFiles, mutateOnePercent, planDataset, planFiles, scalePlan } from "./dataset.ts";
import { Prng } from "./prng.ts";

const SMALL = { seed: 7, files: 80, totalBytes: 2 * 1024 * 1024 } as const;

let temp = "";
before(async () => {
  temp = await mkdtemp(path.join(os.tmpdir(), "cws-bench-dataset-"));
});
after(async () => {
  await rm(temp, { recursive: true, force: true });
});

async function snapshot(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const file of listFiles(dir)) out.set(file, (await readFile(path.join(dir, file))).toString("base64"));
  return out;
}

function commonPrefix(a: string, b: string): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

function commonSuffix(a: string, b: string): number {
  let i = 0;
  while (i < a.length && i < b.length && a[a.length - 1 - i] === b[b.length - 1 - i]) i++;
  return i;
}

describe("Prng", () => {
  it("gives the same stream for the same seed and labels, another for other labels", () => {
    const a = new Prng(1, "x");
    const b = new Prng(1, "x");
    const c = new Prng(1, "y");
    const seqA = Array.from({ length: 8 }, () => a.nextUint32());
    assert.deepEqual(Array.from({ length: 8 }, () => b.nextUint32()), seqA);
    assert.notDeepEqual(Array.from({ length: 8 }, () => c.nextUint32()), seqA);
  });
});

describe("generateDataset()", () => {
  it("writes the same bytes for the same seed, and other bytes for another seed", async () => {
    const one = path.join(temp, "one");
    const two = path.join(temp, "two");
    const other = path.join(temp, "other");
    generateDataset(one, planDataset(SMALL));
    generateDataset(two, planDataset(SMALL));
    generateDataset(other, planDataset({ ...SMALL, seed: 8 }));
    assert.deepEqual(await snapshot(two), await snapshot(one));
    assert.notDeepEqual(await snapshot(other), await snapshot(one));
  });

  it("writes the planned number of files of each kind, near the planned size", () => {
    const dir = path.join(temp, "counts");
    const plan = planDataset(SMALL);
    const summary = generateDataset(dir, plan);
    const files = listFiles(dir);
    assert.equal(files.length, planFiles(plan));
    assert.equal(summary.files, files.length);
    assert.equal(files.filter((f) => f.endsWith(".jsonl")).length, plan.rolloutFiles);
    assert.equal(files.filter((f) => f.endsWith(".md")).length, plan.markdownFiles);
    assert.equal(files.filter((f) => f.endsWith(".json")).length, plan.jsonFiles);
    assert.ok(Math.abs(summary.bytes - SMALL.totalBytes) / SMALL.totalBytes < 0.15, `bytes ${summary.bytes}`);
  });

  it("writes rollouts in Codex's line format, session_meta first", async () => {
    const dir = path.join(temp, "counts");
    const rollout = listFiles(dir).find((f) => f.endsWith(".jsonl"))!;
    assert.match(rollout, /^codex\/sessions\/\d{4}\/\d{2}\/\d{2}\/rollout-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-[0-9a-f-]{36}\.jsonl$/);
    const lines = (await readFile(path.join(dir, rollout), "utf8")).trimEnd().split("\n");
    const parsed = lines.map((line) => JSON.parse(line) as { timestamp: string; type: string; payload: unknown });
    assert.equal(parsed[0]!.type, "session_meta");
    for (const line of parsed) {
      assert.match(line.timestamp, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
      assert.ok(["session_meta", "turn_context", "event_msg", "response_item"].includes(line.type), line.type);
      assert.equal(typeof line.payload, "object");
    }
  });
});

describe("scalePlan()", () => {
  it("multiplies the file count and keeps rollouts and binaries as they are", () => {
    const plan = planDataset({ files: 5000 });
    const scaled = scalePlan(plan, 10);
    assert.equal(planFiles(scaled), 50_000);
    assert.equal(scaled.rolloutFiles, plan.rolloutFiles);
    assert.equal(scaled.rolloutBytes, plan.rolloutBytes);
    assert.equal(scaled.binaryBytes, plan.binaryBytes);
  });
});

describe("mutateOnePercent()", () => {
  it("makes identical changes on identical copies, appending to rollouts and editing notes in the middle", async () => {
    const a = path.join(temp, "mut-a");
    const b = path.join(temp, "mut-b");
    const plan = planDataset({ ...SMALL, rollouts: 24 });
    generateDataset(a, plan);
    generateDataset(b, plan);
    const before = await snapshot(a);
    const changes = mutateOnePercent(a, 99);
    mutateOnePercent(b, 99);
    const afterA = await snapshot(a);
    assert.deepEqual(await snapshot(b), afterA);
    assert.equal(changes.appended.length, 20);
    assert.equal(changes.edited.length, 30);

    for (const file of changes.appended) {
      const old = Buffer.from(before.get(file)!, "base64");
      const now = Buffer.from(afterA.get(file)!, "base64");
      // An append: the old content is an exact prefix, and every new line is a rollout line.
      assert.ok(now.length > old.length && now.subarray(0, old.length).equals(old), file);
      for (const line of now.subarray(old.length).toString("utf8").trimEnd().split("\n")) {
        assert.ok("payload" in (JSON.parse(line) as object));
      }
    }
    for (const file of changes.edited) {
      const old = Buffer.from(before.get(file)!, "base64").toString("utf8");
      const now = Buffer.from(afterA.get(file)!, "base64").toString("utf8");
      // A mid-file insertion: the old text is an unchanged prefix plus an unchanged suffix of
      // the new one, and neither of them is empty.
      assert.ok(now.length > old.length, file);
      const prefix = commonPrefix(old, now);
      const suffix = commonSuffix(old, now);
      assert.ok(prefix > 0 && suffix > 0 && prefix + suffix >= old.length, `${file}: prefix ${prefix}, suffix ${suffix}, length ${old.length}`);
    }
    const untouched = [...before.keys()].filter((f) => !changes.appended.includes(f) && !changes.edited.includes(f));
    for (const file of untouched) assert.equal(afterA.get(file), before.get(file), file);
  });
});
