import {
  bytesSnapshot,
  ConsensusError,
  type LogEntry,
  type LogEvent,
  type LogStatus,
  type Member,
  type MembershipChange,
  type Proposed,
  type ProposeOptions,
  type ReplicatedLog,
  type Role,
  type StateMachine,
} from "@quorum/consensus";
import type { Clock, NodeId, PeerInfo, Timer, Transport } from "@quorum/transport";
import type { Registry } from "prom-client";
import { Paxos, type Ready } from "../core/paxos.js";
import type { Quorums } from "../core/quorum.js";
import { NONE } from "../core/types.js";
import * as pb from "../gen/quorum/paxos/v1/paxos.js";
import type { AcceptorStore } from "../storage/acceptor-store.js";
import { decodeMessage, encodeMessage, MalformedMessage, PAXOS_CHANNEL, SNAPSHOT_SUFFIX } from "../wire.js";
import { PaxosMetrics } from "./metrics.js";

/** The subset of pino's logger the runtime calls (a pino logger or child fits). */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

const ignore = (): void => {};
const silentLogger: Logger = { debug: ignore, info: ignore, warn: ignore, error: ignore };

export interface PaxosNodeOptions<Result> {
  readonly id: NodeId;
  /** This node's own peer address (reported in `status().members`). */
  readonly address?: string | undefined;
  /** The voting members (this node may be listed too; it is skipped). */
  readonly peers: readonly PeerInfo[];
  readonly transport: Transport;
  readonly clock: Clock;
  /** Acceptor state; the node closes it on `close()`. */
  readonly storage: AcceptorStore;
  readonly stateMachine: StateMachine<Result>;
  /** Seeded randomness for election backoff and proposal ids. */
  readonly random: () => number;
  /** Real time per core tick. Default 50 ms. */
  readonly tickMs?: number | undefined;
  /** Ticks without a leader before campaigning (plus random backoff). Default 10. */
  readonly electionTicks?: number | undefined;
  /** Ticks between heartbeats. Default 1. */
  readonly heartbeatTicks?: number | undefined;
  /** Flexible Paxos quorum sizes (q1 + q2 > n); default majorities. */
  readonly quorums?: Quorums | undefined;
  /** Most commands batched into one slot. Default 512. */
  readonly maxBatchCommands?: number | undefined;
  /** Largest command accepted by `propose`, in bytes. Default 1 MiB. */
  readonly maxCommandBytes?: number | undefined;
  /**
   * Flow control: most slots a leader keeps in flight (proposed, not yet chosen); further
   * proposals wait in the queue. Default 128.
   */
  readonly maxInflightSlots?: number | undefined;
  /** Compact the log once this many log indexes were executed since the last compaction. Default 10,000. */
  readonly snapshotThreshold?: number | undefined;
  /** Chosen slots kept behind the compaction point for replicas that lag a little. Default 1,000. */
  readonly snapshotCatchUpSlots?: number | undefined;
  /** Bytes per snapshot chunk on the wire. Default 256 KiB. */
  readonly snapshotChunkBytes?: number | undefined;
  /** Structured logs (pino or compatible); silent by default. */
  readonly logger?: Logger | undefined;
  /** Prometheus registry for this node's `paxos_*` metrics; a private one by default. */
  readonly metrics?: Registry | undefined;
  /**
   * Transport channel of this Paxos group (default "paxos"); snapshots travel on
   * `${channel}-snapshot`. Groups with different channels share one Transport (one group per
   * shard), as RaftNode's `channel` does.
   */
  readonly channel?: string | undefined;
}

/** Counters of a PaxosNode's runtime. */
export interface PaxosNodeStats {
  /** Peer messages dropped because they did not decode or broke the message rules. */
  droppedMalformed: number;
  /** Peer messages dropped because the claimed sender was not the transport's sender. */
  droppedSpoofed: number;
  /** Slots proposed by this node. */
  slotsProposed: number;
  /** Commands applied to the state machine. */
  commandsApplied: number;
  /** Snapshot transfers to lagging replicas that completed / failed. */
  snapshotsSent: number;
  snapshotsFailed: number;
  /** Snapshots received and installed. */
  snapshotsInstalled: number;
  /** Compactions of the acceptor log. */
  compactions: number;
}

interface OutgoingTransfer {
  readonly id: string;
  waiter: ((ack: pb.SnapshotAck | undefined) => void) | undefined;
}

interface IncomingTransfer {
  readonly id: string;
  readonly from: NodeId;
  readonly slot: number;
  readonly index: number;
  readonly size: number;
  readonly parts: Uint8Array[];
  received: number;
}

