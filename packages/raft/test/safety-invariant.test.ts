import { Simulation } from "@quorum/sim";
import { describe, expect, it } from "vitest";
import { addSafetyInvariant, simRaft, track } from "./sim-raft.js";

const ids = ["n1", "n2", "n3"];

/**
 * The node simulations' invariant shows the Figure 3 checker only the views that changed
 * since it last saw them, and re-reads a log only when its store was written. These plant a
 * violation in one store between two steps and expect the very next step to report it.
 */
describe("the node simulation's safety invariant", () => {
  async function committedCluster(seed: number) {
    const sim = new Simulation(seed);
    const r = simRaft(sim, ids);
    addSafetyInvariant(sim, r);
    await r.cluster.start();
    await sim.eventually("a leader", () => r.leader() !== undefined, 3_000);
    const leader = r.leader()!;
    for (let i = 0; i < 5; i++) {
      const p = track(r.node(leader).propose(Buffer.from(`c${i}`)));
      await sim.eventually(`c${i} commits`, () => p.done && p.error === undefined, 2_000);
    }
    const follower = ids.find((id) => id !== leader)!;
    // Heartbeats carry the commit index to the followers.
    await sim.eventually("a follower commits c4", () => r.commands(follower).includes("c4"), 2_000);
    const store = r.durable.get(follower)!.storage;
    const index = Math.min(r.node(follower).coreStatus()!.commitIndex, store.lastIndex());
    const [entry] = store.entries(index, index + 1);
    expect(Buffer.from(entry!.data).toString()).toBe("c4");
    return { sim, r, leader, follower, store, entry: entry! };
  }

  it("reports a committed entry rewritten in a follower's log (same term, other command)", async () => {
    const { sim, store, entry } = await committedCluster(21);
    await sim.runFor(50); // steps with nothing new: the follower's view is cached
    store.save({ entries: [{ ...entry, data: Buffer.from("forged") }] });
    await expect(sim.step()).rejects.toThrow(/log matching/);
  });

  it("reports a committed entry replaced by one of another term in the leader's log", async () => {
    const { sim, r, leader, entry } = await committedCluster(22);
    await sim.runFor(50);
    r.durable.get(leader)!.storage.save({ entries: [{ ...entry, term: entry.term + 1 }] });
    await expect(sim.step()).rejects.toThrow(/state machine safety|leader append-only/);
  });
});
