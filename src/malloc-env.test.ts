import assert from "node:assert/strict";
import { test } from "node:test";
import { spawnSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { BULK_CLI_MALLOC_ENV, wantsLowMemoryRestart } from "./malloc-env.ts";

test("wantsLowMemoryRestart() restarts on Linux only, once, and never over a user's own settings", () => {
  assert.equal(wantsLowMemoryRestart({}, "linux", true), true);
  assert.equal(wantsLowMemoryRestart({ ...BULK_CLI_MALLOC_ENV }, "linux", true), false, "the restarted process itself");
  assert.equal(wantsLowMemoryRestart({ MALLOC_ARENA_MAX: "4" }, "linux", true), false, "the user chose an arena count");
  assert.equal(wantsLowMemoryRestart({ CWS_MALLOC_RESTART: "0" }, "linux", true), false);
  assert.equal(wantsLowMemoryRestart({}, "win32", true), false);
  assert.equal(wantsLowMemoryRestart({}, "darwin", true), false);
  assert.equal(wantsLowMemoryRestart({}, "linux", false), false, "no process.execve in this Node");
});

test("restartWithLowMemoryMalloc() runs the same command again in the same process, with the settings", { skip: process.platform !== "linux" || typeof process.execve !== "function" }, async () => {
  const dir = await mkdtemp(join(tmpdir(), "cws-malloc-"));
  try {
    const script = join(dir, "restart.mjs");
    await writeFile(script, [
      `const { restartWithLowMemoryMalloc } = await import(${JSON.stringify(pathToFileURL(join(import.meta.dirname, "malloc-env.ts")).href)});`,
      `console.log([process.pid, process.env.MALLOC_ARENA_MAX ?? "-", process.env.MALLOC_MMAP_THRESHOLD_ ?? "-", ...process.argv.slice(2)].join(" "));`,
      "restartWithLowMemoryMalloc();",
    ].join("\n"));
    const env = { ...process.env };
    for (const name of [...Object.keys(BULK_CLI_MALLOC_ENV), "CWS_MALLOC_RESTART"]) delete env[name];
    const run = spawnSync(process.execPath, [script, "sync", "my project"], { env, encoding: "utf8" });
    assert.equal(run.status, 0, run.stderr);
    const [before, after, ...rest] = run.stdout.trim().split("\n");
    assert.deepEqual(rest, [], "restarted once, not again");
    assert.equal(before, `${run.pid} - - sync my project`);
    assert.equal(after, `${run.pid} 1 65536 sync my project`, "the same pid and arguments, with the settings");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
