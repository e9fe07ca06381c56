#!/usr/bin/env node
/**
 * `cws-agent` entry point: turns on Node's compile cache (one agent starts per SSH session, so
 * its start-up time is part of every sync) and loads the real entry.
 */
import { enableCompileCache } from "node:module";

enableCompileCache();
await import("./agent-main.ts");
