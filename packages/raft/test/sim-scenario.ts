import { isConsensusError } from "@quorum/consensus";
import type { ScenarioContext } from "@quorum/sim";
import {
  addSafetyInvariant,
  assertDurableMajority,
  checkDurableMajorityAtCrashes,
  type SimRaftOptions,
  simRaft,
} from "./sim-raft.js";

export const IDS = ["n1", "n2", "n3", "n4", "n5"];

/**
 * Five RaftNodes on the simulated network and clock: drops, duplicates, delays, crashes and
 * restarts, partitions and swizzles (the Nemesis) while clients propose; the five safety
 * properties are checked after every scheduler step. Then the faults stop and every node must
 * converge, holding every acknowledged command. Storage saves are atomic and durable (as
 * SqliteLogStore's transactions are), so a crash loses only what was never saved. With
 * `options.disk` the logs live on SimDisks (a crash keeps only synced bytes).
 */
export async function raftScenario(
  { sim, seed }: ScenarioContext,
  options: SimRaftOptions = {},
): Promise<void> {
  sim.network.setFaults({ minDelayMs: 1, maxDelayMs: 20, dropRate: 0.05, duplicateRate: 0.05 });
  const r = simRaft(
    sim,
    IDS,
    () => ({
      snapshotThreshold: 25 + (seed % 20),
      snapshotCatchUpEntries: seed % 3 === 0 ? 0 : 10,
      snapshotChunkBytes: 512 + (seed % 4) * 300,
      core: { maxEntriesPerMessage: 1 + (seed % 8), maxInflight: 1 + (seed % 5) },
    }),
    IDS,
    options,
  );
  const { cluster, durable } = r;

  addSafetyInvariant(sim, r);

  await cluster.start();
  const acked = new Set<string>();
  /** Acknowledged commands by log index. */
  const ackedAt = new Map<number, string>();
  // On SimDisk: at every crash, each acknowledged command must be durable on a majority.
  if (options.disk) checkDurableMajorityAtCrashes(sim, r, ackedAt);
  let reads = 0;
  let stop = false;
  const sleep = (ms: number) => new Promise<void>((r) => sim.clock.schedule(ms, r));
  const client = async (name: string) => {
    const prng = sim.prng.fork(name);
    for (let k = 0; !stop; k++) {
      const nodes = [...cluster.runtimes().values()];
      const leader =
        nodes.find((n) => n.status().role === "leader") ?? nodes[Math.floor(prng.next() * nodes.length)];
      if (!leader) {
        await sleep(20);
        continue;
      }
      if (prng.next() < 0.25) {
        // A linearizable read on any live node: once it resolves, that node's state machine
        // holds every command acknowledged before the read began.
        const ids = [...cluster.runtimes().keys()];
        const id = ids[Math.floor(prng.next() * ids.length)]!;
        const node = cluster.runtime(id)!;
        const mustSee = [...acked];
        try {
          const answer = await Promise.race([
            node.read({ timeoutMs: 300 }).then(() => "ok" as const),
            sleep(400).then(() => "gone" as const),
          ]);
          if (answer === "ok") {
            const seen = new Set(durable.get(id)!.machine.commands);
            const missing = mustSee.filter((c) => !seen.has(c));
            if (missing.length > 0)
              throw new Error(`stale read on ${id}: misses acknowledged ${missing.join(",")}`);
            reads++;
          }
        } catch (err) {
          if (!isConsensusError(err)) throw err;
          await sleep(5 + Math.floor(prng.next() * 30));
        }
        continue;
      }
      const command = `${name}-${k}`;
      try {
        // The client's own deadline: a node that crashes mid-call never answers (its timers die with it).
        const answer = await Promise.race([
          leader.propose(Buffer.from(command), { timeoutMs: 300 }).then((res) => {
            ackedAt.set(res.index, command);
            return "ok" as const;
          }),
          sleep(400).then(() => "gone" as const),
        ]);
        if (answer === "ok") acked.add(command);
      } catch (err) {
        if (!isConsensusError(err)) throw err;
        await sleep(5 + Math.floor(prng.next() * 30));
      }
    }
  };
  let clientsDone = 0;
  const clients = ["c1", "c2", "c3"].map((c) =>
    client(c)
      .catch((e) => sim.fail(e))
      .finally(() => {
        clientsDone++;
      }),
  );

  // On odd seeds, membership churn: remove a follower, add it back as a learner, promote it.
  // "restore": only add back and promote, until all five are voters again.
  let reconfigure: "churn" | "restore" | "off" = seed % 2 === 1 ? "churn" : "off";
  const reconfigurer = async () => {
    const prng = sim.prng.fork("reconfigurer");
    while (reconfigure !== "off") {
      await sleep(100 + Math.floor(prng.next() * 200));
      const leader = [...cluster.runtimes().values()].find((n) => n.status().role === "leader");
      if (!leader) continue;
      const members = leader.status().members;
      const missing = IDS.filter((id) => !members.some((m) => m.id === id));
      const learner = members.find((m) => m.learner);
      const voters = members.filter((m) => !m.learner && m.id !== leader.nodeId);
      if (reconfigure === "restore" && missing.length === 0 && !learner) {
        reconfigure = "off";
        break;
      }
      const change =
        missing.length > 0
          ? { type: "addLearner" as const, member: { id: missing[0]!, address: missing[0]! } }
          : learner
            ? { type: "promote" as const, id: learner.id }
            : reconfigure === "churn"
              ? { type: "remove" as const, id: voters[Math.floor(prng.next() * voters.length)]!.id }
              : undefined;
      if (!change) continue;
      try {
        await Promise.race([leader.changeMembership(change, { timeoutMs: 300 }), sleep(400)]);
      } catch (err) {
        if (!isConsensusError(err)) throw err;
      }
    }
  };
  let reconfigurerDone = false;
  reconfigurer()
    .catch((e) => sim.fail(e))
    .finally(() => {
      reconfigurerDone = true;
    });

  cluster.startNemesis({ intervalMs: [50, 300], downMs: [20, 400] });
  await sim.runUntilTime(2_000);
  if (options.disk) assertDurableMajority(r, ackedAt);
  await cluster.livenessPhase();
  if (seed % 2 === 1) {
    // Stop removing; add back and promote until all five are voters, then stop. (Awaiting the
    // loop directly would wait for virtual time that only passes while the sim runs.)
    reconfigure = "restore";
    await sim.eventually("the reconfigurer restores all five voters", () => reconfigurerDone, 5_000);
  }
  const before = acked.size;
  const readsBefore = reads;
  await sim.eventually("5 more proposals commit after healing", () => acked.size >= before + 5, 5_000);
  // Reads are live too once healed. (Only "some read succeeded in the whole run" was checked,
  // which failed seed 3000047880: a leader was elected just after the faults, the 5 proposals
  // committed before any client happened to read, and no read during the faults had found a
  // stable leader. The clients keep running until a read succeeds.)
  await sim.eventually("a linearizable read succeeds after healing", () => reads > readsBefore, 5_000);
  stop = true;
  // A client may be waiting on its 400 ms fallback (a call to a node that crashed never
  // settles), which only fires while the simulation runs: run until all have stopped.
  // (Awaiting them after a fixed 300 ms hung seed 2938246818 forever.)
  await sim.eventually("the clients stop", () => clientsDone === clients.length, 2_000);
  await Promise.all(clients);
  const dump = () => {
    if (!process.env.QUORUM_DEBUG) return;
    for (const [id, node] of cluster.runtimes()) {
      console.log(id, JSON.stringify(node.coreStatus()), durable.get(id)!.machine.commands.length);
    }
    console.log("acked", acked.size, "up", cluster.up());
  };
  sim.clock.schedule(4_900, dump);
  await sim.eventually(
    "every replica applies the same commands, including every acknowledged one",
    () => {
      const lists = IDS.map((id) => durable.get(id)!.machine.commands);
      const first = lists[0]!;
      return lists.every((l) => l.length === first.length) && [...acked].every((c) => first.includes(c));
    },
    5_000,
  );
  for (const node of cluster.runtimes().values()) await node.close();
}
