import { FaultyTransport, MemoryNetwork, seededRandom } from "@quorum/transport";
import { describe, expect, it } from "vitest";
import { ManualClock, settle } from "../test/helpers.js";

const bytes = (n: number) => new Uint8Array([n & 0xff, n >> 8]);
const number = (payload: Uint8Array) => payload[0]! | (payload[1]! << 8);

/** Three nodes, each wrapped, each recording `from:n` for what it receives on "x". */
function cluster(options: { seed?: number; clock?: ManualClock } = {}) {
  const network = new MemoryNetwork();
  const ids = ["a", "b", "c"];
  const nodes = new Map<string, FaultyTransport>();
  const got = new Map<string, string[]>();
  for (const id of ids) {
    const node = new FaultyTransport(network.join(id), {
      seed: options.seed ?? 7,
      ...(options.clock ? { clock: options.clock } : {}),
    });
    const log: string[] = [];
    node.subscribe("x", (from, payload) => log.push(`${from}:${number(payload)}`));
    nodes.set(id, node);
    got.set(id, log);
  }
  return {
    node: (id: string) => nodes.get(id)!,
    got: (id: string) => got.get(id)!,
    nodes: [...nodes.values()],
  };
}

describe("seededRandom", () => {
  it("replays the same sequence for a seed and differs across seeds", () => {
    const a = Array.from({ length: 5 }, seededRandom(42));
    const b = Array.from({ length: 5 }, seededRandom(42));
    const c = Array.from({ length: 5 }, seededRandom(43));
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
    for (const x of a) expect(x >= 0 && x < 1).toBe(true);
  });
});

