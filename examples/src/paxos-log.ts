// A Multi-Paxos replicated log: three PaxosNodes in one process.
//
// What it shows: one node wins phase 1 (prepare/promise) and becomes the leader; each
// command is then chosen with phase 2 only (accept/accepted by a majority) into a slot;
// commands proposed together share one slot; when the leader stops, another node runs
// phase 1 with a higher ballot, learns every value already chosen, and goes on choosing.
//
// Run it (after `pnpm build` at the root):  node examples/dist/paxos-log.js

import { MemoryAcceptorStore, PaxosNode } from "@quorum/paxos";
import { MemoryNetwork, type MemoryTransport, seededRandom, systemClock } from "@quorum/transport";
import { CommandList } from "./command-list.js";
import { check, exitIfStuck, section, waitFor } from "./util.js";

exitIfStuck(20_000);

// PaxosNode implements the same ReplicatedLog contract as RaftNode (@quorum/consensus), so
// it drives the same kind of state machine: `CommandList` (command-list.ts) keeps the list
// of commands it applied.
const ids = ["a", "b", "c"];
const peers = ids.map((id) => ({ id, address: `memory:${id}` }));
const network = new MemoryNetwork();

interface Running {
  node: PaxosNode<number>;
  transport: MemoryTransport;
  machine: CommandList;
}
const running = new Map<string, Running>();

async function startNode(id: string, seed: number): Promise<void> {
  const transport = network.join(id);
  const machine = new CommandList();
  const node = new PaxosNode<number>({
    id,
    peers,
    transport,
    clock: systemClock,
    // The acceptor's state (the highest ballot it promised, the values it accepted, the
    // values it knows chosen). It must be durable before the node answers a prepare or an
    // accept; in production that is SqliteAcceptorStore(path). Memory is enough here
    // because no node restarts.
    storage: new MemoryAcceptorStore(),
    stateMachine: machine,
    random: seededRandom(seed),
    tickMs: 10, // fast timings for the example (default 50 ms)
    electionTicks: 10,
  });
  node.subscribe((event) => {
    if (event.type === "roleChanged" && event.role === "leader") {
      console.log(`  ${id} won phase 1 and leads with ballot ${ballotOf(node)}`);
    }
  });
  await node.start();
  running.set(id, { node, transport, machine });
}

async function stopNode(id: string): Promise<void> {
  const slot = running.get(id);
  if (!slot) return;
  running.delete(id);
  await slot.node.close(); // also closes the acceptor store
  await slot.transport.close();
}

/** A ballot is (round, node id): rounds rise with every election; the node id breaks ties. */
function ballotOf(node: PaxosNode<number>): string {
  const ballot = node.coreStatus()?.ballot;
  return ballot ? `(${ballot.round}, ${ballot.node})` : "(none)";
}

function currentLeader(except?: string): Running | undefined {
  return [...running.values()].find((r) => r.node.status().role === "leader" && r.node.nodeId !== except);
}

async function main(): Promise<void> {
  section("Starting three acceptors; one campaigns (phase 1) and becomes leader");
  for (const [i, id] of ids.entries()) await startNode(id, i + 1);
  const first = await waitFor("a leader", () => currentLeader());
  const firstId = first.node.nodeId;

  section("Choosing commands (phase 2 only, one slot each)");
  for (const command of ["deposit 10", "withdraw 3"]) {
    const { index } = await first.node.propose(new TextEncoder().encode(command));
    console.log(`  chosen "${command}" at log index ${index} (slot ${first.node.coreStatus()?.chosenSlot})`);
  }
  // Proposals made in the same turn of the event loop travel together in one slot: one
  // round of accepts (and one disk write per acceptor) for all of them.
  const batch = ["deposit 1", "deposit 2", "deposit 3"];
  const results = await first.node.proposeBatch(batch.map((c) => new TextEncoder().encode(c)));
  console.log(
    `  chosen a batch of ${batch.length} at log indexes ${results.map((r) => r.index).join(", ")} (one slot: ${first.node.coreStatus()?.chosenSlot})`,
  );

  section(`Stopping the leader ${firstId}`);
  const chosenBefore = first.machine.commands.slice();
  const roundBefore = first.node.coreStatus()?.ballot.round ?? 0;
  await stopNode(firstId);
  // The others stop hearing heartbeats. One runs phase 1 with a higher ballot; a majority
  // (both survivors) promise and report what they accepted, so the new leader re-proposes
  // any value that might have been chosen and can never choose a different one for a slot.
  const second = await waitFor("a new leader", () => currentLeader(firstId));
  const roundAfter = second.node.coreStatus()?.ballot.round ?? 0;
  check(
    roundAfter > roundBefore,
    `the new leader's ballot round (${roundAfter}) is above the old one's (${roundBefore})`,
  );

  section("The new leader keeps choosing");
  const { index } = await second.node.propose(new TextEncoder().encode("withdraw 5"));
  console.log(`  chosen "withdraw 5" at log index ${index}`);

  section("Both survivors applied the same log");
  const expected = [...chosenBefore, "withdraw 5"];
  for (const [id, slot] of running) {
    await waitFor(`${id} to apply everything`, () =>
      slot.machine.commands.length >= expected.length ? true : undefined,
    );
    console.log(`  ${id} (${slot.node.status().role}): ${slot.machine.commands.join(", ")}`);
    check(slot.machine.commands.join() === expected.join(), `${id} applied every chosen command, in order`);
  }
  console.log("\nOK: the log survived the leader's stop and kept growing");
}

try {
  await main();
} finally {
  for (const id of [...running.keys()]) await stopNode(id);
}
