/**
 * Manifests stored as objects: canonical JSON, content-addressed by its xxh64, validated with
 * the Manifest schema whenever read back, so a damaged object is reported, never used.
 */
import { CwsError } from "../../src/errors.ts";
import type { Manifest } from "../../src/core/manifest.ts";
import { safeParseManifest } from "../../src/core/manifest-check.ts";
import type { Store } from "./store.ts";

export async function putManifest(store: Store, manifest: Manifest): Promise<string> {
  return store.putObject(Buffer.from(JSON.stringify(manifest)));
}

export async function getManifest(store: Store, hash: string): Promise<Manifest> {
  const raw = await store.getObject(hash);
  // The hand-written check gives the schema's own result, without copying every entry.
  const parsed = safeParseManifest(JSON.parse(Buffer.from(raw).toString("utf8")));
  if (!parsed.success) {
    throw new CwsError("CORRUPT", `Stored manifest ${hash} is not a valid manifest (${parsed.error.issues[0]?.message}). Run \`cws-server verify\`.`);
  }
  return parsed.data;
}
