import type { ApplyResult } from "@quorum/kv";
import { fencedStore } from "@quorum/kv/testing";
// A dev dependency only: kv itself runs on any ReplicatedLog.
import { RaftNode, type RaftNodeOptions, SqliteLogStore } from "@quorum/raft";
import type { NodeContext, Simulation } from "@quorum/sim";
import * as builder from "./sim-kv-builder.js";

/**
 * The simulated store (helpers/sim-kv-builder.ts) on Raft: per node one RaftNode per shard
 * (channel "raft", or `raft-${i}` with `shards`), its log in a SqliteLogStore.
 */
export type DurableNode = builder.DurableNode<SqliteLogStore>;
export type SimKvNode = builder.SimKvNode<RaftNode<ApplyResult>>;
export type SimKv = builder.SimKv<SqliteLogStore, RaftNode<ApplyResult>>;

export interface SimKvOptions extends builder.SimKvBaseOptions {
  /** Extra RaftNode options per node (snapshot thresholds, core limits, ...). */
  readonly raft?: (ctx: NodeContext) => Partial<RaftNodeOptions<ApplyResult>>;
}

export function simKv(sim: Simulation, ids: readonly string[], options: SimKvOptions = {}): SimKv {
  const members = ids.map((id) => ({ id, address: id, learner: false }));
  return builder.buildSimKv(
    sim,
    ids,
    {
      open: () => new SqliteLogStore({ path: ":memory:", initialMembers: members }),
      node: ({ ctx, shard, shardCount, log, machine, dead, logger }) =>
        new RaftNode<ApplyResult>({
          id: ctx.id,
          peers: [],
          transport: ctx.transport,
          clock: ctx.clock,
          storage: fencedStore(log, dead, "raft log", {
            reads: ["hardState", "entries", "term", "firstIndex", "lastIndex", "snapshot", "configEntries"],
            writes: ["save", "compact"],
          }),
          stateMachine: machine,
          random: ctx.prng.random(),
          tickMs: 10,
          electionTicks: 10,
          defaultTimeoutMs: 500,
          logger,
          ...(shardCount > 1 ? { channel: `raft-${shard}` } : {}),
          ...options.raft?.(ctx),
        }),
    },
    options,
  );
}
