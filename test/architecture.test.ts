/**
 * The layering rules of docs/architecture.md, checked on the source: core stays pure, and
 * the client side never reaches into the server side.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join, relative } from "node:path";

const REPO = join(import.meta.dirname, "..");

async function sources(dir: string): Promise<string[]> {
  const names = await readdir(join(REPO, dir), { recursive: true });
  return names.filter((n) => n.endsWith(".ts") && !n.endsWith(".test.ts")).map((n) => join(REPO, dir, n));
}

const IMPORT = /(?:^|\n)\s*(?:import|export)[^"'\n]*?from\s+["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g;

function importsOf(source: string): string[] {
  return [...source.matchAll(IMPORT)].map((m) => m[1] ?? m[2]);
}

test("core imports no I/O module and no outer layer", async () => {
  const forbidden = /^(node:)?(fs|fs\/promises|net|child_process|sqlite|http|https|dgram|worker_threads)$|^\.\.\/(client|transport|cli|protocol)\/|server-agent/;
  for (const file of await sources("src/core")) {
    const source = await readFile(file, "utf8");
    for (const specifier of importsOf(source)) {
      assert.doesNotMatch(specifier, forbidden, `${relative(REPO, file)} imports ${specifier}`);
    }
    assert.doesNotMatch(source, /Date\.now\(\)|new Date\(\)/, `${relative(REPO, file)} reads the clock`);
  }
});

test("the client side never imports the server side", async () => {
  for (const file of await sources("src")) {
    for (const specifier of importsOf(await readFile(file, "utf8"))) {
      assert.doesNotMatch(specifier, /server-agent/, `${relative(REPO, file)} imports ${specifier}`);
    }
  }
});

test("only the hub opens the SQLite database", async () => {
  for (const dir of ["src", "server-agent"]) {
    for (const file of await sources(dir)) {
      const source = await readFile(file, "utf8");
      if (!source.includes("node:sqlite")) continue;
      assert.match(relative(REPO, file), /^server-agent\/hub\//, `${relative(REPO, file)} uses node:sqlite`);
    }
  }
});
