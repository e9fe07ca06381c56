#!/usr/bin/env node
/**
 * `cws`: the client command line. Wiring only: each command maps its flags to the options of
 * a function in src/client/, calls it, and prints the result for a person or as JSON.
 */
import type { Command } from "commander";
import { buildProgram } from "./program.ts";
import { reportError, tolerateClosedOutput } from "./output.ts";

tolerateClosedOutput();
const program: Command = buildProgram();
const wantsJson = process.argv.includes("--json");

program.parseAsync(process.argv).catch(async (error: unknown) => {
  process.exitCode = await reportError(error, wantsJson);
});

