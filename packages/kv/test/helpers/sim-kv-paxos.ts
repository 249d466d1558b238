import type { LogEntry, ReplicatedLog, Snapshot, StateMachine } from "@quorum/consensus";
import { type ApplyResult, KvService, KvStore, ShardedKvService } from "@quorum/kv";
// A dev dependency only: kv itself runs on any ReplicatedLog.
import { type AcceptorStore, PaxosNode, type PaxosNodeOptions, SqliteAcceptorStore } from "@quorum/paxos";
import { type NodeContext, SimCluster, type Simulation } from "@quorum/sim";

/**
 * helpers/sim-kv.ts with Multi-Paxos in place of Raft: per simulated node a PaxosNode (one
 * per shard, on channel `paxos-${i}`) over the simulated transport and clock, its acceptor
 * state in a SqliteAcceptorStore, a KvStore as its state machine and a KvService or
 * ShardedKvService in front. It exports the same names and shapes as sim-kv.ts (the
 * consensus nodes keep the fields `raft`/`rafts`), so a test file can run the Raft
 * simulations on Paxos unchanged by mocking "./helpers/sim-kv.js" with this module.
 *
 * What survives a crash: the acceptor store and the kv store, both ":memory:" SQLite
 * databases that outlive the crashed incarnation. Each commits a whole Ready / apply batch in
 * one transaction, so a crash loses what was never committed and nothing else.
 */
export interface DurableNode {
  /** Shard 0's acceptor store (the only one's without `shards`). */
  readonly log: SqliteAcceptorStore;
  readonly store: KvStore;
  /** Every shard's acceptor store and kv store, in shard order. */
  readonly shards: readonly { readonly log: SqliteAcceptorStore; readonly store: KvStore }[];
}

/** One running incarnation: the Paxos node(s) and the etcd service in front. */
export interface SimKvNode {
  /** Shard 0's Paxos node (named as in sim-kv.ts). */
  readonly raft: PaxosNode<ApplyResult>;
  /** Shard 0's service (the only one without `shards`). */
  readonly service: KvService;
  readonly incarnation: number;
  /** Every shard's Paxos node, in shard order (named as in sim-kv.ts). */
  readonly rafts: readonly PaxosNode<ApplyResult>[];
  /** With `shards` > 1: the node's router over every shard. */
  readonly router: ShardedKvService | undefined;
}

export interface SimKv {
  readonly cluster: SimCluster<SimKvNode>;
  readonly durable: Map<string, DurableNode>;
  /** The live node that leads shard 0 with the highest ballot, if any. */
  leader(): string | undefined;
  shardLeader(shard: number): string | undefined;
  close(): Promise<void>;
}

/** The RaftNode options sim-kv.ts's callers pass, mapped to their Paxos counterparts. */
interface RaftLikeOptions {
  readonly snapshotThreshold?: number;
  readonly snapshotCatchUpEntries?: number;
  readonly snapshotChunkBytes?: number;
  readonly core?: { readonly maxEntriesPerMessage?: number; readonly maxInflight?: number };
}

