import { randomBytes } from "node:crypto";
import { status } from "@grpc/grpc-js";
import {
  type CrossShardTxn,
  EtcdError,
  etcdErrors,
  type ShardTxnAccess,
  type TxnDecision,
  type TxnPart,
  type TxnRequest,
  type TxnResponse,
  type TxnState,
  type TxnVote,
  TxnVote_Outcome,
} from "@quorum/kv";
import { type Clock, type Logger, silentLogger, systemClock } from "@quorum/transport";
import { Counter, type Registry } from "prom-client";
import { RecordForgetter } from "./forgetter.js";
import { branchChanges, txnResponse, type Verdict, verdict } from "./outcome.js";
import { planTxn, type TxnPlan } from "./plan.js";
import { ShardTxnRecovery } from "./recovery.js";
import { type Resolution, resolve } from "./resolve.js";

export interface ShardTxnEngineOptions {
  /** Deadlines, backoff and recovery timers; default the system clock. */
  readonly clock?: Clock;
  readonly logger?: Logger;
  /** Counters `quorum_txn_cross_shard_total{outcome}` and `quorum_txn_recovered_total{decision}`. */
  readonly metrics?: Registry;
  /** How long one client Txn may take, retries included; default 7000 (etcd's request timeout). */
  readonly requestTimeoutMs?: number;
  /** Attempts after a lock conflict before the client gets a retryable error; default 8. */
  readonly maxAttempts?: number;
  /** How often this node looks for stale prepared parts in the shards it leads; default 1000. */
  readonly recoveryIntervalMs?: number;
  /** A prepared part this old (as this node has seen it) is finished by recovery; default requestTimeoutMs. */
  readonly staleAfterMs?: number;
  /**
   * How long after its decisions are applied everywhere a transaction's records are
   * forgotten (`RecordForgetter`); default twice requestTimeoutMs.
   */
  readonly forgetAfterMs?: number;
  /** How often due forgets are sent; default 1000. */
  readonly forgetIntervalMs?: number;
  /** Uniform [0, 1) numbers for backoff jitter (seeded in simulation); default Math.random. */
  readonly random?: () => number;
  /** New transaction ids (16 bytes; seeded in simulation); default crypto's randomBytes. */
  readonly newTxId?: () => Buffer;
  /**
   * Wall-clock milliseconds, comparable across nodes (roughly: NTP), for a transaction's age
   * (wait-die priority) and a prepared part's age (recovery); default Date.now. Virtual in
   * simulation.
   */
  readonly wallClock?: () => number;
}

/** One attempt's result: an answer, a conflict worth retrying, or an error for the client. */
type Attempt =
  | { readonly kind: "done"; readonly response: TxnResponse }
  /** Not committed; worth another attempt. `conflict`: a lock, else a transient failure (no leader, timeout). */
  | {
      readonly kind: "retry";
      readonly why: string;
      readonly conflict: boolean;
      /** conflict: the lock holder started after this transaction (so this one may keep trying). */
      readonly olderThanHolder?: boolean;
    }
  | { readonly kind: "error"; readonly error: unknown };

/** The prepares' answers: PREPARED votes by shard, and why the others did not come back PREPARED. */
function tally(
  settled: readonly PromiseSettledResult<TxnVote>[],
  shards: readonly number[],
  txId: Buffer,
  startTs: bigint,
): { votes: Map<number, TxnVote>; refused: string | undefined; failure: unknown; older: boolean } {
  const votes = new Map<number, TxnVote>();
  let refused: string | undefined;
  let failure: unknown;
  // Wait-die's priority, without waiting while holding locks: a transaction older than every
  // holder it met keeps trying until the deadline; a younger one gives up after maxAttempts.
  let older = true;
  settled.forEach((s, i) => {
    const shard = shards[i]!;
    if (s.status === "rejected") failure ??= s.reason;
    else if (s.value.outcome === TxnVote_Outcome.PREPARED) votes.set(shard, s.value);
    else if (s.value.outcome === TxnVote_Outcome.CONFLICT) {
      refused ??= `a lock in shard ${shard}`;
      const holder = s.value.holderStartTs;
      if (!(startTs < holder || (startTs === holder && Buffer.compare(txId, s.value.holderTxId) < 0)))
        older = false;
    } else refused ??= `shard ${shard} aborted it`;
  });
  return { votes, refused, failure, older };
}

