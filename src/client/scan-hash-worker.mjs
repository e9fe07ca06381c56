/**
 * The entry of a scan's hashing thread (scan-hash-pool.ts). It is plain JavaScript for the
 * reason push-worker.mjs is: the compile cache must be on before any TypeScript module loads.
 */
import { enableCompileCache } from "node:module";

enableCompileCache();
await import("./scan-hash-worker.ts");
