import type { AcceptorState, AcceptorUpdate, Ballot, Compaction, SlotEntry, Value } from "../core/types.js";
import { ZERO_BALLOT } from "../core/types.js";

/**
 * Where a node keeps its acceptor state. The runtime saves each Ready's update before
 * sending any message of that Ready (a promise or an accepted message is a durable vow).
 */
export interface AcceptorStore {
  /** The state as of the last completed `save`. */
  load(): AcceptorState;
  /** Makes `update` durable, atomically, before returning (one transaction per batch). */
  save(update: AcceptorUpdate): void;
  close(): void;
}

export class StorageError extends Error {
  override readonly name = "StorageError";
}

/**
 * An AcceptorStore in memory. It outlives the node that uses it, so a test can "restart" a
 * node over the same store as a crash would leave it (every save is treated as synced).
 */
export class MemoryAcceptorStore implements AcceptorStore {
  private promised: Ballot = ZERO_BALLOT;
  private readonly accepted = new Map<number, SlotEntry>();
  private readonly chosen = new Map<number, Value>();
  private compacted: Compaction | undefined;
  private closed = false;

  load(): AcceptorState {
    this.closed = false;
    return {
      promised: this.promised,
      accepted: new Map(this.accepted),
      chosen: new Map(this.chosen),
      compacted: this.compacted,
    };
  }

  save(update: AcceptorUpdate): void {
    if (this.closed) throw new StorageError("acceptor store is closed");
    if (update.promised) this.promised = update.promised;
    for (const e of update.accepted) this.accepted.set(e.slot, e);
    for (const c of update.chosen) this.chosen.set(c.slot, c.value);
    const k = update.compact;
    if (k && k.slot > (this.compacted?.slot ?? 0)) {
      for (const s of [...this.accepted.keys()]) if (s <= k.slot) this.accepted.delete(s);
      for (const s of [...this.chosen.keys()]) if (s <= k.slot) this.chosen.delete(s);
      this.compacted = k;
    }
  }

  /** How many accepted and chosen entries are stored (for compaction tests). */
  size(): { accepted: number; chosen: number } {
    return { accepted: this.accepted.size, chosen: this.chosen.size };
  }

  close(): void {
    this.closed = true;
  }
}
