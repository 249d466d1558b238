import type { MessageHandler, NodeId, PeerInfo, Transport, TransportStats } from "@quorum/transport";

/** Messages sent to and received from one peer. */
export interface LinkCounters {
  sent: number;
  received: number;
}

/**
 * Counts messages per peer around another Transport (the gRPC transport only counts them in
 * total), so that the dashboard can show the traffic between every pair of nodes.
 */
export class CountingTransport implements Transport {
  readonly localId: NodeId;
  private readonly counters = new Map<NodeId, LinkCounters>();

  constructor(readonly inner: Transport) {
    this.localId = inner.localId;
  }

  private link(id: NodeId): LinkCounters {
    let c = this.counters.get(id);
    if (!c) {
      c = { sent: 0, received: 0 };
      this.counters.set(id, c);
    }
    return c;
  }

  links(): Record<NodeId, LinkCounters> {
    return Object.fromEntries([...this.counters].map(([id, c]) => [id, { ...c }]));
  }

  send(to: NodeId, channel: string, payload: Uint8Array): void {
    this.inner.send(to, channel, payload);
    this.link(to).sent++;
  }

  subscribe(channel: string, handler: MessageHandler): () => void {
    return this.inner.subscribe(channel, (from, payload) => {
      this.link(from).received++;
      handler(from, payload);
    });
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

  stats(): TransportStats {
    return this.inner.stats();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
