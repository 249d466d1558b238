import type { ShardTxnAccess } from "@quorum/kv";
import { type Clock, every, type Logger, type Timer } from "@quorum/transport";

export interface RecordForgetterOptions {
  readonly clock: Clock;
  readonly logger: Logger;
  /** How often to send the forgets that are due. */
  readonly intervalMs: number;
  /** How long after its last decision was applied a transaction is forgotten. */
  readonly afterMs: number;
  /** Transactions per forget command (one log entry); default 1,000 (16 KiB of ids). */
  readonly maxPerCommand?: number;
}

interface Finished {
  readonly txId: Buffer;
  readonly shards: readonly number[];
  readonly minRevision: bigint;
  readonly at: number;
}

/**
 * Keeps every shard's table of transaction records (`txn_record`) from growing forever: once
 * each shard of a transaction this node coordinated has applied its decision, and `afterMs`
 * later, every one of those shards is sent a forget (kv's `TxnForget`), a few hundred
 * transactions per log entry. A shard then deletes their records and refuses every part
 * whose `min_revision` is at or below theirs: a late duplicate of a forgotten prepare can
 * never be prepared again. Only transactions below the highest revision this node knows are
 * forgotten, and `afterMs` (twice the request timeout by default) after their decisions, so
 * that floor stays below the parts of transactions that are running or yet to start (one
 * refused by it anyway, from a node that knew no newer revision, retries). Records of
 * transactions finished by recovery, or whose forget this node did not get to send, stay.
 */
export class RecordForgetter {
  private finished: Finished[] = [];
  private readonly timer: Timer;
  private readonly maxPerCommand: number;
  private closed = false;

  constructor(
    private readonly access: ShardTxnAccess,
    private readonly options: RecordForgetterOptions,
  ) {
    this.maxPerCommand = options.maxPerCommand ?? 1_000;
    this.timer = every(options.clock, options.intervalMs, () => {
      this.runOnce().catch((err: unknown) =>
        options.logger.warn({ err: String(err) }, "forgetting cross-shard txn records failed"),
      );
    });
  }

  /** A transaction every shard of which has applied its decision. */
  decidedEverywhere(txId: Buffer, shards: readonly number[], minRevision: bigint): void {
    if (!this.closed) this.finished.push({ txId, shards, minRevision, at: this.options.clock.now() });
  }

  /** Sends the forgets that are due; resolves with how many transactions every shard forgot. */
  async runOnce(): Promise<number> {
    if (this.closed) return 0;
    const cutoff = this.options.clock.now() - this.options.afterMs;
    // Only below the highest revision this node knows now: a transaction starts at the
    // revision its node knows, so the floor stays below every one starting from here on. (An
    // aborted transaction may have started at the current revision: forgetting it at once
    // would refuse every transaction started since, for as long as none of them commits.)
    const known = BigInt(this.access.maxKnown());
    const isDue = (f: Finished) => f.at <= cutoff && f.minRevision < known;
    const due = this.finished.filter(isDue);
    if (due.length === 0) return 0;
    this.finished = this.finished.filter((f) => !isDue(f));
    const byShard = new Map<number, Finished[]>();
    for (const f of due)
      for (const s of f.shards) {
        const list = byShard.get(s) ?? [];
        list.push(f);
        byShard.set(s, list);
      }
    const sends: Promise<void>[] = [];
    for (const [shard, list] of byShard)
      for (let i = 0; i < list.length; i += this.maxPerCommand) {
        const chunk = list.slice(i, i + this.maxPerCommand);
        // biome-ignore lint/complexity/useMathMinMax: bigints (Math.max takes numbers)
        const belowRevision = chunk.reduce((m, f) => (f.minRevision > m ? f.minRevision : m), 0n);
        sends.push(this.access.forget(shard, { txIds: chunk.map((f) => f.txId), belowRevision }));
      }
    const results = await Promise.allSettled(sends);
    const failed = results.filter((r) => r.status === "rejected");
    if (failed.length > 0 && !this.closed)
      this.options.logger.info(
        { failed: failed.length, err: String((failed[0] as PromiseRejectedResult).reason) },
        "cross-shard txn records not forgotten (they stay)",
      );
    return failed.length === 0 ? due.length : 0;
  }

  close(): void {
    this.closed = true;
    this.finished = [];
    this.timer.cancel();
  }
}
