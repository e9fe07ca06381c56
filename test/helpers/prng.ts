/**
 * A seeded generator of floats in [0, 1) for tests, fuzzers and soaks: mulberry32, small, fast
 * and reproducible from one 32-bit seed, so a failure reproduces from the seed it prints.
 */
export function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
