import {
  emptyStats,
  type MessageHandler,
  type NodeId,
  type PeerInfo,
  type Transport,
  TransportError,
  type TransportStats,
} from "@quorum/transport";
import type { Prng } from "./prng.js";
import type { Scheduler, SimTimer } from "./scheduler.js";

/** Per-message faults; every draw comes from the network's own Prng fork. */
export interface NetworkFaults {
  /** One-way delay, drawn uniformly per message (integer ms, inclusive). */
  minDelayMs: number;
  maxDelayMs: number;
  /** Probability that a message is lost on the wire. */
  dropRate: number;
  /** Probability that a message is delivered twice (the copy gets its own delay). */
  duplicateRate: number;
  /**
   * "random": every message has its own delay, so messages overtake each other.
   * "fifo": per directed link, a message never arrives before one sent earlier (like one
   * gRPC stream, which is what the Transport contract promises within a connection).
   */
  ordering: "random" | "fifo";
}

export interface NetworkOptions extends Partial<NetworkFaults> {
  /** Largest payload `send` accepts (TransportError MESSAGE_TOO_LARGE above it). */
  maxMessageBytes?: number;
}

export const NO_FAULTS: Readonly<Pick<NetworkFaults, "dropRate" | "duplicateRate">> = {
  dropRate: 0,
  duplicateRate: 0,
};

export type TraceKind =
  | "send"
  | "deliver"
  | "drop-random"
  | "drop-partition"
  | "drop-node-down"
  | "drop-no-subscriber"
  | "duplicate"
  | "hold"
  | "release";

export interface TraceEvent {
  readonly kind: TraceKind;
  readonly time: number;
  readonly id: number;
  readonly from: NodeId;
  readonly to: NodeId;
  readonly channel: string;
  readonly bytes: number;
}

/** Network-wide counters (the per-node `TransportStats` are kept by each transport). */
export interface NetworkCounters {
  sent: number;
  delivered: number;
  droppedRandom: number;
  droppedPartition: number;
  droppedNodeDown: number;
  droppedNoSubscriber: number;
  duplicated: number;
  held: number;
}

interface Message {
  readonly id: number;
  readonly from: NodeId;
  readonly to: NodeId;
  readonly channel: string;
  readonly payload: Uint8Array;
  /** The destination incarnation at send time: a message never reaches a later one. */
  readonly toIncarnation: number;
}

const linkKey = (from: NodeId, to: NodeId) => `${from}\u0000${to}`;

/**
 * A simulated network between the nodes of one cluster. `transport(id)` gives each node a
 * `Transport`; messages travel as scheduler events with delays, loss, duplication and
 * partitions drawn from the seed.
 *
 * Two kinds of link faults: a *blocked* link (partition, isolate, blockLink) loses every
 * message, including those already in flight when they arrive; a *clogged* link (swizzle,
 * clogLink) holds messages and releases them when unclogged, as FoundationDB's clogging does.
 */
export class SimNetwork {
  readonly counters: NetworkCounters = {
    sent: 0,
    delivered: 0,
    droppedRandom: 0,
    droppedPartition: 0,
    droppedNodeDown: 0,
    droppedNoSubscriber: 0,
    duplicated: 0,
    held: 0,
  };
  private faults: NetworkFaults;
  private readonly maxMessageBytes: number;
  private readonly endpoints = new Map<NodeId, SimTransport>();
  private readonly incarnations = new Map<NodeId, number>();
  private readonly blocked = new Set<string>();
  private readonly isolated = new Set<NodeId>();
  private groups: Map<NodeId, number> | undefined;
  private readonly clogged = new Map<string, Message[]>();
  private readonly lastArrival = new Map<string, number>();
  private readonly tracers: ((e: TraceEvent) => void)[] = [];
  private readonly swizzleTimers = new Set<SimTimer>();
  private nextMessageId = 0;

