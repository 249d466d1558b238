import type { Logger } from "./logger.js";
import type { MessageHandler, NodeId } from "./transport.js";

/**
 * The channel → handlers table every transport keeps. Several handlers may share a channel
 * (each gets every message); a handler that throws is logged and skipped, so one faulty
 * subscriber cannot stop delivery to the others or break the connection it came on.
 */
export class Subscribers {
  private readonly byChannel = new Map<string, Set<MessageHandler>>();

  constructor(
    private readonly localId: NodeId,
    private readonly logger: Logger,
  ) {}

  add(channel: string, handler: MessageHandler): () => void {
    let handlers = this.byChannel.get(channel);
    if (!handlers) {
      handlers = new Set();
      this.byChannel.set(channel, handlers);
    }
    // A wrapper per subscription, so subscribing the same function twice needs two
    // unsubscribes, like addEventListener with distinct listeners.
    const entry: MessageHandler = (from, payload) => handler(from, payload);
    handlers.add(entry);
    return () => {
      const current = this.byChannel.get(channel);
      if (!current) return;
      current.delete(entry);
      if (current.size === 0) this.byChannel.delete(channel);
    };
  }

  /** Hands a message to every handler of its channel; false if there are none. */
  dispatch(from: NodeId, channel: string, payload: Uint8Array): boolean {
    const handlers = this.byChannel.get(channel);
    if (!handlers) return false;
    for (const handler of handlers) {
      try {
        handler(from, payload);
      } catch (err) {
        this.logger.error(
          { err, node: this.localId, from, channel },
          "message handler threw; message skipped for this handler",
        );
      }
    }
    return true;
  }

  has(channel: string): boolean {
    return this.byChannel.has(channel);
  }

  clear(): void {
    this.byChannel.clear();
  }
}
