/**
 * xxh64 content hashes, as cws uses them for chunk ids and whole-file checks: seed 0, printed
 * as 16 lower-case, zero-padded hex digits.
 *
 * `xxhash-wasm` must be instantiated once (asynchronously) before its functions can be called
 * synchronously. This module does that with a top-level await, so a plain import is enough;
 * `initHash()` is exported as well so callers can make the dependency explicit, and it is
 * idempotent.
 *
 * NOTE: xxhash-wasm copies every input into its linear WebAssembly memory, and that memory
 * grows to the largest input it has seen and never shrinks. Large inputs are therefore fed in
 * pieces of at most {@linkcode HASH_PIECE_BYTES}, which keeps the wasm memory at about 1 MiB no
 * matter how big a file is, and costs nothing extra (the library copies anyway).
 */
import xxhash from "xxhash-wasm";
import type { XXHashAPI } from "xxhash-wasm";

/** The largest piece handed to the wasm module in one call, in bytes. */
export const HASH_PIECE_BYTES = 1024 * 1024;

let api: XXHashAPI | undefined;
let loading: Promise<XXHashAPI> | undefined;

/** Instantiates the wasm module once; later calls return at once. */
export async function initHash(): Promise<void> {
  if (api !== undefined) return;
  loading ??= xxhash();
  api = await loading;
}

await initHash();

function hashApi(): XXHashAPI {
  // The top-level await above has always run before any importer can call us.
  if (api === undefined) throw new Error("xxhash-wasm is not initialised: await initHash() first");
  return api;
}

/** Formats a 64-bit hash as 16 lower-case hex digits, zero-padded. */
function toHex(value: bigint): string {
  return value.toString(16).padStart(16, "0");
}

/** A streaming xxh64: feed bytes in any split, then read the digest once. */
export interface Xxh64 {
  update(bytes: Uint8Array): void;
  digestHex(): string;
}

/**
 * Returns a streaming xxh64 hasher (seed 0). Several hashers may be used interleaved: each
 * keeps its own state and restores it into the shared wasm memory on every update.
 */
export function createXxh64(): Xxh64 {
  const state = hashApi().create64(0n);
  return {
    update(bytes: Uint8Array): void {
      for (let offset = 0; offset < bytes.byteLength; offset += HASH_PIECE_BYTES) {
        // subarray is a view, not a copy; the library copies it into wasm memory once.
        state.update(bytes.subarray(offset, Math.min(offset + HASH_PIECE_BYTES, bytes.byteLength)));
      }
    },
    digestHex(): string {
      return toHex(state.digest());
    },
  };
}

/**
 * Returns the xxh64 (seed 0) of `bytes` as 16 lower-case hex digits.
 *
 * @example xxh64Hex(new Uint8Array()) === "ef46db3751d8e999"
 */
export function xxh64Hex(bytes: Uint8Array): string {
  if (bytes.byteLength <= HASH_PIECE_BYTES) return toHex(hashApi().h64Raw(bytes, 0n));
  const hasher = createXxh64();
  hasher.update(bytes);
  return hasher.digestHex();
}
