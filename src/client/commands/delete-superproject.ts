/**
 * `cws delete-superproject-server`: remove a superproject and its history from the server.
 * Local folders are never touched; this device's binding is dropped. Without --force it asks
 * the person to type the name, and without a terminal it refuses.
 */
import { CwsError } from "../../errors.ts";
import { ask } from "../../terminal/prompt.ts";
import type { AgentConnection } from "../../transport/connection.ts";
import type { StateStore } from "../state.ts";
import { checkSlug, disconnectSuperproject } from "./superprojects.ts";

export async function deleteSuperprojectServer(conn: AgentConnection, state: StateStore, slugInput: string, options: { force?: boolean } = {}): Promise<{ slug: string; snapshots: number | null; unbound: boolean }> {
  const slug = checkSlug(slugInput);
  const { superprojects } = await conn.call("listSuperprojects", {});
  const remote = superprojects.find((s) => s.slug === slug);
  if (remote === undefined) throw new CwsError("NOT_FOUND", `The server has no superproject named ${slug}.`);
  if (!options.force) {
    if (!process.stdin.isTTY) {
      throw new CwsError("INVALID_ARGUMENT", `Deleting ${slug} from the server removes its whole history. Pass --force to do it without a terminal.`);
    }
    const typed = await ask(`This deletes ${slug} and all its checkpoints from the server (local folders stay). Type the name to confirm`);
    if (typed !== slug) throw new CwsError("CANCELLED", "The name did not match; nothing was deleted.");
  }
  await conn.call("deleteSuperproject", { slug });
  const bound = state.data.superprojects[slug] !== undefined;
  if (bound) await disconnectSuperproject(state, slug);
  return { slug, snapshots: remote.head, unbound: bound };
}
