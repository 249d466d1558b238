import type { ApplyResult } from "@quorum/kv";
import { fencedStore } from "@quorum/kv/testing";
// A dev dependency only: kv itself runs on any ReplicatedLog.
import { PaxosNode, type PaxosNodeOptions, SqliteAcceptorStore } from "@quorum/paxos";
import type { NodeContext, Simulation } from "@quorum/sim";
import * as builder from "./sim-kv-builder.js";

/**
 * helpers/sim-kv.ts with Multi-Paxos in place of Raft: per simulated node one PaxosNode per
 * shard (channel `paxos-${i}` with `shards`), its acceptor state in a SqliteAcceptorStore. It
 * exports the same names and shapes as sim-kv.ts (the consensus nodes keep the fields
 * `raft`/`rafts`), so a test file can run the Raft simulations on Paxos unchanged by mocking
 * "./helpers/sim-kv.js" with this module (which is why the builder is a third module).
 */
export type DurableNode = builder.DurableNode<SqliteAcceptorStore>;
export type SimKvNode = builder.SimKvNode<PaxosNode<ApplyResult>>;
export type SimKv = builder.SimKv<SqliteAcceptorStore, PaxosNode<ApplyResult>>;

/** The RaftNode options sim-kv.ts's callers pass, mapped to their Paxos counterparts. */
interface RaftLikeOptions {
  readonly snapshotThreshold?: number;
  readonly snapshotCatchUpEntries?: number;
  readonly snapshotChunkBytes?: number;
  readonly core?: { readonly maxEntriesPerMessage?: number; readonly maxInflight?: number };
}

export interface SimKvOptions extends builder.SimKvBaseOptions {
  /**
   * RaftNode options as sim-kv.ts takes them: snapshot threshold, catch-up entries (as slots)
   * and chunk size carry over; `core.maxEntriesPerMessage` bounds commands per slot and
   * `core.maxInflight` the slots in flight, so seeds vary batching and flow control.
   */
  readonly raft?: (ctx: NodeContext) => RaftLikeOptions;
  /** PaxosNode options per node (applied after `raft`). */
  readonly paxos?: (ctx: NodeContext) => Partial<PaxosNodeOptions<ApplyResult>>;
}

function fromRaft(o: RaftLikeOptions): Partial<PaxosNodeOptions<ApplyResult>> {
  return {
    ...(o.snapshotThreshold !== undefined ? { snapshotThreshold: o.snapshotThreshold } : {}),
    ...(o.snapshotCatchUpEntries !== undefined ? { snapshotCatchUpSlots: o.snapshotCatchUpEntries } : {}),
    ...(o.snapshotChunkBytes !== undefined ? { snapshotChunkBytes: o.snapshotChunkBytes } : {}),
    ...(o.core?.maxEntriesPerMessage !== undefined ? { maxBatchCommands: o.core.maxEntriesPerMessage } : {}),
    ...(o.core?.maxInflight !== undefined ? { maxInflightSlots: o.core.maxInflight } : {}),
  };
}

export function simKv(sim: Simulation, ids: readonly string[], options: SimKvOptions = {}): SimKv {
  const peers = ids.map((id) => ({ id, address: id }));
  return builder.buildSimKv(
    sim,
    ids,
    {
      open: () => new SqliteAcceptorStore(":memory:"),
      node: ({ ctx, shard, shardCount, log, machine, dead, logger }) =>
        new PaxosNode<ApplyResult>({
          id: ctx.id,
          peers,
          transport: ctx.transport,
          clock: ctx.clock,
          storage: fencedStore(log, dead, "acceptor", { reads: ["load"], writes: ["save"] }),
          stateMachine: machine,
          random: ctx.prng.random(),
          tickMs: 10,
          electionTicks: 10,
          logger,
          ...(shardCount > 1 ? { channel: `paxos-${shard}` } : {}),
          ...fromRaft(options.raft?.(ctx) ?? {}),
          ...options.paxos?.(ctx),
        }),
    },
    options,
  );
}
