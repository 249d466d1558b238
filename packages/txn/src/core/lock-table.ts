import type { TxId } from "./types.js";
import { isOlder } from "./types.js";

export interface LockRequest {
  readonly txId: TxId;
  /** Age for wait-die: smaller is older. */
  readonly startTs: number;
  readonly keys: readonly string[];
}

export type LockAnswer =
  | { readonly kind: "granted" }
  /** The requester is older than every holder in its way: it may wait for them. */
  | { readonly kind: "wait"; readonly holders: readonly TxId[] }
  /** The requester is younger than a holder: wait-die says it dies (aborts, retries later). */
  | { readonly kind: "die"; readonly holder: TxId; readonly key: string };

/**
 * Exclusive per-key locks with the wait-die rule (Rosenkrantz, Stearns and Lewis, 1978): an
 * older transaction may wait for a younger one, a younger one that meets an older one dies.
 * Waits only ever point from older to younger, so no cycle and no deadlock can form.
 *
 * A request takes all its keys at once or none, so a waiting transaction holds nothing.
 * Pure: the caller owns waiting (queues, timeouts) and calls `acquire` again after a release.
 */
export class LockTable {
  private readonly holders = new Map<string, { txId: TxId; startTs: number }>();
  private readonly held = new Map<TxId, Set<string>>();

  acquire(req: LockRequest): LockAnswer {
    const blockers = new Map<TxId, { startTs: number; key: string }>();
    for (const key of req.keys) {
      const h = this.holders.get(key);
      if (h !== undefined && h.txId !== req.txId && !blockers.has(h.txId)) {
        blockers.set(h.txId, { startTs: h.startTs, key });
      }
    }
    for (const [txId, b] of blockers) {
      if (!isOlder(req, { txId, startTs: b.startTs })) return { kind: "die", holder: txId, key: b.key };
    }
    if (blockers.size > 0) return { kind: "wait", holders: [...blockers.keys()] };
    let mine = this.held.get(req.txId);
    if (mine === undefined) {
      mine = new Set();
      this.held.set(req.txId, mine);
    }
    for (const key of req.keys) {
      this.holders.set(key, { txId: req.txId, startTs: req.startTs });
      mine.add(key);
    }
    return { kind: "granted" };
  }

  /** Releases every lock of `txId`; returns the keys it held. */
  release(txId: TxId): string[] {
    const mine = this.held.get(txId);
    if (mine === undefined) return [];
    this.held.delete(txId);
    for (const key of mine) {
      if (this.holders.get(key)?.txId === txId) this.holders.delete(key);
    }
    return [...mine];
  }

  holderOf(key: string): TxId | undefined {
    return this.holders.get(key)?.txId;
  }

  /** Number of keys locked. */
  size(): number {
    return this.holders.size;
  }

  lockedBy(txId: TxId): string[] {
    return [...(this.held.get(txId) ?? [])];
  }
}
