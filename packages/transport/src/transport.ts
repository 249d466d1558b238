/** A node's name in a cluster (e.g. "n1"). Unique within one cluster. */
export type NodeId = string;

/** Where a peer listens for node-to-node traffic. */
export interface PeerInfo {
  readonly id: NodeId;
  /** `host:port` for gRPC; ignored by in-memory transports. */
  readonly address: string;
}

/** Called once per message that arrives on a subscribed channel. Must not throw. */
export type MessageHandler = (from: NodeId, payload: Uint8Array) => void;

/** Counters every transport keeps. Drops are counted, never thrown. */
export interface TransportStats {
  /** Messages accepted by `send()`. */
  sent: number;
  /** Messages handed to the peer's connection (gRPC: written to the stream). */
  delivered: number;
  /** Messages received from peers and handed to a subscriber. */
  received: number;
  /** Dropped because the peer's bounded queue was full. */
  droppedQueueFull: number;
  /** Dropped because the destination is not a known peer. */
  droppedUnknownPeer: number;
  /** Dropped on arrival because nobody subscribes to their channel. */
  droppedNoSubscriber: number;
  /** Dropped on arrival because they were malformed or addressed to someone else. */
  droppedInvalid: number;
  /** Dropped because the connection broke with them still queued or in flight. */
  droppedDisconnected: number;
}

/**
 * Messages between the nodes of one cluster.
 *
 * Delivery is fire-and-forget: a message may be lost (peer down, queue full, connection
 * broken), but messages from one node to one peer on one channel arrive in the order they
 * were sent for as long as a connection lasts. Protocols on top (Raft, Paxos) tolerate
 * loss, duplication and reordering across reconnects by design.
 */
export interface Transport {
  readonly localId: NodeId;
  /**
   * Queues `payload` for `to` on `channel`. Never blocks and never throws for network
   * conditions; throws `TransportError` only for a caller's mistake (a payload larger than
   * the maximum message size, or a transport that is closed).
   */
  send(to: NodeId, channel: string, payload: Uint8Array): void;
  /** Routes messages on `channel` to `handler`; returns a function that unsubscribes. */
  subscribe(channel: string, handler: MessageHandler): () => void;
  /** Adds or updates a peer (a new address replaces the old connection). */
  addPeer(peer: PeerInfo): void;
  /** Forgets a peer; messages still queued for it are dropped. */
  removePeer(id: NodeId): void;
  peers(): PeerInfo[];
  stats(): TransportStats;
  /** Stops sending and receiving and releases connections. Idempotent. */
  close(): Promise<void>;
}

export type TransportErrorCode =
  | "MESSAGE_TOO_LARGE"
  | "CLOSED"
  | "CLUSTER_MISMATCH"
  | "WRONG_NODE"
  | "INVALID_CONFIG"
  | "INVALID_ARGUMENT";

/** A caller's mistake or a refused connection, with a message a person understands. */
export class TransportError extends Error {
  override readonly name = "TransportError";
  constructor(
    readonly code: TransportErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** 4 MiB, gRPC's own default message limit. */
export const defaultMaxMessageBytes = 4 * 1024 * 1024;

/**
 * The checks every `send()` makes before queueing: a caller's mistake is thrown at the call
 * site, where the stack points at it, rather than turning into a silent drop later.
 */
export function checkSend(
  localId: NodeId,
  channel: string,
  payload: Uint8Array,
  maxMessageBytes: number,
): void {
  if (channel.length === 0) {
    throw new TransportError("INVALID_ARGUMENT", `node ${localId}: cannot send on an empty channel name`);
  }
  if (payload.byteLength > maxMessageBytes) {
    throw new TransportError(
      "MESSAGE_TOO_LARGE",
      `node ${localId}: message on channel "${channel}" is ${payload.byteLength} bytes, over the limit of ${maxMessageBytes} bytes`,
    );
  }
}

export function emptyStats(): TransportStats {
  return {
    sent: 0,
    delivered: 0,
    received: 0,
    droppedQueueFull: 0,
    droppedUnknownPeer: 0,
    droppedNoSubscriber: 0,
    droppedInvalid: 0,
    droppedDisconnected: 0,
  };
}
