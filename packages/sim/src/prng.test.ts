import { describe, expect, it } from "vitest";
import { Prng } from "./prng.js";

const draw = (p: Prng, n: number) => Array.from({ length: n }, () => p.next());

describe("Prng", () => {
  it("replays the same stream for the same seed and differs across seeds", () => {
    expect(draw(new Prng(42), 20)).toEqual(draw(new Prng(42), 20));
    expect(draw(new Prng(42), 20)).not.toEqual(draw(new Prng(43), 20));
  });

  it("next() stays in [0, 1) and int() covers both bounds", () => {
    const p = new Prng(7);
    const seen = new Set<number>();
    for (let i = 0; i < 2000; i++) {
      const x = p.next();
      expect(x).toBeGreaterThanOrEqual(0);
      expect(x).toBeLessThan(1);
      const k = p.int(3, 6);
      expect(k).toBeGreaterThanOrEqual(3);
      expect(k).toBeLessThanOrEqual(6);
      seen.add(k);
    }
    expect([...seen].sort()).toEqual([3, 4, 5, 6]);
    expect(() => p.int(5, 4)).toThrow(RangeError);
  });

  it("chance(p) is true about p of the time", () => {
    const p = new Prng(1);
    let hits = 0;
    for (let i = 0; i < 10_000; i++) if (p.chance(0.3)) hits++;
    expect(hits).toBeGreaterThan(2800);
    expect(hits).toBeLessThan(3200);
    expect(p.chance(0)).toBe(false);
    expect(p.chance(1)).toBe(true);
  });

  it("fork(label) depends on the seed and label, not on draws made before", () => {
    const a = new Prng(99);
    const b = new Prng(99);
    draw(b, 17); // extra randomness elsewhere must not perturb the forked stream
    expect(draw(a.fork("net"), 10)).toEqual(draw(b.fork("net"), 10));
    expect(draw(a.fork("net"), 10)).not.toEqual(draw(a.fork("disk"), 10));
    expect(draw(a.fork("x").fork("y"), 5)).toEqual(draw(new Prng(99, "x/y"), 5));
    expect(a.fork("x").path).toBe("x");
  });

  it("shuffle() returns a permutation, pick() an element, random() an adapter", () => {
    const p = new Prng(5);
    const items = Array.from({ length: 50 }, (_, i) => i);
    const shuffled = p.shuffle([...items]);
    expect([...shuffled].sort((x, y) => x - y)).toEqual(items);
    expect(shuffled).not.toEqual(items);
    expect(items).toContain(p.pick(items));
    expect(() => p.pick([])).toThrow(RangeError);
    const random = new Prng(5).random();
    expect(random()).toBe(new Prng(5).next());
  });

  it("nearby seeds give unrelated first outputs", () => {
    const firsts = new Set(Array.from({ length: 100 }, (_, s) => Math.floor(new Prng(s).next() * 10)));
    expect(firsts.size).toBeGreaterThanOrEqual(8);
  });
});
