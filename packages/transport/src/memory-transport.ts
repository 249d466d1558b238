import { type Logger, silentLogger } from "./logger.js";
import { Subscribers } from "./subscribers.js";
import {
  checkSend,
  defaultMaxMessageBytes,
  emptyStats,
  type MessageHandler,
  type NodeId,
  type PeerInfo,
  type Transport,
  TransportError,
  type TransportStats,
} from "./transport.js";

export interface MemoryNetworkOptions {
  /** Largest payload `send` accepts; the same default as the gRPC transport. */
  maxMessageBytes?: number;
  /**
   * When true (the default), `join` makes every member a peer of every other member, as a
   * static cluster configuration would. When false, peers are added with `addPeer` only.
   */
  autoPeers?: boolean;
  /** Where a throwing message handler is reported. */
  logger?: Logger;
}

/**
 * An in-process network: the hub that the in-memory transports of one cluster share.
 * Delivery is asynchronous (a microtask per message), so a handler never runs inside the
 * sender's `send()` call, as it never would over a real network.
 */
export class MemoryNetwork {
  private readonly members = new Map<NodeId, MemoryTransport>();
  readonly maxMessageBytes: number;
  readonly logger: Logger;
  private readonly autoPeers: boolean;

  constructor(options: MemoryNetworkOptions = {}) {
    this.maxMessageBytes = options.maxMessageBytes ?? defaultMaxMessageBytes;
    this.autoPeers = options.autoPeers ?? true;
    this.logger = options.logger ?? silentLogger;
  }

  /**
   * Creates the transport of node `id`. A node that closed may join again (a restart); a
   * node that is still open may not, since two live transports for one id is a bug.
   */
  join(id: NodeId): MemoryTransport {
    const existing = this.members.get(id);
    if (existing && !existing.closed) {
      throw new TransportError("INVALID_CONFIG", `node ${id} already joined this network and is still open`);
    }
    const transport = new MemoryTransport(id, this);
    this.members.set(id, transport);
    if (this.autoPeers) {
      for (const other of this.members.values()) {
        if (other.localId === id) continue;
        transport.addPeer({ id: other.localId, address: `memory:${other.localId}` });
        if (!other.closed) other.addPeer({ id, address: `memory:${id}` });
      }
    }
    return transport;
  }

  /** The open transport of `id`, if any. */
  node(id: NodeId): MemoryTransport | undefined {
    const transport = this.members.get(id);
    return transport && !transport.closed ? transport : undefined;
  }

  /** @internal Hands a message to its destination on a later microtask. */
  route(from: MemoryTransport, to: NodeId, channel: string, payload: Uint8Array): void {
    queueMicrotask(() => {
      // Looked up at delivery time: a node that closed (or restarted) in between must not
      // receive what was meant for its previous incarnation's connection.
      const target = this.node(to);
      if (!target) {
        from.countDroppedDisconnected();
        return;
      }
      target.receive(from.localId, channel, payload);
    });
  }
}

/** One node's endpoint on a `MemoryNetwork`. */
export class MemoryTransport implements Transport {
  private readonly peerMap = new Map<NodeId, PeerInfo>();
  private readonly subscribers: Subscribers;
  private readonly counters: TransportStats = emptyStats();
  private isClosed = false;

  constructor(
    readonly localId: NodeId,
    private readonly network: MemoryNetwork,
  ) {
    this.subscribers = new Subscribers(localId, network.logger);
  }

  get closed(): boolean {
    return this.isClosed;
  }

  send(to: NodeId, channel: string, payload: Uint8Array): void {
    if (this.isClosed) throw new TransportError("CLOSED", `node ${this.localId}: transport is closed`);
    checkSend(this.localId, channel, payload, this.network.maxMessageBytes);
    this.counters.sent++;
    if (!this.peerMap.has(to)) {
      this.counters.droppedUnknownPeer++;
      return;
    }
    if (!this.network.node(to)) {
      this.counters.droppedDisconnected++;
      return;
    }
    this.counters.delivered++;
    // A copy, as a wire would make: the sender may reuse its buffer after send() returns.
    this.network.route(this, to, channel, payload.slice());
  }

  subscribe(channel: string, handler: MessageHandler): () => void {
    return this.subscribers.add(channel, handler);
  }

  addPeer(peer: PeerInfo): void {
    this.peerMap.set(peer.id, peer);
  }

  removePeer(id: NodeId): void {
    this.peerMap.delete(id);
  }

  peers(): PeerInfo[] {
    return [...this.peerMap.values()];
  }

  stats(): TransportStats {
    return { ...this.counters };
  }

  async close(): Promise<void> {
    this.isClosed = true;
    this.subscribers.clear();
  }

  /** @internal Called by the network on delivery. */
  receive(from: NodeId, channel: string, payload: Uint8Array): void {
    if (this.subscribers.dispatch(from, channel, payload)) this.counters.received++;
    else this.counters.droppedNoSubscriber++;
  }

  /** @internal */
  countDroppedDisconnected(): void {
    this.counters.droppedDisconnected++;
  }
}
