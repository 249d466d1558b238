/**
 * A small seeded PRNG (mulberry32). Fault injection and backoff jitter take their
 * randomness from an injected `() => number` so a test or a simulation can replay a run
 * exactly from its seed; `Math.random` is used only when a caller passes it explicitly.
 */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
