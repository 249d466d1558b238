import { randomBytes } from "node:crypto";
import {
  Metadata,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type ServiceDefinition,
  status,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import type { ReplicatedLog } from "@quorum/consensus";
import type { Clock, RunningGrpcServer, Timer } from "@quorum/transport";
import { every, startGrpcServer, systemClock } from "@quorum/transport";
import { Registry } from "prom-client";
import { EtcdError, etcdErrors } from "../errors.js";
import {
  type CompactionRequest,
  type CompactionResponse,
  type DeleteRangeRequest,
  type DeleteRangeResponse,
  type LeaseGrantRequest,
  type LeaseGrantResponse,
  type LeaseLeasesRequest,
  type LeaseRevokeRequest,
  type LeaseRevokeResponse,
  type LeaseTimeToLiveRequest,
  type LeaseTimeToLiveResponse,
  type PutRequest,
  type PutResponse,
  RangeRequest,
  type RangeResponse,
  type ResponseHeader,
  type ResponseOp,
  type TxnRequest,
  type TxnResponse,
  type WatchRequest,
  type WatchResponse,
} from "../gen/etcdserverpb/rpc.js";
import {
  type ShardTxnBatch,
  type ShardTxnOp,
  type ShardTxnResult,
  type ShardTxnResults,
  ShardTxnService,
  type TxnDecision,
  type TxnForget,
  type TxnPart,
  type TxnState,
  type TxnVote,
} from "../gen/quorum/kv/v1/command.js";
import {
  floorHeader,
  type KvServer,
  KvService,
  type KvServiceOptions,
  shardHeader,
  TooLarge,
  withFloor,
} from "../server/kv-server.js";
import {
  checkDeleteRequest,
  checkRangeRequest,
  checkTxnRequest,
  defaultMaxTxnOps,
  isTxnSerializable,
} from "../server/validate.js";
import { evaluateCompare } from "../store/compare.js";
import type { Intent } from "../store/intents.js";
import { type ApplyResult, isTxnReadOnly, type KvStore, revisionHeader } from "../store/kv-store.js";
import { LeaderBalancer } from "./leader-balancer.js";
import { mergeDelete, mergeRange, txnRanges } from "./merge.js";
import { ShardedWatchStream } from "./sharded-watch.js";
import { ShardMap } from "./split.js";

/** One shard's replica on this node: its consensus group's log and its store. */
export interface ShardReplica {
  readonly log: ReplicatedLog<ApplyResult>;
  readonly store: KvStore;
}

/**
 * What the engine for Txns over several shards (`@quorum/txn`'s `ShardTxnEngine`) gets from
 * this node: each shard's participant side (prepare and decide through the shard's log, on
 * its leader) and what recovery needs to find transactions whose coordinator vanished.
 */
export interface ShardTxnAccess {
  readonly map: ShardMap;
  /** Proposes a part on the shard's leader; resolves with the shard's vote. */
  prepare(shard: number, part: TxnPart): Promise<TxnVote>;
  /** Proposes a decision on the shard's leader; resolves with the decision the shard recorded (the first one wins). */
  decide(shard: number, decision: TxnDecision): Promise<TxnDecision>;
  /**
   * Proposes recovery's fence on the shard's leader: resolves with the transaction's prepared
   * part there, or its decision there (an abort recorded by the fence itself if it had neither).
   */
  fence(shard: number, txId: Buffer): Promise<TxnState>;
  /**
   * Proposes a coordinator's forget on the shard's leader: the records of those transactions
   * (decided in every shard) are deleted, and older parts refused from then on (TxnForget).
   */
  forget(shard: number, forget: TxnForget): Promise<void>;
  /** Undecided parts in this node's replica of a shard. */
  prepared(shard: number): readonly Intent[];
  /** Whether this node leads the shard's consensus group now. */
  leads(shard: number): boolean;
  /** The highest revision this node knows of, over every shard. */
  maxKnown(): number;
}

/** The engine for a Txn whose keys fall in several shards. */
export interface CrossShardTxn {
  txn(req: TxnRequest, shards: readonly number[]): Promise<TxnResponse>;
  close(): void;
}

export interface ShardedKvServiceOptions
  extends Omit<
    KvServiceOptions,
    "log" | "store" | "revisionFloor" | "leaseExpiry" | "revokeLease" | "shardIndex"
  > {
  /** One replica per shard, in shard order; every node of the cluster must pass the same count. */
  readonly shards: readonly ShardReplica[];
  /** Split points (N-1, ascending); default `defaultSplitPoints(shards.length)`. */
  readonly splitPoints?: readonly Buffer[];
  /** Builds the engine for Txns over several shards; without it such a Txn fails with UNIMPLEMENTED. */
  readonly crossShardTxn?: (access: ShardTxnAccess) => CrossShardTxn;
  /** How often a shard leader raises an idle shard's revision to the node's highest known one; default 20. */
  readonly shardBumpIntervalMs?: number;
  /**
   * How often this node checks whether it leads too many shards and hands one over
   * (`LeaderBalancer`); off when undefined. `quorum node` sets it.
   */
  readonly balanceLeadersIntervalMs?: number;
}

type AnyCall = ServerUnaryCall<unknown, unknown>;

function randomLeaseId(): bigint {
  for (;;) {
    const id = randomBytes(8).readBigUInt64BE(0) & ((1n << 63n) - 1n);
    if (id !== 0n) return id;
  }
}

/** More ops than a node forwards in one turn under any load this store can take. */
const maxShardTxnBatch = 100_000;

function maxRev(parts: readonly { header?: ResponseHeader | undefined }[]): bigint {
  return parts.reduce((m, p) => (p.header && p.header.revision > m ? p.header.revision : m), 0n);
}

/**
 * The etcd API of one node over N shards (see README, "Sharding"): routes each request by
 * key to its shard's `KvService` (which forwards to that shard's leader), merges Range and
 * DeleteRange over several shards, spreads leases over every shard, and merges watches.
 */
export class ShardedKvService {
  readonly map: ShardMap;
  readonly services: KvService[];
  private readonly shards: readonly ShardReplica[];
  private observed = 0;
  private readonly bumping = new Set<number>();
  private readonly bumpTimer: Timer | undefined;
  private readonly clock: Clock;
  private readonly requestTimeoutMs: number;
  private readonly streams = new Set<ShardedWatchStream>();
  private readonly crossShard: CrossShardTxn | undefined;
  private readonly balancer: LeaderBalancer | undefined;

  constructor(private readonly options: Omit<ShardedKvServiceOptions, "listen">) {
    if (options.shards.length === 0) throw new RangeError("at least one shard");
    this.shards = options.shards;
    this.map = options.splitPoints
      ? new ShardMap(options.splitPoints)
      : ShardMap.ofCount(options.shards.length);
    if (this.map.count !== options.shards.length) {
      throw new RangeError(
        `${options.shards.length} shards but ${this.map.count} ranges from the split points`,
      );
    }
    this.requestTimeoutMs = options.requestTimeoutMs ?? 7_000;
    const {
      shards: _s,
      splitPoints: _p,
      crossShardTxn: _c,
      shardBumpIntervalMs: _b,
      balanceLeadersIntervalMs: _l,
      ...common
    } = options;
    this.services = options.shards.map(
      (shard, i) =>
        new KvService({
          ...common,
          log: shard.log,
          store: shard.store,
          // Shard 0's metrics go to the node's registry; the others' stay private (same names).
          metrics: i === 0 ? (options.metrics ?? new Registry()) : new Registry(),
          shardIndex: i,
          ...(options.shards.length > 1
            ? {
                revisionFloor: () => this.maxKnown(),
                leaseExpiry: i === 0,
                ...(i === 0
                  ? { revokeLease: (id: bigint) => this.revokeEverywhere(id, undefined).then(() => {}) }
                  : {}),
              }
            : {}),
        }),
    );
    this.clock = options.clock ?? systemClock;
    if (options.shards.length > 1) {
      this.bumpTimer = every(this.clock, options.shardBumpIntervalMs ?? 20, () => this.bump());
    }
    this.crossShard = options.crossShardTxn?.(this.txnAccess());
    if (options.shards.length > 1 && options.balanceLeadersIntervalMs !== undefined) {
      this.balancer = new LeaderBalancer(
        options.shards.map((s) => s.log),
        {
          clock: this.clock,
          intervalMs: options.balanceLeadersIntervalMs,
          ...(options.logger ? { logger: options.logger } : {}),
        },
      );
    }
  }

  private txnAccess(): ShardTxnAccess {
    return {
      map: this.map,
      prepare: (shard, part) => this.services[shard]!.prepareTxnPart(part),
      decide: (shard, decision) => this.services[shard]!.decideTxn(decision),
      fence: (shard, txId) => this.services[shard]!.fenceTxn(txId),
      forget: (shard, forget) => this.services[shard]!.forgetTxns(forget),
      prepared: (shard) => this.shards[shard]!.store.preparedTxns(),
      leads: (shard) => this.shards[shard]!.log.status().role === "leader",
      maxKnown: () => this.maxKnown(),
    };
  }

  get metrics(): Registry {
    return this.services[0]!.metrics;
  }

  get maxReceiveBytes(): number {
    return this.services[0]!.maxReceiveBytes;
  }

  /** The highest revision this node knows of, over all shards (its local replicas and replies it relayed). */
  maxKnown(): number {
    let m = this.observed;
    for (const s of this.shards) m = Math.max(m, s.store.revision());
    return m;
  }

  private observe(revision: bigint | number | undefined): void {
    const r = Number(revision ?? 0);
    if (r > this.observed) this.observed = r;
  }

  /** Every shard led here whose revision is behind the node's highest known gets a floor-only entry. */
  private bump(): void {
    const target = this.maxKnown();
    this.shards.forEach((shard, i) => {
      if (this.bumping.has(i) || shard.store.revision() >= target) return;
      if (shard.log.status().role !== "leader") return;
      this.bumping.add(i);
      shard.log
        .propose(withFloor(new Uint8Array(0), target), { timeoutMs: this.requestTimeoutMs })
        .catch(() => {})
        .finally(() => this.bumping.delete(i));
    });
  }

  /** Waits until every listed shard's local replica is at `revision` or beyond (bumps bring idle ones there). */
  private async waitFor(shards: readonly number[], revision: number): Promise<void> {
    const deadline = this.clock.now() + this.requestTimeoutMs;
    for (;;) {
      const behind = shards.filter((s) => this.shards[s]!.store.revision() < revision);
      if (behind.length === 0) return;
      if (this.clock.now() > deadline) throw etcdErrors.timeout();
      // Woken by the next entry any lagging replica applies (perhaps the bump's own, even
      // before propose returns), or by the deadline.
      await new Promise<void>((resolve) => {
        const offs: (() => void)[] = [];
        const done = () => {
          for (const off of offs) off();
          timer.cancel();
          resolve();
        };
        const timer = this.clock.schedule(Math.max(0, deadline - this.clock.now()) + 1, done);
        for (const s of behind) offs.push(this.shards[s]!.store.onApplied(done));
        this.bump();
      });
    }
  }

  /** A call object for a sub-request: KvService forwards `request` with the caller's metadata and deadline. */
  private sub<Req>(call: AnyCall | undefined, request: Req): ServerUnaryCall<Req, never> {
    const metadata = call?.metadata ?? new Metadata();
    return {
      request,
      metadata,
      getDeadline: () => (call ? call.getDeadline() : Infinity),
    } as unknown as ServerUnaryCall<Req, never>;
  }

  /** A forwarded request names its shard; otherwise undefined. */
  private targetShard(call: AnyCall | undefined): number | undefined {
    if (!call) return undefined;
    this.observe(Number(call.metadata.get(floorHeader)[0] ?? 0));
    const s = call.metadata.get(shardHeader)[0];
    return s === undefined ? undefined : Number(s);
  }

  private done<T extends { header?: ResponseHeader | undefined }>(r: T): T {
    this.observe(r.header?.revision);
    return r;
  }

  // ---- KV ----------------------------------------------------------------------------------

  async range(req: RangeRequest, call?: AnyCall): Promise<RangeResponse> {
    checkRangeRequest(req);
    const target = this.targetShard(call);
    const shards = target !== undefined ? [target] : this.map.shardsOf(req.key, req.rangeEnd);
    if (shards.length <= 1) {
      const s = shards[0] ?? this.map.shardOf(req.key);
      // One revision space: a revision another shard has reached is not in this one's future.
      if (req.revision > 0n && Number(req.revision) <= this.maxKnown())
        await this.waitFor([s], Number(req.revision));
      return this.done(await this.services[s]!.range(req, this.sub(call, req)));
    }
    // A consistent cut: every shard read at the same revision T from this node's replicas,
    // once each is at T and holds no transaction prepared below T. Then no later entry of any
    // shard can change what is at or below T, so the local reads need no leader.
    const readAt = async (t: number) => {
      await this.waitFor(shards, t);
      return Promise.all(
        shards.map((s) => {
          const sub = {
            ...req,
            ...this.map.clip(req.key, req.rangeEnd, s),
            revision: BigInt(t),
            serializable: true,
          };
          return this.services[s]!.range(sub);
        }),
      );
    };
    let t: number;
    if (req.revision > 0n) {
      t = Number(req.revision);
      if (t > this.maxKnown()) throw etcdErrors.futureRevision();
    } else {
      if (!req.serializable) await this.settle([req], call);
      t = this.maxKnown();
    }
    const parts = await readAt(t);
    const header = req.revision > 0n ? maxRev(parts) : BigInt(t);
    this.observe(maxRev(parts));
    return this.fill(mergeRange(req, parts, header));
  }

  /**
   * Before a linearizable read over several shards picks its cut: a count on each involved
   * shard's leader waits out transactions prepared in its part of the ranges (one may be
   * acknowledged already, at a revision this node has not seen); the leaders' replies then
   * carry a revision at or above it, so the cut (`maxKnown()`) covers it.
   */
  private async settle(ranges: readonly { key: Buffer; rangeEnd: Buffer }[], call: AnyCall | undefined) {
    await Promise.all(
      ranges.flatMap((r) =>
        this.map.shardsOf(r.key, r.rangeEnd).map(async (s) => {
          const sub = RangeRequest.fromPartial({ ...this.map.clip(r.key, r.rangeEnd, s), countOnly: true });
          this.observe((await this.services[s]!.range(sub, this.sub(call, sub))).header?.revision);
        }),
      ),
    );
  }

  /**
   * A read-only Txn over several shards takes no locks: its compares and reads all run at one
   * consistent cut T (multi-shard Ranges at revision T), which no transaction is half in.
   */
  private async readOnlyTxn(req: TxnRequest, call: AnyCall | undefined): Promise<TxnResponse> {
    if (!isTxnSerializable(req)) await this.settle(txnRanges(req), call);
    const t = BigInt(this.maxKnown());
    const run = async (txn: TxnRequest): Promise<TxnResponse> => {
      const checks = await Promise.all(
        txn.compare.map(async (c) => {
          const r = await this.range(
            RangeRequest.fromPartial({ key: c.key, rangeEnd: c.rangeEnd, revision: t }),
            call,
          );
          return evaluateCompare(c, r.kvs);
        }),
      );
      const succeeded = checks.every(Boolean);
      const responses = await Promise.all(
        (succeeded ? txn.success : txn.failure).map(async (op): Promise<ResponseOp> => {
          if (op.requestRange) {
            const r = op.requestRange;
            return {
              responseRange: await this.range({ ...r, revision: r.revision > 0n ? r.revision : t }, call),
            };
          }
          // etcd sends nested txn responses with an empty (all-zero) header.
          if (op.requestTxn)
            return { responseTxn: { ...(await run(op.requestTxn)), header: revisionHeader(0) } };
          return {};
        }),
      );
      return { header: revisionHeader(t), succeeded, responses };
    };
    return run(req);
  }

  private fill<T extends { header?: ResponseHeader | undefined }>(r: T): T {
    r.header = this.services[0]!.header(r.header?.revision);
    return r;
  }

  async put(req: PutRequest, call?: AnyCall): Promise<PutResponse> {
    const s = this.targetShard(call) ?? this.map.shardOf(req.key);
    return this.done(await this.services[s]!.put(req, this.sub(call, req)));
  }

  async deleteRange(req: DeleteRangeRequest, call?: AnyCall): Promise<DeleteRangeResponse> {
    checkDeleteRequest(req);
    const target = this.targetShard(call);
    const shards = target !== undefined ? [target] : this.map.shardsOf(req.key, req.rangeEnd);
    if (shards.length <= 1) {
      const s = shards[0] ?? this.map.shardOf(req.key);
      return this.done(await this.services[s]!.deleteRange(req, this.sub(call, req)));
    }
    if (this.crossShard) {
      // Atomic, at one revision in every shard, as etcd's: a Txn of this one delete.
      const r = await this.crossShard.txn(
        { compare: [], success: [{ requestDeleteRange: req }], failure: [] },
        shards,
      );
      return this.fill(this.done({ ...r.responses[0]!.responseDeleteRange!, header: r.header }));
    }
    // Without the cross-shard engine, not atomic: each shard deletes its part at its own revision.
    const parts = await Promise.all(
      shards.map((s) => {
        const sub = { ...req, ...this.map.clip(req.key, req.rangeEnd, s) };
        return this.services[s]!.deleteRange(sub, this.sub(call, sub));
      }),
    );
    return this.fill(this.done(mergeDelete(parts)));
  }

  async txn(req: TxnRequest, call?: AnyCall): Promise<TxnResponse> {
    checkTxnRequest(req, this.options.maxTxnOps ?? defaultMaxTxnOps);
    const target = this.targetShard(call);
    let shards: number[];
    if (target !== undefined) shards = [target];
    else {
      const set = new Set<number>();
      for (const r of txnRanges(req)) for (const s of this.map.shardsOf(r.key, r.rangeEnd)) set.add(s);
      shards = [...set].sort((a, b) => a - b);
    }
    if (shards.length > 1) {
      if (isTxnReadOnly(req)) return this.fill(await this.readOnlyTxn(req, call));
      if (this.crossShard) return this.fill(this.done(await this.crossShard.txn(req, shards)));
      throw new EtcdError(
        status.UNIMPLEMENTED,
        `quorum: a Txn over several shards is not implemented yet: its keys fall in shards ${shards.join(", ")} of ${this.map.count}`,
      );
    }
    return this.done(await this.services[shards[0] ?? 0]!.txn(req, this.sub(call, req)));
  }

  async compact(req: CompactionRequest, call?: AnyCall): Promise<CompactionResponse> {
    const target = this.targetShard(call);
    if (target !== undefined)
      return this.done(await this.services[target]!.compact(req, this.sub(call, req)));
    const all = [...this.shards.keys()];
    if (all.length === 1) return this.done(await this.services[0]!.compact(req, this.sub(call, req)));
    const rev = Number(req.revision);
    if (rev > this.maxKnown()) throw etcdErrors.futureRevision();
    await this.waitFor(all, rev);
    const parts = await Promise.all(all.map((s) => this.services[s]!.compact(req, this.sub(call, req))));
    return this.fill(this.done({ header: revisionHeader(maxRev(parts)) }));
  }

  // ---- leases: granted and revoked in every shard; shard 0's leader decides expiry ----------

  async leaseGrant(req: LeaseGrantRequest, call?: AnyCall): Promise<LeaseGrantResponse> {
    const target = this.targetShard(call);
    if (target !== undefined) return this.services[target]!.leaseGrant(req, this.sub(call, req));
    if (this.shards.length === 1) return this.services[0]!.leaseGrant(req, this.sub(call, req));
    const sub = { ...req, ID: req.ID !== 0n ? req.ID : randomLeaseId() };
    const first = await this.services[0]!.leaseGrant(sub, this.sub(call, sub));
    await Promise.all(
      this.services.slice(1).map((svc) =>
        svc.leaseGrant(sub, this.sub(call, sub)).catch((err: unknown) => {
          if (!(err instanceof EtcdError && err.message === etcdErrors.leaseExists().message)) throw err;
        }),
      ),
    );
    return first;
  }

  /** Revokes in shards 1..N-1 first, then in shard 0 (whose lease drives expiry, so a failure is retried). */
  private async revokeEverywhere(id: bigint, call: AnyCall | undefined): Promise<LeaseRevokeResponse> {
    const req: LeaseRevokeRequest = { ID: id };
    const parts = await Promise.all(
      this.services.slice(1).map((svc) =>
        svc.leaseRevoke(req, this.sub(call, req)).catch((err: unknown) => {
          if (!(err instanceof EtcdError && err.message === etcdErrors.leaseNotFound().message)) throw err;
          return undefined;
        }),
      ),
    );
    const first = await this.services[0]!.leaseRevoke(req, this.sub(call, req));
    for (const p of parts) this.observe(p?.header?.revision);
    return this.done(first);
  }

  async leaseRevoke(req: LeaseRevokeRequest, call?: AnyCall): Promise<LeaseRevokeResponse> {
    const target = this.targetShard(call);
    if (target !== undefined) return this.services[target]!.leaseRevoke(req, this.sub(call, req));
    if (this.shards.length === 1) return this.services[0]!.leaseRevoke(req, this.sub(call, req));
    return this.revokeEverywhere(req.ID, call);
  }

  async leaseTimeToLive(req: LeaseTimeToLiveRequest, call?: AnyCall): Promise<LeaseTimeToLiveResponse> {
    const target = this.targetShard(call);
    const r = await this.services[target ?? 0]!.leaseTimeToLive(req, this.sub(call, req));
    if (target === undefined && req.keys && r.TTL >= 0n && this.shards.length > 1) {
      // Keys attached through other nodes may not be applied here yet: a read barrier per
      // shard makes the local replicas reflect every put acknowledged before this call.
      await Promise.all(this.shards.map((s) => s.log.read({ timeoutMs: this.requestTimeoutMs })));
      r.keys = this.shards.flatMap((s) => s.store.leaseKeys(req.ID));
    }
    return r;
  }

  // ---- gRPC ----------------------------------------------------------------------------------

  private watchCall(call: ServerDuplexStream<WatchRequest | TooLarge, WatchResponse>): void {
    const s0 = this.services[0]!;
    const stream = new ShardedWatchStream(
      this.services.map((s) => s.watchHub),
      this.map,
      (rev) => s0.header(rev),
      (shard) => this.shards[shard]!.store.visibleRevision(),
      (r) => call.write(r),
      () => this.streams.delete(stream),
      () => this.bump(),
    );
    this.streams.add(stream);
    const tracked = s0.trackStream(call as ServerDuplexStream<unknown, unknown>, "Watch", () =>
      stream.close(),
    );
    if (!tracked) {
      stream.close();
      return;
    }
    call.on("drain", () => stream.drain());
    call.on("data", (req: WatchRequest | TooLarge) => {
      if (req instanceof TooLarge)
        return tracked.fail(etcdErrors.messageTooLarge(req.size, this.maxReceiveBytes));
      try {
        stream.handle(req);
      } catch (err) {
        tracked.fail(s0.toEtcdError(err));
      }
    });
    call.on("end", () => {
      tracked.done();
      call.end();
    });
    call.on("error", () => tracked.done());
    call.on("cancelled", () => tracked.done());
  }

  /** Shard 0's services (Maintenance, Cluster, keep-alive, lease list) with KV, Watch and Lease routed. */
  services_(): { definition: ServiceDefinition; implementation: UntypedServiceImplementation }[] {
    const s0 = this.services[0]!;
    const list = s0.services();
    // biome-ignore lint/suspicious/noExplicitAny: handlers bound by name
    const u = (name: string, fn: (req: any, call: AnyCall) => Promise<unknown> | unknown) =>
      s0.unary(name, (req: unknown, call: AnyCall) => fn(req, call));
    for (const svc of list) {
      const impl = svc.implementation;
      if ("range" in impl) {
        impl.range = u("Range", (req, call) => this.range(req, call));
        impl.put = u("Put", (req, call) => this.put(req, call));
        impl.deleteRange = u("DeleteRange", (req, call) => this.deleteRange(req, call));
        impl.txn = u("Txn", (req, call) => this.txn(req, call));
        impl.compact = u("Compact", (req, call) => this.compact(req, call));
      } else if ("watch" in impl) {
        impl.watch = (call: ServerDuplexStream<WatchRequest, WatchResponse>) => this.watchCall(call);
      } else if ("leaseGrant" in impl) {
        impl.leaseGrant = u("LeaseGrant", (req, call) => this.leaseGrant(req, call));
        impl.leaseRevoke = u("LeaseRevoke", (req, call) => this.leaseRevoke(req, call));
        impl.leaseTimeToLive = u("LeaseTimeToLive", (req, call) => this.leaseTimeToLive(req, call));
        impl.leaseLeases = u("LeaseLeases", (req: LeaseLeasesRequest) => s0.leaseLeases(req));
      }
    }
    if (this.crossShard) list.push({ definition: ShardTxnService, implementation: this.shardTxnImpl() });
    return list;
  }

  /**
   * The internal ShardTxn service: the prepares, decisions and fences that other nodes
   * forward here (to the shards this node leads), each answered on its own.
   */
  private shardTxnImpl(): UntypedServiceImplementation {
    return {
      batch: this.services[0]!.unary(
        "ShardTxn.Batch",
        async (req: ShardTxnBatch): Promise<ShardTxnResults> => {
          if (req.ops.length > maxShardTxnBatch)
            throw new EtcdError(
              status.INVALID_ARGUMENT,
              `quorum: more than ${maxShardTxnBatch} ops in one ShardTxn batch`,
            );
          const results = await Promise.all(
            req.ops.map((op) =>
              this.shardTxnOp(op).catch(
                (err: unknown): ShardTxnResult => ({
                  error:
                    err instanceof EtcdError
                      ? { code: err.code, message: err.message }
                      : { code: status.UNKNOWN, message: String(err) },
                }),
              ),
            ),
          );
          return { results };
        },
      ),
    };
  }

  private async shardTxnOp(op: ShardTxnOp): Promise<ShardTxnResult> {
    const svc = this.services[op.shard];
    if (!svc)
      throw new EtcdError(
        status.INVALID_ARGUMENT,
        `quorum: no shard ${op.shard} (this node has ${this.services.length})`,
      );
    if (op.prepare) return { vote: await svc.prepareTxnPart(op.prepare, true) };
    if (op.decide) return { decision: await svc.decideTxn(op.decide, true) };
    if (op.fence) return { state: await svc.fenceTxn(op.fence, true) };
    if (op.forget) {
      await svc.forgetTxns(op.forget, true);
      return { forgotten: true };
    }
    throw new EtcdError(
      status.INVALID_ARGUMENT,
      "quorum: a ShardTxn op without a prepare, decide, fence or forget",
    );
  }

  watchStreams(): number {
    return this.streams.size;
  }

  watchers(): number {
    let n = 0;
    for (const s of this.streams) n += s.watcherCount();
    return n;
  }

  endStreams(): void {
    for (const s of this.services) s.endStreams();
  }

  close(): void {
    this.crossShard?.close();
    this.balancer?.close();
    this.bumpTimer?.cancel();
    for (const s of [...this.streams]) s.close();
    for (const s of this.services) s.close();
  }
}

/**
 * Serves etcd's v3 API for one node that hosts a replica of every shard. With one shard it
 * behaves exactly like `startKvService`. Shutdown: `server.close()`, then every shard's
 * `log.close()`, then every `store.close()`.
 */
export async function startShardedKvService(options: ShardedKvServiceOptions): Promise<KvServer> {
  const service = new ShardedKvService(options);
  let server: RunningGrpcServer;
  try {
    server = await startGrpcServer({
      address: options.listen,
      services: service.services_(),
      maxReceiveMessageBytes: service.maxReceiveBytes * 4,
      ...(options.tls ? { tls: options.tls } : {}),
    });
  } catch (err) {
    service.close();
    throw err;
  }
  options.logger?.info({ address: server.address, shards: options.shards.length }, "etcd API listening");
  return {
    address: server.address,
    port: server.port,
    metrics: service.metrics,
    watchStreams: () => service.watchStreams(),
    watchers: () => service.watchers(),
    async close(graceMs = 1_000) {
      service.endStreams();
      await server.shutdown(graceMs);
      service.close();
    },
  };
}
