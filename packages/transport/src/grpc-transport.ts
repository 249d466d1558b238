import type { ChannelOptions } from "@grpc/grpc-js";
import { Backoff, type BackoffOptions, defaultBackoff, validateBackoff } from "./backoff.js";
import { type Clock, systemClock } from "./clock.js";
import { PeerService } from "./gen/quorum/transport/v1/transport.js";
import {
  defaultKeepalive,
  type KeepaliveOptions,
  keepaliveChannelOptions,
  type RunningGrpcServer,
  splitHostPort,
  startGrpcServer,
} from "./grpc-service.js";
import { type Logger, silentLogger } from "./logger.js";
import { PeerConnection, type PeerStatus, type TransportEvent } from "./peer-connection.js";
import { peerServerImplementation } from "./peer-server.js";
import { seededRandom } from "./random.js";
import { Subscribers } from "./subscribers.js";
import { channelCredentials, type TlsOptions } from "./tls.js";
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

export interface GrpcTransportOptions {
  nodeId: NodeId;
  /** Streams are refused between nodes of different clusters. */
  clusterId: string;
  /** `host:port` to listen on; port 0 picks a free port (`start()` returns the bound address). */
  listen: string;
  peers?: PeerInfo[];
  /** Largest payload `send` accepts. Default 4 MiB. */
  maxMessageBytes?: number;
  /** Messages queued per peer before new ones are dropped (`droppedQueueFull`). Default 10,000. */
  queueLimit?: number;
  /** Bytes per stream write (one Frame); a single larger message still goes alone. Default 1 MiB. */
  maxBatchBytes?: number;
  /** Messages per stream write. Default 1,000. */
  maxBatchMessages?: number;
  /** Redial backoff; missing fields take the defaults (100 ms doubling to 5 s, ±20%). */
  backoff?: Partial<BackoffOptions>;
  /** Randomness for backoff jitter. Default: a PRNG seeded from the node id. */
  random?: () => number;
  /** Mutual TLS: the server requires client certificates signed by `ca`. */
  tls?: TlsOptions;
  keepalive?: KeepaliveOptions;
  logger?: Logger;
  /** Timers for backoff and shutdown grace. Default `systemClock`. */
  clock?: Clock;
  /** How long `close()` waits for streams and the server to end before forcing. Default 1 s. */
  closeGraceMs?: number;
}

/** The common counters plus connection counters. */
export interface GrpcTransportStats extends TransportStats {
  /** Dials after a peer's first one. */
  reconnects: number;
  /** Times a peer refused our stream (other cluster, wrong node). */
  refusedOutgoing: number;
  /** Times we refused a caller's stream. */
  refusedIncoming: number;
}

// Room for the frame's fields and protobuf framing around the largest payload or batch.
const frameOverheadBytes = 64 * 1024;

/**
 * The production Transport: one long-lived gRPC stream (`Peer.Stream`) from this node to
 * each peer, carrying batches of messages, plus a server receiving the peers' streams.
 * See PeerConnection (sending side) and peerServerImplementation (receiving side).
 */
export class GrpcTransport implements Transport {
  readonly localId: NodeId;
  private readonly options: GrpcTransportOptions;
  private readonly counters: TransportStats = emptyStats();
  private readonly subscribers: Subscribers;
  private readonly connections = new Map<NodeId, PeerConnection>();
  private readonly peerInfo = new Map<NodeId, PeerInfo>();
  private readonly listeners = new Set<(event: TransportEvent) => void>();
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly backoffOptions: BackoffOptions;
  private readonly channelOptions: ChannelOptions;
  private readonly maxMessageBytes: number;
  private readonly grpcMessageLimit: number;
  private readonly incoming: ReturnType<typeof peerServerImplementation>;
  private server: RunningGrpcServer | undefined;
  private starting: Promise<string> | undefined;
  private refusedIncoming = 0;
  private closed = false;

  constructor(options: GrpcTransportOptions) {
    this.options = options;
    this.localId = options.nodeId;
    if (!options.nodeId) throw new TransportError("INVALID_CONFIG", "nodeId is required");
    if (!options.clusterId) throw new TransportError("INVALID_CONFIG", "clusterId is required");
    this.maxMessageBytes = positive("maxMessageBytes", options.maxMessageBytes ?? defaultMaxMessageBytes);
    positive("queueLimit", options.queueLimit ?? 1);
    positive("maxBatchBytes", options.maxBatchBytes ?? 1);
    positive("maxBatchMessages", options.maxBatchMessages ?? 1);
    this.backoffOptions = { ...defaultBackoff, ...options.backoff };
    validateBackoff(this.backoffOptions);
    this.logger = options.logger ?? silentLogger;
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? seededRandom(hashString(options.nodeId));
    this.grpcMessageLimit =
      Math.max(this.maxMessageBytes, options.maxBatchBytes ?? 1024 * 1024) + frameOverheadBytes;
    this.channelOptions = {
      ...keepaliveChannelOptions(options.keepalive ?? defaultKeepalive),
      "grpc.max_send_message_length": this.grpcMessageLimit,
      "grpc.max_receive_message_length": this.grpcMessageLimit,
    };
    this.subscribers = new Subscribers(options.nodeId, this.logger);
    this.incoming = peerServerImplementation({
      nodeId: options.nodeId,
      clusterId: options.clusterId,
      logger: this.logger,
      stats: this.counters,
      dispatch: (from, channel, payload) => this.subscribers.dispatch(from, channel, payload),
      onRefused: (from, reason) => {
        this.refusedIncoming++;
        this.emit({ type: "refused-incoming", peer: from, reason });
      },
      // A peer that just dialed us is up: stop waiting out our backoff towards it (up to
      // maxMs after it was down), or a restarted node hears nothing back for seconds.
      onAccepted: (from) => this.connections.get(from)?.redialNow(),
    });
    for (const peer of options.peers ?? []) this.addPeer(peer);
  }

