import { type ServerDuplexStream, status } from "@grpc/grpc-js";
import type { Frame, PeerServer, Welcome } from "./gen/quorum/transport/v1/transport.js";
import type { Logger } from "./logger.js";
import type { NodeId, TransportStats } from "./transport.js";

/** The version of the stream protocol in Hello; a peer speaking another one is refused. */
export const protocolVersion = 1;

export interface PeerServerContext {
  nodeId: NodeId;
  clusterId: string;
  logger: Logger;
  stats: TransportStats;
  /** Hands one valid message to the subscribers; false if its channel has none. */
  dispatch(from: NodeId, channel: string, payload: Uint8Array): boolean;
  /** Told about every refused Hello, for the transport's events. */
  onRefused(from: string, reason: string): void;
  /** Told about every accepted Hello: the caller is alive and reachable now. */
  onAccepted(from: NodeId): void;
}

/**
 * The receiving half of the node-to-node wire: the `Peer.Stream` handler. It checks the
 * opening Hello (same cluster, addressed to this node) before reading anything else, then
 * validates every envelope, so a misconfigured or hostile peer costs counters, not crashes.
 */
export function peerServerImplementation(context: PeerServerContext): {
  implementation: PeerServer;
  /** Ends every open incoming stream (on close). */
  endAll(): void;
} {
  const open = new Set<ServerDuplexStream<Frame, Welcome>>();

  const stream = (call: ServerDuplexStream<Frame, Welcome>): void => {
    open.add(call);
    let caller: NodeId | undefined;
    const forget = () => open.delete(call);
    call.on("error", (err) => {
      forget();
      context.logger.debug({ err, node: context.nodeId, from: caller }, "incoming peer stream failed");
    });
    call.on("cancelled", forget);
    call.on("end", () => {
      forget();
      call.end();
    });
    call.on("data", (frame: Frame) => {
      if (caller === undefined) {
        const refusal = checkHello(frame, context);
        if (refusal) {
          const from = frame.hello?.from ?? "";
          context.logger.warn({ node: context.nodeId, from, reason: refusal }, "refused peer stream");
          context.onRefused(from, refusal);
          context.stats.droppedInvalid += frame.envelopes.length;
          forget();
          call.emit("error", { code: status.FAILED_PRECONDITION, details: refusal });
          return;
        }
        caller = frame.hello!.from;
        call.write({ nodeId: context.nodeId, clusterId: context.clusterId });
        context.onAccepted(caller);
      }
      for (const envelope of frame.envelopes) {
        if (envelope.from !== caller || envelope.to !== context.nodeId || envelope.channel.length === 0) {
          context.stats.droppedInvalid++;
          continue;
        }
        if (context.dispatch(envelope.from, envelope.channel, envelope.payload)) context.stats.received++;
        else context.stats.droppedNoSubscriber++;
      }
    });
  };

  return {
    implementation: { stream },
    endAll() {
      for (const call of open) call.end();
      open.clear();
    },
  };
}

/** Why the opening frame is refused, or undefined if it is a valid Hello for this node. */
function checkHello(frame: Frame, context: PeerServerContext): string | undefined {
  const hello = frame.hello;
  const me = context.nodeId;
  if (!hello) return `node ${me}: the first frame of a peer stream must carry a Hello`;
  if (hello.clusterId !== context.clusterId) {
    return `cluster id mismatch: this node ${me} is in cluster "${context.clusterId}", caller ${hello.from || "(unnamed)"} says "${hello.clusterId}"`;
  }
  if (hello.to !== me) {
    return `wrong node: caller ${hello.from || "(unnamed)"} meant to reach "${hello.to}", but this is node ${me}`;
  }
  if (hello.from.length === 0) return `node ${me}: Hello without a caller id`;
  if (hello.protocolVersion !== protocolVersion) {
    return `protocol version mismatch: node ${me} speaks ${protocolVersion}, caller ${hello.from} speaks ${hello.protocolVersion}`;
  }
  return undefined;
}
