export type ConsensusErrorCode =
  | "NOT_LEADER"
  | "TIMEOUT"
  | "SHUTTING_DOWN"
  | "DROPPED"
  | "INVALID_ARGUMENT"
  | "MEMBERSHIP_CHANGE_IN_PROGRESS";

/**
 * Why a proposal, read or membership change did not complete. Whether it may still take
 * effect matters to a client: `NOT_LEADER` and `INVALID_ARGUMENT` mean it was never
 * proposed; `TIMEOUT`, `DROPPED` and `SHUTTING_DOWN` mean the outcome is unknown (it may yet
 * commit), so a retry must be idempotent.
 */
export class ConsensusError extends Error {
  override readonly name = "ConsensusError";
  constructor(
    readonly code: ConsensusErrorCode,
    message: string,
    /** With NOT_LEADER: who this node believes leads, if anyone. */
    readonly leader?: { readonly id: string; readonly address?: string },
  ) {
    super(message);
  }
}

export function isConsensusError(err: unknown, code?: ConsensusErrorCode): err is ConsensusError {
  return err instanceof ConsensusError && (code === undefined || err.code === code);
}
