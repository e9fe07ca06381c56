#!/usr/bin/env node
/**
 * Checks the Windows scripts (.ps1 and .cmd) without Windows: PowerShell cannot be installed on
 * the machines that build cws, so this catches what can be caught from the text alone.
 *
 *   node tools/windows-script-lint.ts [files…]      (default: every .ps1/.cmd git tracks)
 *
 * PowerShell (.ps1):
 * - no automatic variable of PowerShell (about_Automatic_Variables: $Host, $Input, $Args, $PID,
 *   $Home, $Error, $Profile, $PSItem, $_, $Matches, $true, …) declared as a parameter or used
 *   as a variable name (assigned, a foreach variable, Set-Variable/New-Variable). Reading them
 *   is fine. `param([string]$Host)` is what made the old enroll launcher die before it ran;
 * - strings, here-strings, block comments and $( ) subexpressions closed; ( ) { } [ ] balanced;
 * - `param(…)` only as the first statement of the script or of a function or script block;
 * - ASCII only, or a UTF-8 byte order mark: Windows PowerShell 5.1 reads BOM-less files as ANSI.
 *
 * Batch (.cmd/.bat):
 * - `@echo off` first; CRLF line ends (cmd.exe misparses labels and goto with LF only);
 * - double quotes paired on every line; ( ) balanced across the file; every goto/call :label
 *   has its label.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";

/** One problem, at a 1-based line. */
export interface LintProblem {
  line: number;
  message: string;
}

/** about_Automatic_Variables (PowerShell 7.5), lower-cased. */
export const AUTOMATIC_VARIABLES: ReadonlySet<string> = new Set([
  "$", "?", "^", "_", "args", "consolefilename", "enabledexperimentalfeatures", "error", "event", "eventargs",
  "eventsubscriber", "executioncontext", "false", "foreach", "home", "host", "input", "iscoreclr", "islinux",
  "ismacos", "iswindows", "lastexitcode", "matches", "myinvocation", "nestedpromptlevel", "null", "pid",
  "profile", "psboundparameters", "pscmdlet", "pscommandpath", "psculture", "psdebugcontext", "psedition",
  "pshome", "psitem", "psscriptroot", "pssenderinfo", "psuiculture", "psversiontable", "pwd", "sender",
  "shellid", "stacktrace", "switch", "this", "true",
]);

interface Token {
  kind: "var" | "word" | "open" | "close" | "op" | "string" | "newline";
  text: string;
  line: number;
  /** Bracket depth (all kinds) before this token. */
  depth: number;
}

const OPENERS: Record<string, string> = { "(": ")", "{": "}", "[": "]" };

