import { createHash } from "node:crypto";
import {
  Metadata,
  type ServerUnaryCall,
  type ServiceDefinition,
  type ServiceError,
  type sendUnaryData,
  status,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { isConsensusError, type LogStatus, type Member, type ReplicatedLog } from "@quorum/consensus";
import type { Logger, RunningGrpcServer } from "@quorum/transport";
import { createGrpcClient, silentLogger, startGrpcServer } from "@quorum/transport";
import { Counter, Histogram, Registry } from "prom-client";
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
} from "../gen/etcdserverpb/rpc.js";
import { type ApplyResult, isTxnReadOnly, type KvStore } from "../store/kv-store.js";
import { ProposalBatcher, ReadBarrier } from "./batcher.js";
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
  readonly store: KvStore;
  /** `host:port` to serve etcd's API on; port 0 picks a free port. */
  readonly listen: string;
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
}

/** A running etcd-compatible endpoint in front of one replica of the store. */
export interface KvServer {
  /** `host:port` with the bound port. */
  readonly address: string;
  readonly port: number;
  readonly metrics: Registry;
  /** Stops serving (running calls get `graceMs`); does not close the log or the store. */
  close(graceMs?: number): Promise<void>;
}

const forwardedHeader = "quorum-forwarded";

/** A deserialized request that exceeded the gRPC receive limit (grpc-go's message, not grpc-js's). */
class TooLarge {
  constructor(readonly size: number) {}
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
  private readonly clients = new Map<string, InstanceType<typeof KVClient>>();
  readonly metrics: Registry;
  private readonly requests: Counter<"method" | "code">;

  constructor(private readonly options: Omit<KvServiceOptions, "listen">) {
    this.log = options.log;
    this.store = options.store;
    this.logger = options.logger ?? silentLogger;
    this.maxRequestBytes = options.maxRequestBytes ?? defaultMaxRequestBytes;
    this.maxTxnOps = options.maxTxnOps ?? defaultMaxTxnOps;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 7_000;
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
    });
    this.barrier = new ReadBarrier(this.log, { timeoutMs: this.requestTimeoutMs });
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

  private header(revision: bigint | undefined): ResponseHeader {
    const s = this.log.status();
    return {
      clusterId: this.clusterId(s),
      memberId: this.memberIdOf(s, s.nodeId),
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

  private toEtcdError(err: unknown): EtcdError {
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
    method: "range" | "put" | "deleteRange" | "txn" | "compact",
    local: () => Promise<Res>,
  ): Promise<Res> {
    try {
      return await local();
    } catch (err) {
      if (!isConsensusError(err, "NOT_LEADER")) throw err;
      const leader = err.leader;
      if (!leader || leader.id === this.log.nodeId) throw etcdErrors.noLeader();
      if (call.metadata.get(forwardedHeader).length > 0) throw etcdErrors.leaderChanged();
      const address = this.options.leaderClientAddress?.(leader.id);
      if (!address) throw etcdErrors.noLeader();
      return this.fill(await this.forward<Req, Res>(address, method, call));
    }
  }

  private forward<Req, Res>(address: string, method: string, call: ServerUnaryCall<Req, Res>): Promise<Res> {
    let client = this.clients.get(address);
    if (!client) {
      client = createGrpcClient(KVClient, address, {
        channelOptions: { "grpc.max_send_message_length": this.maxReceiveBytes },
      });
      this.clients.set(address, client);
    }
    const metadata = new Metadata();
    metadata.set(forwardedHeader, this.log.nodeId);
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

  private async propose(command: Uint8Array): Promise<ApplyResult> {
    if (proposalSize(command.length) > this.maxRequestBytes) throw etcdErrors.requestTooLarge();
    const result = await this.batcher.submit(command);
    if (result.type === "error") throw result.error;
    return result;
  }

  private async linearizable(): Promise<void> {
    await this.barrier.wait();
  }

  async range(
    req: RangeRequest,
    call?: ServerUnaryCall<RangeRequest, RangeResponse>,
  ): Promise<RangeResponse> {
    checkRangeRequest(req);
    const local = async () => {
      if (!req.serializable) await this.linearizable();
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
        if (!isTxnSerializable(req)) await this.linearizable();
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

  private unary<Req, Res>(
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

  /** The services to host: etcd's KV, Maintenance and Cluster. */
  services(): { definition: ServiceDefinition; implementation: UntypedServiceImplementation }[] {
    const max = this.maxReceiveBytes;
    const kv: UntypedServiceImplementation = {
      range: this.unary("Range", (req: RangeRequest, call) => this.range(req, call)),
      put: this.unary("Put", (req: PutRequest, call) => this.put(req, call)),
      deleteRange: this.unary("DeleteRange", (req: DeleteRangeRequest, call) => this.deleteRange(req, call)),
      txn: this.unary("Txn", (req: TxnRequest, call) => this.txn(req, call)),
      compact: this.unary("Compact", (req: CompactionRequest, call) => this.compact(req, call)),
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
      { definition: limitRequests(MaintenanceService, max), implementation: maintenance },
      { definition: limitRequests(ClusterService, max), implementation: cluster },
    ];
  }

  close(): void {
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
    async close(graceMs = 1_000) {
      await server.shutdown(graceMs);
      service.close();
    },
  };
}
