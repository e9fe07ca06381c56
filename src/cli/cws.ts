#!/usr/bin/env node
/**
 * The `cws` entry point of earlier installs and scripts: it runs cws.mjs, the entry point to
 * use (plain JavaScript, so Node does not load its TypeScript stripper first), so that both
 * start the same way (compile cache, V8 flags).
 */
// @ts-expect-error cws.mjs is plain JavaScript without type declarations; nothing is imported from it.
await import("./cws.mjs");
