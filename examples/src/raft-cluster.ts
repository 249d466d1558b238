// A three-node Raft cluster in one process.
//
// What it shows: the nodes elect a leader, the leader commits commands, the leader is
// killed, the two survivors elect a new leader that keeps every committed command and
// commits more, and the killed node comes back from its SQLite file and catches up.
//
// Run it (after `pnpm build` at the root):  node examples/dist/raft-cluster.js

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RaftNode, SqliteLogStore } from "@quorum/raft";
import { MemoryNetwork, type MemoryTransport, seededRandom, systemClock } from "@quorum/transport";
import { CommandList } from "./command-list.js";
import { check, exitIfStuck, section, waitFor } from "./util.js";

exitIfStuck(20_000);

// Raft replicates a log of opaque byte strings; what they mean is up to the application,
// which gives each node a state machine (`CommandList`, in command-list.ts, keeps the list
// of commands it applied). Every replica applies the same committed commands in the same
// order, so every replica ends in the same state.
//
// Each node also needs: a Transport to reach its peers (here a MemoryNetwork, all in this
// process; a real deployment passes a GrpcTransport), a Clock (the real one; the simulator
// passes a virtual one), a durable log (SQLite files in a temporary folder), and a seeded
// random source for election jitter.
const ids = ["n1", "n2", "n3"];
const peers = ids.map((id) => ({ id, address: `memory:${id}` }));
const dataDir = mkdtempSync(join(tmpdir(), "quorum-example-raft-"));
const network = new MemoryNetwork();

interface Running {
  node: RaftNode<number>;
  transport: MemoryTransport;
  storage: SqliteLogStore;
  machine: CommandList;
}
const running = new Map<string, Running>();

async function startNode(id: string, seed: number): Promise<Running> {
  const transport = network.join(id);
  // The log lives in <dataDir>/<id>.db: WAL mode and synchronous=FULL, so an entry this
  // node acknowledged survives a crash.
  const storage = new SqliteLogStore({ path: join(dataDir, `${id}.db`) });
  // Our state machine is in memory, so it starts empty and Raft replays the whole log
  // into it on start. (A durable state machine stores its applied index instead.)
  const machine = new CommandList();
  const node = new RaftNode<number>({
    id,
    peers, // the initial voters, used only to bootstrap an empty log
    transport,
    clock: systemClock,
    storage,
    stateMachine: machine,
    random: seededRandom(seed),
    // Small timings so the example is quick: a tick every 10 ms, an election timeout of
    // 10-20 ticks (100-200 ms). The defaults are 50 ms ticks.
    tickMs: 10,
    electionTicks: 10,
  });
  // Events tell the application what the node is doing: here we print role changes.
  node.subscribe((event) => {
    if (event.type === "roleChanged" && event.role === "leader") {
      console.log(`  ${id} became leader (term ${node.status().term})`);
    }
  });
  await node.start();
  const slot = { node, transport, storage, machine };
  running.set(id, slot);
  return slot;
}

/** Stopping a node: close the Raft node, then its transport, then its log file. */
async function stopNode(id: string): Promise<void> {
  const slot = running.get(id);
  if (!slot) return;
  running.delete(id);
  await slot.node.close();
  await slot.transport.close();
  slot.storage.close();
}

/** The node that believes it leads, among those running (with the highest term). */
function currentLeader(): Running | undefined {
  return [...running.values()]
    .filter((r) => r.node.status().role === "leader")
    .sort((a, b) => b.node.status().term - a.node.status().term)[0];
}

async function propose(leader: Running, command: string): Promise<void> {
  // `propose` resolves once the command is committed by a majority and applied on the
  // leader; `index` is where it landed in the log, `result` what `apply` returned.
  const { index, result } = await leader.node.propose(new TextEncoder().encode(command));
  console.log(`  committed "${command}" at log index ${index}; the list now has ${result} entries`);
}

async function main(): Promise<void> {
  section("Starting three nodes; they hold an election");
  for (const [i, id] of ids.entries()) await startNode(id, i + 1);
  const first = await waitFor("a leader", () => currentLeader());
  const firstId = first.node.nodeId;
  const firstTerm = first.node.status().term;
  console.log(`leader: ${firstId} in term ${firstTerm}`);

  section("Committing three commands through the leader");
  // (Log index 1 holds the no-op entry the leader appended when it was elected.)
  for (const command of ["set x=1", "set y=2", "set z=3"]) await propose(first, command);

  // A follower refuses proposals and names the leader, so a client knows where to go.
  const follower = [...running.values()].find((r) => r !== first)!;
  try {
    await follower.node.propose(new TextEncoder().encode("set w=0"));
    check(false, "a follower must refuse a proposal");
  } catch (error) {
    console.log(`  ${follower.node.nodeId} refused a proposal: ${(error as Error).message}`);
  }

  section(`Killing the leader ${firstId}`);
  await stopNode(firstId);
  // The followers stop hearing heartbeats; after an election timeout one of them becomes
  // a candidate and wins the votes of a majority (itself and the other survivor: 2 of 3).
  const second = await waitFor("a new leader", () => {
    const leader = currentLeader();
    return leader && leader.node.nodeId !== firstId ? leader : undefined;
  });
  const secondTerm = second.node.status().term;
  console.log(`new leader: ${second.node.nodeId} in term ${secondTerm}`);
  check(secondTerm > firstTerm, "the new leader's term is higher than the old one's");
  // Leader completeness: a node wins an election only if its log is at least as up to date
  // as a majority's, so it holds every committed entry. It applies them once it commits an
  // entry of its own term (the no-op every new leader appends), which we wait for here.
  await waitFor("the new leader to apply the old commands", () =>
    second.machine.commands.length >= 3 ? true : undefined,
  );
  check(
    second.machine.commands.join() === "set x=1,set y=2,set z=3",
    `the new leader has every committed command (it has ${JSON.stringify(second.machine.commands)})`,
  );

  section("The new leader commits more");
  for (const command of ["set x=10", "del y"]) await propose(second, command);

  section(`Restarting ${firstId} from its SQLite log`);
  // It rejoins as a follower (it hears a higher term), keeps what it had on disk, and the
  // leader sends it the entries it missed.
  const back = await startNode(firstId, 42);
  const expected = ["set x=1", "set y=2", "set z=3", "set x=10", "del y"];
  await waitFor(
    `${firstId} to catch up`,
    () => back.machine.commands.length === expected.length || undefined,
  );

  section("Every replica applied the same commands in the same order");
  for (const [id, slot] of [...running.entries()].sort()) {
    const status = slot.node.status();
    console.log(
      `  ${id} ${status.role.padEnd(8)} term ${status.term} applied ${status.appliedIndex}: ${slot.machine.commands.join(", ")}`,
    );
    check(slot.machine.commands.join() === expected.join(), `${id} applied every committed command in order`);
  }
  console.log("\nOK: a new leader was elected and every committed command survived");
}

try {
  await main();
} finally {
  for (const id of [...running.keys()]) await stopNode(id);
  rmSync(dataDir, { recursive: true, force: true });
}
