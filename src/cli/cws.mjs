#!/usr/bin/env node
/**
 * `cws` entry point. It is plain JavaScript so that Node need not load its TypeScript stripper
 * (about a tenth of a second) before it can turn on the compile cache, which then keeps the
 * stripped and compiled form of every module between runs; the real entry is loaded only after
 * that, because static imports would be evaluated before the cache is on.
 *
 * V8 flags for the CLI are set here too, before anything allocates much. Only flags that V8
 * reads while it runs take effect this way: `--max-semi-space-size`, for one, is read when the
 * heap is set up and is silently ignored here (measured: no change in a push's peak RSS).
 *
 * `--semi-space-growth-factor=1` keeps V8's young generation at its start size instead of
 * letting it grow to tens of MiB. A scan and a push keep most of what they allocate (manifest
 * entries) or hand it to the kernel at once (Buffers), so a large young generation mostly held
 * memory: a 50,000-file push peaked at 334 MiB with the flag, 437–469 MiB without, at the same
 * CPU time (18.3 s against 18.4–19.0 s). A 5,000-file pull peaked at 210–243 MiB with it,
 * 275–328 MiB without, in no more time (docs/performance.md, the pull's second pass).
 *
 * `cws sync` and `cws update-from-server` first try a session of this device that is already
 * running (kept-sync.ts): that path loads a few small modules, not the command line program.
 *
 * The commands that may push or pull a whole tree in this process (when no session runs it)
 * start Node again first with glibc's low-memory settings (src/malloc-env.ts): the transfer's
 * Buffers come from malloc, and with glibc's defaults its heap kept what they had held.
 */
import { enableCompileCache } from "node:module";
import { setFlagsFromString } from "node:v8";

/** Commands that may push or pull a whole tree in this process (see above). */
const TREE_COMMANDS = new Set(["sync", "update-from-server", "override-current-state", "turn-on-sync"]);

setFlagsFromString("--semi-space-growth-factor=1");
enableCompileCache();
const command = process.argv[2];
let done = false;
if (command === "sync" || command === "update-from-server") {
  const { runThroughRunningSession } = await import("./kept-sync.ts");
  done = await runThroughRunningSession(process.argv.slice(2));
}
if (!done) {
  if (TREE_COMMANDS.has(command)) {
    const { restartWithLowMemoryMalloc } = await import("../malloc-env.ts");
    restartWithLowMemoryMalloc();
  }
  await import("./cws-main.ts");
}