  /** Binds the server; resolves with the bound `host:port`. Idempotent. */
  start(): Promise<string> {
    if (this.closed)
      return Promise.reject(new TransportError("CLOSED", `node ${this.localId}: transport is closed`));
    this.starting ??= startGrpcServer({
      address: this.options.listen,
      services: [{ definition: PeerService, implementation: this.incoming.implementation }],
      ...(this.options.tls ? { tls: this.options.tls } : {}),
      maxReceiveMessageBytes: this.grpcMessageLimit,
      maxSendMessageBytes: this.grpcMessageLimit,
      keepalive: this.options.keepalive ?? defaultKeepalive,
    }).then((server) => {
      this.server = server;
      this.logger.info({ node: this.localId, address: server.address }, "transport listening");
      return server.address;
    });
    return this.starting;
  }

  /** The bound `host:port`, once started. */
  get address(): string | undefined {
    return this.server?.address;
  }

  /** The bound port, once started. */
  get port(): number | undefined {
    return this.server?.port;
  }

  send(to: NodeId, channel: string, payload: Uint8Array): void {
    if (this.closed) throw new TransportError("CLOSED", `node ${this.localId}: transport is closed`);
    checkSend(this.localId, channel, payload, this.maxMessageBytes);
    this.counters.sent++;
    const connection = this.connections.get(to);
    if (!connection) {
      this.counters.droppedUnknownPeer++;
      return;
    }
    connection.enqueue(channel, payload);
  }

  subscribe(channel: string, handler: MessageHandler): () => void {
    return this.subscribers.add(channel, handler);
  }

  addPeer(peer: PeerInfo): void {
    if (this.closed) return;
    if (peer.id === this.localId) {
      throw new TransportError("INVALID_CONFIG", `node ${this.localId}: cannot add itself as a peer`);
    }
    // Checked here, so that a bad address fails at configuration time and not inside a
    // later send() (which must not throw for anything but the caller's own mistakes).
    splitHostPort(peer.address);
    this.peerInfo.set(peer.id, peer);
    const existing = this.connections.get(peer.id);
    if (existing) {
      existing.setAddress(peer.address);
      return;
    }
    this.connections.set(
      peer.id,
      new PeerConnection({
        localId: this.localId,
        clusterId: this.options.clusterId,
        peer,
        credentials: channelCredentials(this.options.tls),
        channelOptions: this.channelOptions,
        queueLimit: this.options.queueLimit ?? 10_000,
        maxBatchBytes: this.options.maxBatchBytes ?? 1024 * 1024,
        maxBatchMessages: this.options.maxBatchMessages ?? 1_000,
        backoff: new Backoff(this.backoffOptions, this.random),
        clock: this.clock,
        logger: this.logger,
        stats: this.counters,
        emit: (event) => this.emit(event),
      }),
    );
  }

  removePeer(id: NodeId): void {
    const connection = this.connections.get(id);
    this.connections.delete(id);
    this.peerInfo.delete(id);
    void connection?.close(0);
  }

  peers(): PeerInfo[] {
    return [...this.peerInfo.values()];
  }

  stats(): GrpcTransportStats {
    let reconnects = 0;
    let refusedOutgoing = 0;
    for (const connection of this.connections.values()) {
      const status = connection.status();
      reconnects += status.reconnects;
      refusedOutgoing += status.refusals;
    }
    return { ...this.counters, reconnects, refusedOutgoing, refusedIncoming: this.refusedIncoming };
  }

  /** Each peer's connection state, queue and reconnects (for the dashboard). */
  peerStatus(): PeerStatus[] {
    return [...this.connections.values()].map((connection) => connection.status());
  }

  /** Calls `listener` on connect, disconnect, failed dial and refusal; returns an unsubscribe. */
  onEvent(listener: (event: TransportEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const graceMs = this.options.closeGraceMs ?? 1_000;
    const outgoing = [...this.connections.values()].map((connection) => connection.close(graceMs));
    // Ending the incoming streams lets tryShutdown finish quickly; forceShutdown covers a
    // peer that does not end its half.
    this.incoming.endAll();
    await this.starting?.catch(() => undefined);
    await Promise.all([...outgoing, this.server?.shutdown(graceMs)]);
    this.subscribers.clear();
    this.listeners.clear();
  }

  private emit(event: TransportEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (err) {
        this.logger.error({ err, node: this.localId, event: event.type }, "transport event listener threw");
      }
    }
  }
}

function positive(name: string, value: number): number {
  if (!Number.isInteger(value) || value <= 0) {
    throw new TransportError("INVALID_CONFIG", `${name} must be a positive integer, got ${value}`);
  }
  return value;
}

/** FNV-1a, to derive a per-node jitter seed so that nodes do not back off in lockstep. */
function hashString(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193);
  return hash >>> 0;
}
