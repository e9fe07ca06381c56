/**
 * The entry point of the pull's writer thread (see pull-write.ts). Plain JavaScript, like
 * src/cli/cws.mjs and for the same reason: a worker thread does not inherit the main thread's
 * compile cache, so without turning it on here first the thread would load the TypeScript
 * stripper and compile every module again (measured: about 20 MiB more and several hundred
 * milliseconds per pull).
 */
import { enableCompileCache } from "node:module";

enableCompileCache();
await import("./pull-write-thread.ts");
