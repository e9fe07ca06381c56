#!/usr/bin/env node
/**
 * Entry point of the forced command of a restricted device key (see forced-command.ts), in
 * plain JavaScript so that Node need not load its TypeScript stripper before it can turn on the
 * compile cache: sshd starts one for every session and every SFTP channel of a restricted key.
 */
import { enableCompileCache } from "node:module";

enableCompileCache();
const { runForcedCommandProcess } = await import("./forced-command.ts");
runForcedCommandProcess();
