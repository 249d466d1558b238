import type { Clock, NodeId, Timer, Transport } from "@quorum/transport";
import { parseHostPort } from "./config.js";

const channel = "directory";

/**
 * Who serves etcd clients where. etcd publishes each member's client URLs through its Raft
 * log; here each node announces its own to every peer over the transport, every
 * `intervalMs`, so that a follower can forward a request to the leader's client address and
 * MemberList can print everyone's. Announcements are idempotent; a malformed one is ignored.
 */
export class MemberDirectory {
  private readonly clientAddresses = new Map<NodeId, string>();
  private timer: Timer | undefined;
  private readonly unsubscribe: () => void;
  malformed = 0;

  constructor(
    private readonly transport: Transport,
    private readonly clock: Clock,
    ownClientAddress: string,
    private readonly intervalMs = 1000,
  ) {
    this.clientAddresses.set(transport.localId, ownClientAddress);
    this.unsubscribe = transport.subscribe(channel, (from, payload) => this.onAnnounce(from, payload));
    this.announce();
  }

  clientAddress(id: NodeId): string | undefined {
    return this.clientAddresses.get(id);
  }

  close(): void {
    this.timer?.cancel();
    this.unsubscribe();
  }

  private announce(): void {
    const payload = Buffer.from(JSON.stringify({ client: this.clientAddresses.get(this.transport.localId) }));
    for (const peer of this.transport.peers()) this.transport.send(peer.id, channel, payload);
    this.timer = this.clock.schedule(this.intervalMs, () => this.announce());
  }

  private onAnnounce(from: NodeId, payload: Uint8Array): void {
    try {
      const { client } = JSON.parse(Buffer.from(payload).toString("utf8")) as { client?: unknown };
      if (typeof client !== "string") throw new Error("no client address");
      this.clientAddresses.set(from, parseHostPort("announce", client));
    } catch {
      this.malformed++;
    }
  }
}
