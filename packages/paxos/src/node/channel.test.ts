import { RecordingStateMachine } from "@quorum/consensus/testing";
import { MemoryNetwork, type MemoryTransport, seededRandom, systemClock } from "@quorum/transport";
import { describe, expect, it } from "vitest";
import { MemoryAcceptorStore } from "../storage/acceptor-store.js";
import { PaxosNode } from "./paxos-node.js";

/**
 * Several Paxos groups over one Transport per node (one group per kv shard), told apart by
 * their `channel`: each group elects its own leader and chooses its own log, and snapshot
 * catch-up stays inside its group.
 */
describe("PaxosNode channel", () => {
  const ids = ["n1", "n2", "n3"];
  const channels = ["paxos-0", "paxos-1"];

  function start(network: MemoryNetwork) {
    const transports = new Map<string, MemoryTransport>(ids.map((id) => [id, network.join(id)]));
    let seed = 1;
    const groups = channels.map((channel) =>
      ids.map((id) => {
        const machine = new RecordingStateMachine();
        const storage = new MemoryAcceptorStore();
        const node = new PaxosNode({
          id,
          peers: ids.map((p) => ({ id: p, address: `memory:${p}` })),
          transport: transports.get(id)!,
          clock: systemClock,
          storage,
          stateMachine: machine,
          random: seededRandom(seed++),
          tickMs: 10,
          electionTicks: 10,
          channel,
          // Compact at once with nothing kept: a stopped replica can only catch up by snapshot.
          snapshotThreshold: 2,
          snapshotCatchUpSlots: 0,
        });
        return { id, node, machine, storage };
      }),
    );
    return { transports, groups };
  }

  async function until(what: string, predicate: () => boolean, timeoutMs = 5_000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!predicate()) {
      if (performance.now() > deadline)
        throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  it("runs two groups over one transport per node, each with its own log and snapshots", async () => {
    const network = new MemoryNetwork();
    const { transports, groups } = start(network);
    try {
      for (const g of groups) for (const m of g) await m.node.start();
      const leaderOf = (g: (typeof groups)[number]) => g.find((m) => m.node.status().role === "leader");
      for (const [i, g] of groups.entries()) await until(`a leader of group ${i}`, () => !!leaderOf(g));

      // n3 of group 1 is stopped: it misses writes that are then compacted away.
      const lagging = groups[1]!.find((m) => m.id === "n3")!;
      await lagging.node.close();
      const restarted = new PaxosNode({
        id: "n3",
        peers: ids.map((p) => ({ id: p, address: `memory:${p}` })),
        transport: transports.get("n3")!,
        clock: systemClock,
        // The same (durable) acceptor state, as after a restart.
        storage: lagging.storage,
        stateMachine: lagging.machine,
        random: seededRandom(99),
        tickMs: 10,
        electionTicks: 10,
        channel: "paxos-1",
        snapshotThreshold: 2,
        snapshotCatchUpSlots: 0,
      });

      for (const [i, g] of groups.entries()) {
        // A follower may be elected in group 1 now that n3 is gone: propose through whoever leads.
        for (let k = 0; k < 6; k++) {
          await until(`a leader of group ${i}`, () => !!leaderOf(g));
          await leaderOf(g)!.node.propose(Buffer.from(`g${i}.${k}`));
        }
      }
      await restarted.start();
      groups[1]![2] = { ...lagging, node: restarted };

      const expected = (i: number) => Array.from({ length: 6 }, (_, k) => `g${i}.${k}`);
      for (const [i, g] of groups.entries()) {
        for (const m of g) {
          await until(`${m.id} of group ${i} applies its group's six commands`, () =>
            expected(i).every((c) => m.machine.commands.includes(c)),
          );
          // Nothing of the other group's log leaks in.
          expect(
            m.machine.commands.filter((c) => !c.startsWith(`g${i}.`)),
            `${m.id} group ${i}`,
          ).toEqual([]);
        }
      }
      expect(restarted.stats.snapshotsInstalled, "the lagging replica caught up by snapshot").toBeGreaterThan(
        0,
      );
    } finally {
      for (const g of groups) for (const m of g) await m.node.close();
      for (const t of transports.values()) await t.close();
    }
  });

  it("refuses an empty channel and one that would hear another group's snapshots", () => {
    const base = {
      id: "n1",
      peers: [],
      transport: new MemoryNetwork().join("n1"),
      clock: systemClock,
      storage: new MemoryAcceptorStore(),
      stateMachine: new RecordingStateMachine(),
      random: seededRandom(1),
    };
    expect(() => new PaxosNode({ ...base, channel: "" })).toThrow(/channel must be non-empty/);
    expect(() => new PaxosNode({ ...base, channel: "paxos-snapshot" })).toThrow(/not end in "-snapshot"/);
  });
});
