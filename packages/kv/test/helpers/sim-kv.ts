import type { LogEntry, ReplicatedLog, Snapshot, StateMachine } from "@quorum/consensus";
import { type ApplyResult, KvService, type KvServiceOptions, KvStore, ShardedKvService } from "@quorum/kv";
// A dev dependency only: kv itself runs on any ReplicatedLog.
import { type LogStore, RaftNode, type RaftNodeOptions, SqliteLogStore } from "@quorum/raft";
import { type NodeContext, SimCluster, type Simulation } from "@quorum/sim";

/**
 * What survives a crash of one simulated node: its Raft log (SqliteLogStore) and its kv
 * store (KvStore), both in SQLite. Each commits a whole Ready / a whole apply batch in one
 * transaction, so in production a SIGKILL keeps exactly what was committed. Here both live in
 * ":memory:" databases that outlive the crashed incarnation, which models that: a crash
 * loses what was never committed and nothing else. (Opening files afresh on restart is what
 * test/kill.test.ts does with real processes.)
 */
export interface DurableNode {
  /** Shard 0's (the only one's without `shards`). */
  readonly log: SqliteLogStore;
  readonly store: KvStore;
  /** Every shard's log and store, in shard order (one entry without `shards`). */
  readonly shards: readonly { readonly log: SqliteLogStore; readonly store: KvStore }[];
}

/** One running incarnation: the Raft node and the etcd service in front of it. */
export interface SimKvNode {
  /** Shard 0's Raft node (the only one without `shards`). */
  readonly raft: RaftNode<ApplyResult>;
  /** Shard 0's service (the only one without `shards`). */
  readonly service: KvService;
  readonly incarnation: number;
  /** Every shard's Raft node, in shard order (one entry without `shards`). */
  readonly rafts: readonly RaftNode<ApplyResult>[];
  /** With `shards` > 1: the node's router over every shard (what the gRPC server calls). */
  readonly router: ShardedKvService | undefined;
}

export interface SimKv {
  readonly cluster: SimCluster<SimKvNode>;
  readonly durable: Map<string, DurableNode>;
  /** The live node that leads (shard 0, or the only shard) in the highest term, if any. */
  leader(): string | undefined;
  /** The live node that leads shard `shard` in the highest term, if any. */
  shardLeader(shard: number): string | undefined;
  /** Closes every live node and every durable database. */
  close(): Promise<void>;
}

export interface SimKvOptions {
  /** Extra RaftNode options per node (snapshot thresholds, core limits, ...). */
  readonly raft?: (ctx: NodeContext) => Partial<RaftNodeOptions<ApplyResult>>;
  /** Deadline the service gives proposals and read barriers (virtual ms). */
  readonly requestTimeoutMs?: number;
  /** Lease and watch settings of every node's service (lessor intervals, watch bounds, ...). */
  readonly service?: Pick<
    KvServiceOptions,
    | "minLeaseTtlSeconds"
    | "leaderLeaseExtendMs"
    | "leaseCheckIntervalMs"
    | "watchProgressNotifyIntervalMs"
    | "watchMaxPendingResponses"
    | "watchMaxPendingBytes"
  >;
  /**
   * Shards per node (default 1: one RaftNode on channel "raft" and a KvService, as before).
   * With N > 1 every node runs one RaftNode per shard on channel `raft-${i}` over its one
   * simulated transport, each with its own log and store, behind a ShardedKvService.
   */
  readonly shards?: number;
  /**
   * With `shards` > 1: every this many virtual ms, each node's router raises idle shards it
   * leads to its highest known revision (`shardBumpIntervalMs`), so that merged multi-shard
   * watches and reads make progress without waiting for one. Off by default.
   */
  readonly shardBumpMs?: number;
}

