import { createHash, randomBytes } from "node:crypto";
import {
  type ClientDuplexStream,
  Metadata,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type ServiceDefinition,
  type ServiceError,
  type sendUnaryData,
  status,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import {
  ConsensusError,
  isConsensusError,
  type LogStatus,
  type Member,
  type ReplicatedLog,
} from "@quorum/consensus";
import type { Clock, Logger, RunningGrpcServer } from "@quorum/transport";
import {
  createGrpcClient,
  silentLogger,
  startGrpcServer,
  systemClock,
  type TlsOptions,
} from "@quorum/transport";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { encodeCommand } from "../command.js";
import { EtcdError, etcdErrors } from "../errors.js";
import {
  type AlarmRequest,
  type AlarmResponse,
  ClusterService,
  type CompactionRequest,
  type CompactionResponse,
  type DeleteRangeRequest,
  type DeleteRangeResponse,
  type Member as EtcdMember,
  KVClient,
  KVService,
  LeaseClient,
  type LeaseGrantRequest,
  type LeaseGrantResponse,
  type LeaseKeepAliveRequest,
  type LeaseKeepAliveResponse,
  type LeaseLeasesRequest,
  type LeaseLeasesResponse,
  type LeaseRevokeRequest,
  type LeaseRevokeResponse,
  LeaseService,
  type LeaseTimeToLiveRequest,
  type LeaseTimeToLiveResponse,
  MaintenanceService,
  type MemberListRequest,
  type MemberListResponse,
  type PutRequest,
  type PutResponse,
  type RangeRequest,
  type RangeResponse,
  type ResponseHeader,
  type StatusRequest,
  type StatusResponse,
  type TxnRequest,
  type TxnResponse,
  type WatchRequest,
  type WatchResponse,
  WatchService,
} from "../gen/etcdserverpb/rpc.js";
import {
  ShardTxnClient,
  type ShardTxnOp,
  type ShardTxnResult,
  type TxnDecision,
  type TxnForget,
  type TxnPart,
  type TxnState,
  type TxnVote,
} from "../gen/quorum/kv/v1/command.js";
import { txnLocks } from "../store/intents.js";
import { type ApplyResult, isTxnReadOnly, type KvStore } from "../store/kv-store.js";
import { ProposalBatcher, ReadBarrier } from "./batcher.js";
import { Lessor } from "./lessor.js";
import { resultOf, ShardTxnForwarder } from "./txn-forwarder.js";
import {
  checkDeleteRequest,
  checkPutRequest,
  checkRangeRequest,
  checkTxnRequest,
  defaultMaxRequestBytes,
  defaultMaxTxnOps,
  grpcOverheadBytes,
  isTxnSerializable,
  proposalSize,
} from "./validate.js";
import { WatchHub } from "./watch.js";

/** How a log member appears in etcd's MemberList and headers. */
export interface MemberInfo {
  /** etcd's uint64 member ID (printed `%x` by etcdctl). */
  readonly id: bigint;
  /** Empty while the member has not started (etcdctl then prints "unstarted"). */
  readonly name: string;
  readonly peerURLs: readonly string[];
  readonly clientURLs: readonly string[];
}

export interface KvServiceOptions {
  readonly log: ReplicatedLog<ApplyResult>;
  /**
   * The log's `proposeBatch` commits all of a batch or none (SingleNodeLog): requests of one
   * turn then go in one `proposeBatch` call. Otherwise (Raft, Paxos) each request is proposed
   * on its own in the same turn, which the log still appends as one batch, so that each
   * request reports its own entry's outcome.
   */
  readonly atomicProposeBatch?: boolean;
  readonly store: KvStore;
  /** `host:port` to serve etcd's API on; port 0 picks a free port. */
  readonly listen: string;
  /**
   * Mutual TLS for clients (etcd's --cert-file, --key-file, --trusted-ca-file with
   * --client-cert-auth); the same certificate authenticates this node when it forwards a
   * request to the leader's client address. Absent: plaintext.
   */
  readonly tls?: TlsOptions;
  /**
   * The client address (`host:port`) of a log member, by its log id: where a follower
   * forwards requests it cannot serve, and the clientURLs of MemberList.
   */
  readonly leaderClientAddress?: (memberId: string) => string | undefined;
  /** etcd identities of log members; default: IDs derived from the log ids (SHA-1, as etcd hashes its peer URLs). */
  readonly memberInfo?: (member: Member) => MemberInfo;
  /** etcd's cluster ID; default: derived from the member IDs. */
  readonly clusterId?: bigint;
  /** etcd's --max-request-bytes (default 1.5 MiB); gRPC's receive limit is this plus 512 KiB. */
  readonly maxRequestBytes?: number;
  readonly maxTxnOps?: number;
  /** Deadline for a proposal or read barrier (etcd: 5 s plus two election timeouts). */
  readonly requestTimeoutMs?: number;
  /** Reported by Maintenance.Status. */
  readonly version?: string;
  readonly logger?: Logger;
  /** Where the service's metrics go (default: a registry of its own, see `KvServer.metrics`). */
  readonly metrics?: Registry;
  /** Time for lease expiry and watch progress notifications (default: the system clock). */
  readonly clock?: Clock;
  /** etcd's minimum lease TTL in seconds: ceil(1.5 × election timeout); default 2. */
  readonly minLeaseTtlSeconds?: number;
  /** Added to every lease's TTL when this node becomes leader (etcd: the election timeout); default 1000. */
  readonly leaderLeaseExtendMs?: number;
  /** How often the leader looks for expired leases; default 500. */
  readonly leaseCheckIntervalMs?: number;
  /** etcd's --experimental-watch-progress-notify-interval; default 10 minutes. */
  readonly watchProgressNotifyIntervalMs?: number;
  /** Per watch stream, responses waiting for a slow client before its watchers fall back to history; default 1024. */
  readonly watchMaxPendingResponses?: number;
  /** Same, in bytes of events; default 32 MiB. */
  readonly watchMaxPendingBytes?: number;
  /** How long a `hasleader` stream survives without a leader (etcd: 3 election timeouts); default 3000. */
  readonly noLeaderStreamTimeoutMs?: number;
  /**
   * Sharding (set by `startShardedKvService`): the highest cluster revision this node knows;
   * added to every proposed command as its `floor` and sent along with forwarded requests.
   */
  readonly revisionFloor?: () => number;
  /** Whether this service's leader expires leases (default true; false for shards other than 0). */
  readonly leaseExpiry?: boolean;
  /** How an expired lease is revoked (default: a revoke proposed to this service's log). */
  readonly revokeLease?: (id: bigint) => Promise<void>;
  /** Sharding: this service's shard, sent with forwarded requests so the leader's router picks the same shard. */
  readonly shardIndex?: number;
}

/** A running etcd-compatible endpoint in front of one replica of the store. */
export interface KvServer {
  /** `host:port` with the bound port. */
  readonly address: string;
  readonly port: number;
  readonly metrics: Registry;
  /** Watch streams open now. */
  watchStreams(): number;
  /** Watchers open now, over all streams. */
  watchers(): number;
  /** Stops serving (running calls get `graceMs`); does not close the log or the store. */
  close(graceMs?: number): Promise<void>;
}

const forwardedHeader = "quorum-forwarded";
/** Metadata of a forwarded request: the forwarding node's highest known revision (sharding). */
export const floorHeader = "quorum-floor";
/** Metadata of a forwarded request: the shard it is for (sharding). */
export const shardHeader = "quorum-shard";

/** Appends a `floor` (Command field 16, varint) to an encoded command: protobuf merges it. */
export function withFloor(command: Uint8Array, floor: number): Uint8Array {
  if (floor <= 0) return command;
  const bytes = [0x80, 0x01];
  let v = BigInt(floor);
  while (v >= 0x80n) {
    bytes.push(Number((v & 0x7fn) | 0x80n));
    v >>= 7n;
  }
  bytes.push(Number(v));
  const out = new Uint8Array(command.length + bytes.length);
  out.set(command, 0);
  out.set(bytes, command.length);
  return out;
}
/**
 * How long a request that finds no leader waits for one before answering `etcdserver: no
 * leader`: about an election (or a leadership transfer) here.
 */
const noLeaderWaitMs = 1_000;
/** etcd's MaxLeaseTTL (lease/lessor.go). */
const maxLeaseTtl = 9_000_000_000n;

type ClientKind = "kv" | "lease" | "shardTxn";
type GrpcClient =
  | InstanceType<typeof KVClient>
  | InstanceType<typeof LeaseClient>
  | InstanceType<typeof ShardTxnClient>;

/** A server stream the service may end on shutdown or on losing the leader. */
interface OpenStream {
  readonly hasLeader: boolean;
  fail(err: EtcdError): void;
}

/** etcd's random lease IDs: a positive int64. */
function randomLeaseId(): bigint {
  for (;;) {
    const id = randomBytes(8).readBigUInt64BE(0) & ((1n << 63n) - 1n);
    if (id !== 0n) return id;
  }
}

/**
 * One keep-alive stream from a follower to the leader, shared by all its clients: the leader
 * answers each request once, in order, so replies pair with requests first-in first-out.
 */
class KeepAliveForwarder {
  private readonly pending: { resolve(r: LeaseKeepAliveResponse): void; reject(e: unknown): void }[] = [];
  private readonly stream: ClientDuplexStream<LeaseKeepAliveRequest, LeaseKeepAliveResponse>;
  closed = false;

  constructor(client: InstanceType<typeof LeaseClient>, nodeId: string) {
    const metadata = new Metadata();
    metadata.set(forwardedHeader, nodeId);
    this.stream = client.leaseKeepAlive(metadata);
    this.stream.on("data", (r: LeaseKeepAliveResponse) => this.pending.shift()?.resolve(r));
    this.stream.on("error", (err: ServiceError) => this.fail(new EtcdError(err.code, err.details)));
    this.stream.on("end", () => this.fail(etcdErrors.leaderChanged()));
  }

  send(req: LeaseKeepAliveRequest): Promise<LeaseKeepAliveResponse> {
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject });
      this.stream.write(req);
    });
  }

  private fail(err: EtcdError): void {
    this.closed = true;
    for (const p of this.pending.splice(0)) p.reject(err);
  }

  close(): void {
    this.closed = true;
    this.stream.cancel();
  }
}