interface PendingProposal<Result> {
  readonly command: Uint8Array;
  readonly resolve: (p: Proposed<Result>) => void;
  readonly reject: (e: ConsensusError) => void;
  readonly cleanup: () => void;
  settled: boolean;
}

interface PendingRead {
  readonly resolve: (r: { index: number }) => void;
  readonly reject: (e: ConsensusError) => void;
  readonly cleanup: () => void;
  /** Known once the core confirmed the barrier. */
  index: number | undefined;
  settled: boolean;
  /** A follower's read: the leader asked to run the barrier. */
  via: NodeId | undefined;
}

/**
 * The runtime that drives a Paxos core (DESIGN.md rule 1): it owns the timers, the transport,
 * the acceptor store and the state machine, and keeps the order safety needs: persist, then
 * send, then apply in slot order, then answer.
 */
export class PaxosNode<Result = unknown> implements ReplicatedLog<Result> {
  readonly nodeId: NodeId;
  private readonly opts: PaxosNodeOptions<Result>;
  private readonly tickMs: number;
  private readonly maxBatch: number;
  private readonly maxCommandBytes: number;
  private readonly nonce: string;
  private core: Paxos | undefined;
  private started = false;
  private closed = false;
  private tickTimer: Timer | undefined;
  private flushScheduled = false;
  private unsubscribe: (() => void) | undefined;
  private proposalSeq = 0;
  private readSeq = 0;
  private readonly queue: PendingProposal<Result>[] = [];
  private readonly bySlot = new Map<number, { id: string; proposals: PendingProposal<Result>[] }>();
  private readonly reads = new Map<string, PendingRead>();
  private readonly listeners = new Set<(e: LogEvent) => void>();
  private lastRole: Role = "follower";
  private lastLeader: NodeId = NONE;
  private failure: Error | undefined;
  readonly stats: PaxosNodeStats = {
    droppedMalformed: 0,
    droppedSpoofed: 0,
    slotsProposed: 0,
    commandsApplied: 0,
    snapshotsSent: 0,
    snapshotsFailed: 0,
    snapshotsInstalled: 0,
    compactions: 0,
  };
  private readonly log: Logger;
  readonly metrics: PaxosMetrics;
  private readonly maxInflight: number;
  private readonly snapshotThreshold: number;
  private readonly snapshotKeep: number;
  private readonly chunkBytes: number;
  private readonly channel: string;
  private readonly snapshotChannel: string;
  private readonly outgoing = new Map<NodeId, OutgoingTransfer>();
  private incoming: IncomingTransfer | undefined;
  /** The state machine is being replaced by a snapshot: no Ready is handled meanwhile. */
  private restoring = false;
  /** A compaction is waiting for the state machine's snapshot (it makes the state durable). */
  private compacting = false;
  /** Index of the last snapshot taken for compaction (the next waits `snapshotThreshold` more). */
  private lastSnapshotIndex = 0;
  private transferSeq = 0;
  private unsubscribeSnapshots: (() => void) | undefined;

  constructor(options: PaxosNodeOptions<Result>) {
    if (options.id === "") throw new ConsensusError("INVALID_ARGUMENT", "a paxos node needs a non-empty id");
    // Accept the member list with or without this node in it (as raft's runtime does).
    const self = options.peers.find((p) => p.id === options.id);
    const peers = options.peers.filter((p) => p.id !== options.id);
    this.opts = { ...options, peers, address: options.address ?? self?.address };
    this.nodeId = options.id;
    this.tickMs = options.tickMs ?? 50;
    if (!(this.tickMs > 0))
      throw new ConsensusError("INVALID_ARGUMENT", `tickMs must be positive, got ${this.tickMs}`);
    this.maxBatch = options.maxBatchCommands ?? 512;
    this.maxCommandBytes = options.maxCommandBytes ?? 1024 * 1024;
    this.log = options.logger ?? silentLogger;
    this.metrics = new PaxosMetrics(options.id, options.metrics);
    this.maxInflight = positiveOption("maxInflightSlots", options.maxInflightSlots ?? 128);
    this.snapshotThreshold = positiveOption("snapshotThreshold", options.snapshotThreshold ?? 10_000);
    this.snapshotKeep = options.snapshotCatchUpSlots ?? 1_000;
    if (!Number.isInteger(this.snapshotKeep) || this.snapshotKeep < 0) {
      throw new ConsensusError("INVALID_ARGUMENT", `snapshotCatchUpSlots must be a non-negative integer`);
    }
    this.chunkBytes = positiveOption("snapshotChunkBytes", options.snapshotChunkBytes ?? 256 * 1024);
    this.nonce = Math.floor(options.random() * 2 ** 48).toString(36);
    this.channel = options.channel ?? PAXOS_CHANNEL;
    if (this.channel === "" || this.channel.endsWith(SNAPSHOT_SUFFIX)) {
      // A group named "x-snapshot" would hear the snapshot frames of group "x".
      throw new ConsensusError(
        "INVALID_ARGUMENT",
        `channel must be non-empty and not end in "${SNAPSHOT_SUFFIX}", got "${this.channel}"`,
      );
    }
    this.snapshotChannel = `${this.channel}${SNAPSHOT_SUFFIX}`;
  }

