import { status } from "@grpc/grpc-js";
import {
  type ApplyResult,
  EtcdError,
  etcdErrors,
  isEtcdError,
  type KvService,
  KvStore,
  ShardedKvService,
  type ShardTxnAccess,
} from "@quorum/kv";
import { fencedMachine, fencedService, fencedStore } from "@quorum/kv/testing";
import { RaftNode, type RaftNodeOptions, SqliteLogStore } from "@quorum/raft";
import { type NodeContext, SimCluster, type Simulation } from "@quorum/sim";
import type { Logger } from "@quorum/transport";
import { ShardTxnEngine, type ShardTxnEngineOptions } from "@quorum/txn";

/**
 * Three (or more) simulated nodes, each running one RaftNode per shard (channel `raft-${i}`)
 * over its one simulated transport, behind a ShardedKvService with a ShardTxnEngine (as kv's
 * test/helpers/sim-kv.ts, with the same crash fences from `@quorum/kv/testing`).
 *
 * There is no gRPC in the simulation. What gRPC does between nodes is modelled by `rpc`: a
 * call to another node's in-process handlers, delayed, lost, duplicated and cut by partitions
 * and crashes as the simulated network's faults say, with a deadline on the caller's clock.
 * A lost request, a lost reply and a dead or unreachable peer all end in the same transient
 * etcd UNAVAILABLE error at the deadline (or at once for a refused connection), as the
 * engine's forwarding over gRPC would see them.
 */

/** What survives a crash of one node: every shard's Raft log and kv store (SQLite, committed). */
export interface DurableShards {
  readonly shards: readonly { readonly log: SqliteLogStore; readonly store: KvStore }[];
}

/** One running incarnation of a node. */
export interface SimShardNode {
  readonly id: string;
  readonly incarnation: number;
  readonly rafts: readonly RaftNode<ApplyResult>[];
  readonly router: ShardedKvService;
  readonly engine: ShardTxnEngine;
  /** True once this incarnation crashed. */
  dead(): boolean;
}

export interface SimShardsOptions {
  readonly shards: number;
  /** Deadline each shard's KvService gives proposals and read barriers (virtual ms). */
  readonly requestTimeoutMs?: number;
  /** Deadline of one call between nodes (virtual ms). */
  readonly rpcTimeoutMs?: number;
  /** Engine options (clock, random, newTxId and logger are the harness's). */
  readonly engine?: Omit<ShardTxnEngineOptions, "clock" | "random" | "newTxId" | "logger">;
  /**
   * Called at each step of the protocol, so a test can crash a node exactly there: on the
   * coordinator before it sends a prepare, decide or fence call and after it hears the
   * answer; on the shard leader that served it, after its log applied it and before it replies.
   */
  readonly onStep?: (step: ProtocolStep) => void;
  /** Extra RaftNode options per node (snapshot thresholds, core limits, ...). */
  readonly raft?: (ctx: NodeContext) => Partial<RaftNodeOptions<ApplyResult>>;
}

export interface ProtocolStep {
  readonly node: SimShardNode;
  readonly role: "coordinator" | "participant";
  readonly op: "prepare" | "decide" | "fence" | "forget";
  readonly phase: "before" | "after";
  readonly shard: number;
}

/** Where a call comes from: a node's incarnation, or a client outside the cluster. */
export type Caller = SimShardNode | "client";

export interface SimShards {
  readonly cluster: SimCluster<SimShardNode>;
  readonly durable: ReadonlyMap<string, DurableShards>;
  /**
   * Calls `fn` on node `to`'s current incarnation through the simulated network (see the
   * module comment). A caller that crashes never hears back, as a dead process would not.
   */
  rpc<T>(from: Caller, to: string, fn: (node: SimShardNode) => Promise<T>, timeoutMs?: number): Promise<T>;
  /** The live node that leads `shard` in the highest term, if any. */
  shardLeader(shard: number): string | undefined;
  /** Counters of the calls between nodes and from clients. */
  readonly calls: { sent: number; lost: number; duplicated: number; refused: number; timedOut: number };
  close(): Promise<void>;
}