describe("FaultyTransport", () => {
  it("passes everything through with no rules", async () => {
    const { node, got } = cluster();
    for (let i = 0; i < 50; i++) node("a").send("b", "x", bytes(i));
    await settle();
    expect(got("b")).toEqual(Array.from({ length: 50 }, (_, i) => `a:${i}`));
  });

  it("a partition blocks traffic between groups in both directions, and heal restores it", async () => {
    const { node, got, nodes } = cluster();
    for (const n of nodes) n.partition([["a", "b"], ["c"]]);
    node("a").send("b", "x", bytes(1));
    node("a").send("c", "x", bytes(2));
    node("c").send("a", "x", bytes(3));
    await settle();
    expect(got("b")).toEqual(["a:1"]);
    expect(got("c")).toEqual([]);
    expect(got("a")).toEqual([]);
    expect(node("a").faultStats().cut).toBe(1);

    for (const n of nodes) n.heal();
    node("a").send("c", "x", bytes(4));
    node("c").send("a", "x", bytes(5));
    await settle();
    expect(got("c")).toEqual(["a:4"]);
    expect(got("a")).toEqual(["c:5"]);
  });

  it("cuts incoming traffic even when only the receiver is wrapped", async () => {
    const network = new MemoryNetwork();
    const a = network.join("a"); // not wrapped
    const b = new FaultyTransport(network.join("b"));
    const got: string[] = [];
    b.subscribe("x", (from) => got.push(from));
    b.isolate("b");
    a.send("b", "x", bytes(1));
    await settle();
    expect(got).toEqual([]);
    b.heal();
    a.send("b", "x", bytes(2));
    await settle();
    expect(got).toEqual(["a"]);
  });

  it("isolate cuts one node off from everybody", async () => {
    const { node, got, nodes } = cluster();
    for (const n of nodes) n.isolate("c");
    node("a").send("c", "x", bytes(1));
    node("c").send("b", "x", bytes(2));
    node("a").send("b", "x", bytes(3));
    await settle();
    expect(got("c")).toEqual([]);
    expect(got("b")).toEqual(["a:3"]);
  });

  it("blocks a single directed link and leaves the reverse open", async () => {
    const { node, got, nodes } = cluster();
    for (const n of nodes) n.blockLink("a", "b");
    node("a").send("b", "x", bytes(1));
    node("b").send("a", "x", bytes(2));
    await settle();
    expect(got("b")).toEqual([]);
    expect(got("a")).toEqual(["b:2"]);
    for (const n of nodes) n.unblockLink("a", "b");
    node("a").send("b", "x", bytes(3));
    await settle();
    expect(got("b")).toEqual(["a:3"]);
  });

  it("drop probability 1 drops everything; 0.5 drops some but not all", async () => {
    const { node, got } = cluster();
    node("a").setRules({ dropProbability: 1 });
    for (let i = 0; i < 100; i++) node("a").send("b", "x", bytes(i));
    await settle();
    expect(got("b")).toEqual([]);
    expect(node("a").faultStats().dropped).toBe(100);

    node("a").setRules({ dropProbability: 0.5 });
    for (let i = 0; i < 1000; i++) node("a").send("b", "x", bytes(i));
    await settle();
    expect(got("b").length).toBeGreaterThan(350);
    expect(got("b").length).toBeLessThan(650);
  });

  it("duplicate probability 1 sends every message twice", async () => {
    const { node, got } = cluster();
    node("a").setRules({ duplicateProbability: 1 });
    for (let i = 0; i < 10; i++) node("a").send("b", "x", bytes(i));
    await settle();
    expect(got("b")).toEqual(Array.from({ length: 10 }, (_, i) => [`a:${i}`, `a:${i}`]).flat());
    expect(node("a").faultStats().duplicated).toBe(10);
  });

  it("delays messages on the injected clock and may reorder them", async () => {
    const clock = new ManualClock();
    const { node, got } = cluster({ clock });
    node("a").setRules({ delay: { minMs: 10, maxMs: 50 } });
    for (let i = 0; i < 100; i++) node("a").send("b", "x", bytes(i));
    clock.advance(9);
    await settle();
    expect(got("b")).toEqual([]);
    clock.advance(41);
    await settle();
    expect(got("b")).toHaveLength(100);
    expect(got("b")).not.toEqual(Array.from({ length: 100 }, (_, i) => `a:${i}`));
    expect([...got("b")].sort()).toEqual(Array.from({ length: 100 }, (_, i) => `a:${i}`).sort());
  });

  it("a partition made during a delay stops the delayed messages", async () => {
    const clock = new ManualClock();
    const { node, got } = cluster({ clock });
    node("a").setRules({ delay: { minMs: 10, maxMs: 10 } });
    node("a").send("b", "x", bytes(1));
    node("a").partition([["a"], ["b", "c"]]);
    clock.advance(20);
    await settle();
    expect(got("b")).toEqual([]);
  });

  it("is deterministic for a fixed seed", async () => {
    const run = async (seed: number) => {
      const clock = new ManualClock();
      const { node, got } = cluster({ seed, clock });
      node("a").setRules({ dropProbability: 0.3, duplicateProbability: 0.2, delay: { minMs: 0, maxMs: 20 } });
      for (let i = 0; i < 200; i++) node("a").send("b", "x", bytes(i));
      clock.advance(100);
      await settle();
      return got("b");
    };
    const first = await run(11);
    expect(await run(11)).toEqual(first);
    expect(await run(12)).not.toEqual(first);
  });

  it("rejects invalid rules and stops after close", async () => {
    const clock = new ManualClock();
    const { node, got } = cluster({ clock });
    expect(() => node("a").setRules({ dropProbability: 2 })).toThrow(/within \[0, 1\]/);
    expect(() => node("a").setRules({ delay: { minMs: 5, maxMs: 1 } })).toThrow(/minMs <= maxMs/);
    expect(() => node("a").partition([["a"], ["a"]])).toThrow(/more than one/);
    node("a").setRules({ delay: { minMs: 5, maxMs: 5 } });
    node("a").send("b", "x", bytes(1));
    await node("a").close();
    clock.advance(10);
    await settle();
    expect(got("b")).toEqual([]);
    expect(clock.pendingTimers).toBe(0);
    expect(() => node("a").send("b", "x", bytes(2))).toThrow(/closed/);
  });
});
