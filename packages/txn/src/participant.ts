import type { InDoubt } from "./core/participant.js";
import type { NodeName, TxId, Vote } from "./core/types.js";

export interface PrepareRequest {
  readonly txId: TxId;
  /** Who to ask about the outcome if the decision never arrives; keep it in the prepare record. */
  readonly coordinator: NodeName;
  /** The resource's own encoding of the work. */
  readonly ops: Uint8Array;
  /** The transaction's age for a deadlock-free conflict rule (smaller is older). */
  readonly startTs: number;
}

/** What a resource knows of one transaction. */
export type ParticipantTxStatus = "unknown" | "prepared" | "committed" | "aborted";

/**
 * A resource that takes part in two-phase commit (a kv shard, a SQLite table, a queue...).
 *
 * The contract:
 * - `prepare` locks what the ops touch, checks them, and makes a prepare record (ops, locks,
 *   coordinator) durable *before* it resolves a yes vote. After a yes it may not abort on its
 *   own: it keeps the locks across restarts until `commit` or `abort`. It may vote no for any
 *   reason (a conflict, a failed check) and then holds nothing. It must not hang: a lock wait
 *   is bounded and ends in a retryable no.
 * - `commit` applies the prepared ops and `abort` discards them, durably, and releases the
 *   locks. Both are idempotent, and harmless for a transaction the resource does not know.
 * - A repeated `prepare` of a prepared or finished transaction answers as before (yes for a
 *   prepared or committed one, no for an aborted one) and changes nothing.
 * - `inDoubt` lists the prepared transactions (after a restart: those in durable storage), so
 *   the node can ask their coordinators for the outcome.
 *
 * A kv shard implements it by writing the prepare record and the outcome through its
 * consensus log instead of a local file; the protocol above it does not change.
 */
export interface Participant {
  prepare(request: PrepareRequest): Promise<Vote>;
  commit(txId: TxId): Promise<void>;
  abort(txId: TxId): Promise<void>;
  status(txId: TxId): Promise<ParticipantTxStatus>;
  inDoubt(): Promise<InDoubt[]>;
}
