/** The check that a server's store is whole after a test did its worst to it. */
import assert from "node:assert/strict";
import { Store } from "../../server-agent/store/store.ts";

/** Opens the store of a data dir, re-hashes everything in it, and asserts no problem was found. */
export async function verifyStore(dataDir: string): Promise<void> {
  const store = await Store.open(dataDir);
  try {
    const problems: unknown[] = [];
    await store.verifyAll((problem) => problems.push(problem));
    assert.deepEqual(problems, []);
  } finally {
    await store.close();
  }
}
