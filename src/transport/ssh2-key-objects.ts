/**
 * ssh2's AES-GCM ciphers with their keys as `KeyObject`s.
 *
 * ssh2's JavaScript path (the one every user gets, see docs/performance.md, "The SSH layer")
 * makes a new cipher object for every SSH packet it encrypts or decrypts with AES-GCM, as the
 * nonce changes with each packet, and it passes the key as a Buffer. Node then imports the
 * raw key into a new key object on every call: about 20–30 µs of CPU per packet, against 2–3 µs
 * when the key is already a `KeyObject` (measured with `createCipheriv("aes-128-gcm", …)` in a
 * loop on the benchmark machine). A 50,000-file pull decrypts tens of thousands of packets, and
 * its profile showed more than a second of the client's main thread in that key import
 * (`getKeyObjectSlots`, `getSlots`).
 *
 * ssh2 keeps the key in a field of its cipher objects and passes that field to
 * `createCipheriv`/`createDecipheriv`, which accept a `KeyObject` as well. So after every key
 * exchange (ssh2's "handshake" event, which comes after the first one and after each rekey,
 * once the new cipher objects are in place) the Buffer in that field is replaced by a
 * `KeyObject` of the same bytes. Nothing else reads those fields. If a later ssh2 renames them,
 * this does nothing and ssh2 works as before (only slower); `keyForms` lets a test notice.
 */
import { createSecretKey, type KeyObject } from "node:crypto";
import type { Client } from "ssh2";

/** Where ssh2 keeps each direction's cipher object, and the name of the key field in each. */
interface Ssh2Internals {
  _protocol?: {
    _cipher?: Record<string, unknown>;
    _decipher?: Record<string, unknown>;
  };
}

const ENCRYPT_KEY_FIELD = "_encKey";
const DECRYPT_KEY_FIELD = "_decipherKey";

/** What a direction's key is held as: "absent" for ciphers without such a field (other algorithms). */
export type KeyForm = "KeyObject" | "Buffer" | "absent";

/** Has every later key exchange of `client` leave its AES-GCM keys as `KeyObject`s. */
export function useKeyObjects(client: Client): void {
  client.on("handshake", () => {
    const protocol = (client as unknown as Ssh2Internals)._protocol;
    asKeyObject(protocol?._cipher, ENCRYPT_KEY_FIELD);
    asKeyObject(protocol?._decipher, DECRYPT_KEY_FIELD);
  });
}

/** How the connection's keys are held now (for tests: both "KeyObject" with an AES-GCM cipher). */
export function keyForms(client: Client): { encrypt: KeyForm; decrypt: KeyForm } {
  const protocol = (client as unknown as Ssh2Internals)._protocol;
  return { encrypt: formOf(protocol?._cipher?.[ENCRYPT_KEY_FIELD]), decrypt: formOf(protocol?._decipher?.[DECRYPT_KEY_FIELD]) };
}

function asKeyObject(cipher: Record<string, unknown> | undefined, field: string): void {
  const key = cipher?.[field];
  // Only AES keys (16 or 32 bytes) of the AES-GCM classes have these fields; anything else stays as it is.
  if (Buffer.isBuffer(key) && (key.length === 16 || key.length === 32)) cipher![field] = createSecretKey(key) satisfies KeyObject;
}

function formOf(key: unknown): KeyForm {
  if (Buffer.isBuffer(key)) return "Buffer";
  if (key !== null && typeof key === "object" && (key as KeyObject).type === "secret") return "KeyObject";
  return "absent";
}