/** Errors that say "not now" (no leader, leader changed, timeout): the attempt is retried. */
function transient(err: unknown): boolean {
  // DEADLINE_EXCEEDED: a call forwarded to a shard's leader that did not answer in time.
  return (
    err instanceof EtcdError && (err.code === status.UNAVAILABLE || err.code === status.DEADLINE_EXCEEDED)
  );
}

/**
 * Runs etcd Txns whose keys fall in several shards as one atomic, serializable transaction,
 * by two-phase commit through the shards' own consensus logs, with parallel commits (as
 * CockroachDB's): one round of consensus before the client's answer (README, "Transactions
 * across shards"):
 *
 * 1. Prepare: every shard's part is proposed to that shard's log at once. Applying it locks
 *    the keys and ranges the part reads (shared) and writes (exclusive), evaluates its
 *    compares and dry-runs both branches. A lock held by another transaction makes the shard
 *    vote CONFLICT without waiting (no-wait: no transaction ever waits for a lock, so there
 *    is no deadlock); the engine aborts and retries with jittered backoff.
 * 2. Committed: once every part is prepared, the transaction is committed; no further
 *    record is needed, because its outcome is a pure function (`verdict`) of the client's
 *    request, which the anchor's part carries, and of the stored votes: the branch (all
 *    compares hold?) and the revision of every write (above each shard's revision at
 *    prepare). The client is answered from the dry runs.
 * 3. The decision goes to every shard in the background, which writes the branch and
 *    releases the locks. If this node dies first, recovery on whichever node leads such a
 *    shard fences every shard of the transaction (a shard that never prepared its part
 *    records an abort, so the part can no longer prepare), then derives the same outcome
 *    from what the fences return and applies it.
 */
export class ShardTxnEngine implements CrossShardTxn {
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly timeoutMs: number;
  private readonly maxAttempts: number;
  private readonly random: () => number;
  private readonly newTxId: () => Buffer;
  private readonly wallClock: () => number;
  private readonly outcomes: Counter<"outcome"> | undefined;
  private readonly recovery: ShardTxnRecovery;
  private readonly forgetter: RecordForgetter;
  /** Transactions this node is coordinating now: recovery leaves them alone. */
  private readonly active = new Set<string>();
  private closed = false;

  constructor(
    private readonly access: ShardTxnAccess,
    options: ShardTxnEngineOptions = {},
  ) {
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.timeoutMs = options.requestTimeoutMs ?? 7_000;
    this.maxAttempts = options.maxAttempts ?? 8;
    this.random = options.random ?? Math.random;
    this.newTxId = options.newTxId ?? (() => randomBytes(16));
    this.wallClock = options.wallClock ?? Date.now;
    this.outcomes = options.metrics
      ? new Counter({
          name: "quorum_txn_cross_shard_total",
          help: "Txns over several shards by outcome (committed, conflict: retried, aborted: gave up, failed)",
          labelNames: ["outcome"],
          registers: [options.metrics],
        })
      : undefined;
    this.recovery = new ShardTxnRecovery(access, {
      clock: this.clock,
      logger: this.logger,
      intervalMs: options.recoveryIntervalMs ?? 1_000,
      // Below a transaction's own possible duration, recovery would abort live transactions
      // of other nodes (safe, but they retry and may be aborted again): default to it.
      staleAfterMs: options.staleAfterMs ?? this.timeoutMs,
      isActive: (txId) => this.active.has(txId),
      wallClock: this.wallClock,
      ...(options.metrics ? { metrics: options.metrics } : {}),
    });
    this.forgetter = new RecordForgetter(access, {
      clock: this.clock,
      logger: this.logger,
      intervalMs: options.forgetIntervalMs ?? 1_000,
      afterMs: options.forgetAfterMs ?? 2 * this.timeoutMs,
    });
  }