  constructor(
    private readonly scheduler: Scheduler,
    private readonly prng: Prng,
    options: NetworkOptions = {},
  ) {
    this.faults = {
      minDelayMs: options.minDelayMs ?? 1,
      maxDelayMs: options.maxDelayMs ?? 10,
      dropRate: options.dropRate ?? 0,
      duplicateRate: options.duplicateRate ?? 0,
      ordering: options.ordering ?? "random",
    };
    this.checkFaults(this.faults);
    this.maxMessageBytes = options.maxMessageBytes ?? 16 * 1024 * 1024;
  }

  /**
   * The Transport of `id`'s current incarnation. Calling it again for the same id (a restart)
   * retires the previous transport: it behaves as crashed and messages addressed to it are lost.
   */
  transport(id: NodeId): Transport {
    this.endpoints.get(id)?.detach();
    const incarnation = (this.incarnations.get(id) ?? 0) + 1;
    this.incarnations.set(id, incarnation);
    const t = new SimTransport(this, id, incarnation, this.maxMessageBytes);
    this.endpoints.set(id, t);
    return t;
  }

  /** Node ids that ever had a transport. */
  nodes(): NodeId[] {
    return [...this.endpoints.keys()];
  }

  /** The node crashed: its transport stops sending and receiving, in-flight messages to it are lost. */
  crash(id: NodeId): void {
    this.endpoints.get(id)?.detach();
  }

  isUp(id: NodeId): boolean {
    return this.endpoints.get(id)?.isAttached() ?? false;
  }

  getFaults(): Readonly<NetworkFaults> {
    return { ...this.faults };
  }

  setFaults(faults: Partial<NetworkFaults>): void {
    const next = { ...this.faults, ...faults };
    this.checkFaults(next);
    this.faults = next;
  }

  /** Messages between nodes in different groups are lost. Nodes in no group are unaffected. */
  partition(groups: readonly (readonly NodeId[])[]): void {
    const map = new Map<NodeId, number>();
    groups.forEach((g, i) => {
      for (const id of g) map.set(id, i);
    });
    this.groups = map;
  }

  /** Cuts `id` off from every other node, in both directions. */
  isolate(id: NodeId): void {
    this.isolated.add(id);
  }

  /** Loses messages on one directed link (from -> to) only. */
  blockLink(from: NodeId, to: NodeId): void {
    this.blocked.add(linkKey(from, to));
  }

  unblockLink(from: NodeId, to: NodeId): void {
    this.blocked.delete(linkKey(from, to));
  }

  /** Holds messages on one directed link until `unclogLink`. */
  clogLink(from: NodeId, to: NodeId): void {
    const key = linkKey(from, to);
    if (!this.clogged.has(key)) this.clogged.set(key, []);
  }

  /** Releases the held messages, each with a fresh delay. */
  unclogLink(from: NodeId, to: NodeId): void {
    const key = linkKey(from, to);
    const held = this.clogged.get(key);
    if (held === undefined) return;
    this.clogged.delete(key);
    for (const m of held) {
      this.emit("release", m);
      this.transmit(m);
    }
  }

  /**
   * Removes every partition, isolation, blocked and clogged link (clogged messages are
   * released) and cancels the rest of any swizzle in progress.
   */
  heal(): void {
    for (const t of this.swizzleTimers) t.cancel();
    this.swizzleTimers.clear();
    this.groups = undefined;
    this.isolated.clear();
    this.blocked.clear();
    for (const key of [...this.clogged.keys()]) {
      const [from, to] = key.split("\u0000") as [NodeId, NodeId];
      this.unclogLink(from, to);
    }
  }

  /**
   * FoundationDB's swizzle: clog `count` random directed links one at a time, `stepMs` apart,
   * then unclog them one at a time in a random order. Returns the virtual time it ends.
   */
  swizzle(options: { count?: number; stepMs?: number } = {}): number {
    const ids = this.nodes();
    const links: [NodeId, NodeId][] = [];
    for (const a of ids) for (const b of ids) if (a !== b) links.push([a, b]);
    const count = Math.min(options.count ?? Math.ceil(links.length / 2), links.length);
    const stepMs = options.stepMs ?? 50;
    const chosen = this.prng.shuffle(links).slice(0, count);
    const restore = this.prng.shuffle([...chosen]);
    let t = 0;
    const later = (fn: () => void, label: string) => {
      t += stepMs;
      const timer = this.scheduler.schedule(
        t,
        () => {
          this.swizzleTimers.delete(timer);
          fn();
        },
        label,
      );
      this.swizzleTimers.add(timer);
    };
    for (const [a, b] of chosen) later(() => this.clogLink(a, b), "swizzle-clog");
    for (const [a, b] of restore) later(() => this.unclogLink(a, b), "swizzle-unclog");
    return this.scheduler.now() + t;
  }

