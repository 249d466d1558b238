import type { ChannelCredentials, ChannelOptions, ClientDuplexStream, StatusObject } from "@grpc/grpc-js";
import { status as grpcStatus } from "@grpc/grpc-js";
import type { Backoff } from "./backoff.js";
import type { Clock, Timer } from "./clock.js";
import { type Envelope, type Frame, PeerClient, type Welcome } from "./gen/quorum/transport/v1/transport.js";
import type { Logger } from "./logger.js";
import { MessageQueue } from "./message-queue.js";
import { protocolVersion } from "./peer-server.js";
import type { NodeId, PeerInfo, TransportStats } from "./transport.js";

/** What the transport reports about its connections (for logs, tests and the dashboard). */
export type TransportEvent =
  | { type: "connected"; peer: NodeId; address: string }
  | { type: "disconnected"; peer: NodeId; address: string; reason: string }
  | { type: "dial-failed"; peer: NodeId; address: string; reason: string }
  | { type: "refused"; peer: NodeId; address: string; reason: string }
  | { type: "refused-incoming"; peer: string; reason: string };

export type PeerState = "idle" | "connecting" | "connected" | "backoff" | "closed";

/** One peer as the dashboard shows it. */
export interface PeerStatus {
  id: NodeId;
  address: string;
  state: PeerState;
  connected: boolean;
  /** Messages waiting for the stream. */
  queueLength: number;
  /** Messages written to the stream whose write has not completed yet. */
  inFlight: number;
  /** Dials after the first one. */
  reconnects: number;
  /** Times the peer refused our Hello (other cluster, wrong node). */
  refusals: number;
  lastError: string | undefined;
  /** Times the stream pushed back (write() returned false) and sending waited for 'drain'. */
  drainWaits: number;
}

export interface PeerConnectionOptions {
  localId: NodeId;
  clusterId: string;
  peer: PeerInfo;
  credentials: ChannelCredentials;
  channelOptions: ChannelOptions;
  queueLimit: number;
  maxBatchBytes: number;
  maxBatchMessages: number;
  backoff: Backoff;
  clock: Clock;
  logger: Logger;
  /** The transport's counters, shared by all its connections. */
  stats: TransportStats;
  emit(event: TransportEvent): void;
}

/** One dial: a client channel and the stream opened on it. */
interface Attempt {
  client: PeerClient;
  call: ClientDuplexStream<Frame, Welcome>;
  inFlight: number;
  ended: boolean;
  ending: Promise<void>;
  /** Set when we refuse the peer ourselves (its Welcome names another node or cluster). */
  refusal?: string;
}

// Protobuf framing around an envelope's fields; an estimate is enough to bound a batch.
const envelopeOverheadBytes = 16;

/**
 * The sending half of the wire to one peer: a bounded queue and one long-lived
 * client→server stream. It dials lazily on the first message, waits for the peer's Welcome
 * before sending anything (a node of another cluster never gets traffic), writes queued
 * messages in batches while respecting stream backpressure, and redials with exponential
 * backoff whenever the stream ends, keeping what is still queued.
 */
export class PeerConnection {
  private readonly queue = new MessageQueue<Envelope>();
  private state: PeerState = "idle";
  private attempt: Attempt | undefined;
  private retryTimer: Timer | undefined;
  private flushScheduled = false;
  private waitingForDrain = false;
  private dials = 0;
  /** Times write() pushed back; kept for tests and the dashboard. */
  private drainWaits = 0;
  private refusals = 0;
  private lastError: string | undefined;
  private address: string;

  constructor(private readonly options: PeerConnectionOptions) {
    this.address = options.peer.address;
  }

