import { isConsensusError } from "@quorum/consensus";
import { type ConformanceHarness, conformanceCases, waitForLeader } from "@quorum/consensus/testing";
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { NodeCluster } from "./test-cluster.js";

const harnessWith = (extra: ConstructorParameters<typeof NodeCluster>[1]): ConformanceHarness => ({
  sizes: [1, 3],
  async createCluster(size) {
    const ids = Array.from({ length: size }, (_, i) => `n${i + 1}`);
    const c = new NodeCluster(ids, extra);
    await c.start();
    return {
      ids,
      log: (id) => c.node(id),
      machine: (id) => c.machine(id),
      stop: (id) => c.stop(id),
      restart: (id) => c.restart(id),
      waitUntil: (what, predicate, timeoutMs) => c.waitUntil(what, predicate, timeoutMs),
      close: () => c.close(),
    };
  },
});

const variants = [
  { name: "paxos conformance (ReplicatedLog contract, MemoryNetwork, real timers)", extra: {} },
  {
    // Compacting every few entries with nothing kept behind: a stopped or restarted replica
    // can only catch up by snapshot.
    name: "paxos conformance with aggressive log compaction (snapshot catch-up)",
    extra: { snapshotThreshold: 3, snapshotCatchUpSlots: 0, snapshotChunkBytes: 64 },
  },
];

for (const variant of variants) {
  const harness = harnessWith(variant.extra);
  describe(variant.name, () => {
    for (const c of conformanceCases(harness)) {
      it(c.name, async () => {
        const cluster = await harness.createCluster(c.clusterSize);
        try {
          await c.run(cluster);
        } finally {
          await cluster.close();
        }
      });
    }
  });
}

describe("PaxosNode", () => {
  it("refuses membership changes with INVALID_ARGUMENT (not supported yet)", async () => {
    const c = new NodeCluster(["n1"]);
    await c.start();
    try {
      await expect(c.node("n1").changeMembership({ type: "remove", id: "n1" })).rejects.toMatchObject({
        code: "INVALID_ARGUMENT",
        message: "membership changes are not supported by paxos yet",
      });
    } finally {
      await c.close();
    }
  });

  it("refuses a command that is not bytes with INVALID_ARGUMENT", async () => {
    const c = new NodeCluster(["n1"]);
    await c.start();
    try {
      await expect(c.node("n1").propose("x" as unknown as Uint8Array)).rejects.toMatchObject({
        code: "INVALID_ARGUMENT",
      });
    } finally {
      await c.close();
    }
  });

  it("drops and counts a malformed peer message instead of throwing", async () => {
    const c = new NodeCluster(["n1", "n2"]);
    await c.start();
    try {
      c.slots.get("n2")!.transport.send("n1", "paxos", new Uint8Array([0xff, 0xff, 0xff]));
      await c.waitUntil(
        "the malformed message to be counted",
        () => c.node("n1").stats.droppedMalformed === 1,
      );
    } finally {
      await c.close();
    }
  });

  it("a proposal on a minority side times out or is refused, and never resolves as committed", async () => {
    const c = new NodeCluster(["n1", "n2", "n3"]);
    await c.start();
    try {
      const leader = await waitForLeader({
        ids: c.ids,
        log: (id) => c.node(id),
        machine: (id) => c.machine(id),
        stop: (id) => c.stop(id),
        restart: (id) => c.restart(id),
        waitUntil: (w, p, t) => c.waitUntil(w, p, t),
        close: () => c.close(),
      });
      for (const id of c.ids) if (id !== leader) await c.stop(id);
      const err = await c
        .node(leader)
        .propose(new TextEncoder().encode("alone"), { timeoutMs: 300 })
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect(isConsensusError(err) && ["TIMEOUT", "DROPPED", "NOT_LEADER"].includes(err.code)).toBe(true);
      expect(c.machine(leader).commands).not.toContain("alone");
    } finally {
      await c.close();
    }
  });
});

describe("PaxosNode leadership transfer", () => {
  it("hands leadership to a follower, which then commits; refuses on a follower and for a non-member", async () => {
    const c = new NodeCluster(["n1", "n2", "n3"]);
    await c.start();
    try {
      let leader = "";
      await c.waitUntil("a leader every node follows", () => {
        leader = c.ids.find((id) => c.node(id).status().role === "leader") ?? "";
        return leader !== "" && c.ids.every((id) => c.node(id).status().leaderId === leader);
      });
      for (let i = 0; i < 3; i++) await c.node(leader).propose(new TextEncoder().encode(`before${i}`));
      const target = c.ids.find((id) => id !== leader)!;
      const other = c.ids.find((id) => id !== leader && id !== target)!;
      await expect(c.node(other).transferLeadership(target)).rejects.toMatchObject({ code: "NOT_LEADER" });
      await expect(c.node(leader).transferLeadership("n9")).rejects.toMatchObject({
        code: "INVALID_ARGUMENT",
      });

      await c.node(leader).transferLeadership(target, { timeoutMs: 3_000 });
      expect(c.node(target).status().role).toBe("leader");
      expect(c.node(leader).status().role).toBe("follower");
      await c.node(target).propose(new TextEncoder().encode("after"));
      await c.waitUntil("every replica applied every command", () =>
        c.ids.every((id) => c.machine(id).commands.join() === "before0,before1,before2,after"),
      );
      // Transferring to itself is a no-op on the leader.
      await c.node(target).transferLeadership(target);
      expect(c.node(target).status().role).toBe("leader");
    } finally {
      await c.close();
    }
  });
});