const never = <T>() => new Promise<T>(() => {});

/** A crash ends the incarnation's router and engine too (timers, watch streams, store listeners). */
class ShardCluster extends SimCluster<SimShardNode> {
  override crash(id: string): void {
    const node = this.runtime(id);
    super.crash(id);
    node?.router.close();
  }
}

/** The error a caller sees for a call that failed on the way: transient, as the engine expects. */
function unavailable(why: string): EtcdError {
  return new EtcdError(status.UNAVAILABLE, `sim rpc: ${why}`);
}

export function simShards(sim: Simulation, ids: readonly string[], options: SimShardsOptions): SimShards {
  const shardCount = options.shards;
  const rpcTimeoutMs = options.rpcTimeoutMs ?? 600;
  const members = ids.map((id) => ({ id, address: id, learner: false }));
  const durable = new Map<string, DurableShards>();
  for (const id of ids) {
    durable.set(id, {
      shards: Array.from({ length: shardCount }, () => ({
        log: new SqliteLogStore({ path: ":memory:", initialMembers: members }),
        store: KvStore.open({ path: ":memory:" }),
      })),
    });
  }
  const rpcPrng = sim.prng.fork("rpc");
  const calls = { sent: 0, lost: 0, duplicated: 0, refused: 0, timedOut: 0 };
  // QUORUM_TRACE=1 prints every node's info and warn lines with the virtual time (replaying a seed).
  const trace = process.env.QUORUM_TRACE
    ? (name: string, obj: unknown, msg?: string) =>
        console.log(
          `${sim.now()} ${name}: ${msg} ${JSON.stringify(obj, (_k, v) =>
            typeof v === "bigint" ? `${v}` : v instanceof Uint8Array ? Buffer.from(v).toString("hex") : v,
          )}`,
        )
    : () => {};
  const summary = (r: unknown) => {
    const o = (r ?? {}) as {
      outcome?: number;
      commit?: boolean;
      revision?: bigint;
      provisionalRevision?: bigint;
      holderTxId?: Uint8Array;
    };
    const holder = o.holderTxId?.length ? Buffer.from(o.holderTxId).toString("hex").slice(0, 16) : undefined;
    return { outcome: o.outcome, commit: o.commit, revision: o.revision ?? o.provisionalRevision, holder };
  };
  const logger = (name: string): Logger => ({
    debug: () => {},
    info: (obj: unknown, msg?: string) => trace(name, obj, msg),
    warn: (obj: unknown, msg?: string) => trace(name, obj, msg),
    error: (obj: unknown, msg?: string) => sim.fail(new Error(`${name}: ${msg} ${JSON.stringify(obj)}`)),
  });

  let cluster: ShardCluster;

  /** Maps what a service threw to what its gRPC handler would send (UNAVAILABLE for "not now"). */
  const asWire = (node: SimShardNode, err: unknown): unknown =>
    isEtcdError(err) ? err : node.router.services[0]!.toEtcdError(err);

  const rpc = <T>(
    from: Caller,
    to: string,
    fn: (node: SimShardNode) => Promise<T>,
    timeoutMs = rpcTimeoutMs,
  ): Promise<T> => {
    const fromId = from === "client" ? "client" : from.id;
    const callerDead = () => from !== "client" && from.dead();
    if (callerDead()) return never();
    if (from !== "client" && to === from.id) {
      // A call to the node itself: no network, but a reply to a dead incarnation is never heard.
      return fn(from).then(
        (r) => (callerDead() ? never() : r),
        (err: unknown) => (callerDead() ? never() : Promise.reject(asWire(from, err))),
      );
    }
    calls.sent++;
    const clock = from === "client" ? sim.clock : cluster.clockFor(from.id)!;
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const settle = (f: () => void) => {
        if (settled || callerDead()) return;
        settled = true;
        timer.cancel();
        f();
      };
      const timer = clock.schedule(timeoutMs, () => {
        calls.timedOut++;
        settle(() => reject(unavailable(`${fromId} -> ${to}: deadline exceeded`)));
      });
      const faults = sim.network.getFaults();
      const delay = () => rpcPrng.int(faults.minDelayMs, faults.maxDelayMs);
      const reachable = () =>
        cluster.isUp(to) &&
        cluster.runtime(to) !== undefined &&
        (fromId === "client" || !sim.network.isBlocked(fromId, to));
      if (!cluster.isUp(to)) {
        // Connection refused: the caller learns it after one trip.
        calls.refused++;
        sim.scheduler.schedule(
          delay(),
          () => settle(() => reject(unavailable(`${to} is down`))),
          "rpc-refused",
        );
        return;
      }
      const deliver = (duplicate: boolean) => {
        if (!reachable() || rpcPrng.chance(faults.dropRate)) {
          calls.lost++;
          return;
        }
        const node = cluster.runtime(to)!;
        const reply = (f: () => void) =>
          sim.scheduler.schedule(
            delay(),
            () => {
              // The reply is lost if the server died meanwhile, or the link is cut now.
              if (duplicate || node.dead() || !reachable() || rpcPrng.chance(faults.dropRate)) {
                if (!duplicate) calls.lost++;
                return;
              }
              settle(f);
            },
            "rpc-reply",
          );
        fn(node).then(
          (r) => reply(() => resolve(r)),
          (err: unknown) => reply(() => reject(asWire(node, err))),
        );
      };
      sim.scheduler.schedule(delay(), () => deliver(false), "rpc-request");
      // Calls between nodes may arrive twice (prepare and decide must be idempotent). A
      // client's call is not duplicated: a Txn sent twice is two Txns, whatever the engine.
      if (rpcPrng.chance(faults.duplicateRate) && from !== "client") {
        calls.duplicated++;
        sim.scheduler.schedule(delay(), () => deliver(true), "rpc-duplicate");
      }
    });
  };

  /**
   * The engine's access for one node: prepare, decide and fence go to the node that leads
   * the shard as this node believes (itself included); the rest is this node's own view.
   */
  const accessFor = (self: () => SimShardNode, local: ShardTxnAccess, rafts: RaftNode<ApplyResult>[]) => {
    const step = (
      node: SimShardNode,
      role: ProtocolStep["role"],
      op: ProtocolStep["op"],
      phase: ProtocolStep["phase"],
      shard: number,
    ) => {
      if (!node.dead()) options.onStep?.({ node, role, op, phase, shard });
    };
    const toLeader = async <T>(
      op: ProtocolStep["op"],
      shard: number,
      txId: Uint8Array,
      fn: (svc: KvService) => Promise<T>,
    ): Promise<T> => {
      const me = self();
      const what = `${op} ${Buffer.from(txId).toString("hex").slice(0, 16)} shard ${shard}`;
      trace(me.id, {}, `${what} ->`);
      try {
        const r = await toLeaderOnce(me, op, shard, fn);
        trace(me.id, summary(r), `${what} <-`);
        return r;
      } catch (err) {
        trace(me.id, { err: String(err) }, `${what} failed`);
        throw err;
      }
    };
    const toLeaderOnce = async <T>(
      me: SimShardNode,
      op: ProtocolStep["op"],
      shard: number,
      fn: (svc: KvService) => Promise<T>,
    ): Promise<T> => {
      step(me, "coordinator", op, "before", shard);
      if (me.dead()) return never();
      const leader = rafts[shard]!.status().leaderId;
      if (leader === undefined) throw etcdErrors.noLeader();
      const answer = await rpc(me, leader, async (node) => {
        const r = await fn(node.router.services[shard]!);
        step(node, "participant", op, "after", shard);
        return r;
      });
      step(me, "coordinator", op, "after", shard);
      return me.dead() ? never() : answer;
    };
    const access: ShardTxnAccess = {
      map: local.map,
      // `forwarded`: the leader's node does not forward again (as the ShardTxn gRPC service).
      prepare: (shard, part) =>
        toLeader("prepare", shard, part.txId, (svc) => svc.prepareTxnPart(part, true)),
      decide: (shard, decision) =>
        toLeader("decide", shard, decision.txId, (svc) => svc.decideTxn(decision, true)),
      fence: (shard, txId) => toLeader("fence", shard, txId, (svc) => svc.fenceTxn(txId, true)),
      forget: (shard, forget) =>
        toLeader("forget", shard, forget.txIds[0] ?? Buffer.alloc(0), (svc) => svc.forgetTxns(forget, true)),
      prepared: (shard) => local.prepared(shard),
      leads: (shard) => local.leads(shard),
      maxKnown: () => local.maxKnown(),
    };
    return access;
  };

  cluster = new ShardCluster(sim, ids, async (ctx: NodeContext) => {
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
          storage: fencedStore(shard.log, dead, "raft log", {
            reads: ["hardState", "entries", "term", "firstIndex", "lastIndex", "snapshot", "configEntries"],
            writes: ["save", "compact"],
          }),
          stateMachine: fencedMachine(shard.store, dead),
          random: ctx.prng.fork(`raft/${i}`).random(),
          tickMs: 10,
          electionTicks: 10,
          defaultTimeoutMs: 500,
          logger: logger(`${ctx.id}/shard ${i}`),
          channel: `raft-${i}`,
          ...options.raft?.(ctx),
        }),
    );
    await Promise.all(rafts.map((r) => r.start()));
    const txPrng = ctx.prng.fork("txid");
    const nodeIndex = ids.indexOf(ctx.id);
    let txCount = 0;
    let engine: ShardTxnEngine | undefined;
    let node: SimShardNode | undefined;
    const router = new ShardedKvService({
      shards: d.shards.map((shard, i) => ({ log: fencedService(rafts[i]!, dead), store: shard.store })),
      requestTimeoutMs: options.requestTimeoutMs ?? 500,
      logger: logger(ctx.id),
      clock: ctx.clock,
      // The router's bumps (floor-only entries that bring idle shards up to the node's highest
      // known revision, which cut reads wait for) run on this clock, as in production.
      crossShardTxn: (local) => {
        engine = new ShardTxnEngine(
          accessFor(() => node!, local, rafts),
          {
            ...options.engine,
            clock: ctx.clock,
            wallClock: () => ctx.clock.now(),
            logger: logger(`${ctx.id}/engine`),
            random: ctx.prng.fork("engine").random(),
            // Unique over nodes and incarnations (and readable in a trace): node, incarnation,
            // counter, then seeded noise.
            newTxId: () => {
              const id = Buffer.alloc(16);
              id.writeUInt16BE(nodeIndex, 0);
              id.writeUInt16BE(ctx.incarnation, 2);
              id.writeUInt32BE(++txCount, 4);
              id.writeUInt32BE(txPrng.int(0, 2 ** 32 - 1), 8);
              id.writeUInt32BE(txPrng.int(0, 2 ** 32 - 1), 12);
              return id;
            },
          },
        );
        return engine;
      },
    });
    node = { id: ctx.id, incarnation: ctx.incarnation, rafts, router, engine: engine!, dead };
    // Crashed while starting: the cluster drops this runtime, so its crash() cannot close it.
    if (dead()) router.close();
    return node;
  });

  return {
    cluster,
    durable,
    rpc,
    calls,
    shardLeader(shard) {
      let best: [string, number] | undefined;
      for (const [id, n] of cluster.runtimes()) {
        const s = n.rafts[shard]!.status();
        if (s.role === "leader" && (!best || s.term > best[1])) best = [id, s.term];
      }
      return best?.[0];
    },
    async close() {
      for (const n of cluster.runtimes().values()) {
        n.router.close();
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