  async txn(req: TxnRequest, _shards: readonly number[]): Promise<TxnResponse> {
    if (this.closed) throw etcdErrors.stopped();
    const plan = planTxn(req, this.access.map);
    const deadline = this.clock.now() + this.timeoutMs;
    const startTs = BigInt(Math.floor(this.wallClock()));
    let why = "";
    let conflicts = 0;
    // Conflicts count against maxAttempts; transient failures (a leader change) are retried
    // until the deadline, so a failover delays a transaction instead of failing it.
    for (let attempt = 1; ; attempt++) {
      const result = await this.attempt(req, plan, startTs, deadline);
      if (result.kind === "done") {
        this.outcomes?.inc({ outcome: "committed" });
        return result.response;
      }
      if (result.kind === "error") {
        this.outcomes?.inc({ outcome: "failed" });
        throw result.error;
      }
      why = result.why;
      if (result.conflict) {
        this.outcomes?.inc({ outcome: "conflict" });
        conflicts++;
        if (!result.olderThanHolder && conflicts >= this.maxAttempts) break;
      }
      // Jittered exponential backoff, so two transactions that collided do not collide again.
      const delay = Math.min(200, 2 ** attempt) * (0.5 + this.random());
      if (this.clock.now() + delay >= deadline || this.closed) break;
      await this.sleep(delay);
    }
    this.outcomes?.inc({ outcome: "aborted" });
    throw new EtcdError(
      status.ABORTED,
      `quorum: transaction aborted (${conflicts} lock conflicts; last: ${why}); it had no effect, retry it`,
    );
  }

  private async attempt(req: TxnRequest, plan: TxnPlan, startTs: bigint, deadline: number): Promise<Attempt> {
    const txId = this.newTxId();
    const key = txId.toString("hex");
    this.active.add(key);
    try {
      return await this.run(req, plan, txId, startTs, deadline);
    } finally {
      this.active.delete(key);
    }
  }

  private async run(
    req: TxnRequest,
    plan: TxnPlan,
    txId: Buffer,
    startTs: bigint,
    deadline: number,
  ): Promise<Attempt> {
    const anchor = plan.shards[0]!;
    const attemptMs = BigInt(Math.floor(this.wallClock()));
    const minRevision = BigInt(this.access.maxKnown());
    const parts = plan.shards.map(
      (shard): TxnPart => ({
        txId,
        anchor,
        startTs,
        shards: [...plan.shards],
        txn: plan.parts.get(shard)!,
        attemptMs,
        request: shard === anchor ? req : undefined,
        minRevision,
      }),
    );
    const settled = await Promise.allSettled(
      parts.map((part, i) => this.access.prepare(plan.shards[i]!, part)),
    );
    const prepared = tally(settled, plan.shards, txId, startTs);
    const { refused, failure, older } = prepared;
    let votes = prepared.votes;
    let v: Verdict;
    if (votes.size === plan.shards.length) {
      // Every part is prepared: the transaction is decided (parallel commits), and recovery
      // would derive the same verdict from the same votes.
      v = verdict(req, plan, votes, minRevision);
    } else {
      // Some part did not come back PREPARED, yet it may still be (a prepare that timed out
      // may have been applied, a duplicate may be applied later), which would commit the
      // transaction: fence those shards before deciding anything.
      const r = await this.settle(txId, parts, votes, deadline);
      if (r.kind === "unknown" || r.kind === "committed") {
        // Unknown: a shard did not answer in time; committed: another node's recovery
        // finished it, and the answer is gone. Either way recovery sees it through.
        this.logger.warn(
          { txId: txId.toString("hex"), resolution: r.kind },
          "cross-shard txn outcome unknown",
        );
        return { kind: "error", error: etcdErrors.timeout() };
      }
      if (r.kind === "aborted") {
        this.abortEverywhere(txId, plan, deadline, minRevision);
        if (refused !== undefined)
          return { kind: "retry", why: `conflict: ${refused}`, conflict: true, olderThanHolder: older };
        if (transient(failure) && this.clock.now() < deadline)
          return { kind: "retry", why: (failure as Error).message, conflict: false };
        return { kind: "error", error: failure ?? new Error("cross-shard txn aborted") };
      }
      // Every part turned out prepared after all: committed, as if every vote had come back.
      votes = new Map(r.votes);
      v = r.verdict;
    }
    if (!v.commit) {
      this.abortEverywhere(txId, plan, deadline, minRevision);
      return { kind: "error", error: v.error };
    }
    const decision: TxnDecision = { txId, commit: true, revision: v.revision, succeeded: v.succeeded };
    this.decideEverywhere(plan, decision, deadline + this.timeoutMs, minRevision);
    // A branch that changes nothing leaves the revision where it was: its reads are as of the one below.
    const revision = branchChanges(req, plan, votes, v.succeeded) ? v.revision : v.revision - 1n;
    return { kind: "done", response: txnResponse(req, plan, votes, v.succeeded, revision) };
  }