describe("PaxosNode reads on a follower", () => {
  it("a follower's read waits until it has applied every command the leader had chosen", async () => {
    const c = new NodeCluster(["n1", "n2", "n3"]);
    await c.start();
    try {
      let leader = "";
      await c.waitUntil("a leader every node follows", () => {
        leader = c.ids.find((id) => c.node(id).status().role === "leader") ?? "";
        return leader !== "" && c.ids.every((id) => c.node(id).status().leaderId === leader);
      });
      const follower = c.ids.find((id) => id !== leader)!;
      for (let i = 0; i < 5; i++) await c.node(leader).propose(new TextEncoder().encode(`w${i}`));
      const { index } = await c.node(follower).read({ timeoutMs: 2_000 });
      expect(index).toBe(c.node(leader).status().commitIndex);
      // Linearizable: what the follower applied covers every acknowledged write.
      expect(c.machine(follower).appliedIndex()).toBeGreaterThanOrEqual(index);
      expect(c.machine(follower).commands).toEqual(expect.arrayContaining(["w0", "w1", "w2", "w3", "w4"]));
    } finally {
      await c.close();
    }
  });

  it("a follower that knows no leader refuses a read with NOT_LEADER", async () => {
    const c = new NodeCluster(["n1", "n2", "n3"], { electionTicks: 1_000 });
    await c.start();
    try {
      await expect(c.node("n2").read()).rejects.toMatchObject({ code: "NOT_LEADER" });
    } finally {
      await c.close();
    }
  });
});

describe("PaxosNode compaction and a state machine that fsyncs only at snapshots", () => {
  it("never compacts past what the state machine made durable (snapshot() first, as RaftNode)", async () => {
    // kv's store commits applies without fsync and makes them durable in snapshot(): after a
    // power loss it comes back at that index, so the log must still hold every later slot.
    const durable = new Map<string, number>();
    const c = new NodeCluster(["n1", "n2", "n3"], { snapshotThreshold: 3, snapshotCatchUpSlots: 0 });
    await c.start();
    try {
      for (const id of c.ids) {
        const m = c.machine(id);
        const snapshot = m.snapshot.bind(m);
        m.snapshot = async () => {
          const snap = await snapshot();
          durable.set(id, snap.index);
          return snap;
        };
      }
      let leader = "";
      await c.waitUntil("a leader", () => {
        leader = c.ids.find((id) => c.node(id).status().role === "leader") ?? "";
        return leader !== "";
      });
      let worst = 0;
      for (let i = 0; i < 20; i++) {
        await c.node(leader).propose(new TextEncoder().encode(`c${i}`));
        for (const id of c.ids) {
          const compacted = c.node(id).coreStatus()?.compactedIndex ?? 0;
          worst = Math.max(worst, compacted - (durable.get(id) ?? 0));
        }
      }
      await c.waitUntil("the leader compacted", () => c.node(leader).stats.compactions > 0);
      expect(worst, "a compaction point above the durable index").toBeLessThanOrEqual(0);
    } finally {
      await c.close();
    }
  });

  it("takes a compaction snapshot once per snapshotThreshold indexes, even when the kept slots leave nothing to compact", async () => {
    // Before, once past the threshold with fewer slots than snapshotCatchUpSlots, every Ready
    // retried the compaction (a scan of every executed slot): kv on Paxos slowed to a crawl
    // after 10,000 puts (bench:kv put-64 0.14x Raft's).
    const snapshots = new Map<string, number>();
    const c = new NodeCluster(["n1", "n2", "n3"], { snapshotThreshold: 5, snapshotCatchUpSlots: 1_000 });
    await c.start();
    try {
      for (const id of c.ids) {
        const m = c.machine(id);
        const snapshot = m.snapshot.bind(m);
        m.snapshot = async () => {
          snapshots.set(id, (snapshots.get(id) ?? 0) + 1);
          return snapshot();
        };
      }
      let leader = "";
      await c.waitUntil("a leader", () => {
        leader = c.ids.find((id) => c.node(id).status().role === "leader") ?? "";
        return leader !== "";
      });
      for (let i = 0; i < 40; i++) await c.node(leader).propose(new TextEncoder().encode(`c${i}`));
      await c.waitUntil("every replica applied 40 commands", () =>
        c.ids.every((id) => c.machine(id).commands.length >= 40),
      );
      for (const id of c.ids) {
        expect(snapshots.get(id) ?? 0, id).toBeGreaterThan(0);
        expect(snapshots.get(id) ?? 0, id).toBeLessThanOrEqual(9);
        expect(c.node(id).coreStatus()?.compactedSlot, id).toBe(0);
      }
    } finally {
      await c.close();
    }
  });
});

