import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CwsError } from "../errors.ts";
import { describeFailure, EXIT } from "./failure.ts";

function errno(code: string, syscall: string, path?: string): NodeJS.ErrnoException {
  const error: NodeJS.ErrnoException = new Error(`${code}: failed, ${syscall}`);
  error.code = code;
  error.syscall = syscall;
  if (path !== undefined) error.path = path;
  return error;
}

describe("describeFailure()", () => {
  const cases = [
    { name: "keeps a refusal's message, exit 1", error: new CwsError("NOT_FOUND", "No such superproject"), exitCode: EXIT.refused, code: "NOT_FOUND", says: /^No such superproject$/ },
    { name: "classes a lost connection as unreachable, exit 3", error: new CwsError("CONNECTION_LOST", "gone"), exitCode: EXIT.unreachable, code: "CONNECTION_LOST", says: /gone/ },
    { name: "classes Ctrl+C as interrupted, exit 130", error: new CwsError("CANCELLED", "stopped"), exitCode: EXIT.interrupted, code: "CANCELLED", says: /stopped/ },
    { name: "says a full disk in one sentence, exit 4", error: errno("ENOSPC", "write"), exitCode: EXIT.localSystem, code: "IO_FAILED", says: /^Cannot write to the disk as the disk is full \(ENOSPC\): free some space/ },
    { name: "names the file permission was denied for, exit 4", error: errno("EACCES", "open", "/x/y.md"), exitCode: EXIT.localSystem, code: "IO_FAILED", says: /^Cannot open "\/x\/y.md" as permission was denied \(EACCES\): give your user access/ },
    { name: "says a read-only file system, exit 4", error: errno("EROFS", "mkdir", "/ro/d"), exitCode: EXIT.localSystem, code: "IO_FAILED", says: /^Cannot create the folder "\/ro\/d" as the file system is read-only/ },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const failure = describeFailure(c.error, null);
      assert.equal(failure.exitCode, c.exitCode);
      assert.equal(failure.code, c.code);
      assert.match(failure.message, c.says);
      assert.doesNotMatch(failure.message, /\n/);
    });
  }

  it("writes a bug's stack to a log that exists, and names it in the message (exit 70)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "cws-failure-"));
    try {
      const failure = describeFailure(new TypeError("cannot read properties of undefined"), join(dir, "logs"));
      assert.equal(failure.exitCode, EXIT.internal);
      assert.equal(failure.code, "INTERNAL");
      const named = /The details are in (\S+)\./.exec(failure.message);
      assert.ok(named, failure.message);
      const log = await readFile(named[1], "utf8");
      assert.match(log, /TypeError: cannot read properties of undefined\n\s+at /);
      assert.doesNotMatch(failure.message, /\n/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
