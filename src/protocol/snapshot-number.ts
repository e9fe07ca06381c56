/** How a snapshot is named to people; apart from messages.ts so that output code need not load zod. */
import type { SnapshotInfo } from "./messages.ts";

/** The number people see for a snapshot: its number within the superproject (the id from an older hub). */
export function snapshotNumber(snapshot: Pick<SnapshotInfo, "id" | "number">): number {
  return snapshot.number ?? snapshot.id;
}