/** Tokenizes PowerShell far enough to see brackets, strings, variables and statements. */
function tokenize(source: string, problems: LintProblem[]): Token[] {
  const tokens: Token[] = [];
  const stack: Array<{ char: string; line: number }> = [];
  let i = 0;
  let line = 1;
  const push = (kind: Token["kind"], text: string) => tokens.push({ kind, text, line, depth: stack.length });
  const at = (offset = 0) => source[i + offset] ?? "";

  function skipDoubleQuoted(close: '"' | '"@'): void {
    // Inside "…" or @"…"@: backtick escapes, "" is a quote, $( ) holds code (recursively).
    const startLine = line;
    while (i < source.length) {
      const c = at();
      if (c === "\n") line++;
      if (c === "`") { if (at(1) === "\n") line++; i += 2; continue; }
      if (close === '"' && c === '"') {
        if (at(1) === '"') { i += 2; continue; }
        i++;
        return;
      }
      if (close === '"@' && c === "\n" && /^[ \t]*"@/.test(source.slice(i + 1))) {
        i = source.indexOf('"@', i) + 2;
        line++;
        return;
      }
      if (c === "$" && at(1) === "(") {
        i += 2;
        const inner = lexCode(")");
        if (!inner) { problems.push({ line: startLine, message: "unclosed $( ) in a string" }); return; }
        continue;
      }
      if (c === "$") {
        const match = /^\$(?:\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*:)?([A-Za-z0-9_?]+))/.exec(source.slice(i));
        if (match) { i += match[0].length; continue; }
      }
      i++;
    }
    problems.push({ line: startLine, message: close === '"' ? "unterminated double-quoted string" : 'unterminated @" here-string' });
  }

  // Lexes code until the bracket `until` closes the construct that called it (or the end).
  function lexCode(until: string | null): boolean {
    const base = stack.length;
    while (i < source.length) {
      const c = at();
      if (c === "\n") { push("newline", "\n"); line++; i++; continue; }
      if (c === " " || c === "\t" || c === "\r") { i++; continue; }
      if (c === "`") { if (at(1) === "\n") line++; i += 2; continue; }
      if (c === "<" && at(1) === "#") {
        const end = source.indexOf("#>", i + 2);
        if (end < 0) { problems.push({ line, message: "unterminated <# block comment" }); i = source.length; break; }
        line += source.slice(i, end).split("\n").length - 1;
        i = end + 2;
        continue;
      }
      if (c === "#") { while (i < source.length && at() !== "\n") i++; continue; }
      if (c === "@" && (at(1) === "'" || at(1) === '"') && /^[ \t]*\r?\n/.test(source.slice(i + 2))) {
        const quote = at(1);
        const startLine = line;
        if (quote === "'") {
          const end = /\n[ \t]*'@/.exec(source.slice(i));
          if (!end) { problems.push({ line, message: "unterminated @' here-string" }); i = source.length; break; }
          line += source.slice(i, i + end.index + end[0].length).split("\n").length - 1;
          i += end.index + end[0].length;
        } else {
          i += 2;
          skipDoubleQuoted('"@');
        }
        tokens.push({ kind: "string", text: "@string", line: startLine, depth: stack.length });
        continue;
      }
      if (c === "'") {
        const startLine = line;
        i++;
        for (;;) {
          if (i >= source.length) { problems.push({ line: startLine, message: "unterminated single-quoted string" }); break; }
          if (at() === "\n") line++;
          if (at() === "'") { if (at(1) === "'") { i += 2; continue; } i++; break; }
          i++;
        }
        tokens.push({ kind: "string", text: "'", line: startLine, depth: stack.length });
        continue;
      }
      if (c === '"') {
        const startLine = line;
        i++;
        skipDoubleQuoted('"');
        tokens.push({ kind: "string", text: '"', line: startLine, depth: stack.length });
        continue;
      }
      if (c === "$" || c === "@") {
        if (at(1) === "(" || at(1) === "{") {
          push("open", at(1));
          stack.push({ char: at(1), line });
          i += 2;
          continue;
        }
      }
      if (c === "$") {
        const match = /^\$(?:\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*):(?=[A-Za-z_])([A-Za-z0-9_]+)|([A-Za-z0-9_]+|[$?^]))/.exec(source.slice(i));
        if (match) {
          const scope = match[2]?.toLowerCase();
          const name = match[1] ?? match[3] ?? match[4] ?? "";
          // $env:NAME is an environment variable, not a PowerShell variable.
          if (scope !== "env") tokens.push({ kind: "var", text: name, line, depth: stack.length });
          i += match[0].length;
          continue;
        }
      }
      if (c in OPENERS) { push("open", c); stack.push({ char: c, line }); i++; continue; }
      if (c === ")" || c === "}" || c === "]") {
        const top = stack[stack.length - 1];
        if (stack.length === base && until !== null && c === until) { i++; return true; }
        if (!top || OPENERS[top.char] !== c) {
          problems.push({ line, message: `unbalanced "${c}"${top ? ` (expected "${OPENERS[top.char]}" for the "${top.char}" of line ${top.line})` : ""}` });
          i++;
          continue;
        }
        stack.pop();
        push("close", c);
        i++;
        continue;
      }
      const word = /^[A-Za-z_][A-Za-z0-9_.-]*/.exec(source.slice(i));
      if (word) { push("word", word[0]); i += word[0].length; continue; }
      const op = /^(?:\?\?=|[+\-*/%]=|=|;|,|\||\.)/.exec(source.slice(i));
      if (op) { push("op", op[0]); i += op[0].length; continue; }
      i++;
    }
    if (until !== null) return false;
    for (const open of stack.slice(base)) problems.push({ line: open.line, message: `unclosed "${open.char}"` });
    return true;
  }

  lexCode(null);
  return tokens;
}

