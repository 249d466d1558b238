import { TxnError } from "../errors.js";
import type { Decision, NodeName, Outgoing, TxId, TxnMessage, Vote } from "./types.js";
import { voteFromFields } from "./types.js";

export interface CoordinatorConfig {
  /** Abort a transaction still missing votes this long after it began. */
  readonly voteTimeoutMs: number;
  /** Resend prepare to silent participants, and decisions to unacknowledged ones, this often. */
  readonly retryIntervalMs: number;
}

export const defaultCoordinatorConfig: CoordinatorConfig = { voteTimeoutMs: 2_000, retryIntervalMs: 200 };

/** What the decision log keeps: the outcome and who must hear it. */
export interface DecisionRecord {
  readonly txId: TxId;
  readonly decision: Decision;
  readonly participants: readonly NodeName[];
}

export type TxResult =
  | {
      readonly status: "committed";
      readonly txId: TxId;
      /** What each participant returned with its yes vote (e.g. values it read under lock). */
      readonly results: ReadonlyMap<NodeName, Uint8Array>;
    }
  | {
      readonly status: "aborted";
      readonly txId: TxId;
      readonly reason: string;
      /** True when running the transaction again may commit (conflict, timeout, crash). */
      readonly retryable: boolean;
    };

/** What the host must do, in this order: persist, then send, then report results. */
export interface CoordinatorReady {
  /** Make each record durable, then call `decisionDurable` with the record that holds. */
  readonly persist: DecisionRecord[];
  readonly messages: Outgoing[];
  /** Every participant acknowledged: the host may delete these records (lazily). */
  readonly forget: TxId[];
  /** Outcomes for the clients that began these transactions. */
  readonly results: TxResult[];
}

export interface TxPart {
  readonly participant: NodeName;
  readonly ops: Uint8Array;
}

export type CoordinatorPhase =
  /** Prepare sent; waiting for every vote. */
  | "collecting"
  /** Every vote was yes; the commit record is being made durable. Nobody has heard commit. */
  | "persisting"
  /** Commit is durable; sending it until every participant acknowledges. */
  | "committing"
  /** Aborted; sending abort until every participant acknowledges (or forgets: presumed abort). */
  | "aborting";

interface CoordinatorTx {
  readonly txId: TxId;
  readonly startTs: number;
  readonly ops: ReadonlyMap<NodeName, Uint8Array>;
  phase: CoordinatorPhase;
  readonly votes: Map<NodeName, Vote>;
  readonly acked: Set<NodeName>;
  readonly deadline: number;
  nextRetryAt: number;
  /** Whether a record of the decision exists in the log (so it must be forgotten). */
  recorded: boolean;
  /** A client waits for this transaction's result (false for recovered ones). */
  awaited: boolean;
}

export interface CoordinatorCounters {
  begun: number;
  committed: number;
  aborted: number;
  timeouts: number;
  /** Messages that made no sense in the state they arrived in (late, duplicate, stray). */
  ignored: number;
}

/**
 * The two-phase-commit coordinator as a pure state machine (DESIGN.md rule 1): inputs are
 * calls with the current time, outputs collect in a `CoordinatorReady` the host drains.
 *
 * Rules it keeps:
 * - Commit only when every participant voted yes, and send commit only after the host says
 *   the decision record is durable (`decisionDurable`).
 * - Presumed abort: abort needs no record; a question about a transaction it has no trace of
 *   is answered "abort"; a yes vote for an unknown transaction gets abort back.
 * - A transaction still collecting votes at its deadline is aborted.
 * - Prepare, commit and abort are resent until answered; duplicates and late messages are
 *   answered idempotently and never change a decision.
 */
export class CoordinatorCore {
  private readonly txs = new Map<TxId, CoordinatorTx>();
  private ready: {
    persist: DecisionRecord[];
    messages: Outgoing[];
    forget: TxId[];
    results: TxResult[];
  } = { persist: [], messages: [], forget: [], results: [] };
  readonly counters: CoordinatorCounters = { begun: 0, committed: 0, aborted: 0, timeouts: 0, ignored: 0 };

  constructor(private readonly config: CoordinatorConfig = defaultCoordinatorConfig) {
    if (!(config.voteTimeoutMs > 0) || !(config.retryIntervalMs > 0)) {
      throw new TxnError("INVALID_ARGUMENT", "voteTimeoutMs and retryIntervalMs must be positive");
    }
  }

