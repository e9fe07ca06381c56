/**
 * Starts one of cws's TypeScript entry points with Node 24, from whatever `node` ran this file.
 *
 * The entry points are `.ts` files run by Node 24's type stripping, but the `node` on a user's
 * PATH is often older (Debian 12 ships Node 18, many machines have 20), and `npm ci` puts Node
 * 24 only into this checkout's `node_modules`. A global `cws` command (`npm install -g .`)
 * runs with the PATH's node, so these launchers are plain JavaScript that any Node since 18
 * can run: on Node 24 they import the entry in-process; otherwise they run the checkout's own
 * Node 24 on it as a child, passing the terminal, arguments and exit status through.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

/** Node's main module is resolved through symlinks, so this is the checkout even via a global link. */
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** The first Node major version that runs the entry points (type stripping, node:sqlite). */
const NEEDED_MAJOR = 24;

/** Runs `entry` (relative to the checkout) with Node 24. */
export async function launch(entry) {
  const file = path.join(REPO, entry);
  if (Number(process.versions.node.split(".")[0]) >= NEEDED_MAJOR) {
    await import(pathToFileURL(file).href);
    return;
  }
  const node = checkoutNode();
  if (node === undefined) {
    process.stderr.write(
      `cws needs Node ${NEEDED_MAJOR}, and this is Node ${process.versions.node}. Run \`npm ci\` in ${REPO} ` +
        `(it installs Node ${NEEDED_MAJOR} into node_modules), or install Node ${NEEDED_MAJOR}.\n`,
    );
    process.exit(1);
  }
  const child = spawn(node, [file, ...process.argv.slice(2)], { stdio: "inherit" });
  // Ctrl+C reaches the whole foreground process group, the child included, which handles it
  // (a clean stop of live sync); this process only waits for the child's own exit.
  process.on("SIGINT", () => {});
  for (const signal of ["SIGTERM", "SIGHUP"]) process.on(signal, () => child.kill(signal));
  child.on("error", (error) => {
    process.stderr.write(`cws: cannot start ${node}: ${error.message}\n`);
    process.exit(1);
  });
  child.on("exit", (code, signal) => {
    if (signal !== null) {
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
    }
    process.exit(code ?? 1);
  });
}

/** The Node binary `npm ci` installed (the `node` devDependency), if any. */
function checkoutNode() {
  const binary = path.join(REPO, "node_modules", "node", "bin", process.platform === "win32" ? "node.exe" : "node");
  return existsSync(binary) ? binary : undefined;
}