/** Problems of one PowerShell script. */
export function lintPowerShell(source: string): LintProblem[] {
  const problems: LintProblem[] = [];
  if (!source.startsWith("\ufeff") && /[^\x00-\x7f]/.test(source)) {
    const lineNo = source.split("\n").findIndex((l) => /[^\x00-\x7f]/.test(l)) + 1;
    problems.push({ line: lineNo, message: "non-ASCII character in a file without a UTF-8 byte order mark (Windows PowerShell 5.1 would read it as ANSI)" });
  }
  const tokens = tokenize(source.replace(/^\ufeff/, ""), problems);
  const automatic = (name: string) => AUTOMATIC_VARIABLES.has(name.toLowerCase());

  // Statement starts: the first token, and each token after a newline, ";" or "{" (skipping
  // attribute lines such as [CmdletBinding()] before param).
  for (const [index, token] of tokens.entries()) {
    if (token.kind !== "word" || token.text.toLowerCase() !== "param" || tokens[index + 1]?.text !== "(") continue;
    let j = index - 1;
    let attributeDepth = 0;
    // Walk back over newlines and whole [attribute] groups to what precedes param.
    while (j >= 0) {
      const previous = tokens[j]!;
      if (previous.kind === "newline") { j--; continue; }
      if (previous.kind === "close" && previous.text === "]") { attributeDepth++; j--; continue; }
      if (attributeDepth > 0) {
        if (previous.kind === "open" && previous.text === "[") attributeDepth--;
        j--;
        continue;
      }
      break;
    }
    const before = j >= 0 ? tokens[j]! : null;
    const first = before === null || (before.kind === "open" && before.text === "{");
    if (!first) problems.push({ line: token.line, message: "param( ) must be the first statement of the script, function or script block" });
  }

  // Parameter names: variables directly inside param( … ) or function f( … ), not after "=".
  for (const [index, token] of tokens.entries()) {
    const isParam = token.kind === "word" && token.text.toLowerCase() === "param" && tokens[index + 1]?.text === "(";
    const isFunction = token.kind === "word" && /^(function|filter)$/i.test(token.text) && tokens[index + 2]?.text === "(";
    if (!isParam && !isFunction) continue;
    const openIndex = index + (isParam ? 1 : 2);
    const depth = tokens[openIndex]!.depth + 1;
    for (let k = openIndex + 1; k < tokens.length; k++) {
      const inner = tokens[k]!;
      if (inner.depth < depth || (inner.kind === "close" && inner.depth === depth - 1)) break;
      if (inner.kind !== "var" || inner.depth !== depth) continue;
      let p = k - 1;
      while (p > openIndex && tokens[p]!.kind === "newline") p--;
      if (tokens[p]!.text === "=") continue;
      if (automatic(inner.text)) problems.push({ line: inner.line, message: `parameter $${inner.text} is an automatic variable of PowerShell; choose another name` });
    }
  }

  // Variables assigned, used as foreach variables, or named to Set-Variable/New-Variable.
  for (const [index, token] of tokens.entries()) {
    if (token.kind === "var" && automatic(token.text)) {
      const next = tokens[index + 1];
      if (next?.kind === "op" && /^(?:=|[+\-*/%]=|\?\?=)$/.test(next.text)) {
        problems.push({ line: token.line, message: `$${token.text} is an automatic variable of PowerShell; assign to another name` });
      }
      const previous = tokens[index - 1];
      const beforeThat = tokens[index - 2];
      if (previous?.text === "(" && beforeThat?.kind === "word" && beforeThat.text.toLowerCase() === "foreach" && tokens[index + 1]?.text.toLowerCase() === "in") {
        problems.push({ line: token.line, message: `$${token.text} is an automatic variable of PowerShell; use another foreach variable` });
      }
    }
    if (token.kind === "word" && /^(set|new)-variable$/i.test(token.text)) {
      for (let k = index + 1; k < tokens.length && tokens[k]!.kind !== "newline" && tokens[k]!.text !== ";"; k++) {
        const candidate = tokens[k]!;
        if (candidate.kind === "word" && automatic(candidate.text.replace(/^-?name$/i, ""))) {
          problems.push({ line: candidate.line, message: `${token.text} names the automatic variable $${candidate.text}` });
        }
      }
    }
  }
  // A parameter declared with a default is also an assignment: report each place once.
  const seen = new Set<string>();
  return problems
    .filter((p) => {
      const key = `${p.line}:${/\$(\S+)/.exec(p.message)?.[1] ?? p.message}`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    })
    .sort((a, b) => a.line - b.line);
}