/** A deserialized request that exceeded the gRPC receive limit (grpc-go's message, not grpc-js's). */
export class TooLarge {
  constructor(readonly size: number) {}
}

/** The IDs of this member and its cluster, and the membership they were computed from. */
interface Identity {
  readonly nodeId: string;
  readonly members: readonly { readonly id: string; readonly address: string }[];
  readonly clusterId: bigint;
  readonly memberId: bigint;
}

function sameIdentity(identity: Identity, s: LogStatus): boolean {
  if (identity.nodeId !== s.nodeId || identity.members.length !== s.members.length) return false;
  for (let i = 0; i < s.members.length; i++) {
    const a = identity.members[i]!;
    const b = s.members[i]!;
    if (a.id !== b.id || a.address !== b.address) return false;
  }
  return true;
}

function defaultMemberId(logId: string): bigint {
  return createHash("sha1").update(logId).digest().readBigUInt64BE(0);
}

/** etcd clients print URLs; the log and the lookup give `host:port`. */
function url(address: string): string {
  return /^[a-z]+:\/\//.test(address) ? address : `http://${address}`;
}

/**
 * Wraps a generated service definition so that oversized requests reach the handler as a
 * marker instead of being refused inside grpc-js with its own wording.
 */
// biome-ignore lint/suspicious/noExplicitAny: grpc-js's definition type is generic over any
function limitRequests(definition: ServiceDefinition<any>, maxBytes: number): ServiceDefinition<any> {
  // biome-ignore lint/suspicious/noExplicitAny: see above
  const out: Record<string, any> = {};
  for (const [name, method] of Object.entries(definition)) {
    const deserialize = method.requestDeserialize as (b: Buffer) => unknown;
    out[name] = {
      ...method,
      requestDeserialize: (b: Buffer) => (b.length > maxBytes ? new TooLarge(b.length) : deserialize(b)),
    };
  }
  return out;
}

