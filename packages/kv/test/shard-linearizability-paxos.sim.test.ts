import { describe, expect, it, vi } from "vitest";

/**
 * shard-linearizability.sim.test.ts on Multi-Paxos: every node runs one PaxosNode per shard
 * on its own channel (`paxos-${i}`) over one simulated transport, behind a ShardedKvService;
 * the Raft file's clients, nemesis and checks run unchanged (helpers/sim-kv.js is replaced by
 * helpers/sim-kv-paxos.ts).
 */
vi.mock("./helpers/sim-kv.js", () => import("./helpers/sim-kv-paxos.js"));
await import("./shard-linearizability.sim.test.js");

describe("shard-linearizability.sim.test.ts on paxos", () => {
  it("runs one PaxosNode per shard, each on its own channel", async () => {
    const { simKv } = await import("./helpers/sim-kv.js");
    const { Simulation } = await import("@quorum/sim");
    const { PaxosNode } = await import("@quorum/paxos");
    const sim = new Simulation(1);
    const kv = simKv(sim, ["n1", "n2", "n3"], { shards: 3 });
    try {
      await kv.cluster.start();
      const nodes = kv.cluster.runtime("n1")!.rafts;
      expect(nodes.length).toBe(3);
      for (const n of nodes) expect(n).toBeInstanceOf(PaxosNode);
      // Three independent groups: each elects its own leader.
      await sim.eventually("a leader per shard", () => [0, 1, 2].every((s) => kv.shardLeader(s)), 5_000);
    } finally {
      await kv.close();
    }
  });
});
