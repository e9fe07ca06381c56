#!/usr/bin/env node
// `cws-agent`: runs server-agent/agent/main.mjs with Node 24 (see launch.mjs).
import { launch } from "./launch.mjs";

await launch("server-agent/agent/main.mjs");
