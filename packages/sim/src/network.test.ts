import type { Transport } from "@quorum/transport";
import { TransportError } from "@quorum/transport";
import { describe, expect, it } from "vitest";
import { type NetworkOptions, SimNetwork, type TraceEvent } from "./network.js";
import { Prng } from "./prng.js";
import { Scheduler } from "./scheduler.js";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

function world(options: NetworkOptions = {}, ids = ["a", "b", "c"], seed = 1) {
  const scheduler = new Scheduler();
  const network = new SimNetwork(scheduler, new Prng(seed).fork("network"), options);
  const t = new Map<string, Transport>();
  const inbox = new Map<string, string[]>();
  for (const id of ids) {
    const tr = network.transport(id);
    for (const p of ids) if (p !== id) tr.addPeer({ id: p, address: "" });
    inbox.set(id, []);
    tr.subscribe("x", (from, payload) => inbox.get(id)?.push(`${from}:${dec(payload)}`));
    t.set(id, tr);
  }
  const tr = (id: string) => t.get(id) as Transport;
  return { scheduler, network, tr, inbox: (id: string) => inbox.get(id) as string[] };
}

describe("SimNetwork", () => {
  it("delivers after a delay within the bounds and counts it", async () => {
    const w = world({ minDelayMs: 5, maxDelayMs: 9 });
    let at = -1;
    w.tr("b").subscribe("y", () => {
      at = w.scheduler.now();
    });
    w.tr("a").send("b", "y", enc("hi"));
    expect(at).toBe(-1);
    await w.scheduler.runUntilIdle();
    expect(at).toBeGreaterThanOrEqual(5);
    expect(at).toBeLessThanOrEqual(9);
    expect(w.tr("a").stats()).toMatchObject({ sent: 1, delivered: 1 });
    expect(w.tr("b").stats()).toMatchObject({ received: 1 });
    expect(w.network.counters.delivered).toBe(1);
  });

  it("copies payloads, counts unknown peers and missing subscribers, throws only for caller mistakes", async () => {
    const w = world({ maxMessageBytes: 4 });
    const buf = enc("abc");
    w.tr("a").send("b", "x", buf);
    buf[0] = 122;
    w.tr("a").send("zz", "x", enc("q"));
    w.tr("a").send("b", "nobody", enc("q"));
    expect(() => w.tr("a").send("b", "x", enc("12345"))).toThrow(TransportError);
    await w.scheduler.runUntilIdle();
    expect(w.inbox("b")).toEqual(["a:abc"]);
    expect(w.tr("a").stats().droppedUnknownPeer).toBe(1);
    expect(w.tr("b").stats().droppedNoSubscriber).toBe(1);
    await w.tr("a").close();
    await w.tr("a").close();
    expect(() => w.tr("a").send("b", "x", enc("q"))).toThrow(/closed/);
    expect(
      w
        .tr("a")
        .peers()
        .map((p) => p.id),
    ).toEqual(["b", "c"]);
    w.tr("a").removePeer("c");
    expect(
      w
        .tr("a")
        .peers()
        .map((p) => p.id),
    ).toEqual(["b"]);
  });

  it("a partition blocks traffic across groups, including messages already in flight; heal restores it", async () => {
    const w = world({ minDelayMs: 10, maxDelayMs: 10 });
    w.tr("a").send("b", "x", enc("in-flight"));
    w.network.partition([["a"], ["b", "c"]]);
    w.tr("a").send("b", "x", enc("blocked"));
    w.tr("b").send("c", "x", enc("same-side"));
    await w.scheduler.runUntilIdle();
    expect(w.inbox("b")).toEqual([]);
    expect(w.inbox("c")).toEqual(["b:same-side"]);
    expect(w.network.counters.droppedPartition).toBe(2);
    expect(w.tr("a").stats().droppedDisconnected).toBe(1);
    w.network.heal();
    w.tr("a").send("b", "x", enc("healed"));
    await w.scheduler.runUntilIdle();
    expect(w.inbox("b")).toEqual(["a:healed"]);
  });

  it("isolate cuts a node off both ways; blockLink cuts one direction", async () => {
    const w = world();
    w.network.isolate("c");
    w.network.blockLink("a", "b");
    w.tr("c").send("a", "x", enc("1"));
    w.tr("a").send("c", "x", enc("2"));
    w.tr("a").send("b", "x", enc("3"));
    w.tr("b").send("a", "x", enc("4"));
    await w.scheduler.runUntilIdle();
    expect(w.inbox("a")).toEqual(["b:4"]);
    expect(w.inbox("b")).toEqual([]);
    expect(w.inbox("c")).toEqual([]);
    w.network.unblockLink("a", "b");
    w.tr("a").send("b", "x", enc("5"));
    await w.scheduler.runUntilIdle();
    expect(w.inbox("b")).toEqual(["a:5"]);
  });

  it("drop and duplicate rates are roughly as configured", async () => {
    const n = 10_000;
    const w = world({ dropRate: 0.2, duplicateRate: 0.1 }, ["a", "b"], 12345);
    for (let i = 0; i < n; i++) w.tr("a").send("b", "x", enc(String(i)));
    await w.scheduler.runUntilIdle();
    const c = w.network.counters;
    expect(c.droppedRandom / n).toBeGreaterThan(0.18);
    expect(c.droppedRandom / n).toBeLessThan(0.22);
    expect(c.duplicated / (n - c.droppedRandom)).toBeGreaterThan(0.08);
    expect(c.duplicated / (n - c.droppedRandom)).toBeLessThan(0.12);
    expect(w.inbox("b").length).toBe(n - c.droppedRandom + c.duplicated);
  });

  it("random ordering reorders messages; fifo ordering never does", async () => {
    for (const ordering of ["random", "fifo"] as const) {
      const w = world({ ordering, minDelayMs: 1, maxDelayMs: 50 }, ["a", "b"]);
      for (let i = 0; i < 200; i++) w.tr("a").send("b", "x", enc(String(i)));
      await w.scheduler.runUntilIdle();
      const got = w.inbox("b").map((m) => Number(m.slice(2)));
      expect(got).toHaveLength(200);
      const sorted = [...got].sort((x, y) => x - y);
      if (ordering === "fifo") expect(got).toEqual(sorted);
      else expect(got).not.toEqual(sorted);
    }
  });

  it("a crashed node receives nothing, sends nothing, and a restart gets a fresh transport", async () => {
    const w = world({ minDelayMs: 10, maxDelayMs: 10 });
    w.tr("a").send("b", "x", enc("to-old-b"));
    w.network.crash("b");
    w.tr("b").send("a", "x", enc("zombie"));
    await w.scheduler.runUntilIdle();
    expect(w.inbox("b")).toEqual([]);
    expect(w.inbox("a")).toEqual([]);
    expect(w.network.counters.droppedNodeDown).toBe(1);
    expect(w.network.isUp("b")).toBe(false);
    const b2 = w.network.transport("b");
    const got: string[] = [];
    b2.subscribe("x", (from, p) => got.push(`${from}:${dec(p)}`));
    w.tr("a").send("b", "x", enc("to-new-b"));
    await w.scheduler.runUntilIdle();
    expect(got).toEqual(["a:to-new-b"]);
  });

  it("swizzle clogs links then restores them all: messages are held, not lost", async () => {
    const w = world({ minDelayMs: 1, maxDelayMs: 5 });
    const held: TraceEvent[] = [];
    w.network.onTrace((e) => {
      if (e.kind === "hold") held.push(e);
    });
    const end = w.network.swizzle({ count: 6, stepMs: 20 });
    expect(end).toBe(240);
    let sent = 0;
    const pump = () => {
      for (const from of ["a", "b", "c"]) {
        for (const to of ["a", "b", "c"]) {
          if (from !== to) {
            w.tr(from).send(to, "x", enc("m"));
            sent++;
          }
        }
      }
      if (w.scheduler.now() < 300) w.scheduler.schedule(10, pump);
    };
    pump();
    await w.scheduler.runUntilIdle();
    expect(held.length).toBeGreaterThan(0);
    const received = ["a", "b", "c"].reduce((n, id) => n + w.inbox(id).length, 0);
    expect(received).toBe(sent);
  });

  it("heal() cancels the rest of a swizzle", async () => {
    const w = world();
    w.network.swizzle({ count: 6, stepMs: 20 });
    await w.scheduler.runUntilTime(50);
    w.network.heal();
    await w.scheduler.runUntilIdle();
    w.tr("a").send("b", "x", enc("m"));
    w.tr("c").send("a", "x", enc("m"));
    await w.scheduler.runUntilIdle();
    expect(w.network.counters.held).toBe(0);
    expect(w.inbox("b").length + w.inbox("a").length).toBe(2);
  });

  it("the same seed gives the same message trace; another seed a different one", async () => {
    const run = async (seed: number) => {
      const w = world(
        { dropRate: 0.1, duplicateRate: 0.1, minDelayMs: 1, maxDelayMs: 30 },
        ["a", "b", "c"],
        seed,
      );
      const trace: string[] = [];
      w.network.onTrace((e) => trace.push(`${e.time} ${e.kind} ${e.id} ${e.from}->${e.to}`));
      for (let i = 0; i < 100; i++)
        w.tr(["a", "b", "c"][i % 3] as string).send(["b", "c", "a"][i % 3] as string, "x", enc("m"));
      await w.scheduler.runUntilIdle();
      return trace;
    };
    const one = await run(7);
    expect(await run(7)).toEqual(one);
    expect(await run(8)).not.toEqual(one);
  });

  it("rejects invalid fault settings", () => {
    const s = new Scheduler();
    expect(() => new SimNetwork(s, new Prng(1), { dropRate: 2 })).toThrow(RangeError);
    expect(() => new SimNetwork(s, new Prng(1), { minDelayMs: 5, maxDelayMs: 1 })).toThrow(RangeError);
  });
});