  enqueue(channel: string, payload: Uint8Array): void {
    const { stats, queueLimit } = this.options;
    if (this.state === "closed") {
      stats.droppedDisconnected++;
      return;
    }
    if (this.queue.length >= queueLimit) {
      stats.droppedQueueFull++;
      return;
    }
    // Copied: the caller may reuse its buffer once send() returns, and the write is later.
    const envelope: Envelope = {
      from: this.options.localId,
      to: this.options.peer.id,
      channel,
      payload: Buffer.from(payload),
    };
    this.queue.push(envelope);
    if (this.state === "idle") this.dial();
    else if (this.state === "connected") this.scheduleFlush();
  }

  /** Points the connection at a new address: the current stream is dropped, the queue kept. */
  setAddress(address: string): void {
    if (address === this.address || this.state === "closed") return;
    this.address = address;
    if (this.state === "idle") return;
    this.retryTimer?.cancel();
    this.retryTimer = undefined;
    this.abandonAttempt();
    this.dial();
  }

  /** Ends a backoff wait at once (the peer has shown it is up); otherwise does nothing. */
  redialNow(): void {
    if (this.state !== "backoff") return;
    this.retryTimer?.cancel();
    this.retryTimer = undefined;
    this.options.backoff.reset();
    this.dial();
  }

  status(): PeerStatus {
    return {
      id: this.options.peer.id,
      address: this.address,
      state: this.state,
      connected: this.state === "connected",
      queueLength: this.queue.length,
      inFlight: this.attempt?.inFlight ?? 0,
      reconnects: Math.max(0, this.dials - 1),
      refusals: this.refusals,
      lastError: this.lastError,
      drainWaits: this.drainWaits,
    };
  }

  /** Drops what is queued and ends the stream, waiting at most `graceMs` for it to finish. */
  async close(graceMs: number): Promise<void> {
    if (this.state === "closed") return;
    this.state = "closed";
    this.retryTimer?.cancel();
    this.options.stats.droppedDisconnected += this.queue.clear();
    const attempt = this.attempt;
    if (!attempt || attempt.ended) return;
    attempt.call.end();
    let timer: Timer | undefined;
    await Promise.race([
      attempt.ending,
      new Promise<void>((resolve) => (timer = this.options.clock.schedule(graceMs, resolve))),
    ]);
    timer?.cancel();
    if (!attempt.ended) attempt.call.cancel();
    attempt.client.close();
  }

  private dial(): void {
    const { localId, clusterId, peer, logger } = this.options;
    this.state = "connecting";
    this.dials++;
    // A fresh channel per dial: grpc-js channels run their own reconnect backoff, and this
    // connection's backoff (with the injected clock and jitter) should be the only one.
    const client = new PeerClient(this.address, this.options.credentials, this.options.channelOptions);
    const call = client.stream();
    let markEnded!: () => void;
    const attempt: Attempt = {
      client,
      call,
      inFlight: 0,
      ended: false,
      ending: new Promise<void>((resolve) => (markEnded = resolve)),
    };
    this.attempt = attempt;
    this.waitingForDrain = false;
    call.on("data", (welcome: Welcome) => this.onWelcome(attempt, welcome));
    call.on("drain", () => {
      if (this.attempt !== attempt) return;
      this.waitingForDrain = false;
      this.flush();
    });
    // 'status' always follows 'error'; the error listener only keeps the emitter from throwing.
    call.on("error", () => {});
    call.on("status", (status: StatusObject) => {
      markEnded();
      this.onStreamEnd(attempt, status);
    });
    logger.debug({ node: localId, peer: peer.id, address: this.address }, "dialing peer");
    call.write({ hello: { clusterId, from: localId, to: peer.id, protocolVersion }, envelopes: [] });
  }

