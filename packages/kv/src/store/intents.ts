import type { RequestOp, TxnRequest } from "../gen/etcdserverpb/rpc.js";
import type { TxnPart, TxnVote } from "../gen/quorum/kv/v1/command.js";
import { type KeyRange, keyRange } from "./keys.js";

/**
 * Locks of prepared cross-shard transactions ("intents"), kept in memory beside the rows
 * that make them durable (`txn_intent`). A prepared part holds a read lock on what it
 * compares or reads and a write lock on what it writes; every replica applies the same
 * prepares and decisions in log order, so every replica has the same table at the same index.
 */

export type LockMode = "read" | "write";

/** A half-open key interval [lo, hi); `hi` undefined means "to the end of the key space". */
export interface Lock {
  readonly lo: Buffer;
  readonly hi: Buffer | undefined;
  readonly mode: LockMode;
}

export interface Intent {
  readonly txId: Buffer;
  readonly part: TxnPart;
  /** The store's revision when the part was prepared: the transaction's writes land above it. */
  readonly preparedRevision: number;
  readonly vote: TxnVote;
  readonly locks: readonly Lock[];
}

function lockOf(range: KeyRange, mode: LockMode): Lock {
  switch (range.kind) {
    case "one":
      return { lo: range.key, hi: Buffer.concat([range.key, Buffer.from([0])]), mode };
    case "from":
      return { lo: range.key, hi: undefined, mode };
    case "between":
      return { lo: range.key, hi: range.end, mode };
  }
}

export function lockRange(key: Buffer, rangeEnd: Buffer, mode: LockMode): Lock {
  return lockOf(keyRange(Buffer.from(key), Buffer.from(rangeEnd)), mode);
}

function opLocks(ops: readonly RequestOp[], out: Lock[]): void {
  for (const op of ops) {
    if (op.requestRange) out.push(lockRange(op.requestRange.key, op.requestRange.rangeEnd, "read"));
    else if (op.requestPut) out.push(lockRange(op.requestPut.key, Buffer.alloc(0), "write"));
    else if (op.requestDeleteRange)
      out.push(lockRange(op.requestDeleteRange.key, op.requestDeleteRange.rangeEnd, "write"));
    else if (op.requestTxn) out.push(...txnLocks(op.requestTxn));
  }
}

/** What a Txn reads (compares and ranges of both branches) and writes (puts and deletes of both). */
export function txnLocks(txn: TxnRequest): Lock[] {
  const out: Lock[] = txn.compare.map((c) => lockRange(c.key, c.rangeEnd, "read"));
  opLocks(txn.success, out);
  opLocks(txn.failure, out);
  return out;
}

function overlap(a: Lock, b: Lock): boolean {
  const aBeforeBEnd = b.hi === undefined || Buffer.compare(a.lo, b.hi) < 0;
  const bBeforeAEnd = a.hi === undefined || Buffer.compare(b.lo, a.hi) < 0;
  return aBeforeBEnd && bBeforeAEnd;
}

/** Two locks conflict when their ranges overlap and at least one of them writes. */
export function conflicts(a: Lock, b: Lock): boolean {
  return (a.mode === "write" || b.mode === "write") && overlap(a, b);
}

/** The key of a lock on exactly one key ([k, k\0)), as a map key; undefined for a wider range. */
function pointKey(lock: Lock): string | undefined {
  const { lo, hi } = lock;
  if (hi === undefined || hi.length !== lo.length + 1 || hi[lo.length] !== 0) return undefined;
  return hi.compare(lo, 0, lo.length, 0, lo.length) === 0 ? lo.toString("latin1") : undefined;
}

export class IntentTable {
  private readonly byTx = new Map<string, Intent>();
  /**
   * Intents by the key of each one-key lock they hold, and those holding a lock on a wider
   * range: a write to one key (nearly every lock) is checked against the intents locking that
   * key and the ranged ones, not against every prepared transaction.
   */
  private readonly byKey = new Map<string, Set<Intent>>();
  private readonly ranged = new Set<Intent>();

  get size(): number {
    return this.byTx.size;
  }

  get(txId: Uint8Array): Intent | undefined {
    return this.byTx.get(Buffer.from(txId).toString("hex"));
  }

  add(intent: Intent): void {
    this.remove(intent.txId);
    this.byTx.set(intent.txId.toString("hex"), intent);
    for (const lock of intent.locks) {
      const key = pointKey(lock);
      if (key === undefined) {
        this.ranged.add(intent);
        continue;
      }
      let holders = this.byKey.get(key);
      if (!holders) this.byKey.set(key, (holders = new Set()));
      holders.add(intent);
    }
  }

  remove(txId: Uint8Array): void {
    const id = Buffer.from(txId).toString("hex");
    const intent = this.byTx.get(id);
    if (!intent) return;
    this.byTx.delete(id);
    this.ranged.delete(intent);
    for (const lock of intent.locks) {
      const key = pointKey(lock);
      const holders = key === undefined ? undefined : this.byKey.get(key);
      holders?.delete(intent);
      if (holders?.size === 0) this.byKey.delete(key!);
    }
  }

  clear(): void {
    this.byTx.clear();
    this.byKey.clear();
    this.ranged.clear();
  }

  all(): Intent[] {
    return [...this.byTx.values()];
  }

  /** The first intent (of another transaction than `except`) holding a lock that conflicts with one of `locks`. */
  conflict(locks: readonly Lock[], except?: Uint8Array): Intent | undefined {
    return this.conflictWhere(locks, except ? (i) => !i.txId.equals(except) : undefined);
  }

  /** The first intent accepted by `accept` holding a lock that conflicts with one of `locks`. */
  conflictWhere(locks: readonly Lock[], accept?: (intent: Intent) => boolean): Intent | undefined {
    if (this.byTx.size === 0) return undefined;
    for (const intent of this.candidates(locks))
      if ((!accept || accept(intent)) && this.conflictsWith(intent, locks)) return intent;
    return undefined;
  }

  /** Whether `intent` holds a lock that conflicts with one of `locks`. */
  conflictsWith(intent: Intent, locks: readonly Lock[]): boolean {
    return locks.some((mine) => intent.locks.some((held) => conflicts(mine, held)));
  }

  /** The intents that may hold a lock conflicting with one of `locks` (`conflictsWith` decides). */
  private candidates(locks: readonly Lock[]): Iterable<Intent> {
    const keys = locks.map(pointKey);
    if (keys.some((k) => k === undefined)) return this.byTx.values();
    const out = new Set(this.ranged);
    for (const key of keys) for (const intent of this.byKey.get(key!) ?? []) out.add(intent);
    return out;
  }

  /** The lowest prepared revision: no write of a pending transaction can land at or below it. */
  minPreparedRevision(): number | undefined {
    let min: number | undefined;
    for (const i of this.byTx.values())
      if (min === undefined || i.preparedRevision < min) min = i.preparedRevision;
    return min;
  }
}
