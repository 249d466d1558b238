import { TxnError } from "../errors.js";
import type { Decision, NodeName, Outgoing, TxId, TxnMessage, Vote } from "./types.js";
import { voteFields } from "./types.js";

export interface ParticipantConfig {
  /** A prepared participant that has heard no decision asks its coordinator this often. */
  readonly outcomeQueryIntervalMs: number;
}

export const defaultParticipantConfig: ParticipantConfig = { outcomeQueryIntervalMs: 1_000 };

/** Work the host hands to the resource (the `Participant`), then reports back. */
export type ParticipantAction =
  /** Lock, check, write a durable prepare record, then call `prepared` with the vote. */
  | {
      readonly kind: "prepare";
      readonly txId: TxId;
      readonly coordinator: NodeName;
      readonly ops: Uint8Array;
      readonly startTs: number;
    }
  /** Apply (commit) or discard (abort) durably and release locks, then call `finished`. */
  | { readonly kind: "commit"; readonly txId: TxId }
  | { readonly kind: "abort"; readonly txId: TxId };

export interface ParticipantReady {
  /** Run these on the resource. */
  readonly actions: ParticipantAction[];
  readonly messages: Outgoing[];
}

export type ParticipantPhase =
  /** The resource is preparing (locking, checking, writing its prepare record). */
  | "preparing"
  /** Voted yes; holds locks; waits for the decision and asks for it when it hears nothing. */
  | "prepared"
  /** The resource is applying the decision; the ack follows. */
  | "finishing";

interface ParticipantTx {
  readonly txId: TxId;
  readonly coordinator: NodeName;
  phase: ParticipantPhase;
  /** An abort that arrived while the resource was still preparing. */
  abortRequested: boolean;
  decision: Decision | undefined;
  result: Uint8Array;
  nextQueryAt: number;
}

export interface ParticipantCounters {
  prepared: number;
  votedNo: number;
  committed: number;
  aborted: number;
  outcomeQueries: number;
  ignored: number;
}

/** A prepared transaction found in durable storage after a restart. */
export interface InDoubt {
  readonly txId: TxId;
  readonly coordinator: NodeName;
  /** The result of its yes vote, from the prepare record, so a repeated prepare gets the same vote. */
  readonly result: Uint8Array;
}

/**
 * The participant side of two-phase commit as a pure state machine. It owns the protocol, not
 * the data: the resource (a `Participant`) locks, writes and applies when the host runs the
 * actions this core emits.
 *
 * Rules it keeps:
 * - Vote only after the resource's prepare record is durable (the host calls `prepared`).
 * - Once it voted yes it never decides alone: it keeps its locks until it hears the
 *   coordinator's decision, and asks for it (termination protocol) when it hears nothing.
 * - Repeated prepares and decisions are answered idempotently; an abort that overtakes its
 *   prepare is applied once the prepare finishes, without voting.
 */
export class ParticipantCore {
  private readonly txs = new Map<TxId, ParticipantTx>();
  private ready: { actions: ParticipantAction[]; messages: Outgoing[] } = { actions: [], messages: [] };
  readonly counters: ParticipantCounters = {
    prepared: 0,
    votedNo: 0,
    committed: 0,
    aborted: 0,
    outcomeQueries: 0,
    ignored: 0,
  };

  constructor(private readonly config: ParticipantConfig = defaultParticipantConfig) {
    if (!(config.outcomeQueryIntervalMs > 0)) {
      throw new TxnError("INVALID_ARGUMENT", "outcomeQueryIntervalMs must be positive");
    }
  }

  /** One door for every message from a coordinator. */
  step(from: NodeName, message: TxnMessage, now: number): void {
    switch (message.type) {
      case "prepare":
        this.onPrepare(from, message.txId, message.ops, message.startTs, now);
        return;
      case "decision":
        this.onDecision(from, message.txId, message.decision);
        return;
      case "outcomeReply":
        if (message.outcome !== "pending") this.onDecision(from, message.txId, message.outcome);
        return;
      default:
        this.counters.ignored++;
    }
  }

  /** The resource finished preparing `txId`: its prepare record is durable if the vote is yes. */
  prepared(txId: TxId, vote: Vote, now: number): void {
    const tx = this.txs.get(txId);
    if (tx === undefined || tx.phase !== "preparing") {
      this.counters.ignored++;
      return;
    }
    if (!vote.yes) {
      this.counters.votedNo++;
      this.txs.delete(txId);
      // The coordinator already aborted and waits for our ack rather than a vote.
      if (tx.abortRequested) this.send(tx.coordinator, { type: "ack", txId });
      else this.send(tx.coordinator, { type: "vote", txId, ...voteFields(vote) });
      return;
    }
    this.counters.prepared++;
    if (tx.abortRequested) {
      tx.phase = "finishing";
      tx.decision = "abort";
      this.ready.actions.push({ kind: "abort", txId });
      return;
    }
    tx.phase = "prepared";
    tx.result = vote.result;
    tx.nextQueryAt = now + this.config.outcomeQueryIntervalMs;
    this.send(tx.coordinator, { type: "vote", txId, ...voteFields(vote) });
  }

