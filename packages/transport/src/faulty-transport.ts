import { type Clock, systemClock, type Timer } from "./clock.js";
import { type Logger, silentLogger } from "./logger.js";
import { seededRandom } from "./random.js";
import { Subscribers } from "./subscribers.js";
import type { MessageHandler, NodeId, PeerInfo, Transport, TransportStats } from "./transport.js";
import { TransportError } from "./transport.js";

export interface FaultyTransportOptions {
  /** Randomness for drops, delays and duplicates. Default: `seededRandom(seed)`. */
  random?: () => number;
  /** Seed of the default PRNG (ignored when `random` is given). Default 1. */
  seed?: number;
  /** Timers for delayed messages. Default: `systemClock`. */
  clock?: Clock;
  /** Where a throwing message handler is reported. */
  logger?: Logger;
}

/** What the wrapper is currently doing to outgoing messages; every field may change at run time. */
export interface FaultRules {
  /** Probability (0..1) that an outgoing message is silently dropped. */
  dropProbability: number;
  /** Probability (0..1) that an outgoing message is sent twice. */
  duplicateProbability: number;
  /**
   * Each outgoing message waits a uniform random time in [minMs, maxMs] before it reaches the
   * inner transport; different delays reorder messages, as a real network may.
   */
  delay: { minMs: number; maxMs: number };
}

/** What the wrapper did, for tests and the dashboard. */
export interface FaultStats {
  /** Dropped by `dropProbability`. */
  dropped: number;
  /** Dropped because a partition, isolation or blocked link separated the two nodes. */
  cut: number;
  /** Extra copies sent by `duplicateProbability`. */
  duplicated: number;
  /** Messages that waited a non-zero delay. */
  delayed: number;
}

const noFaults = (): FaultRules => ({
  dropProbability: 0,
  duplicateProbability: 0,
  delay: { minMs: 0, maxMs: 0 },
});

/**
 * Wraps any Transport and injects network faults into it: loss, delay (hence reordering),
 * duplication, partitions and one-way link failures. The demo's chaos mode and the tests
 * drive it; the protocols above must stay safe under all of it.
 *
 * Partitions and blocked links are checked on both sides: outgoing messages to an
 * unreachable node are not sent, and incoming messages from one are discarded. So wrapping
 * only some nodes already yields a symmetric cut; wrapping every node with the same rules
 * (as the chaos mode does) is consistent because each check is the same predicate.
 */
export class FaultyTransport implements Transport {
  readonly localId: NodeId;
  private rules: FaultRules = noFaults();
  /** The groups of the current partition; null when there is none. */
  private partitionGroups: Map<NodeId, number> | null = null;
  private readonly isolated = new Set<NodeId>();
  /** Directed links `from→to` that carry nothing. */
  private readonly blockedLinks = new Set<string>();
  private readonly random: () => number;
  private readonly clock: Clock;
  private readonly pending = new Set<Timer>();
  private readonly subscriptions: Subscribers;
  private readonly innerUnsubscribes = new Map<string, () => void>();
  private readonly counters: FaultStats = { dropped: 0, cut: 0, duplicated: 0, delayed: 0 };
  private closed = false;

  constructor(
    readonly inner: Transport,
    options: FaultyTransportOptions = {},
  ) {
    this.localId = inner.localId;
    this.subscriptions = new Subscribers(inner.localId, options.logger ?? silentLogger);
    this.random = options.random ?? seededRandom(options.seed ?? 1);
    this.clock = options.clock ?? systemClock;
  }

  /** Replaces some of the rules; the rest keep their current values. */
  setRules(rules: Partial<FaultRules>): void {
    const next = { ...this.rules, ...rules };
    const { dropProbability: drop, duplicateProbability: dup, delay } = next;
    if (!(drop >= 0 && drop <= 1) || !(dup >= 0 && dup <= 1)) {
      throw new TransportError(
        "INVALID_CONFIG",
        `probabilities must be within [0, 1], got drop=${drop} duplicate=${dup}`,
      );
    }
    if (!(delay.minMs >= 0 && delay.maxMs >= delay.minMs)) {
      throw new TransportError(
        "INVALID_CONFIG",
        `delay needs 0 <= minMs <= maxMs, got ${JSON.stringify(delay)}`,
      );
    }
    this.rules = { ...next, delay: { ...delay } };
  }

  currentRules(): FaultRules {
    return { ...this.rules, delay: { ...this.rules.delay } };
  }

