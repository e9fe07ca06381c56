#!/usr/bin/env node
// `cws`: runs src/cli/cws.ts with Node 24 (see launch.mjs).
import { launch } from "./launch.mjs";

await launch("src/cli/cws.ts");
