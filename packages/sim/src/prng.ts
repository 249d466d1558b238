import { uniformFloat64 } from "pure-rand/distribution/uniformFloat64";
import { uniformInt } from "pure-rand/distribution/uniformInt";
import { xoroshiro128plusFromState } from "pure-rand/generator/xoroshiro128plus";
import type { JumpableRandomGenerator } from "pure-rand/types/JumpableRandomGenerator";

/** Seeds are unsigned 32-bit integers so they are short to print and to paste back. */
export function normalizeSeed(seed: number): number {
  if (!Number.isFinite(seed)) throw new RangeError(`seed must be a finite number, got ${seed}`);
  return Math.trunc(seed) >>> 0;
}

/** murmur3's finalizer: a cheap bijective 32-bit mix, so neighbouring seeds give unrelated streams. */
function fmix32(h: number): number {
  let x = h | 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x | 0;
}

/** FNV-1a over UTF-16 code units; only used to turn fork labels into numbers. */
function hashString(s: string, h0: number): number {
  let h = h0 ^ 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h | 0;
}

/**
 * A seeded pseudo-random stream (xoroshiro128+ from pure-rand). The only source of randomness
 * in a simulation: every fault, delay and choice is drawn from one of these, so a seed replays.
 *
 * `fork(label)` derives a child stream from the root seed and the label path only, never from
 * how many numbers this stream has drawn: adding a draw in the network does not shift the
 * crash schedule, so a failing seed keeps failing the same way after unrelated edits.
 */
export class Prng {
  readonly seed: number;
  /** Fork labels from the root, joined with "/"; "" for the root stream. */
  readonly path: string;
  private readonly rng: JumpableRandomGenerator;

  constructor(seed: number, path = "") {
    this.seed = normalizeSeed(seed);
    this.path = path;
    // xoroshiro128plus(seed) puts the seed straight into the state, and nearby seeds then
    // start with nearly equal outputs; hashing (seed, path) into all 128 bits avoids that.
    const base = hashString(path, fmix32(this.seed ^ 0x9e3779b9));
    const state: number[] = [0, 1, 2, 3].map((i) => fmix32(base + Math.imul(i + 1, 0x9e3779b9) + this.seed));
    if (state.reduce((a, w) => a | w, 0) === 0) state[0] = 1; // all-zero is a fixed point
    this.rng = xoroshiro128plusFromState(state);
  }

  /** Uniform in [0, 1), 53 bits. */
  next(): number {
    return uniformFloat64(this.rng);
  }

  /** Uniform integer in [min, max], both inclusive. */
  int(min: number, max: number): number {
    if (!Number.isInteger(min) || !Number.isInteger(max) || max < min) {
      throw new RangeError(`int(${min}, ${max}): bounds must be integers with min <= max`);
    }
    return uniformInt(this.rng, min, max);
  }

  /** True with probability p. Always draws one number, so the stream shape does not depend on p. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError("pick() from an empty array");
    return items[this.int(0, items.length - 1)] as T;
  }

  /** Fisher-Yates in place; returns the same array. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(0, i);
      const tmp = items[i] as T;
      items[i] = items[j] as T;
      items[j] = tmp;
    }
    return items;
  }

  /** An independent stream determined by (root seed, path + label) alone. */
  fork(label: string): Prng {
    return new Prng(this.seed, this.path === "" ? label : `${this.path}/${label}`);
  }

  /** A `() => number` in [0, 1) for code that takes a `random` function (e.g. election jitter). */
  random(): () => number {
    return () => this.next();
  }
}
