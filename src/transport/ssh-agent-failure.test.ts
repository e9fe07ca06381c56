import assert from "node:assert/strict";
import { test } from "node:test";
import { CwsError } from "../errors.ts";
import { classifyAgentFailure } from "./ssh.ts";

const noHello = new CwsError("AGENT_MISSING", "The cws agent did not start: no hello was received");

test("classifyAgentFailure() says an agent killed before its hello was stopped, not that cws is missing", () => {
  const error = classifyAgentFailure(noHello, { code: null, signal: "KILL" }, "", "cws-agent --stdio", "srv:22");
  assert.equal(error.code, "AGENT_MISSING");
  assert.match(error.message, /^The cws agent on srv:22 was stopped by signal KILL before it was ready\. Run the command again/);
  assert.doesNotMatch(error.message, /install|not found/i);
});

test("classifyAgentFailure() still says a missing agent command is missing", () => {
  const error = classifyAgentFailure(noHello, { code: 127, signal: undefined }, "sh: cws-agent: not found", "cws-agent --stdio", "srv:22");
  assert.match(error.message, /command was not found.*Install cws on the server/);
});
