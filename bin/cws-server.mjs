#!/usr/bin/env node
// `cws-server`: runs server-agent/server-main.mjs with Node 24 (see launch.mjs).
import { launch } from "./launch.mjs";

await launch("server-agent/server-main.mjs");