  isBlocked(from: NodeId, to: NodeId): boolean {
    if (this.isolated.has(from) || this.isolated.has(to)) return true;
    if (this.blocked.has(linkKey(from, to))) return true;
    if (this.groups) {
      const a = this.groups.get(from);
      const b = this.groups.get(to);
      if (a !== undefined && b !== undefined && a !== b) return true;
    }
    return false;
  }

  /** Calls `fn` for every message event; for debugging a failing seed. Returns an unsubscribe. */
  onTrace(fn: (e: TraceEvent) => void): () => void {
    this.tracers.push(fn);
    return () => {
      const i = this.tracers.indexOf(fn);
      if (i >= 0) this.tracers.splice(i, 1);
    };
  }

  /** @internal Called by SimTransport.send after its own checks. Returns false when blocked at once. */
  submit(from: NodeId, to: NodeId, channel: string, payload: Uint8Array): boolean {
    const m: Message = {
      id: this.nextMessageId++,
      from,
      to,
      channel,
      payload,
      toIncarnation: this.incarnations.get(to) ?? 0,
    };
    this.counters.sent++;
    this.emit("send", m);
    if (this.isBlocked(from, to)) {
      this.counters.droppedPartition++;
      this.emit("drop-partition", m);
      return false;
    }
    // Draw both numbers for every message so the stream does not depend on the rates.
    const lost = this.prng.chance(this.faults.dropRate);
    const duplicated = this.prng.chance(this.faults.duplicateRate);
    if (lost) {
      this.counters.droppedRandom++;
      this.emit("drop-random", m);
      return true;
    }
    this.route(m);
    if (duplicated) {
      this.counters.duplicated++;
      this.emit("duplicate", m);
      this.route(m);
    }
    return true;
  }

  private route(m: Message): void {
    const held = this.clogged.get(linkKey(m.from, m.to));
    if (held) {
      this.counters.held++;
      this.emit("hold", m);
      held.push(m);
      return;
    }
    this.transmit(m);
  }

  private transmit(m: Message): void {
    const { minDelayMs, maxDelayMs, ordering } = this.faults;
    let arrival = this.scheduler.now() + this.prng.int(minDelayMs, maxDelayMs);
    if (ordering === "fifo") {
      const key = linkKey(m.from, m.to);
      arrival = Math.max(arrival, this.lastArrival.get(key) ?? 0);
      this.lastArrival.set(key, arrival);
    }
    this.scheduler.at(arrival, () => this.arrive(m), `msg ${m.from}->${m.to} ${m.channel}`);
  }

  private arrive(m: Message): void {
    const key = linkKey(m.from, m.to);
    const held = this.clogged.get(key);
    if (held) {
      // Clogged while in flight: hold it like a stalled connection would.
      this.counters.held++;
      this.emit("hold", m);
      held.push(m);
      return;
    }
    if (this.isBlocked(m.from, m.to)) {
      this.counters.droppedPartition++;
      this.emit("drop-partition", m);
      return;
    }
    const dest = this.endpoints.get(m.to);
    if (!dest?.isAttached() || dest.incarnation !== m.toIncarnation) {
      this.counters.droppedNodeDown++;
      this.emit("drop-node-down", m);
      return;
    }
    if (dest.deliver(m.from, m.channel, m.payload)) {
      this.counters.delivered++;
      this.emit("deliver", m);
    } else {
      this.counters.droppedNoSubscriber++;
      this.emit("drop-no-subscriber", m);
    }
  }

