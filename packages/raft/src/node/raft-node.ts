import {
  ConsensusError,
  type LogEntry,
  type LogEvent,
  type Role as LogRole,
  type LogStatus,
  type Member,
  type MembershipChange,
  type Proposed,
  type ProposeOptions,
  type ReplicatedLog,
  type Snapshot,
  type StateMachine,
} from "@quorum/consensus";
import type { Clock, PeerInfo, Timer, Transport } from "@quorum/transport";
import type { Registry } from "prom-client";
import { membersAfter } from "../core/config.js";
import { type ProposeResult, Raft, type RaftConfig, type Ready } from "../core/raft.js";
import type { LogStore } from "../core/storage.js";
import {
  type ConfChange,
  type Entry,
  type Message,
  NONE,
  type RaftMember,
  type SnapshotMeta,
} from "../core/types.js";
import { decodeFrame, encodeFrame, type SnapshotAck, type SnapshotChunk } from "../wire/codec.js";
import { RaftMetrics } from "./metrics.js";
import { fileSink, type ImageSink, memorySink, removeStaleImages } from "./snapshot-image.js";

/** The subset of pino's logger the runtime calls (a pino logger or child fits). */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

const ignore = (): void => {};
const silentLogger: Logger = { debug: ignore, info: ignore, warn: ignore, error: ignore };

export type CoreOptions = Omit<
  RaftConfig,
  "id" | "storage" | "random" | "applied" | "electionTicks" | "heartbeatTicks"
>;

export interface RaftNodeOptions<Result = unknown> {
  readonly id: string;
  /**
   * The initial members (voters, this node included) used to bootstrap an empty log; ignored
   * once the log holds a configuration. With `join`, the members of the running cluster.
   */
  readonly peers: readonly PeerInfo[];
  /**
   * This node joins a running cluster: `peers` (its current members) are only made reachable
   * on the transport, not used as a configuration; the leader adds this node with
   * `changeMembership` and the log or a snapshot brings it the configuration.
   */
  readonly join?: boolean;
  /**
   * This node's own peer address, sent with every frame so that a receiver that does not know
   * it yet can answer. Default: this node's entry in `peers` or in the configuration.
   */
  readonly address?: string;
  readonly transport: Transport;
  readonly clock: Clock;
  readonly storage: LogStore;
  readonly stateMachine: StateMachine<Result>;
  /** Seeded PRNG in [0, 1) for election jitter. */
  readonly random: () => number;
  /** Milliseconds per core tick. Default 50. */
  readonly tickMs?: number;
  /** Default 10 (an election timeout of 10–20 ticks). */
  readonly electionTicks?: number;
  /** Default 1. */
  readonly heartbeatTicks?: number;
  /** Transport channel for this Raft group. Default "raft". */
  readonly channel?: string;
  readonly logger?: Logger;
  readonly metrics?: Registry;
  readonly core?: CoreOptions;
  /** Take a snapshot and compact once this many entries were applied since the last. Default 10,000. */
  readonly snapshotThreshold?: number;
  /** Entries kept behind a snapshot for slow followers. Default 1,000. */
  readonly snapshotCatchUpEntries?: number;
  /** Bytes per snapshot chunk on the wire. Default 256 KiB. */
  readonly snapshotChunkBytes?: number;
  /**
   * Receive snapshot images into files in this directory (streamed chunk by chunk, removed
   * once installed) instead of memory. Default: memory.
   */
  readonly snapshotDir?: string;
  /** A snapshot transfer announcing more bytes than this is refused. Default 16 GiB. */
  readonly maxSnapshotBytes?: number;
  /** Default timeout of propose/read/changeMembership. Default 10 s. */
  readonly defaultTimeoutMs?: number;
  /**
   * When the transport reports connection events (GrpcTransport's `onEvent`), a follower whose
   * stream to its leader ends starts a pre-vote within a few ticks (in turns, by rank among
   * the voters) instead of waiting out its election timeout (see `Raft.reportLeaderDisconnected`). Default true.
   */
  readonly electOnLeaderDisconnect?: boolean;
}

/** A transport that reports its connections breaking (GrpcTransport does; see `onEvent`). */
interface ConnectionEvents {
  onEvent(listener: (event: { readonly type: string; readonly peer: string }) => void): () => void;
}

function hasConnectionEvents(t: Transport): t is Transport & ConnectionEvents {
  return typeof (t as Partial<ConnectionEvents>).onEvent === "function";
}

interface PendingProposal {
  readonly term: number;
  readonly kind: "command" | "config";
  readonly resolve: (value: { index: number; result: unknown }) => void;
  readonly reject: (err: Error) => void;
  readonly cancel: () => void;
}

interface PendingRead {
  index: number | undefined;
  /** The leader the request went to (this node when it led). */
  readonly leader: string;
  readonly resolve: (value: { index: number }) => void;
  readonly reject: (err: Error) => void;
  readonly cancel: () => void;
}

interface QueuedProposal {
  readonly command: Uint8Array;
  readonly settle: Settle<{ index: number; result: unknown }>;
  readonly term: number;
}

interface Settle<T> {
  resolve(value: T): void;
  reject(err: Error): void;
  cancel(): void;
  readonly done: boolean;
}

