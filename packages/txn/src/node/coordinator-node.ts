import { randomUUID } from "node:crypto";
import { type Clock, type Logger, silentLogger, type Timer, type Transport } from "@quorum/transport";
import {
  type CoordinatorConfig,
  CoordinatorCore,
  defaultCoordinatorConfig,
  type TxPart,
  type TxResult,
} from "../core/coordinator.js";
import type { TxId } from "../core/types.js";
import type { DecisionLog } from "../decision-log.js";
import { TxnError } from "../errors.js";
import { decodeMessage, encodeMessage, maxTxIdLength, txnChannel } from "../wire/codec.js";

export interface CoordinatorNodeOptions {
  readonly transport: Transport;
  readonly clock: Clock;
  readonly log: DecisionLog;
  readonly config?: Partial<CoordinatorConfig>;
  /** How often the core's timers are checked (default: a quarter of the retry interval). */
  readonly tickMs?: number;
  /** Ids must be unique forever, across restarts (default: node id + a random UUID). */
  readonly newTxId?: () => TxId;
  readonly logger?: Logger;
}

export interface BeginOptions {
  /**
   * The caller's own id for this transaction (e.g. to find it later). It must be unique
   * forever, across coordinator restarts; by default the node makes one.
   */
  readonly txId?: TxId;
  /** Keep the age of a retried transaction so wait-die lets it win eventually. */
  readonly startTs?: number;
}

/**
 * Drives a `CoordinatorCore` over a Transport: the host loop of DESIGN.md rule 1. The order
 * that safety needs lives in `flush`: decision records are made durable first, and only the
 * core, told that they are, emits commit.
 */
export class CoordinatorNode {
  readonly core: CoordinatorCore;
  private readonly waiting = new Map<TxId, { resolve: (r: TxResult) => void; reject: (e: Error) => void }>();
  /** Transactions whose decision record was handed to the log: their outcome may be commit. */
  private readonly deciding = new Set<TxId>();
  private readonly unsubscribe: () => void;
  private timer: Timer | undefined;
  private closed = false;
  private readonly tickMs: number;
  private readonly logger: Logger;
  private readonly newTxId: () => TxId;
  /** Payloads dropped because they did not decode. */
  droppedInvalid = 0;

  private constructor(private readonly options: CoordinatorNodeOptions) {
    const config = { ...defaultCoordinatorConfig, ...options.config };
    this.core = new CoordinatorCore(config);
    this.tickMs = options.tickMs ?? Math.max(1, Math.floor(config.retryIntervalMs / 4));
    this.logger = options.logger ?? silentLogger;
    const id = options.transport.localId;
    this.newTxId = options.newTxId ?? (() => `${id}-${randomUUID()}`);
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

  /** Loads the decision log, resumes every decided transaction, and starts the timers. */
  static async start(options: CoordinatorNodeOptions): Promise<CoordinatorNode> {
    const node = new CoordinatorNode(options);
    const records = await options.log.load();
    node.core.recover(records, options.clock.now());
    if (records.length > 0) node.logger.info({ decided: records.length }, "resuming decided transactions");
    node.flush();
    node.scheduleTick();
    return node;
  }

  /**
   * Runs one transaction across `parts` (one entry per participant). Resolves with its
   * outcome; never rejects for a protocol outcome (an abort is a result, with `retryable`).
   * Rejects with TxnError for bad input or a closed node.
   */
  transact(parts: readonly TxPart[], options: BeginOptions = {}): Promise<TxResult> {
    if (this.closed) return Promise.reject(new TxnError("UNAVAILABLE", "coordinator is closed"));
    const txId = options.txId ?? this.newTxId();
    if (txId.length > maxTxIdLength) {
      return Promise.reject(
        new TxnError("INVALID_ARGUMENT", `transaction id is over ${maxTxIdLength} chars`),
      );
    }
    const now = this.options.clock.now();
    const startTs = options.startTs ?? Math.floor(now);
    if (!Number.isSafeInteger(startTs) || startTs < 0) {
      return Promise.reject(new TxnError("INVALID_ARGUMENT", `startTs must be a non-negative integer`));
    }
    return new Promise<TxResult>((resolve, reject) => {
      try {
        this.core.begin(txId, startTs, parts, now);
      } catch (e) {
        reject(e);
        return;
      }
      this.waiting.set(txId, { resolve, reject });
      this.flush();
    });
  }

  /**
   * Stops timers and message handling. A pending transaction whose decision was never written
   * is aborted (presumed abort: a restarted coordinator and every participant agree), so its
   * client gets a retryable abort; one whose decision record was being written, or was
   * written, may have committed, so its client gets OUTCOME_UNKNOWN, never a false abort.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.timer?.cancel();
    this.unsubscribe();
    for (const [txId, { resolve, reject }] of this.waiting) {
      if (this.deciding.has(txId)) {
        reject(new TxnError("OUTCOME_UNKNOWN", `coordinator closed while deciding transaction ${txId}`));
      } else {
        resolve({ status: "aborted", txId, reason: "coordinator closed before deciding", retryable: true });
      }
    }
    this.waiting.clear();
  }

  private scheduleTick(): void {
    this.timer = this.options.clock.schedule(this.tickMs, () => {
      if (this.closed) return;
      this.core.tick(this.options.clock.now());
      this.flush();
      this.scheduleTick();
    });
  }

  private flush(): void {
    if (this.closed) return;
    const ready = this.core.takeReady();
    for (const record of ready.persist) {
      this.deciding.add(record.txId);
      this.options.log.decide(record).then(
        (held) => {
          if (this.closed) return;
          this.core.decisionDurable(record.txId, held.decision, this.options.clock.now());
          this.flush();
        },
        (e: unknown) => {
          // The record may or may not be durable: keep silent (no commit, no abort). The
          // participants ask; a restart answers from the log.
          this.logger.error({ txId: record.txId, err: String(e) }, "decision log write failed; closing");
          void this.close();
        },
      );
    }
    for (const { to, message } of ready.messages) {
      this.options.transport.send(to, txnChannel, encodeMessage(message));
    }
    if (ready.forget.length > 0) {
      this.options.log.forget(ready.forget).catch((e: unknown) => {
        this.logger.warn(
          { err: String(e) },
          "forgetting decisions failed (they will be resent after a restart)",
        );
      });
    }
    for (const r of ready.results) {
      const waiter = this.waiting.get(r.txId);
      this.deciding.delete(r.txId);
      if (waiter === undefined) continue;
      this.waiting.delete(r.txId);
      waiter.resolve(r);
    }
  }
}