  private emit(kind: TraceKind, m: Message): void {
    if (this.tracers.length === 0) return;
    const e: TraceEvent = {
      kind,
      time: this.scheduler.now(),
      id: m.id,
      from: m.from,
      to: m.to,
      channel: m.channel,
      bytes: m.payload.byteLength,
    };
    for (const t of this.tracers) t(e);
  }

  private checkFaults(f: NetworkFaults): void {
    const rate = (n: number) => Number.isFinite(n) && n >= 0 && n <= 1;
    if (!Number.isInteger(f.minDelayMs) || !Number.isInteger(f.maxDelayMs) || f.minDelayMs < 0) {
      throw new RangeError("minDelayMs and maxDelayMs must be non-negative integers");
    }
    if (f.maxDelayMs < f.minDelayMs) throw new RangeError("maxDelayMs must be >= minDelayMs");
    if (!rate(f.dropRate) || !rate(f.duplicateRate)) {
      throw new RangeError("dropRate and duplicateRate must be in [0, 1]");
    }
  }
}

/**
 * One node's Transport on a SimNetwork. Follows the Transport contract: `send` never throws
 * for network conditions (only for an oversized payload or after `close()`), and loss is
 * counted, not thrown. Stats: `delivered` counts messages put on the wire; a message lost on
 * the wire later is invisible to the sender, as on a real network; a message refused because
 * the link is partitioned counts as `droppedDisconnected`.
 */
class SimTransport implements Transport {
  private readonly handlers = new Map<string, MessageHandler>();
  private readonly peerMap = new Map<NodeId, PeerInfo>();
  private readonly counters: TransportStats = emptyStats();
  private attached = true;
  private closed = false;

  constructor(
    private readonly network: SimNetwork,
    readonly localId: NodeId,
    readonly incarnation: number,
    private readonly maxMessageBytes: number,
  ) {}

  send(to: NodeId, channel: string, payload: Uint8Array): void {
    if (this.closed) throw new TransportError("CLOSED", `transport of ${this.localId} is closed`);
    if (payload.byteLength > this.maxMessageBytes) {
      throw new TransportError(
        "MESSAGE_TOO_LARGE",
        `message of ${payload.byteLength} bytes exceeds the maximum of ${this.maxMessageBytes}`,
      );
    }
    // A crashed incarnation's leftover code may still call send; it goes nowhere.
    if (!this.attached) {
      this.counters.droppedDisconnected++;
      return;
    }
    this.counters.sent++;
    if (!this.peerMap.has(to)) {
      this.counters.droppedUnknownPeer++;
      return;
    }
    // Copy: the receiver must not see later changes to the sender's buffer.
    if (this.network.submit(this.localId, to, channel, payload.slice())) this.counters.delivered++;
    else this.counters.droppedDisconnected++;
  }

  subscribe(channel: string, handler: MessageHandler): () => void {
    this.handlers.set(channel, handler);
    return () => {
      if (this.handlers.get(channel) === handler) this.handlers.delete(channel);
    };
  }

  addPeer(peer: PeerInfo): void {
    this.peerMap.set(peer.id, { ...peer });
  }

  removePeer(id: NodeId): void {
    this.peerMap.delete(id);
  }

  peers(): PeerInfo[] {
    return [...this.peerMap.values()].map((p) => ({ ...p }));
  }

  stats(): TransportStats {
    return { ...this.counters };
  }

  close(): Promise<void> {
    this.closed = true;
    this.attached = false;
    return Promise.resolve();
  }

  isAttached(): boolean {
    return this.attached;
  }

  /** The node crashed or restarted: no more traffic, and no close callbacks. */
  detach(): void {
    this.attached = false;
  }

  /** Returns false when nobody subscribes to the channel. */
  deliver(from: NodeId, channel: string, payload: Uint8Array): boolean {
    const handler = this.handlers.get(channel);
    if (!handler) {
      this.counters.droppedNoSubscriber++;
      return false;
    }
    this.counters.received++;
    handler(from, payload);
    return true;
  }
}