interface IncomingTransfer {
  readonly transferId: string;
  readonly sink: ImageSink;
}

interface OutgoingTransfer {
  readonly transferId: string;
  onAck: ((ack: SnapshotAck) => void) | undefined;
}

/**
 * A Raft replica: drives the pure core with ticks from the Clock, persists each Ready in one
 * durable write before sending its messages, applies committed entries to the StateMachine in
 * batches, and settles proposals and reads.
 */
export class RaftNode<Result = unknown> implements ReplicatedLog<Result> {
  readonly nodeId: string;
  readonly metrics: RaftMetrics;
  private readonly options: RaftNodeOptions<Result>;
  private readonly log: Logger;
  private readonly channel: string;
  private readonly tickMs: number;
  private readonly timeoutMs: number;
  private raft: Raft | undefined;
  private started = false;
  private closed = false;
  private fatalError: Error | undefined;
  private tickTimer: Timer | undefined;
  private unsubscribe: (() => void) | undefined;
  private unsubscribeEvents: (() => void) | undefined;

  private processing = false;
  /** A Ready's save is in flight (a store that syncs off the event loop). */
  private persisting = false;
  private kickScheduled = false;
  private proposalQueue: QueuedProposal[] = [];
  private readonly pending = new Map<number, PendingProposal>();
  private readonly reads = new Map<string, PendingRead>();
  private readCounter = 0;
  /** Distinguishes this incarnation's read contexts and transfers from a previous one's still in flight. */
  private readonly nonce: string;
  private readonly listeners = new Set<(event: LogEvent) => void>();
  private readonly transferWaiters = new Set<{ id: string; settle: Settle<void> }>();

  private knownLeader = NONE;
  private knownRole: LogRole = "follower";
  private knownTerm = 0;
  private knownMembers: readonly RaftMember[] = [];
  private lastSnapshotIndex = 0;
  private snapshotting = false;

  private readonly incoming = new Map<string, IncomingTransfer>();
  /** The image of the snapshot the core is about to install, by index. */
  private receivedSnapshot: { index: number; sink: ImageSink } | undefined;
  private imageCounter = 0;
  private readonly outgoing = new Map<string, OutgoingTransfer>();
  private transferCounter = 0;
  /** Peers handed to the transport (by id → address). */
  private readonly reachable = new Map<string, string>();

  constructor(options: RaftNodeOptions<Result>) {
    this.options = options;
    this.nodeId = options.id;
    this.log = options.logger ?? silentLogger;
    this.channel = options.channel ?? "raft";
    this.tickMs = options.tickMs ?? 50;
    this.timeoutMs = options.defaultTimeoutMs ?? 10_000;
    this.metrics = new RaftMetrics(options.id, options.metrics);
    this.nonce = Math.floor(options.random() * 2 ** 48).toString(36);
    if (options.transport.localId !== options.id) {
      throw new ConsensusError(
        "INVALID_ARGUMENT",
        `transport is for ${options.transport.localId}, not ${options.id}`,
      );
    }
  }

  // ---- lifecycle ----

  async start(): Promise<void> {
    if (this.started) return;
    if (this.closed) throw new ConsensusError("SHUTTING_DOWN", "node is closed");
    this.started = true;
    const { storage, stateMachine } = this.options;
    const fresh =
      storage.lastIndex() === 0 && storage.snapshot().members.length === 0 && storage.hardState().term === 0;
    // Every peer the host named stays reachable, whatever the configuration says.
    for (const p of this.options.peers) this.reach(p.id, p.address);
    if (!this.options.join && fresh && this.options.peers.length > 0) {
      const members = this.options.peers.map((p) => ({ id: p.id, address: p.address, learner: false }));
      storage.save({ snapshot: { index: 0, term: 0, members } });
    }
    const applied = stateMachine.appliedIndex();
    const snapshotIndex = storage.snapshot().index;
    if (applied < snapshotIndex) {
      throw new ConsensusError(
        "INVALID_ARGUMENT",
        `state machine is at ${applied} but the log starts after a snapshot at ${snapshotIndex}; restore the snapshot first`,
      );
    }
    this.lastSnapshotIndex = snapshotIndex;
    if (this.options.snapshotDir) removeStaleImages(this.options.snapshotDir);
    this.raft = new Raft({
      ...this.options.core,
      id: this.nodeId,
      storage,
      random: this.options.random,
      applied,
      electionTicks: this.options.electionTicks ?? 10,
      heartbeatTicks: this.options.heartbeatTicks ?? 1,
    });
    this.knownTerm = this.raft.term;
    this.syncMembers();
    this.unsubscribe = this.options.transport.subscribe(this.channel, (from, payload) =>
      this.onPayload(from, payload),
    );
    const transport = this.options.transport;
    if (this.options.electOnLeaderDisconnect !== false && hasConnectionEvents(transport)) {
      this.unsubscribeEvents = transport.onEvent((event) => {
        if (event.type === "disconnected") this.onPeerDisconnected(event.peer);
      });
    }
    this.updateMetrics();
    this.log.info(
      { node: this.nodeId, term: this.raft.term, applied, lastIndex: storage.lastIndex() },
      "raft node started",
    );
    this.scheduleTick();
    this.kick();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.tickTimer?.cancel();
    this.unsubscribe?.();
    this.unsubscribeEvents?.();
    const err = () => new ConsensusError("SHUTTING_DOWN", `${this.nodeId} is shutting down`);
    for (const q of this.proposalQueue) q.settle.reject(err());
    this.proposalQueue = [];
    for (const p of [...this.pending.values()]) p.reject(err());
    this.pending.clear();
    for (const r of [...this.reads.values()]) r.reject(err());
    this.reads.clear();
    for (const w of [...this.transferWaiters]) w.settle.reject(err());
    this.transferWaiters.clear();
    for (const t of this.outgoing.values())
      t.onAck?.({ transferId: t.transferId, received: 0, reject: true });
    for (const t of this.incoming.values()) t.sink.discard();
    this.incoming.clear();
    this.receivedSnapshot?.sink.discard();
    this.receivedSnapshot = undefined;
    this.metrics.setRole("stopped");
    this.emit({ type: "roleChanged", role: "stopped" });
    this.log.info({ node: this.nodeId }, "raft node closed");
  }

