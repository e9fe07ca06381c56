#!/usr/bin/env node
/**
 * The `cws-agent` entry point of earlier installs, which enrolled devices may still name in their
 * agent command. It does what main.mjs does (the entry point to use: plain JavaScript, so Node
 * does not load its TypeScript stripper first).
 */
import { enableCompileCache } from "node:module";

enableCompileCache();
await import("./agent-main.ts");
