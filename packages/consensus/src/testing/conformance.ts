import { isConsensusError } from "../errors.js";
import type { ReplicatedLog } from "../replicated-log.js";
import type { RecordedResult, RecordingStateMachine } from "./recording-machine.js";

/** A running cluster, as the conformance cases see it. Built by each protocol's harness. */
export interface ConformanceCluster {
  readonly ids: readonly string[];
  /** The current incarnation of node `id` (a new object after `restart`). */
  log(id: string): ReplicatedLog<RecordedResult>;
  /** Node `id`'s state machine; it survives `stop`/`restart`, as a durable one would. */
  machine(id: string): RecordingStateMachine;
  /** Stops node `id` (as a crash would: durable state stays, nothing else). */
  stop(id: string): Promise<void>;
  /** Starts node `id` again from its durable state. */
  restart(id: string): Promise<void>;
  /**
   * Waits until `predicate` holds, letting time pass (real time, or virtual time in a
   * simulation); throws with `what` in the message after `timeoutMs` of that time.
   */
  waitUntil(what: string, predicate: () => boolean, timeoutMs?: number): Promise<void>;
  /** Stops every node and releases everything the cluster holds. */
  close(): Promise<void>;
}

export interface ConformanceHarness {
  /** A fresh cluster of `size` voting members, started. */
  createCluster(size: number): Promise<ConformanceCluster>;
  /** Cluster sizes this harness supports; cases that need other sizes are not offered. */
  readonly sizes: readonly number[];
}

export interface ConformanceCase {
  readonly name: string;
  readonly clusterSize: number;
  run(cluster: ConformanceCluster): Promise<void>;
}

const encode = (s: string) => Buffer.from(s, "utf8");

function fail(message: string): never {
  throw new Error(`conformance: ${message}`);
}

function expectEqual<T>(actual: T, expected: T, what: string): void {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) fail(`${what}: expected ${e}, got ${a}`);
}

/** The one node that every live node agrees is the leader. */
export async function waitForLeader(cluster: ConformanceCluster, live = cluster.ids): Promise<string> {
  let leader: string | undefined;
  await cluster.waitUntil(
    "one leader that every live node agrees on",
    () => {
      const leaders = live.filter((id) => cluster.log(id).status().role === "leader");
      if (leaders.length !== 1) return false;
      leader = leaders[0]!;
      return live.every((id) => cluster.log(id).status().leaderId === leader);
    },
    10_000,
  );
  return leader!;
}

async function proposeAll(log: ReplicatedLog<RecordedResult>, commands: string[]) {
  return Promise.all(commands.map((c) => log.propose(encode(c))));
}

async function waitForCommands(cluster: ConformanceCluster, ids: readonly string[], expected: string[]) {
  await cluster.waitUntil(`every node in [${ids}] to apply ${expected.length} commands`, () =>
    ids.every((id) => cluster.machine(id).commands.length >= expected.length),
  );
  for (const id of ids) expectEqual(cluster.machine(id).commands, expected, `commands applied on ${id}`);
}

/**
 * The behaviour every ReplicatedLog (Raft, Multi-Paxos) must show. A protocol's test file
 * runs them with its own harness:
 *
 *     for (const c of conformanceCases(harness)) it(c.name, async () => {
 *       const cluster = await harness.createCluster(c.clusterSize);
 *       try { await c.run(cluster); } finally { await cluster.close(); }
 *     });
 */
