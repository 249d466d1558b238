import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { History, type KvInput, type KvOutput, type Operation, type Value } from "./history.js";
import { checkLinearizability } from "./linearizability.js";

let nextId = 0;
/** op(client, input, [invoke, complete], output); complete/output omitted = unknown outcome. */
function op(
  client: string,
  input: KvInput,
  times: [number, number?],
  output?: KvOutput,
  key = "k",
): Operation {
  return {
    id: nextId++,
    client,
    key,
    input,
    invokeTime: times[0],
    completeTime: times[1] ?? Number.POSITIVE_INFINITY,
    output,
  };
}
const R = { type: "read" } as const;
const W = (value: Value): KvInput => ({ type: "write", value });
const CAS = (expected: Value | undefined, value: Value): KvInput => ({ type: "cas", expected, value });
const read = (value: Value | undefined): KvOutput => ({ type: "read", value });
const wrote: KvOutput = { type: "write" };
const cas = (ok: boolean): KvOutput => ({ type: "cas", ok });

describe("checkLinearizability: accepts", () => {
  it("a sequential history", () => {
    const h = [
      op("a", R, [0, 1], read(undefined)),
      op("a", W(1), [2, 3], wrote),
      op("b", R, [4, 5], read(1)),
      op("b", CAS(1, 2), [6, 7], cas(true)),
      op("a", CAS(1, 3), [8, 9], cas(false)),
      op("a", R, [10, 11], read(2)),
    ];
    expect(checkLinearizability(h)).toEqual({ ok: true, keys: 1, operations: 6 });
  });

  it("overlapping operations that linearize in an order other than their start order", () => {
    const h = [
      op("a", W(1), [0, 10], wrote),
      op("b", W(2), [1, 9], wrote),
      op("c", R, [2, 3], read(2)),
      op("d", R, [11, 12], read(1)),
    ];
    expect(checkLinearizability(h).ok).toBe(true);
  });

  it("unknown outcomes that did and did not take effect", () => {
    const took = [op("a", W(1), [0]), op("b", R, [5, 6], read(1)), op("b", R, [7, 8], read(1))];
    const didNot = [
      op("a", W(1), [0]),
      op("b", R, [5, 6], read(undefined)),
      op("b", R, [7, 8], read(undefined)),
    ];
    const late = [op("a", W(1), [0]), op("b", R, [5, 6], read(undefined)), op("b", R, [7, 8], read(1))];
    const unknownCas = [op("a", W(1), [0, 1], wrote), op("c", CAS(1, 5), [2]), op("b", R, [5, 6], read(5))];
    for (const h of [took, didNot, late, unknownCas]) expect(checkLinearizability(h).ok).toBe(true);
  });

  it("each key on its own", () => {
    const h = [
      op("a", W(1), [0, 1], wrote, "x"),
      op("a", W(2), [0, 1], wrote, "y"),
      op("b", R, [2, 3], read(1), "x"),
      op("b", R, [2, 3], read(2), "y"),
    ];
    expect(checkLinearizability(h)).toMatchObject({ ok: true, keys: 2 });
  });
});

describe("checkLinearizability: rejects", () => {
  it("a stale read after a completed write", () => {
    const h = [
      op("a", W(1), [0, 1], wrote),
      op("a", W(2), [2, 3], wrote),
      op("x", R, [0, 20], read(2)),
      op("b", R, [4, 5], read(1)),
    ];
    const r = checkLinearizability(h);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.kind).toBe("violation");
    expect(r.key).toBe("k");
    // The read concurrent with everything is not needed to show the problem.
    expect(r.operations.map((o) => o.client).sort()).toEqual(["a", "a", "b"]);
    expect(r.explanation).toContain("not linearizable");
    expect(r.explanation).toContain("read(k) [4, 5] -> 1");
  });

  it("a lost write (acknowledged, then never seen)", () => {
    const h = [
      op("a", W(1), [0, 1], wrote),
      op("a", W(2), [2, 3], wrote),
      op("b", R, [4, 5], read(1)),
      op("b", R, [6, 7], read(undefined)),
    ];
    expect(checkLinearizability(h).ok).toBe(false);
  });

  it("a read of a value never written", () => {
    const h = [op("a", W(1), [0, 1], wrote), op("b", R, [0, 5], read(99))];
    const r = checkLinearizability(h);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.operations.map((o) => o.client)).toEqual(["b"]);
  });

  it("two compare-and-sets that both succeed from the same expected value", () => {
    const h = [
      op("a", W(0), [0, 1], wrote),
      op("b", CAS(0, 1), [2, 10], cas(true)),
      op("c", CAS(0, 2), [3, 9], cas(true)),
    ];
    const r = checkLinearizability(h);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.operations).toHaveLength(3);
  });

  it("an unknown write cannot explain a read that precedes its invocation", () => {
    const h = [op("b", R, [0, 1], read(1)), op("a", W(1), [2])];
    expect(checkLinearizability(h).ok).toBe(false);
  });

  it("reports a search limit honestly instead of passing", () => {
    const h = Array.from({ length: 30 }, (_, i) => op(`c${i}`, W(i), [0, 100], wrote));
    h.push(op("r", R, [200, 201], read(-1)));
    const r = checkLinearizability(h, { maxSteps: 50 });
    expect(r).toMatchObject({ ok: false, kind: "limit" });
  });
});

