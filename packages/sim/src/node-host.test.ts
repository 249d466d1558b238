import type { NodeId } from "@quorum/transport";
import { describe, expect, it } from "vitest";
import { type NodeContext, SimCluster } from "./node-host.js";
import { Simulation } from "./simulation.js";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** A runtime that ticks every 10 ms, counts ticks on its disk, and pings its peers. */
class Ticker {
  ticks = 0;
  readonly heard: NodeId[] = [];
  constructor(
    readonly ctx: NodeContext,
    readonly firedAfterCrash: { count: number },
    readonly crashed: () => boolean,
  ) {
    for (const p of ctx.peers) ctx.transport.addPeer({ id: p, address: "" });
    ctx.transport.subscribe("ping", (from) => this.heard.push(from));
    const f = ctx.disk.file("ticks");
    this.ticks = Number(dec(f.read()) || "0");
    const tick = () => {
      if (this.crashed()) firedAfterCrash.count++;
      this.ticks++;
      f.writeAll(enc(String(this.ticks)));
      if (this.ticks % 2 === 0) f.sync();
      for (const p of ctx.peers) ctx.transport.send(p, "ping", enc(""));
      ctx.clock.schedule(10, tick);
    };
    ctx.clock.schedule(10, tick);
  }
}

function makeCluster(seed: number) {
  const sim = new Simulation(seed);
  const firedAfterCrash = { count: 0 };
  const cluster: SimCluster<Ticker> = new SimCluster(sim, ["n1", "n2", "n3"], (ctx) => {
    // An incarnation is dead once the cluster no longer hands out its clock.
    const dead = () => !cluster.isUp(ctx.id) || cluster.clockFor(ctx.id) !== ctx.clock;
    return new Ticker(ctx, firedAfterCrash, dead);
  });
  return { sim, cluster, firedAfterCrash };
}

describe("SimCluster", () => {
  it("a crashed node's timers never fire and a restart resumes from the synced disk only", async () => {
    const { sim, cluster, firedAfterCrash } = makeCluster(3);
    await cluster.start();
    await sim.runUntilTime(55); // 5 ticks; tick 4 was synced, tick 5 was not
    expect(cluster.runtime("n1")?.ticks).toBe(5);
    cluster.crash("n1");
    expect(cluster.runtime("n1")).toBeUndefined();
    expect(cluster.up()).toEqual(["n2", "n3"]);
    const heardBefore = cluster.runtime("n2")?.heard.filter((f) => f === "n1").length ?? 0;
    await sim.runUntilTime(500);
    expect(firedAfterCrash.count).toBe(0);
    expect(cluster.runtime("n2")?.heard.filter((f) => f === "n1").length).toBe(heardBefore);
    const n1 = await cluster.restart("n1");
    expect(n1.ticks).toBe(4);
    expect(n1.ctx.incarnation).toBe(2);
    await sim.runUntilTime(600);
    expect(cluster.runtime("n1")?.ticks).toBe(14);
    expect(firedAfterCrash.count).toBe(0);
  });

  it("the nemesis crashes and partitions during the safety phase; the liveness phase brings everything back", async () => {
    const { sim, cluster, firedAfterCrash } = makeCluster(11);
    await cluster.start();
    let maxDown = 0;
    sim.addInvariant("at most a minority down", () => {
      maxDown = Math.max(maxDown, cluster.down().length);
      return cluster.down().length > 1 ? `down: ${cluster.down()}` : undefined;
    });
    const nemesis = cluster.startNemesis({ intervalMs: [20, 100], downMs: [50, 300] });
    await sim.runUntilTime(5000);
    expect(nemesis.log.some((l) => l.includes("crash"))).toBe(true);
    expect(nemesis.log.some((l) => l.includes("partition"))).toBe(true);
    expect(maxDown).toBe(1);
    await cluster.livenessPhase();
    expect(cluster.down()).toEqual([]);
    const logLength = nemesis.log.length;
    const heard = () => cluster.ids.map((id) => cluster.runtime(id)?.heard.length ?? 0);
    const before = heard();
    await sim.runFor(1000);
    expect(nemesis.log.length).toBe(logLength);
    for (const [i, n] of heard().entries()) expect(n).toBeGreaterThan((before[i] as number) + 100);
    expect(firedAfterCrash.count).toBe(0);
    expect(sim.network.getFaults().dropRate).toBe(0);
  });

  it("runs the same way twice for one seed", async () => {
    const run = async (seed: number) => {
      const sim = new Simulation(seed, { trace: true, network: { dropRate: 0.05 } });
      const cluster = new SimCluster(
        sim,
        ["n1", "n2", "n3"],
        (ctx) => new Ticker(ctx, { count: 0 }, () => false),
      );
      await cluster.start();
      const nemesis = cluster.startNemesis({ intervalMs: [20, 100] });
      await sim.runUntilTime(2000);
      return { trace: sim.scheduler.trace, log: nemesis.log };
    };
    const a = await run(5);
    expect(await run(5)).toEqual(a);
    expect((await run(6)).trace).not.toEqual(a.trace);
  });
});