describe("PaxosNode log compaction and snapshot catch-up", () => {
  const leaderOf = async (c: NodeCluster) => {
    let leader = "";
    await c.waitUntil("a leader", () => {
      leader = c.ids.find((id) => c.slots.has(id) && c.node(id).status().role === "leader") ?? "";
      return leader !== "";
    });
    return leader;
  };

  it("a replica whose missing slots were compacted gets a chunked snapshot, then the later slots; a restart starts from the compaction point", async () => {
    const c = new NodeCluster(["n1", "n2", "n3"], {
      snapshotThreshold: 5,
      snapshotCatchUpSlots: 1,
      snapshotChunkBytes: 50,
    });
    await c.start();
    try {
      const leader = await leaderOf(c);
      const lagging = c.ids.find((id) => id !== leader)!;
      await c.stop(lagging);
      const enc = new TextEncoder();
      for (let i = 0; i < 30; i++) await c.node(leader).propose(enc.encode(`k${i}`), { timeoutMs: 2_000 });
      expect(c.node(leader).coreStatus()!.compactedSlot).toBeGreaterThan(5);

      await c.restart(lagging);
      await c.waitUntil(
        "the lagging replica to catch up",
        () => c.machine(lagging).commands.length === 30,
        10_000,
      );
      expect(c.machine(lagging).commands).toEqual(c.machine(leader).commands);
      expect(c.node(lagging).stats.snapshotsInstalled).toBeGreaterThanOrEqual(1);
      expect(c.node(leader).stats.snapshotsSent).toBeGreaterThanOrEqual(1);
      await c.node(leader).propose(enc.encode("after"), { timeoutMs: 2_000 });
      await c.waitUntil("the slot after the snapshot", () => c.machine(lagging).commands.at(-1) === "after");

      // The leader restarts from its compacted store: nothing before the compaction point is
      // replayed (the state machine already has it) and its store holds only the tail.
      const before = c.node(leader).coreStatus()!.compactedSlot;
      await c.stop(leader);
      await c.restart(leader);
      const s = c.node(leader).coreStatus()!;
      expect(s.compactedSlot).toBeGreaterThanOrEqual(before);
      expect(c.slots.get(leader)!.storage.size().chosen).toBeLessThan(10);
      expect(c.machine(leader).commands.length).toBe(31);
    } finally {
      await c.close();
    }
  });

  it("flow control: a leader keeps at most maxInflightSlots slots in flight and queues the rest", async () => {
    const c = new NodeCluster(["n1", "n2", "n3"], { maxInflightSlots: 2, maxBatchCommands: 1 });
    await c.start();
    try {
      const leader = await leaderOf(c);
      const node = c.node(leader);
      // Watch every status the runtime reads from its core (it reads one after each Ready).
      let most = 0;
      const core = (node as unknown as { core: { status(): { inflight: number } } }).core;
      const status = core.status.bind(core);
      core.status = () => {
        const st = status();
        most = Math.max(most, st.inflight);
        return st;
      };
      const enc = new TextEncoder();
      await Promise.all(
        Array.from({ length: 20 }, (_, i) => node.propose(enc.encode(`f${i}`), { timeoutMs: 5_000 })),
      );
      expect(most).toBeGreaterThan(0);
      expect(most).toBeLessThanOrEqual(2);
      expect(c.machine(leader).commands.filter((x) => x.startsWith("f"))).toHaveLength(20);
    } finally {
      await c.close();
    }
  });
});

describe("PaxosNode metrics and logs", () => {
  it("exports role, ballot, chosen/applied index, proposals and elections on an injected registry, and logs through an injected logger", async () => {
    const registry = new Registry();
    const lines: { msg: string | undefined; obj: object }[] = [];
    const record = (obj: object, msg?: string) => lines.push({ obj, msg });
    const logger = { debug: record, info: record, warn: record, error: record };
    const c = new NodeCluster(["n1", "n2", "n3"], { metrics: registry, logger });
    await c.start();
    try {
      let leader = "";
      await c.waitUntil("a leader", () => {
        leader = c.ids.find((id) => c.node(id).status().role === "leader") ?? "";
        return leader !== "";
      });
      await c.node(leader).propose(new TextEncoder().encode("m"), { timeoutMs: 2_000 });
      const value = async (name: string, labels: Record<string, string>) => {
        const m = await registry.getSingleMetric(name)!.get();
        return m.values.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))?.value;
      };
      expect(await value("paxos_role", { node: leader })).toBe(2);
      expect(await value("paxos_ballot_round", { node: leader })).toBeGreaterThan(0);
      expect(await value("paxos_applied_index", { node: leader })).toBeGreaterThanOrEqual(1);
      expect(await value("paxos_chosen_slot", { node: leader })).toBeGreaterThanOrEqual(1);
      expect(await value("paxos_proposals_total", { node: leader, outcome: "committed" })).toBe(1);
      expect(await value("paxos_elections_total", { node: leader })).toBeGreaterThanOrEqual(1);
      expect(
        lines.some((l) => l.msg === "role changed" && (l.obj as { role?: string }).role === "leader"),
      ).toBe(true);
    } finally {
      await c.close();
    }
  });
});
