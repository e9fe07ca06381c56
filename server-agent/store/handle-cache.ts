/**
 * A small cache of open pack files. Reading a chunk is one positioned read; opening the pack
 * every time would triple the syscalls. Handles in use are never closed under their users;
 * idle ones are closed least-recently-used first once the cache is over its size.
 *
 * A pack deleted by another process stays readable through a handle opened before (POSIX
 * unlink semantics), and its content never changes, so a cached handle is never stale.
 */
import { open } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";

interface Slot {
  handle: Promise<FileHandle>;
  users: number;
  evicted: boolean;
}

export class HandleCache {
  #max: number;
  // Map order is the LRU order: a used slot is moved to the end.
  #slots = new Map<string, Slot>();

  constructor(max: number) {
    this.#max = max;
  }

  /** Runs `fn` with an open read-only handle on `path`. */
  async use<T>(path: string, fn: (handle: FileHandle) => Promise<T>): Promise<T> {
    let slot = this.#slots.get(path);
    if (slot === undefined) {
      slot = { handle: open(path, "r"), users: 0, evicted: false };
      // A failed open is not cached: the next call tries again.
      slot.handle.catch(() => this.#slots.get(path) === slot && this.#slots.delete(path));
    } else {
      this.#slots.delete(path);
    }
    this.#slots.set(path, slot);
    slot.users++;
    try {
      return await fn(await slot.handle);
    } finally {
      slot.users--;
      if (slot.evicted && slot.users === 0) await closeSlot(slot);
      await this.#trim();
    }
  }

  /** Closes the handle on `path` once nobody uses it (the file is being deleted). */
  async evict(path: string): Promise<void> {
    const slot = this.#slots.get(path);
    if (slot === undefined) return;
    this.#slots.delete(path);
    slot.evicted = true;
    if (slot.users === 0) await closeSlot(slot);
  }

  /** Closes every idle handle and marks busy ones to close when released. */
  async closeAll(): Promise<void> {
    await Promise.all([...this.#slots.keys()].map((path) => this.evict(path)));
  }

  async #trim(): Promise<void> {
    for (const [path, slot] of this.#slots) {
      if (this.#slots.size <= this.#max) return;
      if (slot.users > 0) continue;
      this.#slots.delete(path);
      await closeSlot(slot);
    }
  }
}

async function closeSlot(slot: Slot): Promise<void> {
  await slot.handle.then((handle) => handle.close()).catch(() => {});
}