  /** The resource applied the decision durably: acknowledge it. */
  finished(txId: TxId): void {
    const tx = this.txs.get(txId);
    if (tx === undefined || tx.phase !== "finishing") {
      this.counters.ignored++;
      return;
    }
    if (tx.decision === "commit") this.counters.committed++;
    else this.counters.aborted++;
    this.txs.delete(txId);
    this.send(tx.coordinator, { type: "ack", txId });
  }

  /**
   * The resource failed to apply the decision (e.g. a storage error): stay prepared, keep the
   * locks, and ask again, so the decision is retried rather than lost.
   */
  finishFailed(txId: TxId): void {
    const tx = this.txs.get(txId);
    if (tx === undefined || tx.phase !== "finishing") return;
    tx.phase = "prepared";
    tx.decision = undefined;
    tx.nextQueryAt = 0;
  }

  /** Time passes: prepared transactions that heard nothing ask their coordinator. */
  tick(now: number): void {
    for (const tx of this.txs.values()) {
      if (tx.phase !== "prepared" || now < tx.nextQueryAt) continue;
      tx.nextQueryAt = now + this.config.outcomeQueryIntervalMs;
      this.counters.outcomeQueries++;
      this.send(tx.coordinator, { type: "outcomeQuery", txId: tx.txId });
    }
  }

  /** After a restart: the resource's prepared transactions are in doubt until someone says. */
  recover(inDoubt: readonly InDoubt[], now: number): void {
    for (const d of inDoubt) {
      if (this.txs.has(d.txId)) continue;
      this.txs.set(d.txId, {
        txId: d.txId,
        coordinator: d.coordinator,
        phase: "prepared",
        abortRequested: false,
        decision: undefined,
        result: d.result,
        nextQueryAt: now,
      });
    }
    this.tick(now);
  }

  takeReady(): ParticipantReady {
    const r = this.ready;
    this.ready = { actions: [], messages: [] };
    return r;
  }

  phaseOf(txId: TxId): ParticipantPhase | undefined {
    return this.txs.get(txId)?.phase;
  }

  active(): { txId: TxId; phase: ParticipantPhase }[] {
    return [...this.txs.values()].map((t) => ({ txId: t.txId, phase: t.phase }));
  }

  private onPrepare(from: NodeName, txId: TxId, ops: Uint8Array, startTs: number, now: number): void {
    const tx = this.txs.get(txId);
    if (tx === undefined) {
      // Unknown here; the resource knows whether it already prepared or finished it and
      // answers idempotently.
      this.txs.set(txId, {
        txId,
        coordinator: from,
        phase: "preparing",
        abortRequested: false,
        decision: undefined,
        result: new Uint8Array(0),
        nextQueryAt: now,
      });
      this.ready.actions.push({ kind: "prepare", txId, coordinator: from, ops, startTs });
      return;
    }
    if (tx.phase === "prepared" && from === tx.coordinator) {
      // Our vote was lost or is late: say it again.
      this.send(from, { type: "vote", txId, ...voteFields({ yes: true, result: tx.result }) });
      return;
    }
    this.counters.ignored++;
  }

  private onDecision(from: NodeName, txId: TxId, decision: Decision): void {
    const tx = this.txs.get(txId);
    if (tx === undefined) {
      // Already finished (the ack was lost) or never prepared: the resource applies the
      // decision idempotently (a no-op then), and the coordinator gets its ack.
      this.txs.set(txId, {
        txId,
        coordinator: from,
        phase: "finishing",
        abortRequested: false,
        decision,
        result: new Uint8Array(0),
        nextQueryAt: 0,
      });
      this.ready.actions.push({ kind: decision, txId });
      return;
    }
    switch (tx.phase) {
      case "preparing":
        // Commit cannot come before our yes vote; abort can (a timeout or another's no vote).
        if (decision === "abort") tx.abortRequested = true;
        else this.counters.ignored++;
        return;
      case "prepared":
        tx.phase = "finishing";
        tx.decision = decision;
        this.ready.actions.push({ kind: decision, txId });
        return;
      case "finishing":
        this.counters.ignored++;
        return;
    }
  }

  private send(to: NodeName, message: TxnMessage): void {
    this.ready.messages.push({ to, message });
  }
}