export class KvService {
  private readonly log: ReplicatedLog<ApplyResult>;
  private readonly store: KvStore;
  private readonly logger: Logger;
  private readonly batcher: ProposalBatcher<ApplyResult>;
  private readonly barrier: ReadBarrier;
  private readonly maxRequestBytes: number;
  private readonly maxTxnOps: number;
  private readonly requestTimeoutMs: number;
  private readonly clients = new Map<string, GrpcClient>();
  private readonly txnForwarder: ShardTxnForwarder;
  private readonly keepAliveForwarders = new Map<string, KeepAliveForwarder>();
  readonly metrics: Registry;
  private readonly requests: Counter<"method" | "code">;
  private readonly clock: Clock;
  readonly watchHub: WatchHub;
  readonly lessor: Lessor;
  private readonly minLeaseTtl: bigint;
  private readonly openStreams = new Set<OpenStream>();
  private noLeaderSince: number | undefined;
  private identity: Identity | undefined;
  private noLeaderTimer: { cancel(): void } | undefined;
  private unsubscribeLog: (() => void) | undefined;

  constructor(private readonly options: Omit<KvServiceOptions, "listen">) {
    this.log = options.log;
    this.store = options.store;
    this.logger = options.logger ?? silentLogger;
    this.maxRequestBytes = options.maxRequestBytes ?? defaultMaxRequestBytes;
    this.maxTxnOps = options.maxTxnOps ?? defaultMaxTxnOps;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 7_000;
    this.txnForwarder = new ShardTxnForwarder(
      (address) => this.client("shardTxn", address),
      () => {
        const metadata = new Metadata();
        metadata.set(forwardedHeader, this.log.nodeId);
        return metadata;
      },
      this.requestTimeoutMs,
    );
    this.metrics = options.metrics ?? new Registry();
    this.requests = new Counter({
      name: "quorum_kv_requests_total",
      help: "etcd API requests by method and gRPC status code",
      labelNames: ["method", "code"],
      registers: [this.metrics],
    });
    const batchSize = new Histogram({
      name: "quorum_kv_proposal_batch_size",
      help: "Commands per proposal batch",
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024],
      registers: [this.metrics],
    });
    this.batcher = new ProposalBatcher(this.log, {
      timeoutMs: this.requestTimeoutMs,
      onBatch: (n) => batchSize.observe(n),
      ...(options.atomicProposeBatch
        ? { atomicProposeBatch: true }
        : {
            merge: {
              encode: encodeCommand.batch,
              split: (result: ApplyResult, count: number) => {
                if (result.type === "batch" && result.results.length === count) return result.results;
                if (result.type === "error") throw result.error;
                throw new EtcdError(
                  status.INTERNAL,
                  `quorum: a batch of ${count} commands applied as ${result.type}`,
                );
              },
              // Well below the peers' message limit, with room for one request of the largest size.
              maxBytes: 512 * 1024,
            },
          }),
    });
    this.barrier = new ReadBarrier(this.log, { timeoutMs: this.requestTimeoutMs });
    this.clock = options.clock ?? systemClock;
    const unsynced = new Counter({
      name: "quorum_kv_watch_unsynced_total",
      help: "Watchers moved off live events to catch up from history because their client fell behind",
      registers: [this.metrics],
    });
    this.minLeaseTtl = BigInt(options.minLeaseTtlSeconds ?? 2);
    this.watchHub = new WatchHub({
      store: this.store,
      clock: this.clock,
      header: (revision) => this.header(revision),
      fragmentBytes: this.maxReceiveBytes,
      logger: this.logger,
      onUnsynced: () => unsynced.inc(),
      ...(options.watchProgressNotifyIntervalMs !== undefined
        ? { progressNotifyIntervalMs: options.watchProgressNotifyIntervalMs }
        : {}),
      ...(options.watchMaxPendingResponses !== undefined
        ? { maxPendingResponses: options.watchMaxPendingResponses }
        : {}),
      ...(options.watchMaxPendingBytes !== undefined
        ? { maxPendingBytes: options.watchMaxPendingBytes }
        : {}),
    });
    this.lessor = new Lessor({
      log: this.log,
      store: this.store,
      clock: this.clock,
      revoke:
        options.revokeLease ??
        (async (id) => {
          await this.propose(encodeCommand.leaseRevoke({ ID: id }));
        }),
      logger: this.logger,
      ...(options.leaseCheckIntervalMs !== undefined
        ? { checkIntervalMs: options.leaseCheckIntervalMs }
        : {}),
      ...(options.leaderLeaseExtendMs !== undefined ? { leaderExtendMs: options.leaderLeaseExtendMs } : {}),
    });
    if (options.leaseExpiry !== false) this.lessor.start();
    const hub = this.watchHub;
    new Gauge({
      name: "quorum_kv_watch_streams",
      help: "Open Watch streams",
      registers: [this.metrics],
      collect() {
        this.set(hub.streamCount());
      },
    });
    this.unsubscribeLog = this.log.subscribe((event) => {
      if (event.type === "leaderChanged") this.watchLeader();
      if (event.type === "membersChanged") this.identity = undefined;
    });
  }

  /**
   * etcd's monitorLeader: streams opened with `hasleader` end with `no leader` once the
   * cluster has had no leader for a while.
   */
  private watchLeader(): void {
    const leaderless = this.log.status().leaderId === undefined;
    if (!leaderless) {
      this.noLeaderSince = undefined;
      this.noLeaderTimer?.cancel();
      this.noLeaderTimer = undefined;
      return;
    }
    if (this.noLeaderSince !== undefined) return;
    this.noLeaderSince = this.clock.now();
    this.noLeaderTimer = this.clock.schedule(this.options.noLeaderStreamTimeoutMs ?? 3000, () => {
      this.noLeaderTimer = undefined;
      if (this.log.status().leaderId !== undefined) {
        this.noLeaderSince = undefined;
        return;
      }
      for (const stream of [...this.openStreams]) if (stream.hasLeader) stream.fail(etcdErrors.noLeader());
      this.noLeaderSince = undefined;
    });
  }

  get maxReceiveBytes(): number {
    return this.maxRequestBytes + grpcOverheadBytes;
  }

  // ---- identities and headers ------------------------------------------------------------

  private memberInfo(member: Member): MemberInfo {
    if (this.options.memberInfo) return this.options.memberInfo(member);
    const client = this.options.leaderClientAddress?.(member.id);
    return {
      id: defaultMemberId(member.id),
      name: member.id,
      peerURLs: member.address ? [url(member.address)] : [],
      clientURLs: client ? [url(client)] : [],
    };
  }

  private memberIdOf(status: LogStatus, id: string | undefined): bigint {
    if (id === undefined) return 0n;
    const member = status.members.find((m) => m.id === id) ?? { id, address: "", learner: false };
    return this.memberInfo(member).id;
  }

  private clusterId(status: LogStatus): bigint {
    if (this.options.clusterId !== undefined) return this.options.clusterId;
    const ids = status.members.map((m) => this.memberInfo(m).id.toString(16)).sort();
    return createHash("sha1").update(ids.join(",")).digest().readBigUInt64BE(0);
  }

  /** @internal A response header at `revision` (cluster, member and term of this log). */
  header(revision: bigint | undefined): ResponseHeader {
    const s = this.log.status();
    // IDs are SHA-1s of the membership: computed once per membership, not per response
    // (watch streams build a header for every event batch). A `membersChanged` event drops
    // them; logs that emit none (Paxos) are caught by comparing the members, which costs a
    // few string compares and allocates nothing.
    if (!this.identity || !sameIdentity(this.identity, s)) {
      this.identity = {
        nodeId: s.nodeId,
        members: s.members.map((m) => ({ id: m.id, address: m.address })),
        clusterId: this.clusterId(s),
        memberId: this.memberIdOf(s, s.nodeId),
      };
    }
    return {
      clusterId: this.identity.clusterId,
      memberId: this.identity.memberId,
      revision: revision ?? 0n,
      raftTerm: BigInt(s.term),
    };
  }

  /** Fills cluster_id, member_id and raft_term of a top-level response, keeping its revision. */
  private fill<T extends { header?: ResponseHeader | undefined }>(response: T): T {
    response.header = this.header(response.header?.revision);
    return response;
  }

  // ---- errors and forwarding -------------------------------------------------------------

  /** @internal */
  toEtcdError(err: unknown): EtcdError {
    if (err instanceof EtcdError) return err;
    if (isConsensusError(err)) {
      switch (err.code) {
        case "NOT_LEADER":
          return err.leader ? etcdErrors.leaderChanged() : etcdErrors.noLeader();
        case "TIMEOUT":
          return etcdErrors.timeout();
        case "SHUTTING_DOWN":
          return etcdErrors.stopped();
        case "DROPPED":
          return etcdErrors.leaderChanged();
        case "INVALID_ARGUMENT":
          return new EtcdError(status.INVALID_ARGUMENT, `etcdserver: ${err.message}`);
        case "MEMBERSHIP_CHANGE_IN_PROGRESS":
          return etcdErrors.notCapable();
      }
    }
    this.logger.error({ err: String(err) }, "unexpected error serving an etcd request");
    return new EtcdError(status.INTERNAL, `quorum: ${err instanceof Error ? err.message : String(err)}`);
  }

  /**
   * Runs `local`; when the log says another node leads, sends the same request to that
   * node's client address instead (once: a forwarded request is not forwarded again).
   */
  private async orForward<Req, Res extends { header?: ResponseHeader | undefined }>(
    call: ServerUnaryCall<Req, Res>,
    method: string,
    local: () => Promise<Res>,
    kind: ClientKind = "kv",
    waitForLeader = true,
  ): Promise<Res> {
    try {
      return await local();
    } catch (err) {
      if (!isConsensusError(err, "NOT_LEADER")) throw err;
      const leader = err.leader;
      if (!leader || leader.id === this.log.nodeId) {
        // No leader known: an election or a leadership transfer is under way. A client would
        // retry; waiting here (briefly) for its outcome spares it the error. NOT_LEADER means
        // nothing was proposed, so the second try cannot apply anything twice.
        if (waitForLeader && (await this.leaderKnownWithin(noLeaderWaitMs)))
          return this.orForward(call, method, local, kind, false);
        throw etcdErrors.noLeader();
      }
      if (call.metadata.get(forwardedHeader).length > 0) throw etcdErrors.leaderChanged();
      const address = this.options.leaderClientAddress?.(leader.id);
      if (!address) throw etcdErrors.noLeader();
      return this.fill(await this.forward<Req, Res>(kind, address, method, call));
    }
  }

  /** Whether another node is known to lead now, or some node comes to lead within `ms`. */
  private leaderKnownWithin(ms: number): Promise<boolean> {
    const s = this.log.status();
    if (s.leaderId !== undefined && s.leaderId !== this.log.nodeId) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = this.clock.schedule(ms, () => {
        off();
        resolve(false);
      });
      const off = this.log.subscribe((e) => {
        if (e.type !== "leaderChanged" || e.leaderId === undefined) return;
        off();
        timer.cancel();
        resolve(true);
      });
    });
  }

  private client(kind: "kv", address: string): InstanceType<typeof KVClient>;
  private client(kind: "lease", address: string): InstanceType<typeof LeaseClient>;
  private client(kind: "shardTxn", address: string): InstanceType<typeof ShardTxnClient>;
  private client(kind: ClientKind, address: string): GrpcClient {
    const cacheKey = `${kind}:${address}`;
    let client = this.clients.get(cacheKey);
    if (!client) {
      const options = {
        channelOptions: { "grpc.max_send_message_length": this.maxReceiveBytes },
        ...(this.options.tls ? { tls: this.options.tls } : {}),
      };
      client =
        kind === "kv"
          ? createGrpcClient(KVClient, address, options)
          : kind === "lease"
            ? createGrpcClient(LeaseClient, address, options)
            : createGrpcClient(ShardTxnClient, address, options);
      this.clients.set(cacheKey, client);
    }
    return client;
  }

  private forward<Req, Res>(
    kind: ClientKind,
    address: string,
    method: string,
    call: ServerUnaryCall<Req, Res>,
  ): Promise<Res> {
    const client = kind === "lease" ? this.client("lease", address) : this.client("kv", address);
    const metadata = new Metadata();
    metadata.set(forwardedHeader, this.log.nodeId);
    if (this.options.revisionFloor) metadata.set(floorHeader, String(this.options.revisionFloor()));
    if (this.options.shardIndex !== undefined) metadata.set(shardHeader, String(this.options.shardIndex));
    const deadline = call.getDeadline();
    const callDeadline = deadline instanceof Date || typeof deadline === "number" ? deadline : Infinity;
    const chosen =
      callDeadline === Infinity
        ? Date.now() + this.requestTimeoutMs
        : Math.min(Number(callDeadline), Date.now() + this.requestTimeoutMs);
    return new Promise<Res>((resolve, reject) => {
      // biome-ignore lint/suspicious/noExplicitAny: the method is one of KVClient's, chosen by name
      (client as any)[method](
        call.request,
        metadata,
        { deadline: chosen },
        (err: ServiceError | null, res: Res) => {
          if (err) reject(new EtcdError(err.code, err.details));
          else resolve(res);
        },
      );
    });
  }

  // ---- the request path ------------------------------------------------------------------

  /**
   * Proposes one command and returns its result. A command that met the locks of a prepared
   * cross-shard transaction was not applied: it is proposed again once that transaction is
   * decided here, until the request timeout.
   */
  private async propose(command: Uint8Array): Promise<ApplyResult> {
    if (proposalSize(command.length) > this.maxRequestBytes) throw etcdErrors.requestTooLarge();
    const deadline = this.clock.now() + this.requestTimeoutMs;
    for (;;) {
      const floor = this.options.revisionFloor?.();
      const result = await this.batcher.submit(floor ? withFloor(command, floor) : command);
      if (result.type === "error") throw result.error;
      if (result.type !== "locked") return result;
      const holder = result.holder;
      await this.whileBlocked(() => this.store.preparedTxns().some((i) => i.txId.equals(holder)), deadline);
    }
  }

  /**
   * Waits while `blocked()` holds, re-checking whenever a cross-shard transaction is prepared
   * or decided in this shard; fails with etcd's timeout at the deadline (the client retries).
   */
  private async whileBlocked(blocked: () => unknown, deadline = this.clock.now() + this.requestTimeoutMs) {
    while (blocked()) {
      const left = deadline - this.clock.now();
      if (left <= 0) throw etcdErrors.timeout();
      await new Promise<void>((resolve) => {
        const timer = this.clock.schedule(left, () => {
          off();
          resolve();
        });
        const off = this.store.onIntentsChanged(() => {
          off();
          timer.cancel();
          resolve();
        });
      });
    }
  }

  private async linearizable(): Promise<void> {
    await this.barrier.wait();
  }

  /**
   * A linearizable read must see every transaction acknowledged before it began, and a
   * cross-shard transaction is acknowledged once every part is prepared, before this shard
   * has applied its decision: so a read waits for prepared transactions
   * that write in its range (those that could land at or below its revision).
   */
  private async settled(key: Buffer, rangeEnd: Buffer, revision: bigint): Promise<void> {
    const at = revision > 0n ? Number(revision) : undefined;
    await this.whileBlocked(() => this.store.pendingWriter(key, rangeEnd, at));
  }

  async range(
    req: RangeRequest,
    call?: ServerUnaryCall<RangeRequest, RangeResponse>,
  ): Promise<RangeResponse> {
    checkRangeRequest(req);
    const local = async () => {
      if (!req.serializable) await this.linearizable();
      // A read at a given revision waits even when serializable: a transaction prepared below
      // it may still write at or below it (the router's consistent cuts rely on this).
      if (!req.serializable || req.revision > 0n) await this.settled(req.key, req.rangeEnd, req.revision);
      return this.fill(this.store.range(req));
    };
    return call ? this.orForward(call, "range", local) : local();
  }

  async put(req: PutRequest, call?: ServerUnaryCall<PutRequest, PutResponse>): Promise<PutResponse> {
    checkPutRequest(req);
    const local = async () => {
      const r = await this.propose(encodeCommand.put(req));
      return this.fill((r as Extract<ApplyResult, { type: "put" }>).response);
    };
    return call ? this.orForward(call, "put", local) : local();
  }

  async deleteRange(
    req: DeleteRangeRequest,
    call?: ServerUnaryCall<DeleteRangeRequest, DeleteRangeResponse>,
  ): Promise<DeleteRangeResponse> {
    checkDeleteRequest(req);
    const local = async () => {
      const r = await this.propose(encodeCommand.deleteRange(req));
      return this.fill((r as Extract<ApplyResult, { type: "deleteRange" }>).response);
    };
    return call ? this.orForward(call, "deleteRange", local) : local();
  }

  async txn(req: TxnRequest, call?: ServerUnaryCall<TxnRequest, TxnResponse>): Promise<TxnResponse> {
    checkTxnRequest(req, this.maxTxnOps);
    const local = async () => {
      if (isTxnReadOnly(req)) {
        if (!isTxnSerializable(req)) {
          await this.linearizable();
          await this.whileBlocked(() => this.store.lockHolder(txnLocks(req)));
        }
        return this.fill(this.store.txnReadOnly(req));
      }
      const r = await this.propose(encodeCommand.txn(req));
      return this.fill((r as Extract<ApplyResult, { type: "txn" }>).response);
    };
    return call ? this.orForward(call, "txn", local) : local();
  }

  async compact(
    req: CompactionRequest,
    call?: ServerUnaryCall<CompactionRequest, CompactionResponse>,
  ): Promise<CompactionResponse> {
    const local = async () => {
      const r = await this.propose(encodeCommand.compaction(req));
      return this.fill((r as Extract<ApplyResult, { type: "compaction" }>).response);
    };
    return call ? this.orForward(call, "compact", local) : local();
  }

  // ---- cross-shard transactions: this shard's side, on its leader -----------------------

  /**
   * Proposes a cross-shard command through this shard's log if this node leads it; otherwise
   * sends `op` to the leader's node (once: a forwarded op is not forwarded again), batched
   * with others bound there. Either way the answer is the op's result.
   */
  private async onLeader(
    forwarded: boolean,
    command: Uint8Array,
    op: Omit<ShardTxnOp, "shard">,
  ): Promise<ShardTxnResult> {
    const send = (leaderId: string | undefined): Promise<ShardTxnResult> => {
      if (!leaderId || leaderId === this.log.nodeId) throw etcdErrors.noLeader();
      if (forwarded) throw etcdErrors.leaderChanged();
      const address = this.options.leaderClientAddress?.(leaderId);
      if (!address) throw etcdErrors.noLeader();
      return this.txnForwarder.call(address, { shard: this.options.shardIndex ?? 0, ...op });
    };
    // A follower that knows the leader sends at once (a local attempt would cost a turn of
    // the event loop to learn what the status already says).
    const log = this.log.status();
    if (log.role !== "leader" && log.leaderId !== undefined) return send(log.leaderId);
    let r: ApplyResult;
    try {
      r = await this.propose(command);
    } catch (err) {
      if (!isConsensusError(err, "NOT_LEADER")) throw this.toEtcdError(err);
      return send(err.leader?.id);
    }
    if (r.type === "txnVote") return { vote: r.vote };
    if (r.type === "txnDecided") return { decision: r.decision };
    if (r.type === "txnState") return { state: r.state };
    if (r.type === "txnForgotten") return { forgotten: true };
    throw new EtcdError(status.INTERNAL, `quorum: a cross-shard command applied as ${r.type}`);
  }

  /** Proposes this shard's part of a cross-shard Txn through its log and returns the vote. */
  async prepareTxnPart(part: TxnPart, forwarded = false): Promise<TxnVote> {
    return resultOf(
      await this.onLeader(forwarded, encodeCommand.txnPrepare(part), { prepare: part }),
      "vote",
    );
  }

  /** Proposes a cross-shard Txn's decision through this shard's log; returns the decision recorded here. */
  async decideTxn(decision: TxnDecision, forwarded = false): Promise<TxnDecision> {
    const op = { decide: decision };
    return resultOf(await this.onLeader(forwarded, encodeCommand.txnDecide(decision), op), "decision");
  }

  /** Recovery's fence through this shard's log: the transaction's part or decision here (an abort if neither). */
  async fenceTxn(txId: Buffer, forwarded = false): Promise<TxnState> {
    return resultOf(
      await this.onLeader(forwarded, encodeCommand.txnFence({ txId }), { fence: txId }),
      "state",
    );
  }

  /** A coordinator's forget of transactions decided in every shard (see TxnForget). */
  async forgetTxns(forget: TxnForget, forwarded = false): Promise<void> {
    resultOf(await this.onLeader(forwarded, encodeCommand.txnForget(forget), { forget }), "forgotten");
  }

  // ---- leases ----------------------------------------------------------------------------

  /** NOT_LEADER unless this node leads (for requests only the leader's lessor can answer). */
  private requireLeader(): void {
    if (this.lessor.isLeader()) return;
    const s = this.log.status();
    throw new ConsensusError(
      "NOT_LEADER",
      `node ${s.nodeId} is not the leader`,
      s.leaderId !== undefined ? { id: s.leaderId } : undefined,
    );
  }

  private current<T extends { header?: ResponseHeader | undefined }>(response: T): T {
    response.header = this.header(BigInt(this.store.revision()));
    return response;
  }

  async leaseGrant(
    req: LeaseGrantRequest,
    call?: ServerUnaryCall<LeaseGrantRequest, LeaseGrantResponse>,
  ): Promise<LeaseGrantResponse> {
    if (req.TTL > maxLeaseTtl) throw etcdErrors.leaseTtlTooLarge();
    const local = async () => {
      // The ID and the clamped TTL go into the command, so every replica applies the same.
      const ID = req.ID !== 0n ? req.ID : randomLeaseId();
      // biome-ignore lint/complexity/useMathMinMax: bigints
      const TTL = req.TTL < this.minLeaseTtl ? this.minLeaseTtl : req.TTL;
      const r = await this.propose(encodeCommand.leaseGrant({ ID, TTL }));
      this.lessor.granted(ID, Number(TTL));
      return this.fill((r as Extract<ApplyResult, { type: "leaseGrant" }>).response);
    };
    return call ? this.orForward(call, "leaseGrant", local, "lease") : local();
  }

  async leaseRevoke(
    req: LeaseRevokeRequest,
    call?: ServerUnaryCall<LeaseRevokeRequest, LeaseRevokeResponse>,
  ): Promise<LeaseRevokeResponse> {
    const local = async () => {
      const r = await this.propose(encodeCommand.leaseRevoke({ ID: req.ID }));
      return this.fill((r as Extract<ApplyResult, { type: "leaseRevoke" }>).response);
    };
    return call ? this.orForward(call, "leaseRevoke", local, "lease") : local();
  }

  async leaseTimeToLive(
    req: LeaseTimeToLiveRequest,
    call?: ServerUnaryCall<LeaseTimeToLiveRequest, LeaseTimeToLiveResponse>,
  ): Promise<LeaseTimeToLiveResponse> {
    const local = async () => {
      this.requireLeader();
      const left = this.lessor.remaining(req.ID);
      if (!left) return this.current({ header: undefined, ID: req.ID, TTL: -1n, grantedTTL: 0n, keys: [] });
      return this.current({
        header: undefined,
        ID: req.ID,
        TTL: BigInt(left.ttl),
        grantedTTL: BigInt(left.granted),
        keys: req.keys ? this.store.leaseKeys(req.ID) : [],
      });
    };
    return call ? this.orForward(call, "leaseTimeToLive", local, "lease") : local();
  }

  leaseLeases(_req: LeaseLeasesRequest): LeaseLeasesResponse {
    return this.current({ header: undefined, leases: this.store.leases().map((l) => ({ ID: l.id })) });
  }

  /** One keep-alive: renewed on the leader, or forwarded to it (once). */
  async leaseKeepAliveOne(req: LeaseKeepAliveRequest, metadata?: Metadata): Promise<LeaseKeepAliveResponse> {
    if (this.lessor.isLeader()) {
      return this.current({ header: undefined, ID: req.ID, TTL: BigInt(this.lessor.renew(req.ID)) });
    }
    const leader = this.log.status().leaderId;
    if (leader === undefined || leader === this.log.nodeId) throw etcdErrors.noLeader();
    if (metadata && metadata.get(forwardedHeader).length > 0) throw etcdErrors.leaderChanged();
    const address = this.options.leaderClientAddress?.(leader);
    if (!address) throw etcdErrors.noLeader();
    let forwarder = this.keepAliveForwarders.get(address);
    if (!forwarder || forwarder.closed) {
      forwarder = new KeepAliveForwarder(this.client("lease", address), this.log.nodeId);
      this.keepAliveForwarders.set(address, forwarder);
    }
    return this.fill(await forwarder.send(req));
  }

  status(_req: StatusRequest): StatusResponse {
    const s = this.log.status();
    const leader = this.memberIdOf(s, s.leaderId);
    return {
      header: this.header(BigInt(this.store.revision())),
      version: this.options.version ?? "3.5.0",
      dbSize: BigInt(this.store.dbSize()),
      leader,
      raftIndex: BigInt(s.commitIndex),
      raftTerm: BigInt(s.term),
      raftAppliedIndex: BigInt(s.appliedIndex),
      errors: leader === 0n ? [etcdErrors.noLeader().message] : [],
      dbSizeInUse: BigInt(this.store.dbSizeInUse()),
      isLearner: s.role === "learner",
    };
  }

  async memberList(req: MemberListRequest): Promise<MemberListResponse> {
    if (req.linearizable) await this.linearizable();
    const s = this.log.status();
    const members: EtcdMember[] = s.members.map((m) => {
      const info = this.memberInfo(m);
      return {
        ID: info.id,
        name: info.name,
        peerURLs: [...info.peerURLs],
        clientURLs: [...info.clientURLs],
        isLearner: m.learner,
      };
    });
    return { header: this.header(undefined), members };
  }

  alarm(_req: AlarmRequest): AlarmResponse {
    return { header: this.header(BigInt(this.store.revision())), alarms: [] };
  }

  // ---- gRPC binding ----------------------------------------------------------------------

  /** @internal Binds a handler as a gRPC unary method (errors, metrics, size limit). */
  unary<Req, Res>(
    method: string,
    handler: (req: Req, call: ServerUnaryCall<Req, Res>) => Res | Promise<Res>,
  ): (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => void {
    return (call, callback) => {
      const req = call.request as unknown;
      const done = (err: EtcdError | undefined, res?: Res) => {
        this.requests.inc({ method, code: err ? status[err.code] : "OK" });
        if (err) callback({ code: err.code, details: err.message, metadata: new Metadata() } as ServiceError);
        else callback(null, res);
      };
      if (req instanceof TooLarge) return done(etcdErrors.messageTooLarge(req.size, this.maxReceiveBytes));
      Promise.resolve()
        .then(() => handler(req as Req, call))
        .then(
          (res) => done(undefined, res),
          (err: unknown) => done(this.toEtcdError(err)),
        );
    };
  }

  private unimplemented(service: string, method: string) {
    return this.unary<unknown, never>(`${service}.${method}`, () => {
      throw etcdErrors.unimplemented(`${service}.${method}`);
    });
  }

  /**
   * Registers a server stream so that shutdown and a lost leader can end it; `onEnd` runs
   * once however it ends. Returns undefined (after failing the call) when the client asked
   * for a leader (`hasleader`, as clientv3 does) and there is none.
   */
  /** @internal */
  trackStream(
    call: ServerDuplexStream<unknown, unknown>,
    method: string,
    onEnd: () => void,
  ): { fail(err: EtcdError): void; done(): void } | undefined {
    const hasLeader = call.metadata.get("hasleader")[0] === "true";
    let ended = false;
    const finish = (code: string) => {
      if (ended) return false;
      ended = true;
      this.openStreams.delete(stream);
      this.requests.inc({ method, code });
      onEnd();
      return true;
    };
    const stream: OpenStream = {
      hasLeader,
      fail: (err) => {
        if (finish(status[err.code])) {
          call.emit("error", { code: err.code, details: err.message, metadata: new Metadata() });
        }
      },
    };
    if (hasLeader && this.log.status().leaderId === undefined) {
      stream.fail(etcdErrors.noLeader());
      return undefined;
    }
    this.openStreams.add(stream);
    return { fail: stream.fail, done: () => void finish("OK") };
  }

  private watchCall(call: ServerDuplexStream<WatchRequest | TooLarge, WatchResponse>): void {
    const watch = this.watchHub.open({ write: (r) => call.write(r) });
    const tracked = this.trackStream(call as ServerDuplexStream<unknown, unknown>, "Watch", () =>
      watch.close(),
    );
    if (!tracked) return;
    call.on("drain", () => watch.drain());
    call.on("data", (req: WatchRequest | TooLarge) => {
      if (req instanceof TooLarge)
        return tracked.fail(etcdErrors.messageTooLarge(req.size, this.maxReceiveBytes));
      try {
        watch.handle(req);
      } catch (err) {
        tracked.fail(this.toEtcdError(err));
      }
    });
    // A client that half-closes ends the stream (etcd's recvLoop returns on EOF).
    call.on("end", () => {
      tracked.done();
      call.end();
    });
    call.on("error", () => tracked.done());
    call.on("cancelled", () => tracked.done());
  }

  private keepAliveCall(
    call: ServerDuplexStream<LeaseKeepAliveRequest | TooLarge, LeaseKeepAliveResponse>,
  ): void {
    let open = true;
    const tracked = this.trackStream(call as ServerDuplexStream<unknown, unknown>, "LeaseKeepAlive", () => {
      open = false;
    });
    if (!tracked) return;
    let chain = Promise.resolve();
    call.on("data", (req: LeaseKeepAliveRequest | TooLarge) => {
      // Replies go out one per request, in request order.
      chain = chain
        .then(async () => {
          if (!open) return;
          if (req instanceof TooLarge) throw etcdErrors.messageTooLarge(req.size, this.maxReceiveBytes);
          const res = await this.leaseKeepAliveOne(req, call.metadata);
          if (open) call.write(res);
        })
        .catch((err: unknown) => tracked.fail(this.toEtcdError(err)));
    });
    call.on("end", () => {
      void chain.then(() => {
        if (!open) return;
        tracked.done();
        call.end();
      });
    });
    call.on("error", () => tracked.done());
    call.on("cancelled", () => tracked.done());
  }

  /** The services to host: etcd's KV, Watch, Lease, Maintenance and Cluster. */
  services(): { definition: ServiceDefinition; implementation: UntypedServiceImplementation }[] {
    const max = this.maxReceiveBytes;
    const kv: UntypedServiceImplementation = {
      range: this.unary("Range", (req: RangeRequest, call) => this.range(req, call)),
      put: this.unary("Put", (req: PutRequest, call) => this.put(req, call)),
      deleteRange: this.unary("DeleteRange", (req: DeleteRangeRequest, call) => this.deleteRange(req, call)),
      txn: this.unary("Txn", (req: TxnRequest, call) => this.txn(req, call)),
      compact: this.unary("Compact", (req: CompactionRequest, call) => this.compact(req, call)),
    };
    const lease: UntypedServiceImplementation = {
      leaseGrant: this.unary("LeaseGrant", (req: LeaseGrantRequest, call) => this.leaseGrant(req, call)),
      leaseRevoke: this.unary("LeaseRevoke", (req: LeaseRevokeRequest, call) => this.leaseRevoke(req, call)),
      leaseTimeToLive: this.unary("LeaseTimeToLive", (req: LeaseTimeToLiveRequest, call) =>
        this.leaseTimeToLive(req, call),
      ),
      leaseLeases: this.unary("LeaseLeases", (req: LeaseLeasesRequest) => this.leaseLeases(req)),
      leaseKeepAlive: (call: ServerDuplexStream<LeaseKeepAliveRequest, LeaseKeepAliveResponse>) =>
        this.keepAliveCall(call),
    };
    const watch: UntypedServiceImplementation = {
      watch: (call: ServerDuplexStream<WatchRequest, WatchResponse>) => this.watchCall(call),
    };
    const maintenance: UntypedServiceImplementation = {
      status: this.unary("Status", (req: StatusRequest) => this.status(req)),
      alarm: this.unary("Alarm", (req: AlarmRequest) => this.alarm(req)),
    };
    for (const name of ["defragment", "hash", "hashKV", "moveLeader", "downgrade"]) {
      maintenance[name] = this.unimplemented("Maintenance", name);
    }
    maintenance.snapshot = (call: { emit(e: string, err: unknown): void }) =>
      call.emit("error", {
        code: status.UNIMPLEMENTED,
        details: "quorum: Maintenance.Snapshot is not implemented yet",
      });
    const cluster: UntypedServiceImplementation = {
      memberList: this.unary("MemberList", (req: MemberListRequest) => this.memberList(req)),
    };
    for (const name of ["memberAdd", "memberRemove", "memberUpdate", "memberPromote"]) {
      cluster[name] = this.unimplemented("Cluster", name);
    }
    return [
      { definition: limitRequests(KVService, max), implementation: kv },
      { definition: limitRequests(WatchService, max), implementation: watch },
      { definition: limitRequests(LeaseService, max), implementation: lease },
      { definition: limitRequests(MaintenanceService, max), implementation: maintenance },
      { definition: limitRequests(ClusterService, max), implementation: cluster },
    ];
  }

  /** Ends every open Watch and KeepAlive stream (`server stopped`), so shutdown need not wait for them. */
  endStreams(): void {
    for (const stream of [...this.openStreams]) stream.fail(etcdErrors.stopped());
  }

  close(): void {
    this.endStreams();
    this.watchHub.close();
    this.lessor.close();
    this.noLeaderTimer?.cancel();
    this.unsubscribeLog?.();
    for (const forwarder of this.keepAliveForwarders.values()) forwarder.close();
    this.keepAliveForwarders.clear();
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }
}

/**
 * Serves etcd's v3 API for one replica: the node process calls this once the log and the
 * store exist (the log need not lead; followers forward).
 */
export async function startKvService(options: KvServiceOptions): Promise<KvServer> {
  const service = new KvService(options);
  let server: RunningGrpcServer;
  try {
    server = await startGrpcServer({
      address: options.listen,
      services: service.services(),
      // The real limit is checked per request (etcd's message); this only bounds memory.
      maxReceiveMessageBytes: service.maxReceiveBytes * 4,
      ...(options.tls ? { tls: options.tls } : {}),
    });
  } catch (err) {
    service.close();
    throw err;
  }
  options.logger?.info({ address: server.address }, "etcd API listening");
  return {
    address: server.address,
    port: server.port,
    metrics: service.metrics,
    watchStreams: () => service.watchHub.streamCount(),
    watchers: () => service.watchHub.watcherCount(),
    async close(graceMs = 1_000) {
      service.endStreams();
      await server.shutdown(graceMs);
      service.close();
    },
  };
}
