/**
 * The entry of a push worker thread. It is plain JavaScript for the reason src/cli/cws.mjs is:
 * a worker does not inherit the main thread's compile cache, and without it every worker loaded
 * Node's TypeScript stripper (a WebAssembly compiler of tens of MiB) and stripped each module
 * again. The real entry is loaded only once the cache is on.
 */
import { enableCompileCache } from "node:module";

enableCompileCache();
await import("./push-worker.ts");