describe("History", () => {
  it("records invoke/complete with clock times; open operations are unknown", () => {
    let now = 0;
    const h = new History({ now: () => now });
    const a = h.invoke("c1", "k", W(1));
    now = 5;
    h.complete(a, wrote);
    const b = h.invoke("c2", "k", R);
    h.invoke("c3", "k", W(2));
    now = 9;
    h.unknown(b);
    const ops = h.operations();
    expect(ops[0]).toMatchObject({ invokeTime: 0, completeTime: 5, output: wrote });
    expect(ops[1]).toMatchObject({
      invokeTime: 5,
      completeTime: Number.POSITIVE_INFINITY,
      output: undefined,
    });
    expect(ops[2]?.output).toBeUndefined();
    expect(() => h.complete(a, wrote)).toThrow(/already/);
    expect(() => h.complete(2, read(1))).toThrow(TypeError);
  });
});

/**
 * A generated concurrent history against a real atomic register: every op takes effect at a
 * random instant inside its interval; some outcomes are then hidden (unknown).
 */
const historyArb = fc
  .array(
    fc.record({
      client: fc.integer({ min: 0, max: 4 }),
      key: fc.constantFrom("x", "y"),
      kind: fc.constantFrom("read", "write", "cas"),
      value: fc.integer({ min: 0, max: 3 }),
      expected: fc.option(fc.integer({ min: 0, max: 3 }), { nil: undefined }),
      start: fc.integer({ min: 0, max: 100 }),
      length: fc.integer({ min: 0, max: 30 }),
      at: fc.double({ min: 0, max: 1, noNaN: true }),
      hide: fc.boolean(),
    }),
    { maxLength: 24 },
  )
  .map((specs) => {
    const effects = specs
      .map((s, id) => ({ ...s, id, effect: s.start + s.at * s.length }))
      .sort((a, b) => a.effect - b.effect || a.id - b.id);
    const register = new Map<string, Value | undefined>();
    const ops: Operation[] = [];
    for (const s of effects) {
      const cur = register.get(s.key);
      let input: KvInput;
      let output: KvOutput;
      if (s.kind === "read") {
        input = R;
        output = read(cur);
      } else if (s.kind === "write") {
        input = W(s.value);
        output = wrote;
        register.set(s.key, s.value);
      } else {
        input = CAS(s.expected, s.value);
        output = cas(cur === s.expected);
        if (cur === s.expected) register.set(s.key, s.value);
      }
      const unknown = s.hide && s.kind !== "read";
      ops.push({
        id: s.id,
        client: `c${s.client}`,
        key: s.key,
        input,
        invokeTime: s.start,
        completeTime: unknown ? Number.POSITIVE_INFINITY : s.start + s.length,
        output: unknown ? undefined : output,
      });
    }
    return ops.sort((a, b) => a.id - b.id);
  });

describe("checkLinearizability: properties", () => {
  it("accepts every history produced by an atomic register", () => {
    fc.assert(
      fc.property(historyArb, (ops) => {
        expect(checkLinearizability(ops, { minimize: false })).toMatchObject({ ok: true });
      }),
      { numRuns: 300 },
    );
  });

  it("rejects it once a completed read returns a value never written", () => {
    fc.assert(
      fc.property(
        historyArb.filter((ops) => ops.some((o) => o.input.type === "read" && o.output !== undefined)),
        fc.nat(),
        (ops, pick) => {
          const reads = ops.filter((o) => o.input.type === "read" && o.output !== undefined);
          const victim = reads[pick % reads.length] as Operation;
          const mutated = ops.map((o) => (o === victim ? { ...o, output: read(12345) } : o));
          const r = checkLinearizability(mutated);
          expect(r.ok).toBe(false);
          if (!r.ok) expect(r.operations.some((o) => o.id === victim.id)).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });
});
