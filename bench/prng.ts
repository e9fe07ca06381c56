/**
 * A small seeded pseudo-random generator for the benchmark's data set. The data set must be
 * identical on every machine and every run, so nothing here reads Math.random or the clock.
 *
 * The generator is sfc32 (Chris Doty-Humphrey's "small fast counting" generator, 128 bits of
 * state), seeded through splitmix32 so that nearby seeds still give unrelated streams. It is
 * not cryptographic; it only has to be fast and reproducible.
 */

/** Mixes a 32-bit value (splitmix32's finaliser); used to derive seeds. */
function mix32(value: number): number {
  let z = (value + 0x9e3779b9) | 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/** Hashes a string to 32 bits (FNV-1a), so seeds can be derived from names such as paths. */
export function hashString(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/** A seeded generator of numbers, integers and choices. */
export class Prng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  /** Creates a generator from a seed and optional labels that select an independent stream. */
  constructor(seed: number, ...labels: (string | number)[]) {
    let state = mix32(seed >>> 0);
    for (const label of labels) state = mix32(state ^ (typeof label === "number" ? label >>> 0 : hashString(label)));
    this.#a = mix32(state);
    this.#b = mix32(this.#a ^ 0x1234567);
    this.#c = mix32(this.#b ^ 0x89abcdef);
    this.#d = 1;
    // The first outputs of sfc32 are correlated with the seed; discard them.
    for (let i = 0; i < 12; i++) this.nextUint32();
  }

  /** The next raw 32-bit unsigned value. */
  nextUint32(): number {
    const a = this.#a;
    const b = this.#b;
    const c = this.#c;
    const d = this.#d;
    const t = (((a + b) | 0) + d) | 0;
    this.#d = (d + 1) | 0;
    this.#a = b ^ (b >>> 9);
    this.#b = (c + (c << 3)) | 0;
    this.#c = (((c << 21) | (c >>> 11)) + t) | 0;
    return t >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    return this.nextUint32() / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** An integer in [min, max], both included. */
  range(min: number, max: number): number {
    return min + this.int(max - min + 1);
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  /** One element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T;
  }

  /** A standard normal deviate (Box–Muller). */
  normal(): number {
    const u = 1 - this.next();
    const v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  /** A log-normal value with the given median and spread (sigma of the underlying normal). */
  logNormal(median: number, sigma: number): number {
    return median * Math.exp(sigma * this.normal());
  }

  /** Fills a buffer with incompressible bytes. */
  fill(buffer: Uint8Array): Uint8Array {
    const whole = buffer.length & ~3;
    const view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
    for (let i = 0; i < whole; i += 4) view.setUint32(i, this.nextUint32(), true);
    for (let i = whole; i < buffer.length; i++) buffer[i] = this.nextUint32() & 0xff;
    return buffer;
  }

  /** A version-4-shaped UUID (deterministic, so not a real random UUID). */
  uuid(): string {
    const bytes = this.fill(new Uint8Array(16));
    bytes[6] = (bytes[6]! & 0x0f) | 0x40;
    bytes[8] = (bytes[8]! & 0x3f) | 0x80;
    const hex = Buffer.from(bytes).toString("hex");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }
}
