#!/usr/bin/env node
/**
 * `cws` entry point. It only turns on Node's compile cache (which keeps the type-stripped and
 * compiled form of our modules between runs, cutting start-up roughly in half) and then loads
 * the real entry, because static imports would be evaluated before the cache is on.
 */
import { enableCompileCache } from "node:module";

enableCompileCache();
await import("./cws-main.ts");
