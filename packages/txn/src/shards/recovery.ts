import type { ShardTxnAccess, TxnDecision, TxnPart } from "@quorum/kv";
import { type Clock, every, type Logger, type Timer } from "@quorum/transport";
import { Counter, type Registry } from "prom-client";
import { decisionOf, resolve } from "./resolve.js";

export interface ShardTxnRecoveryOptions {
  readonly clock: Clock;
  readonly logger: Logger;
  readonly intervalMs: number;
  readonly staleAfterMs: number;
  /** Transactions this node is still coordinating (hex tx ids): not touched. */
  readonly isActive: (txId: string) => boolean;
  /** Wall-clock milliseconds (the engine's `wallClock`), to read a part's `attemptMs`. */
  readonly wallClock: () => number;
  readonly metrics?: Registry;
}

/**
 * The termination protocol for the shards this node leads: a prepared part that has waited
 * `staleAfterMs` (as this node saw it) is finished by fencing every shard of its
 * transaction. A fence goes through the shard's log, so it is ordered with the part's own
 * prepare there: it answers the prepared part and its vote, or the decision the shard has
 * applied, or (neither) records an abort, after which that part can never prepare. Then the
 * transaction was committed exactly when every part is prepared, and `resolve` derives the
 * same outcome the coordinator would have, which is applied to every shard.
 * A part's age is counted from its attempt's start (`attemptMs`, the coordinator's wall
 * clock), so a part holds its locks at most about `staleAfterMs + intervalMs` (plus clock
 * skew) after its coordinator vanished, a leader change included.
 */
export class ShardTxnRecovery {
  /** When this node first saw each prepared part (hex tx id / shard). */
  private readonly firstSeen = new Map<string, number>();
  private readonly recovered: Counter<"decision"> | undefined;
  private readonly timer: Timer;
  /** Parts being finished now (hex tx id / shard): each is finished on its own, so one whose anchor does not answer holds up no other. */
  private readonly inFlight = new Set<string>();
  private closed = false;

  constructor(
    private readonly access: ShardTxnAccess,
    private readonly options: ShardTxnRecoveryOptions,
  ) {
    this.recovered = options.metrics
      ? new Counter({
          name: "quorum_txn_recovered_total",
          help: "Prepared parts of Txns over several shards finished by recovery, by decision",
          labelNames: ["decision"],
          registers: [options.metrics],
        })
      : undefined;
    this.timer = every(options.clock, options.intervalMs, () => {
      this.runOnce().catch((err: unknown) =>
        options.logger.warn({ err: String(err) }, "txn recovery pass failed"),
      );
    });
  }

  /**
   * One pass over the shards this node leads: starts finishing every stale part not already
   * being finished, all at once; resolves with the number of parts this pass finished.
   */
  async runOnce(): Promise<number> {
    if (this.closed) return 0;
    const now = this.options.clock.now();
    const present = new Set<string>();
    const started: Promise<boolean>[] = [];
    for (let shard = 0; shard < this.access.map.count; shard++) {
      if (!this.access.leads(shard)) continue;
      for (const intent of this.access.prepared(shard)) {
        const hex = intent.txId.toString("hex");
        const key = `${hex}/${shard}`;
        present.add(key);
        const first = this.firstSeen.get(key) ?? now;
        this.firstSeen.set(key, first);
        // How long the part has waited: since its coordinator began the attempt (so a new
        // leader need not start counting again), or since this node first saw it, whichever
        // is longer (a coordinator's clock far behind cannot make a part look young forever).
        const waited = Math.max(now - first, this.options.wallClock() - Number(intent.part.attemptMs));
        if (waited < this.options.staleAfterMs || this.options.isActive(hex) || this.inFlight.has(key))
          continue;
        this.inFlight.add(key);
        started.push(
          this.finish(intent.txId, intent.part)
            .then(
              (decision) => {
                this.recovered?.inc({ decision: decision.commit ? "commit" : "abort" });
                this.options.logger.info(
                  { txId: hex, shard, commit: decision.commit },
                  "recovered a prepared cross-shard txn",
                );
                return true;
              },
              (err: unknown) => {
                this.options.logger.warn({ txId: hex, shard, err: String(err) }, "txn recovery will retry");
                return false;
              },
            )
            .finally(() => this.inFlight.delete(key)),
        );
      }
    }
    for (const key of this.firstSeen.keys()) if (!present.has(key)) this.firstSeen.delete(key);
    return (await Promise.all(started)).filter(Boolean).length;
  }

  private async finish(txId: Buffer, part: TxnPart): Promise<TxnDecision> {
    const fenced = await Promise.allSettled(part.shards.map((s) => this.access.fence(s, txId)));
    const r = resolve(
      part,
      fenced.map((f) => (f.status === "fulfilled" ? f.value : undefined)),
      this.access.map,
    );
    if (r.kind === "unknown") {
      const failed = fenced.find((f) => f.status === "rejected") as PromiseRejectedResult;
      throw failed.reason;
    }
    const decision = decisionOf(txId, r);
    await Promise.all(part.shards.map((s) => this.access.decide(s, decision)));
    return decision;
  }

  close(): void {
    this.closed = true;
    this.timer.cancel();
  }
}
