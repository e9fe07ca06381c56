#!/usr/bin/env node
/**
 * `npm run demo`: the main job of cws on a throw-away setup. It creates a server data dir and
 * two devices under a temp dir, edits files on device A, syncs A → server → B, edits on B,
 * syncs back, and shows what moved and the final state. Every step runs the real `cws` and
 * `cws-server` commands (through the local transport, so no SSH server is needed).
 *
 * Pass --keep to leave the temp dir in place for a look around.
 */
import { spawnSync } from "node:child_process";
import { appendFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { createHash } from "node:crypto";

const REPO = join(import.meta.dirname, "..");
const keep = process.argv.includes("--keep");
const dir = await mkdtemp(join(tmpdir(), "cws-demo-"));
const dataDir = join(dir, "server");
const passFile = join(dir, "passphrase.txt");
const rootA = join(dir, "device-a", "my-research");
const rootB = join(dir, "device-b", "work", "my-research");
const started = Date.now();

function heading(text: string): void {
  process.stdout.write(`\n\x1b[1m== ${text}\x1b[0m\n`);
}

/** Runs a cws command as a device (its own client state dir) and shows it like a terminal would. */
function run(device: "A" | "B" | "server", args: string[]): string {
  const [bin, rest] = device === "server" ? ["cws-server", join(REPO, "server-agent", "server-main.ts")] : ["cws", join(REPO, "src", "cli", "cws.mjs")];
  process.stdout.write(`\x1b[2m[${device}] $ ${bin} ${args.join(" ")}\x1b[0m\n`);
  const result = spawnSync(process.execPath, [rest, ...args], {
    env: { ...process.env, CWS_HOME: join(dir, `home-${device}`) },
    encoding: "utf8",
  });
  if (result.stdout) process.stdout.write(result.stdout.trimEnd().replace(/^/gm, "  ") + "\n");
  if (result.status !== 0) {
    process.stderr.write(result.stderr);
    throw new Error(`${bin} ${args.join(" ")} failed with exit code ${result.status}`);
  }
  return result.stdout;
}

async function treeDigest(root: string): Promise<{ files: number; digest: string }> {
  const hash = createHash("sha256");
  const names = (await readdir(root, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name))
    .sort();
  for (const name of names) hash.update(relative(root, name)).update("\0").update(await readFile(name)).update("\0");
  return { files: names.length, digest: hash.digest("hex").slice(0, 16) };
}

try {
  heading("Set up a throw-away server and two devices");
  process.stdout.write(`  everything lives in ${dir}\n`);
  await writeFile(passFile, "demo secondary passphrase\n", { mode: 0o600 });
  run("server", ["init", "--data", dataDir, "--passphrase-file", passFile]);
  run("A", ["enroll-device", "--server-data", dataDir, "--device-name", "laptop-A", "--passphrase-file", passFile]);
  run("B", ["enroll-device", "--server-data", dataDir, "--device-name", "desktop-B", "--passphrase-file", passFile]);

  heading("Device A creates a superproject from the template and writes some notes");
  run("A", ["create-superproject", "my-research", "--root", rootA, "--template", "default"]);
  await mkdir(join(rootA, "notes", "sessions"), { recursive: true });
  for (let i = 1; i <= 40; i++) {
    await writeFile(join(rootA, "notes", `topic-${String(i).padStart(2, "0")}.md`), `# Topic ${i}\n\n${`Findings about topic ${i}. `.repeat(40 * i)}\n`);
  }
  const transcript = Array.from({ length: 4000 }, (_, i) => JSON.stringify({ timestamp: new Date(Date.UTC(2026, 10, 1, 0, 0, i)).toISOString(), type: "response_item", payload: { type: "message", role: i % 2 ? "assistant" : "user", content: [{ type: "output_text", text: `line ${i} of a long working session` }] } })).join("\n") + "\n";
  await writeFile(join(rootA, "notes", "sessions", "transcript.jsonl"), transcript);

  heading("A syncs: everything goes up");
  run("A", ["sync", "my-research"]);

  heading("B attaches the superproject in another folder and syncs: everything comes down");
  run("B", ["attach-superproject", "my-research", "--root", rootB]);
  run("B", ["sync", "my-research"]);

  heading("B edits: appends to the transcript, edits a note, deletes one, adds one");
  await appendFile(join(rootB, "notes", "sessions", "transcript.jsonl"), JSON.stringify({ timestamp: "2026-11-25T10:00:00.000Z", type: "response_item", payload: { type: "message", role: "user", content: [{ type: "input_text", text: "continued on device B" }] } }) + "\n");
  const note = join(rootB, "notes", "topic-07.md");
  await writeFile(note, (await readFile(note, "utf8")).replace("# Topic 7", "# Topic 7 (revised on B)"));
  await rm(join(rootB, "notes", "topic-40.md"));
  await writeFile(join(rootB, "plans", "current.md"), "# Current plan\n\n## Goal\n\nFinish the write-up on device B.\n");
  run("B", ["sync", "my-research"]);

  heading("A syncs back: only the changes move (the transcript's unchanged chunks are reused)");
  run("A", ["sync", "my-research"]);

  heading("A syncs again with nothing to do: one round trip, nothing hashed");
  run("A", ["sync", "my-research"]);

  heading("Final state");
  run("A", ["status"]);
  const [a, b] = await Promise.all([treeDigest(rootA), treeDigest(rootB)]);
  process.stdout.write(`  device A: ${a.files} files, content digest ${a.digest}\n  device B: ${b.files} files, content digest ${b.digest}\n`);
  if (a.digest !== b.digest) throw new Error("The two devices did not converge");
  process.stdout.write(`\n\x1b[1mThe two devices converged in ${((Date.now() - started) / 1000).toFixed(1)} s.\x1b[0m\n`);
} finally {
  // The hub the agents started runs on; stop it by its PID so nothing is left behind.
  spawnSync(process.execPath, [join(REPO, "server-agent", "server-main.ts"), "stop", "--data", dataDir], { stdio: "ignore" });
  if (keep) process.stdout.write(`(kept ${dir})\n`);
  else await rm(dir, { recursive: true, force: true });
}