/** Problems of one batch file (.cmd/.bat), given its raw text (line ends matter). */
export function lintBatch(source: string): LintProblem[] {
  const problems: LintProblem[] = [];
  const lines = source.split("\n");
  if (lines.at(-1) === "") lines.pop();
  const labels = new Set(["eof"]);
  const jumps: Array<{ label: string; line: number }> = [];
  let depth = 0;
  const firstCode = lines.findIndex((l) => l.trim() !== "");
  if (firstCode < 0 || lines[firstCode]!.trim().toLowerCase() !== "@echo off") {
    problems.push({ line: firstCode + 1, message: "the first line must be @echo off" });
  }
  for (const [index, raw] of lines.entries()) {
    const lineNo = index + 1;
    if (!raw.endsWith("\r")) problems.push({ line: lineNo, message: "line ends with LF only; batch files need CRLF (see .gitattributes)" });
    const text = raw.replace(/\r$/, "");
    const trimmed = text.trim();
    if (/^(rem(\s|$)|::)/i.test(trimmed) || trimmed === "") continue;
    if (trimmed.startsWith(":")) { labels.add(trimmed.slice(1).split(/\s/)[0]!.toLowerCase()); continue; }
    if ((text.match(/"/g) ?? []).length % 2 !== 0) problems.push({ line: lineNo, message: "unpaired double quote" });
    for (const jump of text.matchAll(/\b(?:goto\s+:?|call\s+:)([A-Za-z0-9_.-]+)/gi)) jumps.push({ label: jump[1]!.toLowerCase(), line: lineNo });
    let quoted = false;
    for (let k = 0; k < text.length; k++) {
      const c = text[k];
      if (c === '"') quoted = !quoted;
      else if (!quoted && c === "^") k++;
      else if (!quoted && c === "(") depth++;
      else if (!quoted && c === ")") {
        depth--;
        if (depth < 0) { problems.push({ line: lineNo, message: 'unbalanced ")"' }); depth = 0; }
      }
    }
  }
  if (depth > 0) problems.push({ line: lines.length, message: `${depth} "(" not closed by the end of the file` });
  for (const jump of jumps) {
    if (!labels.has(jump.label)) problems.push({ line: jump.line, message: `no label :${jump.label} for goto/call` });
  }
  return problems.sort((a, b) => a.line - b.line);
}

/** Problems of a file, by its extension; null when it is not a Windows script. */
export function lintFile(path: string, source: string): LintProblem[] | null {
  if (/\.ps1$/i.test(path)) return lintPowerShell(source);
  if (/\.(cmd|bat)$/i.test(path)) return lintBatch(source);
  return null;
}

/** Every .ps1, .cmd and .bat git tracks in `repo`. */
export function windowsScripts(repo: string): string[] {
  return execFileSync("git", ["-C", repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "*.ps1", "*.cmd", "*.bat", "**/*.ps1", "**/*.cmd", "**/*.bat"], { encoding: "utf8" })
    .split("\0").filter(Boolean).filter((path, index, all) => all.indexOf(path) === index).sort();
}

if (import.meta.main) {
  const repo = join(import.meta.dirname, "..");
  const files = process.argv.length > 2 ? process.argv.slice(2) : windowsScripts(repo).map((f) => join(repo, f));
  let count = 0;
  for (const file of files) {
    for (const problem of lintFile(file, readFileSync(file, "utf8")) ?? []) {
      process.stdout.write(`${file}:${problem.line}: ${problem.message}\n`);
      count++;
    }
  }
  process.stdout.write(`${files.length} script(s) checked, ${count} problem(s)\n`);
  process.exitCode = count > 0 ? 1 : 0;
}