export interface SimKvOptions {
  /**
   * RaftNode options as sim-kv.ts takes them: snapshot threshold, catch-up entries (as slots)
   * and chunk size carry over; `core.maxEntriesPerMessage` bounds commands per slot and
   * `core.maxInflight` the slots in flight, so seeds vary batching and flow control.
   */
  readonly raft?: (ctx: NodeContext) => RaftLikeOptions;
  /** PaxosNode options per node (applied after `raft`). */
  readonly paxos?: (ctx: NodeContext) => Partial<PaxosNodeOptions<ApplyResult>>;
  readonly requestTimeoutMs?: number;
  readonly shards?: number;
  /** As in sim-kv.ts: the routers' periodic bump, in virtual ms; off by default. */
  readonly shardBumpMs?: number;
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

/** An AcceptorStore that a crashed incarnation can no longer write, and that outlives it. */
function fencedAcceptors(store: SqliteAcceptorStore, dead: () => boolean): AcceptorStore {
  return {
    load: () => store.load(),
    save: (u) => {
      if (dead()) throw new Error("acceptor write from a crashed incarnation");
      store.save(u);
    },
    // The database outlives the incarnation; SimKv.close() closes it.
    close: () => {},
  };
}

/** The store as the state machine of one incarnation: writes from a crashed one are refused. */
function fencedMachine(store: KvStore, dead: () => boolean): StateMachine<ApplyResult> {
  const check = () => {
    if (dead()) throw new Error("state machine write from a crashed incarnation");
  };
  return {
    appliedIndex: () => store.appliedIndex(),
    apply: (entries: readonly LogEntry[]) => {
      check();
      return store.apply(entries);
    },
    snapshot: () => store.snapshot(),
    restore: async (snapshot: Snapshot) => {
      check();
      await store.restore(snapshot);
    },
  };
}

/** As in sim-kv.ts: a crashed process answers nothing, so a request reaching it never settles. */
function fencedService(log: PaxosNode<ApplyResult>, dead: () => boolean): ReplicatedLog<ApplyResult> {
  const never = <T>() => new Promise<T>(() => {});
  return {
    nodeId: log.nodeId,
    start: () => log.start(),
    propose: (command, options) => (dead() ? never() : log.propose(command, options)),
    proposeBatch: (commands, options) => (dead() ? never() : log.proposeBatch(commands, options)),
    read: (options) => (dead() ? never() : log.read(options)),
    status: () => log.status(),
    changeMembership: (change, options) => log.changeMembership(change, options),
    transferLeadership: (id, options) => log.transferLeadership(id, options),
    subscribe: (listener) => log.subscribe(listener),
    close: () => log.close(),
  };
}

/** As in sim-kv.ts: a crash also ends the crashed incarnation's services (watches, leases, timers). */
class SimKvCluster extends SimCluster<SimKvNode> {
  override crash(id: string): void {
    const node = this.runtime(id);
    super.crash(id);
    if (node) closeServices(node);
  }
}

function closeServices(node: Pick<SimKvNode, "router" | "service">): void {
  if (node.router) node.router.close();
  else node.service.close();
}

export function simKv(sim: Simulation, ids: readonly string[], options: SimKvOptions = {}): SimKv {
  const durable = new Map<string, DurableNode>();
  const peers = ids.map((id) => ({ id, address: id }));
  const shardCount = options.shards ?? 1;
  for (const id of ids) {
    const shards = Array.from({ length: shardCount }, () => ({
      log: new SqliteAcceptorStore(":memory:"),
      store: KvStore.open({ path: ":memory:" }),
    }));
    durable.set(id, { log: shards[0]!.log, store: shards[0]!.store, shards });
  }
  const logger = (id: string) => ({
    debug: () => {},
    info: () => {},
    warn: () => {},
    error: (obj: unknown, msg?: string) => sim.fail(new Error(`${id}: ${msg} ${JSON.stringify(obj)}`)),
  });
  const cluster = new SimKvCluster(sim, ids, async (ctx) => {
    const d = durable.get(ctx.id)!;
    const clock = ctx.clock as NodeContext["clock"] & { isDead(): boolean };
    const dead = () => clock.isDead();
    const nodes = d.shards.map(
      (shard, i) =>
        new PaxosNode<ApplyResult>({
          id: ctx.id,
          peers,
          transport: ctx.transport,
          clock: ctx.clock,
          storage: fencedAcceptors(shard.log, dead),
          stateMachine: fencedMachine(shard.store, dead),
          random: ctx.prng.random(),
          tickMs: 10,
          electionTicks: 10,
          logger: logger(shardCount > 1 ? `${ctx.id}/shard ${i}` : ctx.id),
          ...(shardCount > 1 ? { channel: `paxos-${i}` } : {}),
          ...fromRaft(options.raft?.(ctx) ?? {}),
          ...options.paxos?.(ctx),
        }),
    );
    await Promise.all(nodes.map((n) => n.start()));
    if (shardCount === 1) {
      const service = new KvService({
        log: fencedService(nodes[0]!, dead),
        store: d.store,
        requestTimeoutMs: options.requestTimeoutMs ?? 500,
        logger: logger(ctx.id),
        clock: ctx.clock,
      });
      // Crashed while starting: SimCluster drops this runtime, so its crash() cannot close it.
      if (dead()) service.close();
      return { raft: nodes[0]!, service, incarnation: ctx.incarnation, rafts: nodes, router: undefined };
    }
    const router = new ShardedKvService({
      shards: d.shards.map((shard, i) => ({ log: fencedService(nodes[i]!, dead), store: shard.store })),
      requestTimeoutMs: options.requestTimeoutMs ?? 500,
      logger: logger(ctx.id),
      clock: ctx.clock,
      // As in sim-kv.ts: no periodic bump unless a test asks for one.
      shardBumpIntervalMs: options.shardBumpMs ?? 1_000_000_000,
    });
    if (dead()) router.close();
    return {
      raft: nodes[0]!,
      service: router.services[0]!,
      incarnation: ctx.incarnation,
      rafts: nodes,
      router,
    };
  });
  const leaderOf = (shard: number) => {
    let best: [string, number] | undefined;
    for (const [id, n] of cluster.runtimes()) {
      const s = n.rafts[shard]!.status();
      if (s.role === "leader" && (!best || s.term > best[1])) best = [id, s.term];
    }
    return best?.[0];
  };
  return {
    cluster,
    durable,
    leader: () => leaderOf(0),
    shardLeader: leaderOf,
    async close() {
      for (const n of cluster.runtimes().values()) {
        closeServices(n);
        for (const r of n.rafts) await r.close();
      }
      for (const d of durable.values()) {
        for (const shard of d.shards) {
          shard.store.close();
          shard.log.close();
        }
      }
    },
  };
}