  // ---- ReplicatedLog ----

  propose(command: Uint8Array, options?: ProposeOptions): Promise<Proposed<Result>> {
    return this.proposeBatch([command], options).then((r) => r[0]!);
  }

  async proposeBatch(commands: readonly Uint8Array[], options?: ProposeOptions): Promise<Proposed<Result>[]> {
    const raft = this.ready();
    if (commands.length === 0) return [];
    this.requireLeader(raft);
    const promises = commands.map((command) => {
      const { promise, settle } = this.settleable<{ index: number; result: unknown }>(options, "proposal");
      this.proposalQueue.push({ command, settle, term: raft.term });
      return promise;
    });
    this.kick();
    const results = await Promise.all(promises);
    return results.map((r) => ({ index: r.index, result: r.result as Result }));
  }

  async read(options?: ProposeOptions): Promise<{ readonly index: number }> {
    const raft = this.ready();
    if (raft.role !== "leader" && raft.leader === NONE) throw this.notLeader(raft);
    const context = `${this.nodeId}/${this.nonce}/${++this.readCounter}`;
    const { promise, settle } = this.settleable<{ index: number }>(options, "read", () =>
      this.reads.delete(context),
    );
    this.reads.set(context, {
      index: undefined,
      leader: raft.leader,
      resolve: settle.resolve,
      reject: settle.reject,
      cancel: settle.cancel,
    });
    raft.readIndex(context);
    this.kick();
    return promise;
  }

  async changeMembership(change: MembershipChange, options?: ProposeOptions): Promise<readonly Member[]> {
    const raft = this.ready();
    this.requireLeader(raft);
    const confChange: ConfChange =
      change.type === "addLearner" || change.type === "addVoter"
        ? { type: change.type, id: change.member.id, address: change.member.address }
        : { type: change.type, id: change.id };
    if (confChange.id === "") throw new ConsensusError("INVALID_ARGUMENT", "a member id must not be empty");
    // A new leader accepts changes once its first entry commits, which takes one round trip.
    const deadline = this.options.clock.now() + (options?.timeoutMs ?? this.timeoutMs);
    let r = raft.proposeConfChange(confChange);
    while (!r.ok && r.reason === "termNotCommitted" && this.options.clock.now() < deadline) {
      await new Promise<void>((resolve) => this.options.clock.schedule(this.tickMs, resolve));
      const current = this.ready();
      this.requireLeader(current);
      r = current.proposeConfChange(confChange);
    }
    if (!r.ok) throw this.refusal(r, raft);
    this.dropPending(r.index, r.term);
    const { promise, settle } = this.settleable<{ index: number; result: unknown }>(
      options,
      "membership change",
      () => this.pending.delete(r.index),
    );
    this.pending.set(r.index, { term: r.term, kind: "config", ...settle });
    this.kick();
    await promise;
    return this.status().members;
  }

  async transferLeadership(id: string, options?: ProposeOptions): Promise<void> {
    const raft = this.ready();
    this.requireLeader(raft);
    const r = raft.transferLeadership(id);
    if (!r.ok) throw this.refusal(r, raft);
    if (id === this.nodeId) return;
    const waiter = { id, settle: undefined as unknown as Settle<void> };
    const { promise, settle } = this.settleable<void>(options, "leadership transfer", () =>
      this.transferWaiters.delete(waiter),
    );
    waiter.settle = settle;
    this.transferWaiters.add(waiter);
    this.kick();
    return promise;
  }

  status(): LogStatus {
    const raft = this.raft;
    const members = this.knownMembers.map((m) => ({ id: m.id, address: m.address, learner: m.learner }));
    if (!raft) {
      return {
        nodeId: this.nodeId,
        role: this.closed ? "stopped" : "follower",
        leaderId: undefined,
        term: 0,
        commitIndex: 0,
        appliedIndex: this.options.stateMachine.appliedIndex(),
        members,
      };
    }
    return {
      nodeId: this.nodeId,
      role: this.closed ? "stopped" : this.logRole(raft),
      leaderId: raft.leader === NONE ? undefined : raft.leader,
      term: raft.term,
      commitIndex: raft.log.committed,
      appliedIndex: this.appliedIndex(),
      members,
    };
  }