/** A LogStore that a crashed incarnation can no longer write. */
function fencedLog(store: LogStore, dead: () => boolean): LogStore {
  const check = () => {
    if (dead()) throw new Error("raft log write from a crashed incarnation");
  };
  return {
    hardState: () => store.hardState(),
    entries: (lo, hi, maxBytes) => store.entries(lo, hi, maxBytes),
    term: (i) => store.term(i),
    firstIndex: () => store.firstIndex(),
    lastIndex: () => store.lastIndex(),
    snapshot: () => store.snapshot(),
    configEntries: () => store.configEntries(),
    save: (u) => {
      check();
      store.save(u);
    },
    compact: (i) => {
      check();
      store.compact(i);
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

/**
 * The log as the service of one incarnation sees it. The service's batcher and read barrier
 * defer to a `setImmediate`, which under the simulator runs after the scheduler's own turn,
 * i.e. after the *next* event: a request accepted just before a crash would otherwise reach
 * the dead node's log. A crashed process answers nothing, so neither does this.
 */
function fencedService(log: RaftNode<ApplyResult>, dead: () => boolean): ReplicatedLog<ApplyResult> {
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

/**
 * A crash also ends the crashed incarnation's service, as the death of a process would: its
 * watch streams stop (their clients must resume elsewhere), its lessor and timers stop, and it
 * stops listening to the store. The durable store outlives the incarnation, so a service left
 * open would keep feeding the dead node's watchers from the next incarnation's applies.
 */
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

/**
 * The whole store on the simulator: per node a RaftNode over the simulated transport and
 * clock, a SqliteLogStore, a KvStore as its state machine and a KvService (the handlers the
 * gRPC server calls, without gRPC). An error logged by a node fails the run.
 */
export function simKv(sim: Simulation, ids: readonly string[], options: SimKvOptions = {}): SimKv {
  const durable = new Map<string, DurableNode>();
  const members = ids.map((id) => ({ id, address: id, learner: false }));
  const shardCount = options.shards ?? 1;
  for (const id of ids) {
    const shards = Array.from({ length: shardCount }, () => ({
      log: new SqliteLogStore({ path: ":memory:", initialMembers: members }),
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
    const rafts = d.shards.map(
      (shard, i) =>
        new RaftNode<ApplyResult>({
          id: ctx.id,
          peers: [],
          transport: ctx.transport,
          clock: ctx.clock,
          storage: fencedLog(shard.log, dead),
          stateMachine: fencedMachine(shard.store, dead),
          random: ctx.prng.random(),
          tickMs: 10,
          electionTicks: 10,
          defaultTimeoutMs: 500,
          logger: logger(shardCount > 1 ? `${ctx.id}/shard ${i}` : ctx.id),
          ...(shardCount > 1 ? { channel: `raft-${i}` } : {}),
          ...options.raft?.(ctx),
        }),
    );
    await Promise.all(rafts.map((r) => r.start()));
    if (shardCount === 1) {
      const service = new KvService({
        log: fencedService(rafts[0]!, dead),
        store: d.store,
        requestTimeoutMs: options.requestTimeoutMs ?? 500,
        logger: logger(ctx.id),
        // Lease expiry and watch progress run on virtual time, and die with the node.
        clock: ctx.clock,
        ...options.service,
      });
      // Crashed while starting: SimCluster drops this runtime, so its crash() cannot close it.
      if (dead()) service.close();
      return { raft: rafts[0]!, service, incarnation: ctx.incarnation, rafts, router: undefined };
    }
    const router = new ShardedKvService({
      shards: d.shards.map((shard, i) => ({ log: fencedService(rafts[i]!, dead), store: shard.store })),
      requestTimeoutMs: options.requestTimeoutMs ?? 500,
      logger: logger(ctx.id),
      clock: ctx.clock,
      ...options.service,
      // The router's periodic bump runs on this (virtual) clock; only the tests that need it
      // (merged watches and reads over several shards) ask for it.
      shardBumpIntervalMs: options.shardBumpMs ?? 1_000_000_000,
    });
    if (dead()) router.close();
    return { raft: rafts[0]!, service: router.services[0]!, incarnation: ctx.incarnation, rafts, router };
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
