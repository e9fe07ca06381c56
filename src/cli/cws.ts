#!/usr/bin/env node
/**
 * The `cws` entry point of earlier installs and scripts. It does what cws.mjs does (the entry
 * point to use: plain JavaScript, so Node does not load its TypeScript stripper first).
 */
import { enableCompileCache } from "node:module";

enableCompileCache();
await import("./cws-main.ts");
