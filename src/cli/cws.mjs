#!/usr/bin/env node
/**
 * `cws` entry point. It is plain JavaScript so that Node need not load its TypeScript stripper
 * (about a tenth of a second) before it can turn on the compile cache, which then keeps the
 * stripped and compiled form of every module between runs; the real entry is loaded only after
 * that, because static imports would be evaluated before the cache is on.
 */
import { enableCompileCache } from "node:module";

enableCompileCache();
await import("./cws-main.ts");
