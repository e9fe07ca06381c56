import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { identityFilesOf } from "./connect.ts";
import { DEFAULT_IDENTITY_FILE_NAMES } from "../transport/ssh-config.ts";
import type { ServerTarget } from "./state.ts";

const target = (identityFiles: string[]): Extract<ServerTarget, { transport: "ssh" }> => ({
  transport: "ssh", host: "h", port: 22, user: "u", identityFiles, identitiesOnly: false, useAgents: false, knownHostsPath: "/k", agentCommand: "cws-agent --stdio",
});

test("a device enrolled without a named key tries OpenSSH's default key files, in OpenSSH's order", () => {
  assert.deepEqual(identityFilesOf(target([]), DEFAULT_IDENTITY_FILE_NAMES, "/home/me"), [
    join("/home/me", ".ssh", "id_rsa"), join("/home/me", ".ssh", "id_ecdsa"), join("/home/me", ".ssh", "id_ed25519"),
  ]);
});

test("a key named at enrollment (--identity or IdentityFile) is the only one tried", () => {
  assert.deepEqual(identityFilesOf(target(["/home/me/.ssh/cws_key"]), DEFAULT_IDENTITY_FILE_NAMES, "/home/me"), ["/home/me/.ssh/cws_key"]);
});
