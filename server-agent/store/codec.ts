/**
 * The seam for encryption at rest. Payloads are plaintext on the server in this version
 * (DESIGN.md §10), but every byte the store writes to a pack record or an object file, and
 * every byte it reads back, passes through an `AtRestCodec`, so a sealing codec (e.g. an
 * AEAD keyed from the server's secondary passphrase) can be added without touching the pack
 * layout code or the callers.
 *
 * NOTE: A sealing codec makes a record's stored bytes longer than its compressed payload. The
 * pack format is the bundle format, which requires `storedLength === rawLength` for records
 * without FLAG_ZSTD and allows at most MAX_STORED_OVERHEAD_BYTES of growth, so such a codec
 * must also claim a record flag bit (e.g. 0x02 "sealed") in src/protocol/bundle.ts and have
 * `Store.verifyAll` read packs with it. The plain codec needs none of that.
 */

/** What a sealed payload belongs to, so a codec can bind ciphertext to it (AEAD associated data). */
export interface CodecContext {
  /** A chunk in a pack, or a metadata object. */
  kind: "chunk" | "object";
  /** The chunk id or the object hash. */
  id: string;
}

/** Transforms payloads on their way to and from the disk. Must be deterministic in `open`. */
export interface AtRestCodec {
  /** A short name, for logs and `cws-server status`. */
  readonly name: string;
  /** Turns an encoded payload (already compressed or not) into the bytes written to disk. */
  seal(payload: Uint8Array, context: CodecContext): Uint8Array;
  /** Inverse of `seal`; throws CwsError CORRUPT if the bytes fail authentication. */
  open(sealed: Uint8Array, context: CodecContext): Uint8Array;
}

/** The identity codec: payloads are stored as they are. */
export const plainCodec: AtRestCodec = {
  name: "plain",
  seal: (payload) => payload,
  open: (sealed) => sealed,
};
