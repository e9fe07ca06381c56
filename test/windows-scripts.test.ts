/**
 * The Windows launchers, checked without Windows (PowerShell cannot be installed here): every
 * .ps1 and .cmd of the repository passes tools/windows-script-lint.ts, each daily command has a
 * launcher and a double-click wrapper that logs under %LOCALAPPDATA%\cws\logs\, and the checker
 * itself catches each rule it claims (so a clean result means something).
 */
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { lintBatch, lintPowerShell, windowsScripts } from "../tools/windows-script-lint.ts";

const REPO = join(import.meta.dirname, "..");
const WINDOWS = join(REPO, "scripts", "windows");
const LAUNCHERS = ["cws", "cws-shell", "cws-enroll-device", "cws-sync", "cws-turn-on-sync", "push-repo", "pull-repo"];

test("every .ps1 and .cmd of the repository passes the checks", () => {
  const files = windowsScripts(REPO);
  for (const name of LAUNCHERS) {
    assert.ok(files.includes(`scripts/windows/${name}.ps1`) && files.includes(`scripts/windows/${name}.cmd`), `${name}.ps1 and ${name}.cmd are tracked`);
  }
  for (const file of files) {
    const source = readFileSync(join(REPO, file), "utf8");
    const problems = file.endsWith(".ps1") ? lintPowerShell(source) : lintBatch(source);
    assert.deepEqual(problems, [], `${file}: ${problems.map((p) => `${p.line}: ${p.message}`).join("; ")}`);
  }
});

