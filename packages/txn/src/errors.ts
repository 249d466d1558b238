export type TxnErrorCode =
  /** The caller's mistake: empty transaction, duplicate participant, malformed ops. */
  | "INVALID_ARGUMENT"
  /** A lock conflict lost by the wait-die rule, or a lock wait that timed out: try again. */
  | "CONFLICT"
  /** A participant's check failed (e.g. a balance would go below its floor). */
  | "FAILED_PRECONDITION"
  /** The node is closed or its storage failed. */
  | "UNAVAILABLE"
  /**
   * The coordinator stopped after it began writing its decision: the transaction may have
   * committed. Do not blindly retry a non-idempotent transaction; read to find out.
   */
  | "OUTCOME_UNKNOWN";

/** An error a person can read; `retryable` says whether running the transaction again may work. */
export class TxnError extends Error {
  override readonly name = "TxnError";
  constructor(
    readonly code: TxnErrorCode,
    message: string,
  ) {
    super(message);
  }

  get retryable(): boolean {
    return this.code === "CONFLICT" || this.code === "UNAVAILABLE";
  }
}