  /**
   * Fences every shard whose part did not vote PREPARED (the votes in hand stand for the
   * others) and resolves the transaction from what they say.
   */
  private async settle(
    txId: Buffer,
    parts: readonly TxnPart[],
    votes: ReadonlyMap<number, TxnVote>,
    deadline: number,
  ): Promise<Resolution> {
    const states = await Promise.all(
      parts.map(async (part, i): Promise<TxnState | undefined> => {
        const shard = part.shards[i]!;
        const vote = votes.get(shard);
        if (vote) return { prepared: { part, vote, preparedRevision: 0n } };
        return this.retrying(() => this.access.fence(shard, txId), deadline).catch(() => undefined);
      }),
    );
    return resolve(parts[0]!, states, this.access.map);
  }

  /** Proposes a decision to a shard (idempotent: the first one recorded wins). */
  private decide(shard: number, decision: TxnDecision, deadline: number): Promise<TxnDecision> {
    return this.retrying(() => this.access.decide(shard, decision), deadline);
  }

  /** Makes an idempotent call, again after transient errors, until `deadline` (at least once). */
  private async retrying<T>(call: () => Promise<T>, deadline: number): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await call();
      } catch (err) {
        if (!transient(err) || this.closed || this.clock.now() >= deadline) throw err;
        await this.sleep(Math.min(100, 5 * attempt));
      }
    }
  }

  private abortEverywhere(txId: Buffer, plan: TxnPlan, deadline: number, minRevision: bigint): void {
    const abort: TxnDecision = { txId, commit: false, revision: 0n, succeeded: false };
    this.decideEverywhere(plan, abort, deadline, minRevision);
  }

  /** Sends the decision to every shard in the background; once all applied it, its records may go. */
  private decideEverywhere(
    plan: TxnPlan,
    decision: TxnDecision,
    deadline: number,
    minRevision: bigint,
  ): void {
    this.background(
      Promise.all(plan.shards.map((shard) => this.decide(shard, decision, deadline))).then(() =>
        this.forgetter.decidedEverywhere(Buffer.from(decision.txId), plan.shards, minRevision),
      ),
    );
  }

  /** Work whose failure recovery covers: logged, never thrown. */
  private background(work: Promise<unknown>): void {
    work.catch((err: unknown) => {
      if (!this.closed)
        this.logger.info({ err: String(err) }, "cross-shard txn decision not delivered; recovery will");
    });
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.clock.schedule(ms, resolve));
  }

  /** One recovery pass now (tests); it also runs on its own every `recoveryIntervalMs`. */
  recoverNow(): Promise<number> {
    return this.recovery.runOnce();
  }

  /** Sends the forgets that are due now (tests); it also runs every `forgetIntervalMs`. */
  forgetNow(): Promise<number> {
    return this.forgetter.runOnce();
  }

  close(): void {
    this.closed = true;
    this.recovery.close();
    this.forgetter.close();
  }
}
