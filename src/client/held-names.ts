/**
 * The device's side of names that travel (DESIGN §6, core/portable-names.ts): before a sync
 * plans, entries that cannot travel are taken out of it. A local one stays on this device and
 * is listed with a warning while the rest syncs; one the server head already holds (an older
 * server let it in) is left where it is, neither pulled nor deleted, and listed with the next
 * step. Neither is read as a delete: the plan does not see the path on any side, and the
 * merged tree gets the server's entry (if any) back before it is committed.
 */
import type { Manifest } from "../core/manifest.ts";
import { holdUntravelable } from "../core/portable-names.ts";
import type { ScanProblem } from "./scanner.ts";

/** The three views of a sync with every untravelable path settled, and the warnings to list. */
export function holdNamesThatCannotTravel(
  slug: string,
  views: { local: Manifest; server: Manifest; base: Manifest },
): { local: Manifest; server: Manifest; base: Manifest; restore: (merged: Manifest) => Manifest; problems: ScanProblem[] } {
  const { local, server, base, held, restore } = holdUntravelable(views.local, views.server, views.base);
  const problems: ScanProblem[] = [
    ...held.local.map((p) => ({
      path: p.path,
      reason: `kept on this device and not synced, as not every device can hold it (${p.rule}): ${p.reason}; rename it to sync it`,
    })),
    ...held.server.map((p) => ({
      path: p.path,
      reason: `the server's head holds it, but not every device can (${p.rule}): ${p.reason}; it was left alone here. Rename it on the device that has it, or run \`cws restore ${slug}\` to go back to a snapshot without it`,
    })),
  ];
  return { local, server, base, restore, problems };
}