export function conformanceCases(harness: Pick<ConformanceHarness, "sizes">): ConformanceCase[] {
  const all: ConformanceCase[] = [
    {
      name: "elects one leader and commits a proposal on every replica",
      clusterSize: 3,
      async run(cluster) {
        const leader = await waitForLeader(cluster);
        const proposed = await cluster.log(leader).propose(encode("first"));
        if (proposed.index < 1) fail(`propose resolved with index ${proposed.index}`);
        expectEqual(proposed.result.count, 1, "result of the first command");
        await waitForCommands(cluster, cluster.ids, ["first"]);
      },
    },
    {
      name: "a single-node cluster commits on its own",
      clusterSize: 1,
      async run(cluster) {
        const [only] = cluster.ids;
        await waitForLeader(cluster);
        const results = await proposeAll(cluster.log(only!), ["a", "b", "c"]);
        expectEqual(
          results.map((r) => r.result.count),
          [1, 2, 3],
          "results in proposal order",
        );
        await waitForCommands(cluster, [only!], ["a", "b", "c"]);
      },
    },
    {
      name: "a follower refuses a proposal with NOT_LEADER and names the leader",
      clusterSize: 3,
      async run(cluster) {
        const leader = await waitForLeader(cluster);
        const follower = cluster.ids.find((id) => id !== leader)!;
        try {
          await cluster.log(follower).propose(encode("x"));
          fail("a follower accepted a proposal");
        } catch (err) {
          if (!isConsensusError(err, "NOT_LEADER")) throw err;
          expectEqual(err.leader?.id, leader, "leader hint");
        }
      },
    },
    {
      name: "concurrent proposals apply exactly once each, in one order on every replica",
      clusterSize: 3,
      async run(cluster) {
        const leader = await waitForLeader(cluster);
        const commands = Array.from({ length: 100 }, (_, i) => `c${i}`);
        const results = await proposeAll(cluster.log(leader), commands);
        const indexes = results.map((r) => r.index);
        if (new Set(indexes).size !== indexes.length) fail(`two proposals share an index: ${indexes}`);
        const order = [...commands].sort(
          (a, b) => results[commands.indexOf(a)]!.index - results[commands.indexOf(b)]!.index,
        );
        await waitForCommands(cluster, cluster.ids, order);
      },
    },
    {
      name: "read() on the leader reflects every write completed before it",
      clusterSize: 3,
      async run(cluster) {
        const leader = await waitForLeader(cluster);
        const log = cluster.log(leader);
        for (let i = 0; i < 5; i++) {
          const written = await log.propose(encode(`w${i}`));
          const { index } = await log.read();
          if (index < written.index)
            fail(`read index ${index} is behind the completed write at ${written.index}`);
          if (cluster.machine(leader).appliedIndex() < written.index) {
            fail("read() resolved before the state machine applied the completed write");
          }
        }
      },
    },
    {
      name: "a stopped follower catches up after restart",
      clusterSize: 3,
      async run(cluster) {
        const leader = await waitForLeader(cluster);
        const follower = cluster.ids.find((id) => id !== leader)!;
        await cluster.stop(follower);
        await proposeAll(cluster.log(leader), ["while-down-1", "while-down-2"]);
        await cluster.restart(follower);
        await proposeAll(cluster.log(leader), ["after-restart"]);
        await waitForCommands(cluster, cluster.ids, ["while-down-1", "while-down-2", "after-restart"]);
      },
    },
    {
      name: "a new leader takes over when the leader stops, keeping every committed command",
      clusterSize: 3,
      async run(cluster) {
        const oldLeader = await waitForLeader(cluster);
        await proposeAll(cluster.log(oldLeader), ["before-1", "before-2"]);
        await cluster.stop(oldLeader);
        const live = cluster.ids.filter((id) => id !== oldLeader);
        const newLeader = await waitForLeader(cluster, live);
        await proposeAll(cluster.log(newLeader), ["after"]);
        await waitForCommands(cluster, live, ["before-1", "before-2", "after"]);
        await cluster.restart(oldLeader);
        await waitForCommands(cluster, cluster.ids, ["before-1", "before-2", "after"]);
      },
    },
    {
      name: "close() rejects later proposals with SHUTTING_DOWN",
      clusterSize: 3,
      async run(cluster) {
        const leader = await waitForLeader(cluster);
        const log = cluster.log(leader);
        await log.close();
        try {
          await log.propose(encode("late"));
          fail("a closed node accepted a proposal");
        } catch (err) {
          if (!isConsensusError(err, "SHUTTING_DOWN")) throw err;
        }
        expectEqual(log.status().role, "stopped", "role after close");
      },
    },
    {
      name: "status() reports the commit and applied index of the last write",
      clusterSize: 3,
      async run(cluster) {
        const leader = await waitForLeader(cluster);
        const { index } = await cluster.log(leader).propose(encode("s"));
        const status = cluster.log(leader).status();
        if (status.commitIndex < index || status.appliedIndex < index) {
          fail(`status ${JSON.stringify(status)} is behind the applied write at ${index}`);
        }
        expectEqual(
          status.members
            .filter((m) => !m.learner)
            .map((m) => m.id)
            .sort(),
          [...cluster.ids].sort(),
          "voting members",
        );
      },
    },
  ];
  return all.filter((c) => harness.sizes.includes(c.clusterSize));
}