  /** Starts a transaction: sends prepare to every participant. */
  begin(txId: TxId, startTs: number, parts: readonly TxPart[], now: number): void {
    if (txId.length === 0) throw new TxnError("INVALID_ARGUMENT", "a transaction needs a non-empty id");
    if (this.txs.has(txId)) throw new TxnError("INVALID_ARGUMENT", `transaction ${txId} already exists`);
    if (parts.length === 0)
      throw new TxnError("INVALID_ARGUMENT", "a transaction needs at least one participant");
    const ops = new Map<NodeName, Uint8Array>();
    for (const p of parts) {
      if (p.participant.length === 0) throw new TxnError("INVALID_ARGUMENT", "participant name is empty");
      if (ops.has(p.participant)) {
        throw new TxnError(
          "INVALID_ARGUMENT",
          `participant ${p.participant} appears twice in transaction ${txId}; merge its ops`,
        );
      }
      ops.set(p.participant, p.ops);
    }
    const tx: CoordinatorTx = {
      txId,
      startTs,
      ops,
      phase: "collecting",
      votes: new Map(),
      acked: new Set(),
      deadline: now + this.config.voteTimeoutMs,
      nextRetryAt: now + this.config.retryIntervalMs,
      recorded: false,
      awaited: true,
    };
    this.txs.set(txId, tx);
    this.counters.begun++;
    for (const [participant, o] of ops) this.send(participant, { type: "prepare", txId, ops: o, startTs });
  }

  /** One door for every message from a participant. */
  step(from: NodeName, message: TxnMessage, now: number): void {
    switch (message.type) {
      case "vote":
        this.onVote(from, message.txId, voteFromFields(message), now);
        return;
      case "ack":
        this.onAck(from, message.txId);
        return;
      case "outcomeQuery":
        this.onOutcomeQuery(from, message.txId);
        return;
      default:
        this.counters.ignored++;
    }
  }

  /**
   * The host made the commit record durable. `held` is the decision the log kept: a log
   * shared with recovery agents may already hold an abort written by someone else.
   */
  decisionDurable(txId: TxId, held: Decision, now: number): void {
    const tx = this.txs.get(txId);
    if (tx === undefined || tx.phase !== "persisting") {
      this.counters.ignored++;
      return;
    }
    tx.recorded = true;
    if (held === "abort") {
      this.decideAbort(
        tx,
        "another node aborted this transaction first (its coordinator seemed gone)",
        true,
        now,
      );
      return;
    }
    tx.phase = "committing";
    tx.nextRetryAt = now + this.config.retryIntervalMs;
    this.counters.committed++;
    for (const p of tx.ops.keys()) this.send(p, { type: "decision", txId, decision: "commit" });
    if (tx.awaited) {
      const results = new Map<NodeName, Uint8Array>();
      for (const [p, v] of tx.votes) if (v.yes) results.set(p, v.result);
      this.ready.results.push({ status: "committed", txId, results });
    }
  }

  /** Time passes: abort overdue transactions, resend what is unanswered. */
  tick(now: number): void {
    for (const tx of this.txs.values()) {
      if (tx.phase === "collecting" && now >= tx.deadline) {
        const silent = [...tx.ops.keys()].filter((p) => !tx.votes.has(p));
        this.counters.timeouts++;
        this.decideAbort(
          tx,
          `no vote from ${silent.join(", ")} within ${this.config.voteTimeoutMs}ms`,
          true,
          now,
        );
        continue;
      }
      if (now < tx.nextRetryAt) continue;
      tx.nextRetryAt = now + this.config.retryIntervalMs;
      if (tx.phase === "collecting") {
        for (const [p, ops] of tx.ops) {
          if (!tx.votes.has(p)) this.send(p, { type: "prepare", txId: tx.txId, ops, startTs: tx.startTs });
        }
      } else if (tx.phase === "committing" || tx.phase === "aborting") {
        const decision: Decision = tx.phase === "committing" ? "commit" : "abort";
        for (const p of tx.ops.keys()) {
          if (!tx.acked.has(p)) this.send(p, { type: "decision", txId: tx.txId, decision });
        }
      }
    }
  }

  /**
   * After a restart: finish every decided transaction from the log. Undecided ones left no
   * trace and are aborted by presumption: their participants ask and hear "abort".
   */
  recover(records: readonly DecisionRecord[], now: number): void {
    for (const r of records) {
      if (this.txs.has(r.txId)) continue;
      const tx: CoordinatorTx = {
        txId: r.txId,
        startTs: 0,
        ops: new Map(r.participants.map((p) => [p, new Uint8Array(0)])),
        phase: r.decision === "commit" ? "committing" : "aborting",
        votes: new Map(),
        acked: new Set(),
        deadline: now,
        nextRetryAt: now + this.config.retryIntervalMs,
        recorded: true,
        awaited: false,
      };
      this.txs.set(r.txId, tx);
      for (const p of r.participants) this.send(p, { type: "decision", txId: r.txId, decision: r.decision });
    }
  }

