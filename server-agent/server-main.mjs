#!/usr/bin/env node
/**
 * `cws-server` entry point, in plain JavaScript so that Node need not load its TypeScript
 * stripper before it can turn on the compile cache. The hub an agent starts runs through here,
 * so the first sync after the hub went idle does not pay for stripping every server module.
 */
import { enableCompileCache } from "node:module";

enableCompileCache();
await import("./server-main.ts");
