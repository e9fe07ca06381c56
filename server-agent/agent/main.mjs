#!/usr/bin/env node
/**
 * `cws-agent` entry point, in plain JavaScript so that Node need not load its TypeScript
 * stripper (about a tenth of a second) before it can turn on the compile cache, which then
 * holds the stripped and compiled form of the relay between runs. One starts per session.
 */
import { enableCompileCache } from "node:module";

enableCompileCache();
await import("./agent-main.ts");
