import { type Clock, type Logger, silentLogger, type Timer, type Transport } from "@quorum/transport";
import {
  defaultParticipantConfig,
  type ParticipantAction,
  type ParticipantConfig,
  ParticipantCore,
} from "../core/participant.js";
import type { Vote } from "../core/types.js";
import { TxnError } from "../errors.js";
import type { Participant } from "../participant.js";
import { decodeMessage, encodeMessage, txnChannel } from "../wire/codec.js";

export interface ParticipantNodeOptions {
  readonly transport: Transport;
  readonly clock: Clock;
  /** The resource: it locks, writes prepare records, applies. */
  readonly participant: Participant;
  readonly config?: Partial<ParticipantConfig>;
  /** How often the core's timers are checked (default: a quarter of the query interval). */
  readonly tickMs?: number;
  readonly logger?: Logger;
}

/**
 * Drives a `ParticipantCore` over a Transport and runs its actions on a `Participant`.
 * On start it reloads the resource's in-doubt transactions (prepared, locks held) and asks
 * their coordinators for the outcome.
 */
export class ParticipantNode {
  readonly core: ParticipantCore;
  private readonly unsubscribe: () => void;
  private timer: Timer | undefined;
  private closed = false;
  private readonly tickMs: number;
  private readonly logger: Logger;
  droppedInvalid = 0;

  private constructor(private readonly options: ParticipantNodeOptions) {
    const config = { ...defaultParticipantConfig, ...options.config };
    this.core = new ParticipantCore(config);
    this.tickMs = options.tickMs ?? Math.max(1, Math.floor(config.outcomeQueryIntervalMs / 4));
    this.logger = options.logger ?? silentLogger;
    this.unsubscribe = options.transport.subscribe(txnChannel, (from, payload) => {
      if (this.closed) return;
      const m = decodeMessage(payload);
      if (m === undefined) {
        this.droppedInvalid++;
        return;
      }
      this.core.step(from, m, this.options.clock.now());
      this.flush();
    });
  }

  static async start(options: ParticipantNodeOptions): Promise<ParticipantNode> {
    const node = new ParticipantNode(options);
    const inDoubt = await options.participant.inDoubt();
    if (inDoubt.length > 0)
      node.logger.info({ inDoubt: inDoubt.length }, "asking coordinators about prepared transactions");
    node.core.recover(inDoubt, options.clock.now());
    node.flush();
    node.scheduleTick();
    return node;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.timer?.cancel();
    this.unsubscribe();
  }

  private scheduleTick(): void {
    this.timer = this.options.clock.schedule(this.tickMs, () => {
      if (this.closed) return;
      this.core.tick(this.options.clock.now());
      this.flush();
      this.scheduleTick();
    });
  }

  private run(action: ParticipantAction): void {
    const p = this.options.participant;
    switch (action.kind) {
      case "prepare":
        p.prepare(action).then(
          (vote) => this.afterPrepare(action.txId, vote),
          (e: unknown) => {
            const err = e instanceof TxnError ? e : undefined;
            this.afterPrepare(action.txId, {
              yes: false,
              reason: e instanceof Error ? e.message : String(e),
              retryable: err?.retryable ?? false,
            });
          },
        );
        return;
      case "commit":
      case "abort":
        (action.kind === "commit" ? p.commit(action.txId) : p.abort(action.txId)).then(
          () => {
            if (this.closed) return;
            this.core.finished(action.txId);
            this.flush();
          },
          (e: unknown) => {
            // No ack: the coordinator resends the decision and we try again then.
            this.logger.error({ txId: action.txId, err: String(e) }, `${action.kind} failed`);
            if (!this.closed) this.core.finishFailed(action.txId);
          },
        );
        return;
    }
  }

  private afterPrepare(txId: string, vote: Vote): void {
    if (this.closed) return;
    this.core.prepared(txId, vote, this.options.clock.now());
    this.flush();
  }

  private flush(): void {
    if (this.closed) return;
    const ready = this.core.takeReady();
    for (const { to, message } of ready.messages) {
      this.options.transport.send(to, txnChannel, encodeMessage(message));
    }
    for (const a of ready.actions) this.run(a);
  }
}