  /** Drains the outputs. */
  takeReady(): CoordinatorReady {
    const r = this.ready;
    this.ready = { persist: [], messages: [], forget: [], results: [] };
    return r;
  }

  hasReady(): boolean {
    const r = this.ready;
    return r.persist.length + r.messages.length + r.forget.length + r.results.length > 0;
  }

  phaseOf(txId: TxId): CoordinatorPhase | undefined {
    return this.txs.get(txId)?.phase;
  }

  /** Transactions not yet finished (for metrics and tests). */
  active(): { txId: TxId; phase: CoordinatorPhase }[] {
    return [...this.txs.values()].map((t) => ({ txId: t.txId, phase: t.phase }));
  }

  private onVote(from: NodeName, txId: TxId, vote: Vote, now: number): void {
    const tx = this.txs.get(txId);
    if (tx === undefined) {
      // Presumed abort: a transaction we have no trace of is aborted; a yes voter must hear it.
      if (vote.yes) this.send(from, { type: "decision", txId, decision: "abort" });
      else this.counters.ignored++;
      return;
    }
    if (!tx.ops.has(from)) {
      this.counters.ignored++;
      return;
    }
    switch (tx.phase) {
      case "collecting": {
        if (tx.votes.has(from)) {
          this.counters.ignored++;
          return;
        }
        tx.votes.set(from, vote);
        if (!vote.yes) {
          // A no voter holds nothing and needs no abort.
          tx.acked.add(from);
          this.decideAbort(tx, `${from} voted no: ${vote.reason}`, vote.retryable, now);
          return;
        }
        if (tx.votes.size === tx.ops.size) {
          tx.phase = "persisting";
          this.ready.persist.push({ txId, decision: "commit", participants: [...tx.ops.keys()] });
        }
        return;
      }
      case "persisting":
        this.counters.ignored++;
        return;
      case "committing":
        // A yes vote again: our commit was lost. A no vote now is stale (from an earlier
        // prepare attempt that lost; the yes we counted came from a later, durable one) and
        // must not count as an ack, or we would forget a commit someone still needs.
        if (vote.yes && !tx.acked.has(from)) this.send(from, { type: "decision", txId, decision: "commit" });
        else this.counters.ignored++;
        return;
      case "aborting":
        if (vote.yes) {
          if (!tx.acked.has(from)) this.send(from, { type: "decision", txId, decision: "abort" });
          else this.counters.ignored++;
          return;
        }
        // A no voter holds nothing. Should it hold a later yes anyway, presumed abort answers it.
        tx.acked.add(from);
        this.maybeFinish(tx);
        return;
    }
  }

  private onAck(from: NodeName, txId: TxId): void {
    const tx = this.txs.get(txId);
    if (tx === undefined || !tx.ops.has(from) || (tx.phase !== "committing" && tx.phase !== "aborting")) {
      this.counters.ignored++;
      return;
    }
    tx.acked.add(from);
    this.maybeFinish(tx);
  }

  private onOutcomeQuery(from: NodeName, txId: TxId): void {
    const tx = this.txs.get(txId);
    let outcome: Decision | "pending";
    if (tx === undefined) outcome = "abort";
    else if (tx.phase === "committing") outcome = "commit";
    else if (tx.phase === "aborting") outcome = "abort";
    else outcome = "pending"; // collecting or persisting: the commit point may still come
    this.send(from, { type: "outcomeReply", txId, outcome });
  }

  private decideAbort(tx: CoordinatorTx, reason: string, retryable: boolean, now: number): void {
    tx.phase = "aborting";
    tx.nextRetryAt = now + this.config.retryIntervalMs;
    this.counters.aborted++;
    for (const p of tx.ops.keys()) {
      if (!tx.acked.has(p)) this.send(p, { type: "decision", txId: tx.txId, decision: "abort" });
    }
    if (tx.awaited) this.ready.results.push({ status: "aborted", txId: tx.txId, reason, retryable });
    this.maybeFinish(tx);
  }

  private maybeFinish(tx: CoordinatorTx): void {
    if (tx.acked.size < tx.ops.size) return;
    this.txs.delete(tx.txId);
    if (tx.recorded) this.ready.forget.push(tx.txId);
  }

  private send(to: NodeName, message: TxnMessage): void {
    this.ready.messages.push({ to, message });
  }
}
