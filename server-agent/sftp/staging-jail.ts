/**
 * The only places a restricted SFTP session may touch: the files directly inside
 * `<data>/staging/incoming` and `<data>/staging/outgoing`, and those two folders themselves.
 *
 * A client path is resolved lexically (absolute, or relative to the incoming folder, which is
 * the session's "home"), normalised, and must then name one of the two folders or a direct
 * child of one with a plain bundle name. Nothing is resolved on disk here: the caller opens
 * the file with O_NOFOLLOW, so a symlink planted in a staging folder is never followed.
 */
import { realpathSync, statSync } from "node:fs";
import path from "node:path";

/** A bundle name, as in src/protocol/messages.ts (BundleName) and the store's safe-path.ts. */
const BUNDLE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** Uploads are written as `<bundle name>.part` first (see src/transport/sftp-transfer.ts). */
const PART_SUFFIX = ".part";

export type StagingArea = "incoming" | "outgoing";

/** Where a client path leads inside the jail. */
export type JailTarget =
  | { kind: "folder"; area: StagingArea; fsPath: string; clientPath: string }
  | { kind: "file"; area: StagingArea; name: string; fsPath: string; clientPath: string };

/** A path the jail refuses; `message` names the rule it broke (it is shown to the client). */
export class JailRefusal extends Error {
  constructor(message: string) {
    super(message);
    this.name = "JailRefusal";
  }
}

export interface StagingJail {
  /** The folders as the agent's hello names them (`<data>/staging/…`, resolved). */
  readonly incoming: string;
  readonly outgoing: string;
  /** Resolves a client path; see the module comment. @throws JailRefusal */
  resolve(clientPath: string): JailTarget;
}

/**
 * Builds the jail for a data dir whose staging folders exist. Both the folders' plain paths
 * and their real paths (the data dir may sit behind a symlink, e.g. /tmp on macOS) are
 * accepted from clients; the disk is always reached through the real path.
 *
 * @throws Error when a staging folder is missing or not a folder.
 */
export function openStagingJail(dataDir: string): StagingJail {
  const root = path.resolve(dataDir);
  const areas = (["incoming", "outgoing"] as const).map((area) => {
    const plain = path.join(root, "staging", area);
    let real: string;
    try {
      real = realpathSync(plain);
      if (!statSync(real).isDirectory()) throw new Error("not a folder");
    } catch (error) {
      throw new Error(
        `Cannot serve SFTP as the staging folder ${plain} is missing or not a folder (${(error as Error).message}): ` +
          "run `cws-server init` (or start the agent once) with this data dir",
        { cause: error },
      );
    }
    return { area, plain, real, prefixes: [...new Set([plain, real])] };
  });
  const [incoming, outgoing] = areas;

  return {
    incoming: incoming.plain,
    outgoing: outgoing.plain,
    resolve(clientPath: string): JailTarget {
      if (clientPath.includes("\0")) throw new JailRefusal("a path may not contain NUL");
      const absolute = path.posix.normalize(
        clientPath.startsWith("/") ? clientPath : path.posix.join(incoming.plain, clientPath === "" ? "." : clientPath),
      );
      const trailingSlash = absolute.length > 1 && absolute.endsWith("/");
      const candidate = trailingSlash ? absolute.slice(0, -1) : absolute;
      for (const { area, real, prefixes } of areas) {
        for (const prefix of prefixes) {
          if (candidate === prefix) return { kind: "folder", area, fsPath: real, clientPath };
          if (path.posix.dirname(candidate) !== prefix) continue;
          if (trailingSlash) throw new JailRefusal(`"${shown(clientPath)}" ends in "/" but staging holds only files`);
          const name = path.posix.basename(candidate);
          if (!isStagingName(name)) {
            throw new JailRefusal(
              `"${shown(name)}" is not a bundle name (1-128 letters, digits, ".", "_" or "-", no "..", optionally ".part")`,
            );
          }
          return { kind: "file", area, name, fsPath: path.join(real, name), clientPath };
        }
      }
      throw new JailRefusal(
        `"${shown(clientPath)}" is outside the staging folders: this key may only reach files directly in ${incoming.plain} and ${outgoing.plain}`,
      );
    },
  };
}

/** True for a bundle name, or a bundle name with the upload's `.part` suffix. */
export function isStagingName(name: string): boolean {
  const base = name.endsWith(PART_SUFFIX) && name.length > PART_SUFFIX.length ? name.slice(0, -PART_SUFFIX.length) : name;
  return (BUNDLE_NAME.test(name) || BUNDLE_NAME.test(base)) && !name.includes("..");
}

/** A client-supplied string, shortened and stripped of control characters for a message. */
function shown(value: string): string {
  const clean = value.replace(/[\u0000-\u001f\u007f"]/g, "?");
  return clean.length > 120 ? `${clean.slice(0, 117)}...` : clean;
}