test("each launcher logs its run and its .cmd wrapper keeps a double-clicked window open", () => {
  const common = readFileSync(join(WINDOWS, "cws-common.ps1"), "utf8");
  assert.match(common, /Join-Path \$base 'cws\\logs'/, "logs go under %LOCALAPPDATA%\\cws\\logs");
  assert.match(common, /Start-Transcript -Path \$logFile/);
  for (const name of LAUNCHERS) {
    const ps1 = readFileSync(join(WINDOWS, `${name}.ps1`), "utf8");
    assert.match(ps1, /\. \(Join-Path \$PSScriptRoot 'cws-common\.ps1'\)/, `${name}.ps1 uses the shared launcher code`);
    assert.match(ps1, /^Invoke-CwsLogged -Name|Start-CwsLog '/m, `${name}.ps1 logs its run`);
    // cws must own the console (prompts, progress): its output is never captured as a value.
    assert.doesNotMatch(ps1, /[=(]\s*(?:Invoke-CwsLogged|& \$node \$cli)/, `${name}.ps1 does not capture cws's output`);
    const cmd = readFileSync(join(WINDOWS, `${name}.cmd`), "utf8");
    assert.ok(cmd.includes(`-File "%~dp0${name}.ps1" %*`), `${name}.cmd runs ${name}.ps1 with its arguments`);
    assert.match(cmd, /findstr \/i \/c:"%~nx0"[^\r]*set "CWS_PAUSE=1"/, `${name}.cmd knows when it was double-clicked`);
    assert.match(cmd, /\r\npause\r\n/, `${name}.cmd pauses then`);
    assert.match(cmd, /exit \/b %CWS_EXIT%/, `${name}.cmd passes the exit code on`);
  }
  assert.ok(!existsSync(join(WINDOWS, "push-config.local.ps1")) || readFileSync(join(REPO, ".gitignore"), "utf8").includes("push-config.local.ps1"));
});

describe("lintPowerShell() finds", () => {
  const bad: Array<[string, string, RegExp]> = [
    ["the old enroll launcher's parameter", "param(\n    [string]$Host = '',\n    [int]$Port = 22\n)\n", /^2: parameter \$Host is an automatic variable/],
    ["$Input as a parameter", "param([string]$input)\n", /parameter \$input/],
    ["a function parameter", "function Get-X($Args) { }\n", /parameter \$Args/],
    ["an attribute-decorated parameter", "param([Parameter(Mandatory = $true)][string]$Profile)\n", /parameter \$Profile/],
    ["$Args assigned", "$args = @()\n", /\$args is an automatic variable/],
    ["$PID assigned", "$x = 1\n$PID = 4\n", /^2: \$PID/],
    ["$Error appended to", "$Error += 'x'\n", /\$Error/],
    ["$_ assigned", "$_ = 3\n", /\$_ is an automatic/],
    ["$Matches assigned", "$Matches = @{}\n", /\$Matches/],
    ["$Home assigned", "$HOME = 'C:\\x'\n", /\$HOME/],
    ["$PSItem assigned", "$PSItem = 1\n", /\$PSItem/],
    ["$true assigned", "$true = 0\n", /\$true/],
    ["a foreach variable", "foreach ($input in $list) { }\n", /\$input is an automatic variable of PowerShell; use another foreach/],
    ["Set-Variable on one", "Set-Variable -Name Host -Value 1\n", /names the automatic variable \$Host/],
    ["param after a statement", "Write-Host 'x'\nparam([string]$Name)\n", /^2: param\( \) must be the first statement/],
    ["param inside a function after a statement", "function F {\n  $a = 1\n  param($b)\n}\n", /^3: param\( \) must be the first/],
    ["an unclosed brace", "if ($a) {\n  Write-Host 'x'\n", /^1: unclosed "\{"/],
    ["a stray parenthesis", "Write-Host 'x')\n", /unbalanced "\)"/],
    ["a mismatched bracket", "$a = @(1, 2}\n", /unbalanced "\}" \(expected "\)"/],
    ["an unterminated string", 'Write-Host "unterminated\n', /unterminated double-quoted string/],
    ["an unterminated single-quoted string", "Write-Host 'it''s\n", /unterminated single-quoted string/],
    ["an unclosed subexpression", 'Write-Host "now: $(Get-Date"\n', /unclosed|unterminated/],
    ["an unterminated block comment", "<# notes\nWrite-Host 1\n", /unterminated <# block comment/],
    ["an unterminated here-string", "$t = @'\ntext\n", /unterminated @' here-string/],
    ["non-ASCII without a BOM", "Write-Host 'caf\u00e9'\n", /non-ASCII character/],
  ];
  for (const [name, source, expected] of bad) {
    test(name, () => {
      const problems = lintPowerShell(source).map((p) => `${p.line}: ${p.message}`);
      assert.ok(problems.some((p) => expected.test(p)), `expected ${expected} in ${JSON.stringify(problems)}`);
    });
  }

  test("nothing in valid PowerShell that reads automatic variables", () => {
    const source = [
      "# Reads $Host, $args and $_ but declares none of them: $Host = 1 in a comment is fine.",
      "[CmdletBinding()]",
      "param(",
      "    [Parameter(Mandatory = $true)][string]$Name,",
      "    [switch]$Force = $false,",
      "    [int]$Port = 0",
      ")",
      "<# a block",
      "   comment #>",
      "$env:HOME = 'x'",
      "$script:count = 1",
      "$Host.UI.RawUI.WindowTitle = \"cws $Name\"",
      "$args | ForEach-Object { Write-Host $_ }",
      "$text = \"a $($Name.Length) b \"\"q\"\" `$y `\" $(if ($Force) { 'f' } else { \")\" })\"",
      "$here = @'",
      "it's { unbalanced ( in a here-string",
      "'@",
      "$there = @\"",
      "value: $($Name) and \"quotes\"",
      "\"@",
      "function Get-Thing {",
      "    [CmdletBinding()]",
      "    param([string]$Path = $PSScriptRoot)",
      "    foreach ($item in @(1, 2)) { if ($item -eq 1) { $item } }",
      "    return 'it''s'",
      "}",
      "$block = { param($x) $x * 2 }",
      "if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }",
      "",
    ].join("\n");
    assert.deepEqual(lintPowerShell(source), []);
  });
});

describe("lintBatch() finds", () => {
  const crlf = (...lines: string[]) => lines.map((l) => `${l}\r\n`).join("");
  const bad: Array<[string, string, RegExp]> = [
    ["LF-only line ends", "@echo off\nexit /b 0\n", /^1: line ends with LF only/],
    ["a missing @echo off", crlf("echo hi"), /first line must be @echo off/],
    ["an unpaired quote", crlf("@echo off", 'echo "hi'), /^2: unpaired double quote/],
    ["an unclosed block", crlf("@echo off", "if 1==1 (", "  echo a"), /"\(" not closed/],
    ["a stray parenthesis", crlf("@echo off", "echo a)"), /unbalanced "\)"/],
    ["a goto without its label", crlf("@echo off", "goto :finish", ":done"), /^2: no label :finish/],
  ];
  for (const [name, source, expected] of bad) {
    test(name, () => {
      const problems = lintBatch(source).map((p) => `${p.line}: ${p.message}`);
      assert.ok(problems.some((p) => expected.test(p)), `expected ${expected} in ${JSON.stringify(problems)}`);
    });
  }
  test("nothing in a valid wrapper", () => {
    assert.deepEqual(lintBatch(crlf("@echo off", "rem (an unbalanced comment", 'if "%1"=="" (echo none) else (echo "%1")', "echo a ^) b", "goto :done", "call :eof", ":done", "exit /b 0")), []);
  });
});
