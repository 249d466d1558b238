import type { LogEntry, Snapshot, StateMachine } from "@quorum/consensus";
import { runSeeds, SimCluster, type Simulation, seedCount } from "@quorum/sim";
import { describe, it } from "vitest";
import { PaxosNode } from "../src/index.js";
import { SimDiskAcceptorStore } from "./sim-disk-store.js";

/** A state machine that keeps what it applied; durable at once (it survives crashes). */
class Ledger implements StateMachine<number> {
  readonly entries: { index: number; command: string }[] = [];
  appliedIndex(): number {
    return this.entries.at(-1)?.index ?? 0;
  }
  apply(entries: readonly LogEntry[]): number[] {
    return entries.map((e) => {
      if (e.index <= this.appliedIndex()) throw new Error(`entry ${e.index} applied twice or out of order`);
      this.entries.push({ index: e.index, command: Buffer.from(e.command).toString("utf8") });
      return e.index;
    });
  }
  snapshot(): Promise<Snapshot> {
    throw new Error("not used");
  }
  restore(): Promise<void> {
    throw new Error("not used");
  }
}

async function scenario(sim: Simulation, size: number): Promise<void> {
  sim.network.setFaults({
    minDelayMs: 1,
    maxDelayMs: 15,
    dropRate: 0.05,
    duplicateRate: 0.05,
    ordering: "random",
  });
  const ids = Array.from({ length: size }, (_, i) => `n${i + 1}`);
  const ledgers = new Map(ids.map((id) => [id, new Ledger()]));
  const cluster = new SimCluster(sim, ids, async (ctx) => {
    const node = new PaxosNode<number>({
      id: ctx.id,
      peers: ctx.peers.map((p) => ({ id: p, address: p })),
      transport: ctx.transport,
      clock: ctx.clock,
      storage: new SimDiskAcceptorStore(ctx.disk),
      stateMachine: ledgers.get(ctx.id)!,
      random: ctx.prng.random(),
      tickMs: 10,
      electionTicks: 10,
    });
    await node.start();
    return node;
  });
  await cluster.start();

  // Safety: every value any replica ever knew chosen for a slot, across crashes.
  const chosenEver = new Map<number, string>();
  sim.addInvariant("no slot is chosen with two different values", () => {
    for (const [id, node] of cluster.runtimes()) {
      for (const [slot, value] of node.chosenSlots()) {
        const seen = chosenEver.get(slot);
        if (seen === undefined) chosenEver.set(slot, value.id);
        else if (seen !== value.id) return `slot ${slot}: ${id} has ${value.id}, another replica had ${seen}`;
      }
    }
    return undefined;
  });
  // State machine safety: one history of (index, command); every replica applies a prefix of it.
  const history: { index: number; command: string }[] = [];
  sim.addInvariant("every replica applies the same gap-free prefix", () => {
    for (const [id, ledger] of ledgers) {
      for (let i = 0; i < ledger.entries.length; i++) {
        const e = ledger.entries[i]!;
        const h = history[i];
        if (!h) history.push(e);
        else if (h.index !== e.index || h.command !== e.command) {
          return `${id} applied #${i} as ${e.index}:${e.command}, another replica as ${h.index}:${h.command}`;
        }
      }
    }
    return undefined;
  });

  // A client that keeps proposing to whichever node believes it leads.
  const acknowledged = new Set<string>();
  let next = 0;
  let stopped = false;
  const client = () => {
    if (stopped) return;
    const leaders = [...cluster.runtimes().values()].filter((n) => n.status().role === "leader");
    const target = leaders[0];
    if (target) {
      const command = `c${next++}`;
      target.propose(Buffer.from(command), { timeoutMs: 2_000 }).then(
        () => acknowledged.add(command),
        () => {},
      );
    }
    sim.clock.schedule(5 + Math.floor(sim.prng.next() * 30), client);
  };
  client();

  cluster.startNemesis({ intervalMs: [50, 400], downMs: [0, 800] });
  await sim.runUntilTime(4_000);
  await cluster.livenessPhase();
  stopped = true;

  await sim.eventually(
    "one leader that every node follows",
    () => {
      const nodes = [...cluster.runtimes().values()];
      const leaders = nodes.filter((n) => n.status().role === "leader");
      return leaders.length === 1 && nodes.every((n) => n.status().leaderId === leaders[0]!.nodeId);
    },
    5_000,
  );
  // A client retries (a proposal to a leader that is just being replaced may be dropped).
  let finalCommand: string | undefined;
  let attempt = 0;
  let inFlight = false;
  const retry = () => {
    if (finalCommand !== undefined) return;
    const leader = [...cluster.runtimes().values()].find((n) => n.status().role === "leader");
    if (leader && !inFlight) {
      const command = `final${attempt++}`;
      inFlight = true;
      leader.propose(Buffer.from(command), { timeoutMs: 1_000 }).then(
        () => {
          finalCommand = command;
        },
        () => {
          inFlight = false;
        },
      );
    }
    sim.clock.schedule(50, retry);
  };
  retry();
  await sim.eventually(
    "a proposal commits once a quorum is healthy",
    () => finalCommand !== undefined,
    5_000,
  );
  await sim.eventually(
    "every replica applies the same prefix, acknowledged commands included",
    () => {
      const lens = [...ledgers.values()].map((l) => l.entries.length);
      return (
        lens.every((n) => n === lens[0]) &&
        ledgers.get(ids[0]!)!.entries.some((e) => e.command === finalCommand)
      );
    },
    5_000,
  );
  sim.checkInvariants();
  if (process.env.PAXOS_SIM_DEBUG)
    console.log(
      `seed ${sim.seed}: ${history.length} applied, ${acknowledged.size} acked, ${next} proposed, t=${sim.now()}`,
    );
  const applied = new Set(history.map((h) => h.command));
  for (const c of acknowledged) {
    if (!applied.has(c)) throw new Error(`acknowledged command ${c} is missing from the applied log`);
  }
}

describe("paxos simulation (drops, duplicates, reordering, partitions, crash/restart)", () => {
  const seeds = seedCount({ seeds: 50 });
  const timeout = 20_000 + seeds * 4_000;
  it("3 nodes: no slot chosen twice, one applied prefix, progress when healthy", { timeout }, async () => {
    await runSeeds(
      "3 nodes: no slot chosen twice, one applied prefix, progress when healthy",
      (_seed, { sim }) => scenario(sim, 3),
      { seeds: 50 },
    );
  });
  it("5 nodes: no slot chosen twice, one applied prefix, progress when healthy", { timeout }, async () => {
    await runSeeds(
      "5 nodes: no slot chosen twice, one applied prefix, progress when healthy",
      (_seed, { sim }) => scenario(sim, 5),
      { seeds: 20 },
    );
  });
});