  private onWelcome(attempt: Attempt, welcome: Welcome): void {
    if (this.attempt !== attempt || this.state !== "connecting") return;
    const { peer, clusterId } = this.options;
    if (welcome.nodeId !== peer.id || welcome.clusterId !== clusterId) {
      // The server accepted us but names itself differently: the address points at the
      // wrong node. Treat it as a refusal so no message goes there.
      attempt.refusal = `peer at ${this.address} is node ${welcome.nodeId} of cluster "${welcome.clusterId}", expected node ${peer.id} of cluster "${clusterId}"`;
      attempt.call.cancel();
      return;
    }
    this.state = "connected";
    this.lastError = undefined;
    this.options.backoff.reset();
    this.options.logger.info(
      { node: this.options.localId, peer: peer.id, address: this.address },
      "peer connected",
    );
    this.options.emit({ type: "connected", peer: peer.id, address: this.address });
    this.flush();
  }

  private onStreamEnd(attempt: Attempt, status: StatusObject): void {
    if (attempt.ended) return;
    attempt.ended = true;
    const { stats, peer, logger, localId } = this.options;
    // Written but not yet handed to HTTP/2 when the stream broke: lost.
    stats.droppedDisconnected += attempt.inFlight;
    attempt.inFlight = 0;
    attempt.client.close();
    if (this.attempt !== attempt || this.state === "closed") return;
    this.attempt = undefined;
    const wasConnected = this.state === "connected";
    const refused = attempt.refusal !== undefined || status.code === grpcStatus.FAILED_PRECONDITION;
    // A refusal's details are the peer's own explanation; other ends carry the status name.
    const reason =
      attempt.refusal ??
      (refused ? status.details : `${grpcStatus[status.code] ?? status.code}: ${status.details}`);
    this.lastError = reason;
    const base = { peer: peer.id, address: this.address, reason };
    if (refused) {
      this.refusals++;
      logger.error({ node: localId, ...base }, "peer refused our stream; will retry with backoff");
      this.options.emit({ type: "refused", ...base });
    } else if (wasConnected) {
      logger.warn({ node: localId, ...base }, "peer stream ended");
      this.options.emit({ type: "disconnected", ...base });
    } else {
      logger.debug({ node: localId, ...base }, "dialing peer failed");
      this.options.emit({ type: "dial-failed", ...base });
    }
    this.state = "backoff";
    const delayMs = this.options.backoff.next();
    this.retryTimer = this.options.clock.schedule(delayMs, () => {
      this.retryTimer = undefined;
      if (this.state === "backoff") this.dial();
    });
  }

  /** Cancels the current stream without going through backoff (used when the address changes). */
  private abandonAttempt(): void {
    const attempt = this.attempt;
    if (!attempt) return;
    this.attempt = undefined;
    attempt.call.cancel();
    if (!attempt.ended) {
      attempt.ended = true;
      this.options.stats.droppedDisconnected += attempt.inFlight;
    }
    attempt.client.close();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // Deferred so that a burst of send() calls in one task leaves as one batch.
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    const attempt = this.attempt;
    const { maxBatchBytes, maxBatchMessages, stats } = this.options;
    while (attempt && this.state === "connected" && !this.waitingForDrain && this.queue.length > 0) {
      const envelopes: Envelope[] = [];
      let bytes = 0;
      for (
        let next = this.queue.peek();
        next && envelopes.length < maxBatchMessages;
        next = this.queue.peek()
      ) {
        const size =
          next.payload.length +
          next.channel.length +
          next.from.length +
          next.to.length +
          envelopeOverheadBytes;
        // The first message always goes, even alone over maxBatchBytes (send() bounded it).
        if (envelopes.length > 0 && bytes + size > maxBatchBytes) break;
        envelopes.push(this.queue.shift()!);
        bytes += size;
      }
      const count = envelopes.length;
      attempt.inFlight += count;
      const more = attempt.call.write({ hello: undefined, envelopes }, (err: Error | null | undefined) => {
        if (attempt.ended) return; // already counted as dropped when the stream ended
        attempt.inFlight -= count;
        if (err) stats.droppedDisconnected += count;
        else stats.delivered += count;
      });
      if (!more) {
        this.waitingForDrain = true;
        this.drainWaits++;
      }
    }
  }
}
