/**
 * Path checks for every name that reaches the store from a peer or from a directory listing.
 * A name is one path segment from a small alphabet; the path built from it is resolved and
 * must stay inside its root. Both checks are cheap, and together they make a crafted name
 * (`../x`, `a/b`, an absolute path, NUL) unable to reach outside the data dir.
 */
import { resolve, sep } from "node:path";
import { CwsError } from "../../src/errors.ts";

/** A staging file name: what protocol/messages.ts calls BundleName, without `..` anywhere. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/**
 * Checks that `name` is a plain file name fit for a staging folder.
 *
 * @throws CwsError INVALID_PATH otherwise.
 */
export function checkFileName(name: string, what = "file name"): string {
  if (typeof name !== "string" || !NAME.test(name) || name.includes("..")) {
    throw new CwsError(
      "INVALID_PATH",
      `Cannot use ${what} ${JSON.stringify(String(name).slice(0, 200))} as it is not a plain name (1-128 letters, digits, ".", "_" or "-", no "..")`,
    );
  }
  return name;
}

/**
 * Joins `segments` onto `root` and checks the result stays inside `root` (an absolute,
 * already-resolved path).
 *
 * @throws CwsError INVALID_PATH if it escapes.
 */
export function inside(root: string, ...segments: string[]): string {
  const path = resolve(root, ...segments);
  if (path !== root && !path.startsWith(root.endsWith(sep) ? root : root + sep)) {
    throw new CwsError("INVALID_PATH", `Cannot use path ${JSON.stringify(segments.join("/"))} as it leads outside the store`);
  }
  return path;
}