  /**
   * The last entry applied, the protocol's own no-op and config entries included (the state
   * machine's own index skips those).
   */
  private appliedIndex(): number {
    return Math.max(this.options.stateMachine.appliedIndex(), this.raft?.log.applied ?? 0);
  }

  subscribe(listener: (event: LogEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The core's detailed view (for tests, the dashboard and debugging). */
  coreStatus(): ReturnType<Raft["status"]> | undefined {
    return this.raft?.status();
  }

  // ---- the loop ----

  private scheduleTick(): void {
    if (this.closed) return;
    this.tickTimer = this.options.clock.schedule(this.tickMs, () => {
      if (this.closed || !this.raft) return;
      this.raft.tick();
      this.kick();
      this.scheduleTick();
    });
  }

  /**
   * The stream to `peer` ended. Failover after a leader's crash is mostly waiting to notice
   * it: a randomized election timeout (10–20 ticks, 500–1000 ms by default) after its last
   * heartbeat. A crashed process's connections are reset by its OS at once, so a follower
   * that sees its leader's stream end can start the pre-vote now. The core ignores it unless
   * `peer` is the leader.
   *
   * The survivors all see the break within a millisecond. Had they all campaigned at once,
   * each would grant the others' pre-votes and the votes would split (costing a full election
   * timeout); random delays of 0–2 ticks still split ~1 failover in 10 here. So they go in
   * turns: by rank among the other voters (sorted ids), one tick apart, plus up to half a tick
   * of jitter. The first in line normally wins before the next one starts; if its log is
   * behind (the others refuse it) or it did not see the break, the next one tries a tick later.
   */
  private onPeerDisconnected(peer: string): void {
    const raft = this.raft;
    if (this.closed || !raft || !raft.reportLeaderDisconnected(peer)) return;
    this.log.info(
      { node: this.nodeId, leader: peer, term: raft.term },
      "leader's stream ended; campaigning early",
    );
    this.kick();
    const turns = raft
      .members()
      .filter((m) => !m.learner && m.id !== peer)
      .map((m) => m.id)
      .sort();
    const rank = Math.max(0, turns.indexOf(this.nodeId));
    const delayMs = Math.floor((rank + this.options.random() / 2) * this.tickMs);
    this.options.clock.schedule(delayMs, () => {
      if (this.closed || this.raft !== raft) return;
      raft.campaignIfLeaderLost(peer);
      this.kick();
    });
  }

  /** Runs the Ready loop soon; inputs arriving in the same task share one Ready (group commit). */
  private kick(): void {
    if (this.kickScheduled || this.closed) return;
    this.kickScheduled = true;
    queueMicrotask(() => {
      this.kickScheduled = false;
      void this.run();
    });
  }

  private async run(): Promise<void> {
    if (this.closed || !this.raft) return;
    if (this.processing) {
      if (this.persisting) this.sendEarly();
      return;
    }
    this.processing = true;
    try {
      this.flushProposals();
      while (!this.closed && this.raft.hasReady()) {
        await this.handleReady(this.raft.ready());
        this.flushProposals();
      }
    } catch (err) {
      this.fail(err);
    } finally {
      this.processing = false;
    }
  }

  /**
   * While a save is in flight: proposals join the log now and a leader's appends (of them, or
   * the next ones to a follower that acknowledged) leave at once; everything else, and the
   * persisting of these entries, waits for the next Ready.
   */
  private sendEarly(): void {
    this.flushProposals();
    const early = this.raft!.takeEarlyMessages();
    if (early.length > 0) this.sendMessages(early);
  }

  private flushProposals(): void {
    const raft = this.raft!;
    const queue = this.proposalQueue.filter((q) => !q.settle.done);
    this.proposalQueue = [];
    if (queue.length === 0) return;
    const r = raft.propose(queue.map((q) => q.command));
    if (!r.ok) {
      for (const q of queue) {
        this.metrics.proposals.inc({ node: this.nodeId, outcome: "rejected" });
        q.settle.reject(this.refusal(r, raft));
      }
      return;
    }
    queue.forEach((q, i) => {
      const index = r.index + i;
      this.dropPending(index, r.term);
      this.pending.set(index, { term: r.term, kind: "command", ...q.settle });
    });
  }

  private async handleReady(rd: Ready): Promise<void> {
    const raft = this.raft!;
    const { storage } = this.options;
    if (rd.snapshot) await this.installSnapshot(rd.snapshot);
    // An entry replacing one this node proposed: that proposal will never commit.
    for (const e of rd.entries) this.dropPending(e.index, e.term);
    // A leader's appends may leave before its own write (§10.2.1): the followers' fsyncs run in
    // parallel with the leader's, which the core counts toward a quorum only after `advance`.
    // (With a store that blocks for its fsync they leave only after it: the transport flushes
    // on the next turn of the event loop. Yielding a turn first measured no gain here; the
    // overlap comes from SqliteLogStore's writer thread, and from `sendEarly` meanwhile.)
    this.sendMessages(rd.earlyMessages);
    // Persist before anything that depends on it is sent or applied (Figure 2): votes and
    // append acknowledgements, the application of entries, a leader counting its own copy.
    const saving = storage.save({ hardState: rd.hardState, snapshot: rd.snapshot, entries: rd.entries });
    if (saving) {
      this.persisting = true;
      try {
        this.sendEarly();
        await saving;
      } finally {
        this.persisting = false;
      }
    }
    if (this.closed) return;
    this.sendMessages(rd.messages);
    if (rd.committedEntries.length > 0) this.applyEntries(rd.committedEntries);
    for (const rs of rd.readStates) {
      const r = this.reads.get(rs.context);
      if (r) r.index = rs.index;
    }
    raft.advance(rd);
    this.settleReads(this.appliedIndex());
    if (rd.softState || rd.hardState) this.onStateChange();
    this.syncMembers();
    this.updateMetrics();
    await this.maybeSnapshot();
  }

  private applyEntries(entries: readonly Entry[]): void {
    const sm = this.options.stateMachine;
    const already = sm.appliedIndex();
    const fresh = entries.filter((e) => e.index > already);
    const commands: LogEntry[] = fresh
      .filter((e) => e.type === "normal")
      .map((e) => ({ index: e.index, command: e.data }));
    const results = commands.length > 0 ? sm.apply(commands) : [];
    if (results.length !== commands.length) {
      throw new Error(`state machine returned ${results.length} results for ${commands.length} commands`);
    }
    const byIndex = new Map<number, unknown>();
    commands.forEach((c, i) => {
      byIndex.set(c.index, results[i]);
    });
    for (const e of entries) {
      const p = this.pending.get(e.index);
      if (!p) continue;
      this.pending.delete(e.index);
      if (p.term !== e.term) {
        this.metrics.proposals.inc({ node: this.nodeId, outcome: "dropped" });
        p.reject(
          new ConsensusError("DROPPED", `entry ${e.index} was overwritten by a leader of term ${e.term}`),
        );
      } else {
        if (p.kind === "command") this.metrics.proposals.inc({ node: this.nodeId, outcome: "committed" });
        p.resolve({ index: e.index, result: byIndex.get(e.index) });
      }
    }
    const last = entries.at(-1);
    if (last) this.emit({ type: "applied", index: last.index });
  }

  /** Rejects the proposal waiting at `index` unless it is of `term`. */
  private dropPending(index: number, term: number): void {
    const p = this.pending.get(index);
    if (!p || p.term === term) return;
    this.pending.delete(index);
    if (p.kind === "command") this.metrics.proposals.inc({ node: this.nodeId, outcome: "dropped" });
    p.reject(new ConsensusError("DROPPED", `entry ${index} was overwritten by a leader of term ${term}`));
  }

  private settleReads(applied: number): void {
    for (const [ctx, r] of this.reads) {
      if (r.index !== undefined && r.index <= applied) {
        this.reads.delete(ctx);
        r.resolve({ index: r.index });
      }
    }
  }

  private onStateChange(): void {
    const raft = this.raft!;
    const role = this.logRole(raft);
    if (raft.term !== this.knownTerm && raft.role === "candidate")
      this.metrics.elections.inc({ node: this.nodeId });
    this.knownTerm = raft.term;
    if (role !== this.knownRole) {
      this.knownRole = role;
      this.emit({ type: "roleChanged", role });
    }
    if (raft.leader !== this.knownLeader) {
      this.knownLeader = raft.leader;
      this.metrics.leaderChanges.inc({ node: this.nodeId });
      this.log.info({ node: this.nodeId, leader: raft.leader, term: raft.term }, "leader changed");
      this.emit({
        type: "leaderChanged",
        leaderId: raft.leader === NONE ? undefined : raft.leader,
        term: raft.term,
      });
      // A read not yet given an index went to a leader that is gone: nothing was done, so
      // the caller may retry at once.
      for (const [ctx, r] of this.reads) {
        if (r.index === undefined && r.leader !== raft.leader) {
          this.reads.delete(ctx);
          r.reject(this.notLeader(raft));
        }
      }
      for (const w of [...this.transferWaiters]) {
        if (w.id === raft.leader) {
          this.transferWaiters.delete(w);
          w.settle.resolve();
        }
      }
    }
  }

  private syncMembers(): void {
    const members = this.raft!.members();
    if (members === this.knownMembers) return;
    for (const m of members) this.reach(m.id, m.address);
    // Removed members stay reachable: one may be added back while this node's log still
    // lacks it (or this node may be the one re-added), and it must still be able to answer.
    const changed = this.knownMembers.length > 0;
    this.knownMembers = members;
    if (changed || members.length > 0) {
      this.emit({ type: "membersChanged", members: members.map((m) => ({ ...m })) });
    }
  }

  // ---- snapshots ----

  private async maybeSnapshot(): Promise<void> {
    const threshold = this.options.snapshotThreshold ?? 10_000;
    const applied = this.options.stateMachine.appliedIndex();
    if (this.snapshotting || applied - this.lastSnapshotIndex < threshold) return;
    this.snapshotting = true;
    try {
      const snapshot = await this.options.stateMachine.snapshot();
      this.lastSnapshotIndex = snapshot.index;
      const keep = this.options.snapshotCatchUpEntries ?? 1_000;
      const storage = this.options.storage;
      const compactTo = Math.min(snapshot.index - keep, storage.lastIndex());
      if (compactTo > storage.snapshot().index) storage.compact(compactTo);
      this.log.debug({ node: this.nodeId, index: snapshot.index, compactedTo: compactTo }, "snapshot taken");
    } finally {
      this.snapshotting = false;
    }
  }

  private async installSnapshot(meta: SnapshotMeta): Promise<void> {
    const received = this.receivedSnapshot;
    if (!received || received.index !== meta.index) {
      throw new Error(`the core installs snapshot ${meta.index} but its image was not received`);
    }
    this.receivedSnapshot = undefined;
    // The state machine first: if we crash before the log records the snapshot, the log is
    // merely behind the state machine, and entries up to its applied index are skipped.
    try {
      await this.options.stateMachine.restore(received.sink.snapshot(meta.index));
    } finally {
      received.sink.discard();
    }
    for (const [index, p] of this.pending) {
      if (index <= meta.index) {
        this.pending.delete(index);
        p.reject(
          new ConsensusError("DROPPED", `entry ${index} was replaced by a snapshot; its outcome is unknown`),
        );
      }
    }
    this.lastSnapshotIndex = meta.index;
    this.metrics.snapshotsInstalled.inc({ node: this.nodeId });
    this.log.info({ node: this.nodeId, index: meta.index, term: meta.term }, "snapshot installed");
  }

  /** The image to send and its metadata: a fresh state machine snapshot, at or after the log's own. */
  private async snapshotToSend(): Promise<{ meta: SnapshotMeta; snapshot: Snapshot }> {
    const storage = this.options.storage;
    const snapshot = await this.options.stateMachine.snapshot();
    const index = snapshot.index;
    const term = storage.term(index);
    if (term === undefined) throw new Error(`no term for snapshot index ${index}`);
    const base = storage.snapshot();
    const configs = storage.configEntries().filter((e) => e.index <= index);
    return { meta: { index, term, members: membersAfter(base.members, configs) }, snapshot };
  }

  private async sendSnapshot(m: Message): Promise<void> {
    const raft = this.raft!;
    const to = m.to;
    if (this.outgoing.has(to)) return;
    const transfer: OutgoingTransfer = {
      transferId: `${this.nodeId}/${this.nonce}/${raft.term}/${++this.transferCounter}`,
      onAck: undefined,
    };
    this.outgoing.set(to, transfer);
    let ok = false;
    try {
      const { meta, snapshot } = await this.snapshotToSend();
      const chunkBytes = this.options.snapshotChunkBytes ?? 256 * 1024;
      let offset = 0;
      // The state machine's pieces may be of any size: re-cut them into chunks of chunkBytes.
      let buffered: Uint8Array[] = [];
      let bufferedBytes = 0;
      const sendBuffered = async (all: boolean) => {
        if (bufferedBytes === 0) return;
        const data = Buffer.concat(buffered);
        let at = 0;
        for (; data.byteLength - at >= chunkBytes || (all && at < data.byteLength); at += chunkBytes) {
          const part = data.subarray(at, Math.min(at + chunkBytes, data.byteLength));
          await this.sendChunk(to, transfer, {
            offset,
            data: part,
            totalSize: snapshot.size,
            last: false,
            message: undefined,
          });
          offset += part.byteLength;
        }
        buffered = at < data.byteLength ? [data.subarray(at)] : [];
        bufferedBytes = data.byteLength - Math.min(at, data.byteLength);
      };
      for await (const piece of snapshot.chunks()) {
        buffered.push(piece);
        bufferedBytes += piece.byteLength;
        if (bufferedBytes >= chunkBytes) await sendBuffered(false);
      }
      await sendBuffered(true);
      const message: Message = { ...m, snapshot: meta };
      await this.sendChunk(to, transfer, {
        offset,
        data: new Uint8Array(0),
        totalSize: snapshot.size,
        last: true,
        message,
      });
      ok = true;
      this.log.info({ node: this.nodeId, to, index: meta.index, bytes: offset }, "snapshot sent");
    } catch (err) {
      this.log.warn({ node: this.nodeId, to, err: String(err) }, "snapshot transfer failed");
    } finally {
      this.outgoing.delete(to);
      this.metrics.snapshotsSent.inc({ node: this.nodeId, outcome: ok ? "ok" : "failed" });
      if (!this.closed && this.raft) {
        this.raft.reportSnapshot(to, ok);
        this.kick();
      }
    }
  }

  /** Sends one chunk and waits for the follower's acknowledgement (stop-and-wait). */
  private sendChunk(
    to: string,
    transfer: OutgoingTransfer,
    chunk: Omit<SnapshotChunk, "transferId">,
  ): Promise<void> {
    const timeoutMs = this.tickMs * (this.options.electionTicks ?? 10) * 2;
    return new Promise<void>((resolve, reject) => {
      const timer = this.options.clock.schedule(timeoutMs, () => {
        transfer.onAck = undefined;
        reject(new Error("snapshot chunk not acknowledged in time"));
      });
      transfer.onAck = (ack) => {
        if (ack.reject) {
          timer.cancel();
          transfer.onAck = undefined;
          reject(new Error("follower rejected the snapshot transfer"));
        } else if (ack.received >= chunk.offset + chunk.data.byteLength) {
          timer.cancel();
          transfer.onAck = undefined;
          resolve();
        }
      };
      this.sendFrame(to, { messages: [], chunk: { transferId: transfer.transferId, ...chunk } });
    });
  }

  private onChunk(from: string, chunk: SnapshotChunk): void {
    const refuse = (received: number) =>
      this.sendFrame(from, { messages: [], ack: { transferId: chunk.transferId, received, reject: true } });
    let t = this.incoming.get(from);
    if (!t || t.transferId !== chunk.transferId) {
      if (chunk.offset !== 0) {
        refuse(0);
        return;
      }
      const max = this.options.maxSnapshotBytes ?? 16 * 2 ** 30;
      if (chunk.totalSize > max) {
        this.metrics.droppedMessages.inc({ node: this.nodeId, reason: "snapshotTooLarge" });
        this.log.warn(
          { node: this.nodeId, from, bytes: chunk.totalSize, max },
          "refused a snapshot too large",
        );
        refuse(0);
        return;
      }
      t?.sink.discard(); // a newer transfer from the same leader replaces an unfinished one
      const dir = this.options.snapshotDir;
      t = {
        transferId: chunk.transferId,
        sink: dir ? fileSink(dir, `${this.nodeId}-${this.nonce}-${++this.imageCounter}`) : memorySink(),
      };
      this.incoming.set(from, t);
    }
    const sink = t.sink;
    if (chunk.offset === sink.received) {
      if (sink.received + chunk.data.byteLength > chunk.totalSize) {
        this.incoming.delete(from);
        sink.discard();
        refuse(sink.received);
        return;
      }
      sink.append(chunk.data);
    } else if (chunk.offset > sink.received) {
      this.incoming.delete(from);
      sink.discard();
      refuse(sink.received);
      return;
    }
    if (chunk.last && chunk.message?.snapshot) {
      this.incoming.delete(from);
      if (sink.received !== chunk.totalSize) {
        sink.discard();
        refuse(sink.received);
        return;
      }
      this.receivedSnapshot?.sink.discard();
      this.receivedSnapshot = { index: chunk.message.snapshot.index, sink };
      this.raft!.step(chunk.message);
      this.kick();
    }
    this.sendFrame(from, {
      messages: [],
      ack: { transferId: chunk.transferId, received: sink.received, reject: false },
    });
  }

  // ---- network ----

  private sendMessages(messages: readonly Message[]): void {
    const byPeer = new Map<string, Message[]>();
    for (const m of messages) {
      if (m.type === "snapshot") {
        void this.sendSnapshot(m);
        continue;
      }
      const list = byPeer.get(m.to);
      if (list) list.push(m);
      else byPeer.set(m.to, [m]);
    }
    for (const [to, list] of byPeer) this.sendFrame(to, { messages: list });
  }

  /** Makes `id` reachable at `address` on the transport (a changed address replaces the old). */
  private reach(id: string, address: string): void {
    if (id === this.nodeId || address === "" || this.reachable.get(id) === address) return;
    this.reachable.set(id, address);
    this.options.transport.addPeer({ id, address });
  }

  private ownAddress(): string {
    return (
      this.options.address ??
      this.knownMembers.find((m) => m.id === this.nodeId)?.address ??
      this.options.peers.find((p) => p.id === this.nodeId)?.address ??
      ""
    );
  }

  private sendFrame(to: string, frame: Parameters<typeof encodeFrame>[0]): void {
    if (this.closed) return;
    try {
      this.options.transport.send(
        to,
        this.channel,
        encodeFrame({ ...frame, fromAddress: this.ownAddress() }),
      );
    } catch (err) {
      this.metrics.droppedMessages.inc({ node: this.nodeId, reason: "send" });
      this.log.warn({ node: this.nodeId, to, err: String(err) }, "could not send to peer");
      this.raft?.reportUnreachable(to);
    }
  }

  private onPayload(from: string, payload: Uint8Array): void {
    if (this.closed || !this.raft) return;
    const decoded = decodeFrame(payload);
    if (!decoded.ok) {
      this.metrics.droppedMessages.inc({ node: this.nodeId, reason: "malformed" });
      this.log.debug({ node: this.nodeId, from, error: decoded.error }, "dropped a malformed raft frame");
      return;
    }
    const { messages, chunk, ack, fromAddress } = decoded.frame;
    // A sender this node cannot reach yet (it joined, or this configuration is behind).
    if (fromAddress && !this.reachable.has(from)) this.reach(from, fromAddress);
    for (const m of messages) {
      if (m.from !== from || m.to !== this.nodeId) {
        this.metrics.droppedMessages.inc({ node: this.nodeId, reason: "misaddressed" });
        continue;
      }
      this.raft.step(m);
    }
    if (chunk && (!chunk.message || (chunk.message.from === from && chunk.message.to === this.nodeId))) {
      this.onChunk(from, chunk);
    }
    if (ack) {
      const t = this.outgoing.get(from);
      if (t && t.transferId === ack.transferId) t.onAck?.(ack);
    }
    this.kick();
  }

  // ---- helpers ----

  private ready(): Raft {
    if (this.closed) throw new ConsensusError("SHUTTING_DOWN", `${this.nodeId} is shutting down`);
    if (this.fatalError)
      throw new ConsensusError("SHUTTING_DOWN", `${this.nodeId} stopped: ${this.fatalError.message}`);
    if (!this.raft) throw new ConsensusError("SHUTTING_DOWN", `${this.nodeId} is not started`);
    return this.raft;
  }

  private requireLeader(raft: Raft): void {
    if (raft.role !== "leader") throw this.notLeader(raft);
  }

  private notLeader(raft: Raft): ConsensusError {
    const leader = raft.leader === NONE ? undefined : this.knownMembers.find((m) => m.id === raft.leader);
    const hint =
      raft.leader === NONE ? undefined : { id: raft.leader, ...(leader ? { address: leader.address } : {}) };
    return new ConsensusError(
      "NOT_LEADER",
      hint
        ? `${this.nodeId} is not the leader; try ${hint.id}`
        : `${this.nodeId} is not the leader and knows of none`,
      hint,
    );
  }

  private refusal(r: Extract<ProposeResult, { ok: false }>, raft: Raft): ConsensusError {
    switch (r.reason) {
      case "notLeader":
        return this.notLeader(raft);
      case "transferring":
        return new ConsensusError("NOT_LEADER", r.message);
      case "changeInProgress":
        return new ConsensusError("MEMBERSHIP_CHANGE_IN_PROGRESS", r.message);
      case "termNotCommitted":
        return new ConsensusError("TIMEOUT", r.message);
      case "invalid":
        return new ConsensusError("INVALID_ARGUMENT", r.message);
    }
  }

  /** A promise with a timeout and an abort signal; `cleanup` runs when it times out or aborts. */
  private settleable<T>(
    options: ProposeOptions | undefined,
    what: string,
    cleanup?: () => void,
  ): { promise: Promise<T>; settle: Settle<T> } {
    let resolveFn!: (v: T) => void;
    let rejectFn!: (e: Error) => void;
    const promise = new Promise<T>((res, rej) => {
      resolveFn = res;
      rejectFn = rej;
    });
    const timeoutMs = options?.timeoutMs ?? this.timeoutMs;
    let timer: Timer | undefined;
    const signal = options?.signal;
    const onAbort = () =>
      settle.reject(new ConsensusError("TIMEOUT", `${what} aborted; its outcome is unknown`));
    const settle: Settle<T> & { done: boolean } = {
      done: false,
      resolve(v) {
        if (settle.done) return;
        settle.done = true;
        timer?.cancel();
        signal?.removeEventListener("abort", onAbort);
        resolveFn(v);
      },
      reject(e) {
        if (settle.done) return;
        settle.done = true;
        timer?.cancel();
        signal?.removeEventListener("abort", onAbort);
        cleanup?.();
        rejectFn(e);
      },
      cancel() {
        settle.reject(new ConsensusError("TIMEOUT", `${what} cancelled`));
      },
    };
    timer = this.options.clock.schedule(timeoutMs, () => {
      if (what === "proposal") this.metrics.proposals.inc({ node: this.nodeId, outcome: "timeout" });
      settle.reject(
        new ConsensusError(
          "TIMEOUT",
          `${what} did not complete within ${timeoutMs} ms; its outcome is unknown`,
        ),
      );
    });
    if (signal) {
      if (signal.aborted) onAbort();
      else signal.addEventListener("abort", onAbort, { once: true });
    }
    return { promise, settle };
  }

  private logRole(raft: Raft): LogRole {
    if (raft.role === "leader") return "leader";
    if (raft.role === "candidate" || raft.role === "preCandidate") return "candidate";
    return raft.members().some((m) => m.id === this.nodeId && m.learner) ? "learner" : "follower";
  }

  private emit(event: LogEvent): void {
    for (const l of [...this.listeners]) {
      try {
        l(event);
      } catch (err) {
        this.log.warn({ node: this.nodeId, err: String(err) }, "event listener threw");
      }
    }
  }

  private updateMetrics(): void {
    const raft = this.raft;
    if (!raft) return;
    const node = { node: this.nodeId };
    this.metrics.term.set(node, raft.term);
    this.metrics.commitIndex.set(node, raft.log.committed);
    this.metrics.appliedIndex.set(node, this.appliedIndex());
    this.metrics.setRole(
      raft.role === "follower" && this.logRole(raft) === "learner" ? "learner" : raft.role,
    );
  }

  /** A broken invariant or a state machine that threw: the replica cannot continue safely. */
  private fail(err: unknown): void {
    const error = err instanceof Error ? err : new Error(String(err));
    this.fatalError = error;
    this.log.error(
      { node: this.nodeId, err: error.message, stack: error.stack },
      "raft node stopped on an error",
    );
    void this.close();
  }
}
