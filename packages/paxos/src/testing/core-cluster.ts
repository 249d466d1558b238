import { Paxos, type PaxosConfig, type Ready } from "../core/paxos.js";
import type { ChosenSlot, Message, NodeId, Value } from "../core/types.js";
import { MemoryAcceptorStore } from "../storage/acceptor-store.js";
import { seededRandom } from "./prng.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export const cmd = (s: string): Uint8Array => encoder.encode(s);
export const text = (v: Value): string[] => v.commands.map((c) => decoder.decode(c));

/**
 * Paxos cores wired by hand: the test decides which messages are delivered, dropped or held,
 * and when each node ticks. Each node's acceptor store outlives the node (restart).
 */
export class CoreCluster {
  readonly nodes = new Map<NodeId, Paxos>();
  readonly stores = new Map<NodeId, MemoryAcceptorStore>();
  /** What each node handed to its host to apply, in order. */
  readonly applied = new Map<NodeId, ChosenSlot[]>();
  /** Every Ready each node produced (to inspect persist-before-send). */
  readonly readies = new Map<NodeId, Ready[]>();
  /** Messages sent and not yet delivered. */
  inbox: Message[] = [];
  private seed = 1;

  constructor(
    readonly ids: readonly NodeId[],
    readonly extra: Partial<PaxosConfig> = {},
    /** Builds each node's store (e.g. a faulty one, to show that a scenario catches it). */
    private readonly newStore: (id: NodeId) => MemoryAcceptorStore = () => new MemoryAcceptorStore(),
  ) {
    for (const id of ids) this.restart(id);
  }

  node(id: NodeId): Paxos {
    const n = this.nodes.get(id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  /** A new incarnation of `id` from its durable state only. */
  restart(id: NodeId): Paxos {
    let store = this.stores.get(id);
    if (!store) this.stores.set(id, (store = this.newStore(id)));
    const node = new Paxos({
      id,
      voters: this.ids,
      state: store.load(),
      random: seededRandom(this.seed++),
      ...this.extra,
    });
    this.nodes.set(id, node);
    this.applied.set(id, []);
    this.inbox = this.inbox.filter((m) => m.to !== id);
    return node;
  }

  /** Handles `id`'s Ready as a host would: persist, send, apply, advance. */
  drain(id: NodeId): void {
    const node = this.node(id);
    while (node.hasReady()) {
      const rd = node.ready();
      this.readies.get(id)?.push(rd) ?? this.readies.set(id, [rd]);
      if (rd.persist) this.stores.get(id)!.save(rd.persist);
      this.inbox.push(...rd.messages);
      this.applied.get(id)!.push(...rd.committed);
      node.advance(rd);
    }
  }

  drainAll(): void {
    for (const id of this.ids) this.drain(id);
  }

  tick(id: NodeId, times = 1): void {
    for (let i = 0; i < times; i++) {
      this.node(id).tick();
      this.drain(id);
    }
  }

  campaign(id: NodeId): void {
    this.node(id).campaign();
    this.drain(id);
  }

  /**
   * Delivers messages until none are left, dropping those `keep` refuses. Returns the
   * messages delivered, in order.
   */
  deliver(keep: (m: Message) => boolean = () => true, maxRounds = 10_000): Message[] {
    const delivered: Message[] = [];
    for (let round = 0; this.inbox.length > 0 && round < maxRounds; round++) {
      const batch = this.inbox;
      this.inbox = [];
      for (const m of batch) {
        if (!keep(m)) continue;
        delivered.push(m);
        this.node(m.to).step(m);
        this.drain(m.to);
      }
    }
    return delivered;
  }

  /** Removes the undelivered messages `match` selects from the inbox and returns them (to hold them). */
  take(match: (m: Message) => boolean): Message[] {
    const taken = this.inbox.filter(match);
    this.inbox = this.inbox.filter((m) => !match(m));
    return taken;
  }

  /** Puts held messages back in the inbox (delivered by the next `deliver`). */
  release(messages: readonly Message[]): void {
    this.inbox.push(...messages);
  }

  /** Cuts `isolated` off: messages to or from it are dropped. */
  static isolate(isolated: NodeId) {
    return (m: Message) => m.from !== isolated && m.to !== isolated;
  }

  leader(): NodeId | undefined {
    const leaders = this.ids.filter((id) => this.node(id).status().role === "leader");
    return leaders.length === 1 ? leaders[0] : undefined;
  }

  /** Elects `id` (campaign and deliver everything). */
  elect(id: NodeId): void {
    this.campaign(id);
    this.deliver();
  }

  /** Proposes on `id` and delivers everything; returns the slot. */
  propose(id: NodeId, ...commands: string[]): number {
    const out = this.node(id).propose(`${id}:${commands.join(",")}`, commands.map(cmd));
    if (!out.ok) throw new Error(`${id} refused a proposal: leader is ${out.leader || "unknown"}`);
    this.drain(id);
    return out.slot;
  }

  /** The applied commands of `id`, in order (no-ops skipped). */
  commands(id: NodeId): string[] {
    return this.applied.get(id)!.flatMap((c) => text(c.value));
  }

  /** Safety: no slot is chosen with two different values on any two nodes. */
  checkAgreement(): string | undefined {
    const seen = new Map<number, { id: NodeId; value: Value }>();
    for (const id of this.ids) {
      for (const [slot, value] of this.node(id).chosenSlots()) {
        const other = seen.get(slot);
        if (!other) seen.set(slot, { id, value });
        else if (other.value.id !== value.id) {
          return `slot ${slot}: ${other.id} has ${other.value.id}, ${id} has ${value.id}`;
        }
      }
    }
    return undefined;
  }
}
