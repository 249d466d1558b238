import { describe, expect, it, vi } from "vitest";

/**
 * linearizability.sim.test.ts on Multi-Paxos: the same clients, nemesis, compactor and
 * checks (linearizable histories per key, every replica with the same data, reads answered
 * after an election), with helpers/sim-kv.js replaced by helpers/sim-kv-paxos.ts, which
 * builds the same simulated store on PaxosNodes. Failing seeds replay with QUORUM_SEED.
 */
vi.mock("./helpers/sim-kv.js", () => import("./helpers/sim-kv-paxos.js"));
await import("./linearizability.sim.test.js");

describe("linearizability.sim.test.ts on paxos", () => {
  it("runs on PaxosNodes", async () => {
    const { simKv } = await import("./helpers/sim-kv.js");
    const { Simulation } = await import("@quorum/sim");
    const { PaxosNode } = await import("@quorum/paxos");
    const kv = simKv(new Simulation(1), ["n1"]);
    try {
      await kv.cluster.start();
      expect(kv.cluster.runtime("n1")!.raft).toBeInstanceOf(PaxosNode);
    } finally {
      await kv.close();
    }
  });
});