  async start(): Promise<void> {
    if (this.closed) throw new ConsensusError("SHUTTING_DOWN", `node ${this.nodeId} is closed`);
    if (this.started) return;
    this.started = true;
    const o = this.opts;
    try {
      this.core = new Paxos({
        id: o.id,
        voters: [o.id, ...o.peers.map((p) => p.id)],
        state: o.storage.load(),
        random: o.random,
        electionTicks: o.electionTicks,
        heartbeatTicks: o.heartbeatTicks,
        quorums: o.quorums,
      });
    } catch (e) {
      if (e instanceof RangeError) throw new ConsensusError("INVALID_ARGUMENT", e.message);
      throw e;
    }
    const { compactedIndex, compactedSlot } = this.core.status();
    const applied = o.stateMachine.appliedIndex();
    if (applied < compactedIndex) {
      throw new ConsensusError(
        "INVALID_ARGUMENT",
        `state machine is at index ${applied} but the acceptor log was compacted through index ${compactedIndex}; it needs the state those entries produced`,
      );
    }
    this.log.info({ node: o.id, compactedSlot, compactedIndex, applied }, "paxos node starting");
    for (const p of o.peers) o.transport.addPeer(p);
    this.unsubscribe = o.transport.subscribe(this.channel, (from, payload) => this.onMessage(from, payload));
    this.unsubscribeSnapshots = o.transport.subscribe(this.snapshotChannel, (from, payload) =>
      this.onSnapshotFrame(from, payload),
    );
    // Replays every chosen slot the state machine has not applied yet.
    this.process();
    this.scheduleTick();
  }

  propose(command: Uint8Array, options?: ProposeOptions): Promise<Proposed<Result>> {
    return new Promise<Proposed<Result>>((resolve, reject) => {
      const refusal = this.checkCommand(command);
      if (refusal) return reject(refusal);
      const p = this.pending(resolve, reject, options, command);
      if (!p) return;
      this.queue.push(p);
      this.scheduleFlush();
    });
  }

  async proposeBatch(commands: readonly Uint8Array[], options?: ProposeOptions): Promise<Proposed<Result>[]> {
    return Promise.all(commands.map((c) => this.propose(c, options)));
  }

  /**
   * A read barrier. On the leader it is confirmed by a phase-2 quorum; on a follower the
   * leader runs it and answers with the index to wait for (reads through followers work, as
   * Raft's ReadIndex does). Rejects NOT_LEADER when no leader is known.
   */
  read(options?: ProposeOptions): Promise<{ readonly index: number }> {
    return new Promise((resolve, reject) => {
      const refusal = this.stopped();
      if (refusal) return reject(refusal);
      const s = this.core!.status();
      const context = `${this.nonce}:r${this.readSeq++}`;
      const r: PendingRead = {
        index: undefined,
        settled: false,
        via: s.role === "leader" ? undefined : s.leader,
        cleanup: () => {},
        resolve: (v) => {
          if (r.settled) return;
          r.settled = true;
          this.reads.delete(context);
          r.cleanup();
          resolve(v);
        },
        reject: (e) => {
          if (r.settled) return;
          r.settled = true;
          this.reads.delete(context);
          r.cleanup();
          reject(e);
        },
      };
      (r as { cleanup: () => void }).cleanup = this.guard(options, (e) => r.reject(e));
      this.reads.set(context, r);
      if (!this.core!.readIndex(context)) {
        r.reject(this.notLeader(s.leader));
        return;
      }
      this.process();
    });
  }

  status(): LogStatus {
    const s = this.core?.status();
    const members: Member[] = [
      { id: this.nodeId, address: this.opts.address ?? "", learner: false },
      ...this.opts.peers.map((p) => ({ id: p.id, address: p.address, learner: false })),
    ];
    return {
      nodeId: this.nodeId,
      role: this.closed ? "stopped" : (s?.role ?? "follower"),
      leaderId: s && s.leader !== NONE ? s.leader : undefined,
      term: s ? Math.max(s.promised.round, s.ballot.round) : 0,
      commitIndex: s?.chosenIndex ?? 0,
      appliedIndex: this.opts.stateMachine.appliedIndex(),
      members,
    };
  }

