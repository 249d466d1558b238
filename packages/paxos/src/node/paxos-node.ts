import {
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
import { Paxos, type Ready } from "../core/paxos.js";
import type { Quorums } from "../core/quorum.js";
import { NONE } from "../core/types.js";
import type { AcceptorStore } from "../storage/acceptor-store.js";
import { decodeMessage, encodeMessage, MalformedMessage, PAXOS_CHANNEL } from "../wire.js";

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
  private flushTimer: Timer | undefined;
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
  };

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
    this.nonce = Math.floor(options.random() * 2 ** 48).toString(36);
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
    for (const p of o.peers) o.transport.addPeer(p);
    this.unsubscribe = o.transport.subscribe(PAXOS_CHANNEL, (from, payload) => this.onMessage(from, payload));
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

  read(options?: ProposeOptions): Promise<{ readonly index: number }> {
    return new Promise((resolve, reject) => {
      const refusal = this.refusal();
      if (refusal) return reject(refusal);
      const context = `${this.nonce}:r${this.readSeq++}`;
      const r: PendingRead = {
        index: undefined,
        settled: false,
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
      this.core!.readIndex(context);
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

  subscribe(listener: (event: LogEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.tickTimer?.cancel();
    this.flushTimer?.cancel();
    this.unsubscribe?.();
    const err = () => new ConsensusError("SHUTTING_DOWN", `node ${this.nodeId} is shutting down`);
    this.failAll(err);
    try {
      this.opts.storage.close();
    } catch {
      // Closing twice or a store already gone: nothing left to release.
    }
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
        this.stats.droppedMalformed++;
        return;
      }
      this.stats.droppedMalformed++;
      return;
    }
    if (m.from !== from) {
      this.stats.droppedSpoofed++;
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

  private scheduleFlush(): void {
    if (this.flushTimer) return;
    this.flushTimer = this.opts.clock.schedule(0, () => {
      this.flushTimer = undefined;
      this.flush();
    });
  }

  /** Queued proposals go out as one slot per batch (batching amortizes a round trip). */
  private flush(): void {
    if (this.closed || !this.core) return;
    const live = this.queue.splice(0).filter((p) => !p.settled);
    for (let i = 0; i < live.length; i += this.maxBatch) {
      const batch = live.slice(i, i + this.maxBatch);
      const id = `${this.nodeId}:${this.nonce}:${this.proposalSeq++}`;
      const outcome = this.core.propose(
        id,
        batch.map((p) => p.command),
      );
      if (!outcome.ok) {
        for (const p of batch) p.reject(this.notLeader(outcome.leader));
        continue;
      }
      this.stats.slotsProposed++;
      this.bySlot.set(outcome.slot, { id, proposals: batch });
    }
    this.process();
  }

  /** The one loop that hands a Ready to the world, in the order safety needs. */
  private process(): void {
    const core = this.core;
    if (!core || this.closed) return;
    try {
      while (core.hasReady()) {
        const rd = core.ready();
        // 1. Durable before any promise or accepted message that depends on it leaves.
        if (rd.persist) this.opts.storage.save(rd.persist);
        // 2. Send.
        for (const m of rd.messages) {
          try {
            this.opts.transport.send(m.to, PAXOS_CHANNEL, encodeMessage(m));
          } catch {
            // A closed transport or an oversize batch: the message is lost, as on the wire.
          }
        }
        // 3. Apply in slot order.
        this.apply(rd);
        core.advance(rd);
        // 4. Answer reads whose barrier is confirmed and applied.
        for (const rs of rd.readStates) {
          const r = this.reads.get(rs.context);
          if (r) r.index = rs.index;
        }
        this.answerReads();
      }
    } catch (e) {
      this.fail(e instanceof Error ? e : new Error(String(e)));
      return;
    }
    this.checkRole();
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
        continue;
      }
      pending.proposals.forEach((p, i) => {
        const index = c.index + i;
        p.resolve({ index, result: results.get(index) as Result });
      });
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
    if (s.role !== this.lastRole) {
      const wasLeader = this.lastRole === "leader";
      this.lastRole = s.role;
      this.emit({ type: "roleChanged", role: s.role });
      if (wasLeader) {
        // Our proposals may still be chosen (or not): their outcome is unknown.
        const lost = () => new ConsensusError("DROPPED", `node ${this.nodeId} lost leadership`);
        for (const { proposals } of this.bySlot.values()) for (const p of proposals) p.reject(lost());
        this.bySlot.clear();
        for (const r of [...this.reads.values()]) r.reject(this.notLeader(s.leader));
      }
    }
    if (s.leader !== this.lastLeader) {
      this.lastLeader = s.leader;
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

  /** Why this node cannot take a proposal or read right now, if it cannot. */
  private refusal(): ConsensusError | undefined {
    if (this.closed) return new ConsensusError("SHUTTING_DOWN", `node ${this.nodeId} is closed`);
    if (this.failure)
      return new ConsensusError("SHUTTING_DOWN", `node ${this.nodeId} stopped: ${this.failure.message}`);
    if (!this.core) return new ConsensusError("NOT_LEADER", `node ${this.nodeId} has not started`);
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
    this.failure = e;
    void this.close();
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
