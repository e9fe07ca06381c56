/**
 * Manifests stored as objects: a tree of folder objects (manifest-tree.ts), each validated
 * whenever read back, so a damaged object is reported, never used. Manifests stored whole by
 * earlier versions are still read. These two calls are for whole manifests (a first push, a
 * pull of a whole tree, tests); commits work on the tree itself through `ManifestTrees`.
 */
import type { Manifest } from "../../src/core/manifest.ts";
import { ManifestTrees } from "./manifest-tree.ts";
import type { Store } from "./store.ts";

/** Stores a whole manifest as a tree; returns its root's hash (what a snapshot names). */
export async function putManifest(store: Store, manifest: Manifest): Promise<string> {
  return new ManifestTrees(store).putManifest(manifest);
}

/** Reads the whole manifest a snapshot names, from either stored form. */
export async function getManifest(store: Store, hash: string): Promise<Manifest> {
  return new ManifestTrees(store).getManifest(hash);
}