  async changeMembership(_change: MembershipChange, _options?: ProposeOptions): Promise<readonly Member[]> {
    throw new ConsensusError("INVALID_ARGUMENT", "membership changes are not supported by paxos yet");
  }

  /**
   * Hands leadership to `id`: once it has every chosen slot, the leader tells it to campaign
   * at once (`timeoutNow`); resolves when this node sees `id` lead. Rejects NOT_LEADER on a
   * node that does not lead, INVALID_ARGUMENT for a node that is not a member, TIMEOUT when
   * `id` does not take over in time (default: four election timeouts), as Raft's does.
   */
  transferLeadership(id: string, options?: ProposeOptions): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const stopped = this.stopped();
      if (stopped) return reject(stopped);
      if (id !== this.nodeId && !this.opts.peers.some((p) => p.id === id)) {
        return reject(new ConsensusError("INVALID_ARGUMENT", `${id} is not a member of this group`));
      }
      const s = this.core!.status();
      if (s.role !== "leader") return reject(this.notLeader(s.leader));
      if (id === this.nodeId) return resolve();
      let unsubscribe = () => {};
      const timeoutMs = options?.timeoutMs ?? 4 * (this.opts.electionTicks ?? 10) * this.tickMs;
      const cleanup = this.guard({ ...options, timeoutMs }, (e) => {
        unsubscribe();
        reject(e);
      });
      unsubscribe = this.subscribe((e) => {
        if (e.type === "leaderChanged" && e.leaderId === id) {
          unsubscribe();
          cleanup();
          resolve();
        }
      });
      this.core!.transferLeadership(id);
      this.process();
    });
  }

  subscribe(listener: (event: LogEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.tickTimer?.cancel();
    this.unsubscribe?.();
    this.unsubscribeSnapshots?.();
    for (const t of this.outgoing.values()) t.waiter?.(undefined);
    const err = () => new ConsensusError("SHUTTING_DOWN", `node ${this.nodeId} is shutting down`);
    this.failAll(err);
    try {
      this.opts.storage.close();
    } catch {
      // Closing twice or a store already gone: nothing left to release.
    }
    this.metrics.setRole("stopped");
    this.emit({ type: "roleChanged", role: "stopped" });
  }

  /** The core's view, for tests and checkers. */
  coreStatus() {
    return this.core?.status();
  }

  /** The chosen values this node knows, by slot (for the simulation's checker). */
  chosenSlots() {
    return this.core?.chosenSlots() ?? new Map();
  }

  // ---------------------------------------------------------------------------------------

  private onMessage(from: NodeId, payload: Uint8Array): void {
    if (this.closed || !this.core) return;
    let m: ReturnType<typeof decodeMessage>;
    try {
      m = decodeMessage(payload);
    } catch (e) {
      if (e instanceof MalformedMessage) {
        this.dropped("malformed");
        return;
      }
      this.dropped("malformed");
      return;
    }
    if (m.from !== from) {
      this.stats.droppedSpoofed++;
      this.metrics.droppedMessages.inc({ node: this.nodeId, reason: "spoofed" });
      return;
    }
    this.core.step(m);
    this.process();
  }

  private scheduleTick(): void {
    if (this.closed) return;
    this.tickTimer = this.opts.clock.schedule(this.tickMs, () => {
      if (this.closed) return;
      this.core!.tick();
      this.process();
      this.scheduleTick();
    });
  }

  /**
   * Flushes the queue in a microtask, as RaftNode's `kick` does: proposals made in the same
   * task (a `proposeBatch`, one turn of the kv batcher) still share one slot, and none waits
   * for a timer (a 0 ms timer is at least 1 ms in Node, on every commit's path).
   */
  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    queueMicrotask(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  /** Queued proposals go out as one slot per batch (batching amortizes a round trip). */
  private flush(): void {
    if (this.closed || !this.core) return;
    for (;;) {
      while (this.queue.length > 0 && this.queue[0]!.settled) this.queue.shift();
      if (this.queue.length === 0) break;
      const s = this.core.status();
      // Flow control: a leader with its window full keeps the rest queued until slots are chosen.
      if (s.role === "leader" && s.inflight >= this.maxInflight) break;
      const batch: PendingProposal<Result>[] = [];
      while (batch.length < this.maxBatch && this.queue.length > 0) {
        const p = this.queue.shift()!;
        if (!p.settled) batch.push(p);
      }
      const id = `${this.nodeId}:${this.nonce}:${this.proposalSeq++}`;
      const outcome = this.core.propose(
        id,
        batch.map((p) => p.command),
      );
      if (!outcome.ok) {
        for (const p of batch) p.reject(this.notLeader(outcome.leader));
        this.metrics.proposals.inc({ node: this.nodeId, outcome: "not_leader" }, batch.length);
        continue;
      }
      this.stats.slotsProposed++;
      this.metrics.slotsProposed.inc({ node: this.nodeId });
      this.bySlot.set(outcome.slot, { id, proposals: batch });
    }
    this.process();
  }

  /** The one loop that hands a Ready to the world, in the order safety needs. */
  private process(): void {
    const core = this.core;
    if (!core || this.closed || this.restoring) return;
    try {
      while (core.hasReady()) {
        const rd = core.ready();
        // 1. Durable before any promise or accepted message that depends on it leaves.
        if (rd.persist) this.opts.storage.save(rd.persist);
        // 2. Send.
        for (const m of rd.messages) {
          try {
            this.opts.transport.send(m.to, this.channel, encodeMessage(m));
          } catch {
            // A closed transport or an oversize batch: the message is lost, as on the wire.
          }
        }
        for (const to of rd.snapshots) this.startSnapshotTransfer(to);
        // 3. Apply in slot order.
        this.apply(rd);
        core.advance(rd);
        // 4. Answer reads whose barrier is confirmed and applied.
        for (const rs of rd.readStates) {
          const r = this.reads.get(rs.context);
          if (r && rs.refused) r.reject(this.notLeader(core.status().leader));
          else if (r) r.index = rs.index;
        }
        this.answerReads();
      }
      this.maybeCompact();
    } catch (e) {
      this.fail(e instanceof Error ? e : new Error(String(e)));
      return;
    }
    this.checkRole();
    if (this.queue.length > 0) {
      const s = core.status();
      if (s.role !== "leader" || s.inflight < this.maxInflight) this.scheduleFlush();
    }
  }

  // ---------------------------------------------------------------------------------------
  // Log compaction and snapshot catch-up

  /**
   * Once `snapshotThreshold` indexes were executed since the last compaction, drops chosen
   * slots the state machine durably reflects, keeping `snapshotCatchUpSlots` behind for
   * replicas that lag a little. A state machine's `apply` need not be fsynced (kv's commits
   * with synchronous=NORMAL, the log being the durable record): `snapshot()` first makes its
   * state durable, so, as RaftNode does, we take one and compact only up to its index. A
   * power loss then never leaves the store behind the compaction point.
   */
  private maybeCompact(): void {
    const s = this.core!.status();
    const since = Math.max(s.compactedIndex, this.lastSnapshotIndex);
    if (this.compacting || s.executedIndex - since < this.snapshotThreshold) return;
    this.compacting = true;
    this.compactDurably().then(
      () => {
        this.compacting = false;
      },
      (e: unknown) => {
        this.compacting = false;
        this.log.warn(
          { node: this.nodeId, err: e instanceof Error ? e.message : String(e) },
          "log compaction failed; it is tried again later",
        );
      },
    );
  }

  private async compactDurably(): Promise<void> {
    const snap = await this.opts.stateMachine.snapshot();
    this.lastSnapshotIndex = snap.index;
    const core = this.core;
    if (this.closed || this.restoring || !core) return;
    const s = core.status();
    const at = core.slotForIndex(Math.min(snap.index, s.executedIndex));
    if (!at) return;
    const target = Math.min(at.slot, s.executedSlot - this.snapshotKeep);
    if (target <= s.compactedSlot || !core.compact(target)) return;
    this.stats.compactions++;
    this.metrics.compactions.inc({ node: this.nodeId });
    this.log.debug({ node: this.nodeId, slot: target }, "acceptor log compacted");
    this.process();
  }

  private startSnapshotTransfer(to: NodeId): void {
    if (this.outgoing.has(to) || this.closed) return;
    const t: OutgoingTransfer = {
      id: `${this.nodeId}:${this.nonce}:s${this.transferSeq++}`,
      waiter: undefined,
    };
    this.outgoing.set(to, t);
    this.sendSnapshot(to, t).then(
      () => {
        this.stats.snapshotsSent++;
        this.metrics.snapshotsSent.inc({ node: this.nodeId, outcome: "ok" });
        this.outgoing.delete(to);
      },
      (e: unknown) => {
        this.stats.snapshotsFailed++;
        this.metrics.snapshotsSent.inc({ node: this.nodeId, outcome: "failed" });
        this.outgoing.delete(to);
        this.log.warn(
          { node: this.nodeId, to, err: e instanceof Error ? e.message : String(e) },
          "snapshot transfer failed; it is retried on a later heartbeat",
        );
      },
    );
  }

  /** Streams a state-machine snapshot to `to`, one acknowledged chunk at a time. */
  private async sendSnapshot(to: NodeId, t: OutgoingTransfer): Promise<void> {
    const snap = await this.opts.stateMachine.snapshot();
    if (this.closed || !this.core) throw new Error("node closed");
    const meta = this.core.slotForIndex(snap.index);
    if (!meta || meta.index !== snap.index) {
      throw new Error(`snapshot at index ${snap.index} does not end on a slot boundary`);
    }
    this.log.info(
      { node: this.nodeId, to, slot: meta.slot, index: meta.index, bytes: snap.size },
      "sending snapshot",
    );
    let offset = 0;
    const sendChunk = async (data: Uint8Array) => {
      const chunk: pb.SnapshotChunk = {
        transferId: t.id,
        slot: meta.slot,
        index: meta.index,
        offset,
        size: snap.size,
        data: Buffer.from(data.buffer, data.byteOffset, data.byteLength),
      };
      const ack = await new Promise<pb.SnapshotAck | undefined>((resolve) => {
        // Two election timeouts: long enough for a chunk on a healthy link, short enough that a
        // lost chunk does not hold up a lagging replica's catch-up (and its reads) for long.
        const ackTimeoutMs = 2 * (this.opts.electionTicks ?? 10) * this.tickMs;
        const timer = this.opts.clock.schedule(ackTimeoutMs, () => resolve(undefined));
        t.waiter = (a) => {
          timer.cancel();
          t.waiter = undefined;
          resolve(a);
        };
        this.sendFrame(to, { chunk, ack: undefined });
      });
      if (!ack) throw new Error(`no acknowledgement for the chunk at ${offset}`);
      if (!ack.ok || ack.nextOffset !== offset + data.byteLength) {
        throw new Error(`${to} refused the chunk at ${offset}`);
      }
      offset += data.byteLength;
    };
    if (snap.size === 0) await sendChunk(new Uint8Array(0));
    for await (const part of snap.chunks()) {
      for (let i = 0; i < part.byteLength; i += this.chunkBytes) {
        if (this.closed) throw new Error("node closed");
        await sendChunk(part.subarray(i, Math.min(i + this.chunkBytes, part.byteLength)));
      }
    }
    if (offset !== snap.size) throw new Error(`snapshot yielded ${offset} bytes, announced ${snap.size}`);
  }

  private sendFrame(to: NodeId, frame: pb.SnapshotFrame): void {
    try {
      this.opts.transport.send(to, this.snapshotChannel, pb.SnapshotFrame.encode(frame).finish());
    } catch {
      // Lost, as on the wire: the sender times out and retries later.
    }
  }

  private onSnapshotFrame(from: NodeId, payload: Uint8Array): void {
    if (this.closed || !this.core) return;
    let frame: pb.SnapshotFrame;
    try {
      frame = pb.SnapshotFrame.decode(payload);
    } catch {
      this.dropped("malformed");
      return;
    }
    if (frame.ack) {
      const t = this.outgoing.get(from);
      if (t && frame.ack.transferId === t.id) t.waiter?.(frame.ack);
      return;
    }
    const c = frame.chunk;
    if (!c || c.transferId === "" || c.offset + c.data.byteLength > c.size || c.slot < 1) {
      this.dropped("malformed");
      return;
    }
    const nack = () =>
      this.sendFrame(from, { chunk: undefined, ack: { transferId: c.transferId, nextOffset: 0, ok: false } });
    if (this.restoring) {
      nack();
      return;
    }
    let inc = this.incoming;
    if (!inc || inc.id !== c.transferId || inc.from !== from) {
      if (c.offset !== 0) {
        nack();
        return;
      }
      inc = { id: c.transferId, from, slot: c.slot, index: c.index, size: c.size, parts: [], received: 0 };
      this.incoming = inc;
    }
    if (c.offset !== inc.received || c.size !== inc.size) {
      this.incoming = undefined;
      nack();
      return;
    }
    inc.parts.push(new Uint8Array(c.data));
    inc.received += c.data.byteLength;
    this.sendFrame(from, {
      chunk: undefined,
      ack: { transferId: inc.id, nextOffset: inc.received, ok: true },
    });
    if (inc.received === inc.size) {
      this.incoming = undefined;
      void this.installSnapshot(inc);
    }
  }

  /** Replaces the state machine with a received image, then tells the core. */
  private async installSnapshot(inc: IncomingTransfer): Promise<void> {
    const core = this.core!;
    if (inc.slot <= core.status().executedSlot) return;
    const sm = this.opts.stateMachine;
    // Already there (restored before a crash that lost the compaction record): no restore.
    if (sm.appliedIndex() < inc.index) {
      this.restoring = true;
      try {
        await sm.restore(bytesSnapshot(inc.index, Buffer.concat(inc.parts)));
      } catch (e) {
        this.restoring = false;
        this.fail(e instanceof Error ? e : new Error(String(e)));
        return;
      } finally {
        this.restoring = false;
      }
    }
    if (this.closed) return;
    if (core.installSnapshot(inc.slot, inc.index)) {
      this.stats.snapshotsInstalled++;
      this.metrics.snapshotsInstalled.inc({ node: this.nodeId });
      this.log.info(
        { node: this.nodeId, from: inc.from, slot: inc.slot, index: inc.index },
        "snapshot installed",
      );
      this.emit({ type: "applied", index: inc.index });
    }
    this.process();
  }

  private apply(rd: Ready): void {
    if (rd.committed.length === 0) return;
    const sm = this.opts.stateMachine;
    const applied = sm.appliedIndex();
    const entries: LogEntry[] = [];
    for (const c of rd.committed) {
      c.value.commands.forEach((command, i) => {
        const index = c.index + i;
        if (index > applied) entries.push({ index, command });
      });
    }
    const results = new Map<number, Result>();
    if (entries.length > 0) {
      const out = sm.apply(entries);
      for (const [i, e] of entries.entries()) results.set(e.index, out[i] as Result);
      this.stats.commandsApplied += entries.length;
    }
    for (const c of rd.committed) {
      const pending = this.bySlot.get(c.slot);
      if (!pending) continue;
      this.bySlot.delete(c.slot);
      if (pending.id !== c.value.id) {
        for (const p of pending.proposals) {
          p.reject(new ConsensusError("DROPPED", `slot ${c.slot} was chosen with another proposal's value`));
        }
        this.metrics.proposals.inc({ node: this.nodeId, outcome: "dropped" }, pending.proposals.length);
        continue;
      }
      pending.proposals.forEach((p, i) => {
        const index = c.index + i;
        p.resolve({ index, result: results.get(index) as Result });
      });
      this.metrics.proposals.inc({ node: this.nodeId, outcome: "committed" }, pending.proposals.length);
    }
    const last = rd.committed.at(-1)!;
    this.emit({ type: "applied", index: last.index + Math.max(1, last.value.commands.length) - 1 });
  }

  private answerReads(): void {
    const applied = this.opts.stateMachine.appliedIndex();
    const executed = this.core!.status().executedIndex;
    for (const r of [...this.reads.values()]) {
      if (r.index !== undefined && Math.max(applied, executed) >= r.index) r.resolve({ index: r.index });
    }
  }

  private checkRole(): void {
    const s = this.core!.status();
    const node = { node: this.nodeId };
    this.metrics.setRole(s.role);
    this.metrics.ballot.set(node, s.promised.round);
    this.metrics.chosenSlot.set(node, s.chosenSlot);
    this.metrics.chosenIndex.set(node, s.chosenIndex);
    this.metrics.appliedIndex.set(node, this.opts.stateMachine.appliedIndex());
    this.metrics.compactedSlot.set(node, s.compactedSlot);
    this.metrics.inflightSlots.set(node, s.inflight);
    if (s.role !== this.lastRole) {
      if (s.role === "candidate") this.metrics.elections.inc(node);
      this.log.info(
        { node: this.nodeId, role: s.role, ballot: s.ballot, from: this.lastRole },
        "role changed",
      );
      const wasLeader = this.lastRole === "leader";
      this.lastRole = s.role;
      this.emit({ type: "roleChanged", role: s.role });
      if (wasLeader) {
        // Our proposals may still be chosen (or not): their outcome is unknown.
        const lost = () => new ConsensusError("DROPPED", `node ${this.nodeId} lost leadership`);
        for (const { proposals } of this.bySlot.values()) {
          for (const p of proposals) p.reject(lost());
          this.metrics.proposals.inc({ node: this.nodeId, outcome: "dropped" }, proposals.length);
        }
        this.bySlot.clear();
        for (const r of [...this.reads.values()]) r.reject(this.notLeader(s.leader));
      }
    }
    if (s.leader !== this.lastLeader) {
      // Reads a former leader was asked to confirm will not be answered: nothing was done.
      for (const r of [...this.reads.values()]) {
        if (r.via !== undefined && r.index === undefined) r.reject(this.notLeader(s.leader));
      }
      this.lastLeader = s.leader;
      if (s.leader !== NONE) this.metrics.leaderChanges.inc(node);
      this.log.info({ node: this.nodeId, leader: s.leader, ballot: s.ballot }, "leader changed");
      this.emit({
        type: "leaderChanged",
        leaderId: s.leader === NONE ? undefined : s.leader,
        term: Math.max(s.promised.round, s.ballot.round),
      });
    }
  }

  /** Builds a pending proposal with its timeout and abort handling; undefined when refused. */
  private pending(
    resolve: (p: Proposed<Result>) => void,
    reject: (e: unknown) => void,
    options: ProposeOptions | undefined,
    command: Uint8Array,
  ): PendingProposal<Result> | undefined {
    const refusal = this.refusal();
    if (refusal) {
      reject(refusal);
      return undefined;
    }
    const p: PendingProposal<Result> = {
      command,
      resolve: (v) => {
        if (p.settled) return;
        p.settled = true;
        p.cleanup();
        resolve(v);
      },
      reject: (e) => {
        if (p.settled) return;
        p.settled = true;
        p.cleanup();
        reject(e);
      },
      cleanup: () => {},
      settled: false,
    };
    const cleanup = this.guard(options, (e) => p.reject(e));
    (p as { cleanup: () => void }).cleanup = cleanup;
    return p;
  }

  /** Arms the timeout and abort signal of a call; returns the function that disarms them. */
  private guard(options: ProposeOptions | undefined, fail: (e: ConsensusError) => void): () => void {
    let timer: Timer | undefined;
    let onAbort: (() => void) | undefined;
    if (options?.timeoutMs !== undefined) {
      timer = this.opts.clock.schedule(options.timeoutMs, () =>
        fail(new ConsensusError("TIMEOUT", `no outcome within ${options.timeoutMs} ms; it may still commit`)),
      );
    }
    const signal = options?.signal;
    if (signal) {
      onAbort = () => fail(new ConsensusError("DROPPED", "aborted by the caller; it may still commit"));
      if (signal.aborted) queueMicrotask(onAbort);
      else signal.addEventListener("abort", onAbort, { once: true });
    }
    return () => {
      timer?.cancel();
      if (signal && onAbort) signal.removeEventListener("abort", onAbort);
    };
  }

  private checkCommand(command: unknown): ConsensusError | undefined {
    if (!(command instanceof Uint8Array)) {
      return new ConsensusError("INVALID_ARGUMENT", "a command must be a Uint8Array");
    }
    if (command.byteLength > this.maxCommandBytes) {
      return new ConsensusError(
        "INVALID_ARGUMENT",
        `command of ${command.byteLength} bytes is over the limit of ${this.maxCommandBytes} bytes`,
      );
    }
    return undefined;
  }

  /** Why this node cannot serve anything right now (closed, failed, not started), if so. */
  private stopped(): ConsensusError | undefined {
    if (this.closed) return new ConsensusError("SHUTTING_DOWN", `node ${this.nodeId} is closed`);
    if (this.failure)
      return new ConsensusError("SHUTTING_DOWN", `node ${this.nodeId} stopped: ${this.failure.message}`);
    if (!this.core) return new ConsensusError("NOT_LEADER", `node ${this.nodeId} has not started`);
    return undefined;
  }

  /** Why this node cannot take a proposal right now, if it cannot. */
  private refusal(): ConsensusError | undefined {
    const stopped = this.stopped();
    if (stopped || !this.core) return stopped;
    const s = this.core.status();
    if (s.role !== "leader") return this.notLeader(s.leader);
    return undefined;
  }

  private notLeader(leader: NodeId): ConsensusError {
    if (leader === NONE || leader === this.nodeId) {
      return new ConsensusError("NOT_LEADER", `node ${this.nodeId} is not the leader and knows of none`);
    }
    const address = this.opts.peers.find((p) => p.id === leader)?.address;
    return new ConsensusError(
      "NOT_LEADER",
      `node ${this.nodeId} is not the leader; ${leader} is`,
      address === undefined ? { id: leader } : { id: leader, address },
    );
  }

  private failAll(err: () => ConsensusError): void {
    for (const p of this.queue.splice(0)) p.reject(err());
    for (const { proposals } of this.bySlot.values()) for (const p of proposals) p.reject(err());
    this.bySlot.clear();
    for (const r of [...this.reads.values()]) r.reject(err());
  }

  /** The state machine threw or the store failed: this replica cannot continue. */
  private fail(e: Error): void {
    this.log.error({ node: this.nodeId, err: e.message }, "paxos node stopped on a fatal error");
    this.failure = e;
    void this.close();
  }

  private dropped(reason: string): void {
    this.stats.droppedMalformed++;
    this.metrics.droppedMessages.inc({ node: this.nodeId, reason });
  }

  private emit(e: LogEvent): void {
    for (const l of this.listeners) {
      try {
        l(e);
      } catch {
        // A listener's mistake must not stop the node.
      }
    }
  }
}

function positiveOption(name: string, n: number): number {
  if (!Number.isInteger(n) || n < 1)
    throw new ConsensusError("INVALID_ARGUMENT", `${name} must be a positive integer, got ${n}`);
  return n;
}
