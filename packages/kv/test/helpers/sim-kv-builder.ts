import type { ReplicatedLog, StateMachine } from "@quorum/consensus";
import { type ApplyResult, KvService, type KvServiceOptions, KvStore, ShardedKvService } from "@quorum/kv";
import { fencedMachine, fencedService } from "@quorum/kv/testing";
import { type NodeContext, SimCluster, type Simulation } from "@quorum/sim";
import type { Logger } from "@quorum/transport";

/**
 * The simulated store, whatever the consensus under it: per node one consensus node per shard
 * over the simulated transport and clock, a KvStore as its state machine and a KvService (one
 * shard) or a ShardedKvService (several) in front: the handlers the gRPC server calls, without
 * gRPC. An error logged by a node fails the run. helpers/sim-kv.ts builds it on Raft and
 * helpers/sim-kv-paxos.ts on Multi-Paxos, through a SimConsensus.
 *
 * What survives a crash of one node: each shard's consensus storage and kv store, both SQLite
 * databases that commit a whole Ready / a whole apply batch in one transaction, so in
 * production a SIGKILL keeps exactly what was committed. Here both live in ":memory:"
 * databases that outlive the crashed incarnation, which models that: a crash loses what was
 * never committed and nothing else. (Opening files afresh on restart is what test/kill.test.ts
 * does with real processes.)
 */

/** One consensus protocol as the builder needs it. */
export interface SimConsensus<Log extends { close(): void }, Node extends ReplicatedLog<ApplyResult>> {
  /** One shard's durable consensus storage on one node (it outlives the node's incarnations). */
  open(): Log;
  /**
   * One incarnation's node for `shard` (of `shardCount`), over `log` (to be fenced with
   * `dead`, as `machine` is) and `machine`, logging to `logger`.
   */
  node(args: {
    readonly ctx: NodeContext;
    readonly shard: number;
    readonly shardCount: number;
    readonly log: Log;
    readonly machine: StateMachine<ApplyResult>;
    readonly dead: () => boolean;
    readonly logger: Logger;
  }): Node;
}

export interface DurableNode<Log> {
  /** Shard 0's consensus storage (the only one's without `shards`). */
  readonly log: Log;
  readonly store: KvStore;
  /** Every shard's consensus storage and kv store, in shard order (one entry without `shards`). */
  readonly shards: readonly { readonly log: Log; readonly store: KvStore }[];
}

/** One running incarnation: the consensus node(s) and the etcd service in front. */
export interface SimKvNode<Node> {
  /** Shard 0's consensus node (the only one without `shards`); named for Raft, the first. */
  readonly raft: Node;
  /** Shard 0's service (the only one without `shards`). */
  readonly service: KvService;
  readonly incarnation: number;
  /** Every shard's consensus node, in shard order (one entry without `shards`). */
  readonly rafts: readonly Node[];
  /** With `shards` > 1: the node's router over every shard (what the gRPC server calls). */
  readonly router: ShardedKvService | undefined;
}

export interface SimKv<Log, Node> {
  readonly cluster: SimCluster<SimKvNode<Node>>;
  readonly durable: Map<string, DurableNode<Log>>;
  /** The live node that leads shard 0 (or the only shard) in the highest term, if any. */
  leader(): string | undefined;
  /** The live node that leads shard `shard` in the highest term, if any. */
  shardLeader(shard: number): string | undefined;
  /** Closes every live node and every durable database. */
  close(): Promise<void>;
}

/** What every consensus's simKv takes besides its own node options. */
export interface SimKvBaseOptions {
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
   * Shards per node (default 1: one consensus node on its default channel and a KvService).
   * With N > 1 every node runs one consensus node per shard, each on its own channel over its
   * one simulated transport, with its own log and store, behind a ShardedKvService.
   */
  readonly shards?: number;
  /**
   * With `shards` > 1: every this many virtual ms, each node's router raises idle shards it
   * leads to its highest known revision (`shardBumpIntervalMs`), so that merged multi-shard
   * watches and reads make progress without waiting for one. Off by default.
   */
  readonly shardBumpMs?: number;
}

/**
 * A crash also ends the crashed incarnation's service, as the death of a process would: its
 * watch streams stop (their clients must resume elsewhere), its lessor and timers stop, and it
 * stops listening to the store. The durable store outlives the incarnation, so a service left
 * open would keep feeding the dead node's watchers from the next incarnation's applies.
 */
class SimKvCluster<Node> extends SimCluster<SimKvNode<Node>> {
  override crash(id: string): void {
    const node = this.runtime(id);
    super.crash(id);
    if (node) closeServices(node);
  }
}

function closeServices(node: Pick<SimKvNode<unknown>, "router" | "service">): void {
  if (node.router) node.router.close();
  else node.service.close();
}

export function buildSimKv<Log extends { close(): void }, Node extends ReplicatedLog<ApplyResult>>(
  sim: Simulation,
  ids: readonly string[],
  consensus: SimConsensus<Log, Node>,
  options: SimKvBaseOptions = {},
): SimKv<Log, Node> {
  const durable = new Map<string, DurableNode<Log>>();
  const shardCount = options.shards ?? 1;
  for (const id of ids) {
    const shards = Array.from({ length: shardCount }, () => ({
      log: consensus.open(),
      store: KvStore.open({ path: ":memory:" }),
    }));
    durable.set(id, { log: shards[0]!.log, store: shards[0]!.store, shards });
  }
  const logger = (id: string): Logger => ({
    debug: () => {},
    info: () => {},
    warn: () => {},
    error: (obj: unknown, msg?: string) => sim.fail(new Error(`${id}: ${msg} ${JSON.stringify(obj)}`)),
  });
  const cluster = new SimKvCluster<Node>(sim, ids, async (ctx) => {
    const d = durable.get(ctx.id)!;
    const clock = ctx.clock as NodeContext["clock"] & { isDead(): boolean };
    const dead = () => clock.isDead();
    const nodes = d.shards.map((shard, i) =>
      consensus.node({
        ctx,
        shard: i,
        shardCount,
        log: shard.log,
        machine: fencedMachine(shard.store, dead),
        dead,
        logger: logger(shardCount > 1 ? `${ctx.id}/shard ${i}` : ctx.id),
      }),
    );
    await Promise.all(nodes.map((n) => n.start()));
    if (shardCount === 1) {
      const service = new KvService({
        log: fencedService(nodes[0]!, dead),
        store: d.store,
        requestTimeoutMs: options.requestTimeoutMs ?? 500,
        logger: logger(ctx.id),
        // Lease expiry and watch progress run on virtual time, and die with the node.
        clock: ctx.clock,
        ...options.service,
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
      ...options.service,
      // The router's periodic bump runs on this (virtual) clock; only the tests that need it
      // (merged watches and reads over several shards) ask for it.
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