  /**
   * Splits the cluster: two nodes can talk only if they are in the same group. A node named
   * in no group is cut off from everybody (as if it were a group of its own).
   */
  partition(groups: NodeId[][]): void {
    const groupOf = new Map<NodeId, number>();
    groups.forEach((group, index) => {
      for (const id of group) {
        if (groupOf.has(id)) {
          throw new TransportError("INVALID_CONFIG", `node ${id} appears in more than one partition group`);
        }
        groupOf.set(id, index);
      }
    });
    this.partitionGroups = groupOf;
  }

  /** Cuts `id` off from every other node, in both directions. */
  isolate(id: NodeId): void {
    this.isolated.add(id);
  }

  /** Stops the one-way link `from → to`; the reverse direction keeps working. */
  blockLink(from: NodeId, to: NodeId): void {
    this.blockedLinks.add(linkKey(from, to));
  }

  unblockLink(from: NodeId, to: NodeId): void {
    this.blockedLinks.delete(linkKey(from, to));
  }

  /** Removes every partition, isolation and blocked link (probabilistic rules stay). */
  heal(): void {
    this.partitionGroups = null;
    this.isolated.clear();
    this.blockedLinks.clear();
  }

  /** Whether a message from `from` to `to` may pass the current cuts. */
  canReach(from: NodeId, to: NodeId): boolean {
    if (from === to) return true;
    if (this.isolated.has(from) || this.isolated.has(to)) return false;
    if (this.blockedLinks.has(linkKey(from, to))) return false;
    if (this.partitionGroups) {
      const a = this.partitionGroups.get(from);
      const b = this.partitionGroups.get(to);
      if (a === undefined || b === undefined || a !== b) return false;
    }
    return true;
  }

  faultStats(): FaultStats {
    return { ...this.counters };
  }

  send(to: NodeId, channel: string, payload: Uint8Array): void {
    if (this.closed) throw new TransportError("CLOSED", `node ${this.localId}: transport is closed`);
    if (!this.canReach(this.localId, to)) {
      this.counters.cut++;
      return;
    }
    // One random draw per decision, always in the same order, so that a seed replays the
    // same faults whatever the rules are.
    const dropDraw = this.random();
    const duplicateDraw = this.random();
    if (dropDraw < this.rules.dropProbability) {
      this.counters.dropped++;
      return;
    }
    const copies = duplicateDraw < this.rules.duplicateProbability ? 2 : 1;
    if (copies === 2) this.counters.duplicated++;
    for (let i = 0; i < copies; i++) this.forward(to, channel, payload);
  }

  private forward(to: NodeId, channel: string, payload: Uint8Array): void {
    const { minMs, maxMs } = this.rules.delay;
    if (maxMs <= 0) {
      this.inner.send(to, channel, payload);
      return;
    }
    const delayMs = minMs + (maxMs - minMs) * this.random();
    this.counters.delayed++;
    // The payload is copied now: the caller may reuse its buffer after send() returns.
    const copy = payload.slice();
    const timer = this.clock.schedule(delayMs, () => {
      this.pending.delete(timer);
      if (this.closed) return;
      // Cuts made during the delay apply too, as they would to a packet still on the wire.
      if (!this.canReach(this.localId, to)) {
        this.counters.cut++;
        return;
      }
      this.inner.send(to, channel, copy);
    });
    this.pending.add(timer);
  }

  subscribe(channel: string, handler: MessageHandler): () => void {
    const unsubscribe = this.subscriptions.add(channel, handler);
    if (!this.innerUnsubscribes.has(channel)) {
      const innerUnsubscribe = this.inner.subscribe(channel, (from, payload) => {
        if (!this.canReach(from, this.localId)) {
          this.counters.cut++;
          return;
        }
        this.subscriptions.dispatch(from, channel, payload);
      });
      this.innerUnsubscribes.set(channel, innerUnsubscribe);
    }
    return () => {
      unsubscribe();
      if (!this.subscriptions.has(channel)) {
        this.innerUnsubscribes.get(channel)?.();
        this.innerUnsubscribes.delete(channel);
      }
    };
  }

  addPeer(peer: PeerInfo): void {
    this.inner.addPeer(peer);
  }

  removePeer(id: NodeId): void {
    this.inner.removePeer(id);
  }

  peers(): PeerInfo[] {
    return this.inner.peers();
  }

  /** The inner transport's counters; faults are counted separately in `faultStats()`. */
  stats(): TransportStats {
    return this.inner.stats();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const timer of this.pending) timer.cancel();
    this.pending.clear();
    for (const unsubscribe of this.innerUnsubscribes.values()) unsubscribe();
    this.innerUnsubscribes.clear();
    await this.inner.close();
  }
}

function linkKey(from: NodeId, to: NodeId): string {
  return `${from}\u0000${to}`;
}
