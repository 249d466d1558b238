/** One application command at its place in the replicated log. */
export interface LogEntry {
  /** Position in the log, from 1, without gaps among all entries (the protocol's own included). */
  readonly index: number;
  /** The bytes given to `ReplicatedLog.propose`. */
  readonly command: Uint8Array;
}

/**
 * A point-in-time image of a state machine, as of `index` (every entry up to and including
 * it is reflected; none after). Streamed in chunks so that a large store need not fit in one
 * message or in memory.
 */
export interface Snapshot {
  readonly index: number;
  /** Total size in bytes, for progress and limits. */
  readonly size: number;
  /** Yields the image's bytes in order. May be called more than once (a resend). */
  chunks(): AsyncIterable<Uint8Array>;
}

/**
 * What the application gives a ReplicatedLog: a deterministic machine that applies committed
 * commands in log order. Every replica applies the same commands in the same order and so
 * reaches the same state (state machine safety).
 *
 * Durability: `apply` must make its effects and the new applied index durable together (one
 * SQLite transaction, for example), so that after a crash `appliedIndex()` says exactly what
 * the durable state contains. The log then replays from `appliedIndex() + 1`, never applying
 * an entry twice or skipping one.
 */
export interface StateMachine<Result = unknown> {
  /** The index of the last entry reflected in the durable state (0 when empty). */
  appliedIndex(): number;
  /**
   * Applies a batch of consecutive committed entries (ascending index, after
   * `appliedIndex()`; indexes of the protocol's own entries may be skipped). Returns one
   * result per entry, handed to the proposer. A command the application rejects yields an
   * error *result*; throwing means the replica cannot continue and stops it.
   */
  apply(entries: readonly LogEntry[]): Result[];
  /** Takes a consistent image of the state as of `appliedIndex()`. */
  snapshot(): Promise<Snapshot>;
  /** Replaces the whole state with a snapshot's image, atomically; afterwards `appliedIndex()` is `snapshot.index`. */
  restore(snapshot: Snapshot): Promise<void>;
}
