import { isConsensusError } from "@quorum/consensus";
import { Simulation } from "@quorum/sim";
import { describe, expect, it } from "vitest";
import { addSafetyInvariant, simRaft, track } from "./sim-raft.js";

const ids = ["n1", "n2", "n3"];

async function withLeader(sim: Simulation, r: ReturnType<typeof simRaft>): Promise<string> {
  await sim.eventually("a leader", () => r.leader() !== undefined, 3_000);
  return r.leader()!;
}

describe("RaftNode scenarios on the simulator", () => {
  it("a partitioned old leader's uncommitted proposal is rejected with DROPPED after it rejoins", async () => {
    const sim = new Simulation(11);
    const r = simRaft(sim, ids);
    await r.cluster.start();
    const old = await withLeader(sim, r);
    sim.network.isolate(old);
    const lost = track(r.node(old).propose(Buffer.from("lost"), { timeoutMs: 5_000 }));
    await sim.eventually("a new leader", () => (r.leader() ?? old) !== old, 3_000);
    const leader = r.leader()!;
    const kept = track(r.node(leader).propose(Buffer.from("kept")));
    await sim.eventually("kept commits", () => kept.done, 2_000);
    sim.network.heal();
    await sim.eventually("the lost proposal settles", () => lost.done, 3_000);
    expect(isConsensusError(lost.error, "DROPPED")).toBe(true);
    await sim.eventually(
      "everyone has kept",
      () => ids.every((id) => r.commands(id).includes("kept")),
      2_000,
    );
    for (const id of ids) expect(r.commands(id)).not.toContain("lost");
  });

  it("a leader cut off from the majority steps down (CheckQuorum), and the rest elect a new one", async () => {
    const sim = new Simulation(12);
    const r = simRaft(sim, ids);
    await r.cluster.start();
    const old = await withLeader(sim, r);
    sim.network.isolate(old);
    await sim.runFor(1_000);
    expect(r.node(old).status().role).not.toBe("leader");
    const others = ids.filter((id) => id !== old);
    expect(others.filter((id) => r.node(id).status().role === "leader")).toHaveLength(1);
  });

  it("many elections under churn: the leader is cut off again and again; each time a new one commits", async () => {
    const sim = new Simulation(17);
    sim.network.setFaults({ minDelayMs: 1, maxDelayMs: 10 });
    const five = ["n1", "n2", "n3", "n4", "n5"];
    const r = simRaft(sim, five);
    addSafetyInvariant(sim, r);
    await r.cluster.start();
    const leaders = new Set<string>();
    let attempts = 0;
    for (let round = 0; round < 8; round++) {
      expect(++attempts).toBeLessThan(20);
      const leader = await withLeader(sim, r);
      const p = track(r.node(leader).propose(Buffer.from(`round-${round}`)));
      await sim.eventually(`round ${round} commits`, () => p.done, 3_000);
      if (p.error) {
        round--; // the leader lost its place before committing; try again with the next one
        continue;
      }
      leaders.add(leader);
      sim.network.isolate(leader);
      await sim.eventually("another leader", () => (r.leader() ?? leader) !== leader, 3_000);
      sim.network.heal();
    }
    expect(leaders.size).toBeGreaterThan(1);
    await sim.eventually("all converge", () => five.every((id) => r.commands(id).length === 8), 3_000);
    const terms = five.map((id) => r.node(id).status().term);
    expect(Math.max(...terms)).toBeGreaterThanOrEqual(8);
  });

  it("every acknowledged command survives a crash and restart of all nodes", async () => {
    const sim = new Simulation(13);
    const r = simRaft(sim, ids);
    await r.cluster.start();
    const leader = await withLeader(sim, r);
    const acks = Array.from({ length: 20 }, (_, i) => track(r.node(leader).propose(Buffer.from(`c${i}`))));
    await sim.eventually("all acknowledged", () => acks.every((a) => a.done), 2_000);
    expect(acks.every((a) => a.error === undefined)).toBe(true);
    for (const id of ids) r.cluster.crash(id);
    for (const id of ids) await r.cluster.restart(id);
    const next = await withLeader(sim, r);
    const after = track(r.node(next).propose(Buffer.from("after")));
    await sim.eventually("after commits", () => after.done, 2_000);
    await sim.eventually("all applied", () => ids.every((id) => r.commands(id).length === 21), 2_000);
    for (const id of ids)
      expect(r.commands(id)).toEqual([...Array.from({ length: 20 }, (_, i) => `c${i}`), "after"]);
  });

  it("read() on a follower resolves at an index covering every write acknowledged before it", async () => {
    const sim = new Simulation(14);
    const r = simRaft(sim, ids);
    await r.cluster.start();
    const leader = await withLeader(sim, r);
    const w = track(r.node(leader).propose(Buffer.from("w")));
    await sim.eventually("write acknowledged", () => w.done, 2_000);
    const follower = ids.find((id) => id !== leader)!;
    const read = track(r.node(follower).read());
    await sim.eventually("read resolves", () => read.done, 2_000);
    expect(read.error).toBeUndefined();
    expect((read.value as { index: number }).index).toBeGreaterThanOrEqual(
      (w.value as { index: number }).index,
    );
    expect(r.commands(follower)).toContain("w");
  });

  it("a follower's read that went to a leader which is then cut off rejects with NOT_LEADER once a new leader is known", async () => {
    const sim = new Simulation(18);
    const r = simRaft(sim, ids);
    await r.cluster.start();
    const old = await withLeader(sim, r);
    const follower = ids.find((id) => id !== old)!;
    await sim.eventually(
      "follower knows the leader",
      () => r.node(follower).status().leaderId === old,
      1_000,
    );
    sim.network.isolate(old);
    const read = track(r.node(follower).read({ timeoutMs: 10_000 }));
    await sim.eventually("the read settles", () => read.done, 3_000);
    expect(isConsensusError(read.error, "NOT_LEADER")).toBe(true);
    await sim.eventually(
      "the follower knows a new leader",
      () => (r.node(follower).status().leaderId ?? old) !== old,
      3_000,
    );
    const again = track(r.node(follower).read());
    await sim.eventually("a retried read resolves", () => again.done, 2_000);
    if (again.error) for (const id of ids) console.log(id, JSON.stringify(r.node(id).coreStatus()));
    expect(again.error).toBeUndefined();
  });

  it("a follower that missed compacted entries is sent a snapshot in chunks and catches up", async () => {
    const sim = new Simulation(15);
    const r = simRaft(sim, ids, () => ({
      snapshotThreshold: 10,
      snapshotCatchUpEntries: 0,
      snapshotChunkBytes: 50,
    }));
    await r.cluster.start();
    const leader = await withLeader(sim, r);
    const lagging = ids.find((id) => id !== leader)!;
    r.cluster.crash(lagging);
    const acks = Array.from({ length: 30 }, (_, i) => track(r.node(leader).propose(Buffer.from(`s${i}`))));
    await sim.eventually("acknowledged", () => acks.every((a) => a.done), 2_000);
    await sim.eventually("leader compacted", () => r.durable.get(leader)!.storage.firstIndex() > 10, 2_000);
    await r.cluster.restart(lagging);
    await sim.eventually("lagging caught up", () => r.commands(lagging).length === 30, 3_000);
    expect(r.commands(lagging)).toEqual(r.commands(leader));
    expect(r.durable.get(lagging)!.storage.snapshot().index).toBeGreaterThan(0);
  });

  it("adds a learner and promotes it under load, with the leader crashing midway; all converge", async () => {
    const sim = new Simulation(19);
    sim.network.setFaults({ minDelayMs: 1, maxDelayMs: 10 });
    const all = ["n1", "n2", "n3", "n4"];
    const r = simRaft(sim, all, () => ({ snapshotThreshold: 15, snapshotCatchUpEntries: 5 }), ids);
    addSafetyInvariant(sim, r);
    await r.cluster.start();
    let stop = false;
    const proposals: { command: string; t: ReturnType<typeof track> }[] = [];
    const load = (async () => {
      for (let k = 0; !stop; k++) {
        const leader = r.leader();
        if (leader) {
          const command = `w${k}`;
          proposals.push({
            command,
            t: track(r.node(leader).propose(Buffer.from(command), { timeoutMs: 200 })),
          });
        }
        await new Promise<void>((res) => sim.clock.schedule(leader ? 5 : 20, res));
      }
    })();
    const change = async (c: Parameters<ReturnType<typeof r.node>["changeMembership"]>[0]) => {
      for (let attempt = 0; attempt < 50; attempt++) {
        const leader = r.leader();
        if (leader) {
          const t = track(r.node(leader).changeMembership(c, { timeoutMs: 300 }));
          await sim.eventually("change settles", () => t.done, 2_000);
          if (!t.error) return;
          if (isConsensusError(t.error, "INVALID_ARGUMENT")) return; // applied by an earlier attempt
        }
        await sim.runFor(50);
      }
      throw new Error(`change ${JSON.stringify(c)} never succeeded`);
    };
    await withLeader(sim, r);
    await sim.runFor(200);
    await change({ type: "addLearner", member: { id: "n4", address: "n4" } });
    r.cluster.crash(r.leader()!);
    await sim.runFor(300);
    for (const id of r.cluster.down()) await r.cluster.restart(id);
    await change({ type: "promote", id: "n4" });
    await sim.runFor(300);
    stop = true;
    await sim.runFor(300);
    await load;
    const acked = proposals.filter((p) => p.t.done && !p.t.error).map((p) => p.command);
    const leader = await withLeader(sim, r);
    expect(
      r
        .node(leader)
        .status()
        .members.find((m) => m.id === "n4"),
    ).toMatchObject({ learner: false });
    await sim.eventually(
      "all four apply the same commands, with every acknowledged one",
      () => {
        const ref = r.commands(leader);
        return all.every((id) => r.commands(id).join() === ref.join()) && acked.every((c) => ref.includes(c));
      },
      3_000,
    );
    expect(acked.length).toBeGreaterThan(20);
  });

  it("removes a member while proposals continue; the remaining two keep committing", async () => {
    const sim = new Simulation(16);
    const r = simRaft(sim, ids);
    await r.cluster.start();
    const leader = await withLeader(sim, r);
    const victim = ids.find((id) => id !== leader)!;
    const load = Array.from({ length: 10 }, (_, i) => track(r.node(leader).propose(Buffer.from(`l${i}`))));
    const change = track(r.node(leader).changeMembership({ type: "remove", id: victim }));
    await sim.eventually("removed", () => change.done, 2_000);
    expect(change.error).toBeUndefined();
    r.cluster.crash(victim);
    const after = track(r.node(leader).propose(Buffer.from("after")));
    await sim.eventually("after commits without the removed node", () => after.done, 2_000);
    expect(after.error).toBeUndefined();
    expect(load.every((l) => l.done && l.error === undefined)).toBe(true);
  });
});
