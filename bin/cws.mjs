#!/usr/bin/env node
// `cws`: runs src/cli/cws.mjs with Node 24 (see launch.mjs).
import { launch } from "./launch.mjs";

await launch("src/cli/cws.mjs");
