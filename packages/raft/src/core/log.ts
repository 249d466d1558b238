import type { Storage } from "./storage.js";
import { type Entry, entrySize, type SnapshotMeta } from "./types.js";

/**
 * The log as the core sees it: the host's durable Storage plus the entries (and the snapshot)
 * that the core has accepted but the host has not yet persisted (etcd's raftLog + unstable).
 */
export class RaftLog {
  /** Highest index known committed (commitIndex). */
  committed: number;
  /** Highest index handed to the host to apply (lastApplied). */
  applied: number;
  /** Not yet persisted: a snapshot to install, then entries from `offset`. */
  private unstableSnapshot: SnapshotMeta | undefined;
  private unstable: Entry[] = [];
  private offset: number;

  constructor(
    readonly storage: Storage,
    applied: number,
  ) {
    this.offset = storage.lastIndex() + 1;
    const hs = storage.hardState();
    const first = storage.firstIndex();
    if (applied < first - 1) {
      throw new RangeError(
        `applied index ${applied} is below the snapshot at ${first - 1}: restore it first`,
      );
    }
    this.committed = Math.max(hs.commit, first - 1);
    if (applied > this.committed && applied <= storage.lastIndex()) this.committed = applied;
    this.applied = Math.min(applied, this.committed);
  }

  firstIndex(): number {
    return this.unstableSnapshot ? this.unstableSnapshot.index + 1 : this.storage.firstIndex();
  }

  lastIndex(): number {
    if (this.unstable.length > 0) return this.offset + this.unstable.length - 1;
    if (this.unstableSnapshot) return this.unstableSnapshot.index;
    return this.storage.lastIndex();
  }

  /** The term at `index`, or undefined when compacted or beyond the end. */
  term(index: number): number | undefined {
    if (index < this.firstIndex() - 1 || index > this.lastIndex()) return undefined;
    if (this.unstableSnapshot && index === this.unstableSnapshot.index) return this.unstableSnapshot.term;
    if (index >= this.offset) return this.unstable[index - this.offset]?.term;
    if (index === 0) return 0;
    return this.storage.term(index);
  }

  lastTerm(): number {
    return this.term(this.lastIndex()) ?? 0;
  }

  matchTerm(index: number, term: number): boolean {
    return this.term(index) === term;
  }

  /** §5.4.1: the candidate's log is at least as up-to-date as this one. */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const ourTerm = this.lastTerm();
    return lastTerm > ourTerm || (lastTerm === ourTerm && lastIndex >= this.lastIndex());
  }

  /** Entries in `[lo, hi)`; undefined when `lo` is compacted. At least one entry when any. */
  slice(lo: number, hi: number, maxBytes = Number.POSITIVE_INFINITY): Entry[] | undefined {
    if (lo < this.firstIndex()) return undefined;
    hi = Math.min(hi, this.lastIndex() + 1);
    if (lo >= hi) return [];
    const out: Entry[] = [];
    let bytes = 0;
    if (lo < this.offset) {
      const stored = this.storage.entries(lo, Math.min(hi, this.offset), maxBytes);
      for (const e of stored) bytes += entrySize(e);
      out.push(...stored);
      if (stored.length < Math.min(hi, this.offset) - lo) return out;
    }
    for (let i = Math.max(lo, this.offset); i < hi; i++) {
      const e = this.unstable[i - this.offset]!;
      bytes += entrySize(e);
      if (out.length > 0 && bytes > maxBytes) break;
      out.push(e);
    }
    return out;
  }

  /** The first entry of `entries` that is new or conflicts with this log, or 0. */
  findConflict(entries: readonly Entry[]): number {
    for (const e of entries) {
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return 0;
  }

  /**
   * The largest index ≤ `index` whose term is ≤ `term` (with that term): where a leader whose
   * entry at `index` has `term` may find agreement (fast backtracking, §5.3).
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    for (; index > 0; index--) {
      const ours = this.term(index);
      if (ours === undefined) return { index, term: 0 };
      if (ours <= term) return { index, term: ours };
    }
    return { index: 0, term: 0 };
  }

  /** Appends entries, replacing any suffix from the first one's index. */
  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = entries[0]!.index;
    if (first <= this.committed) throw new Error(`cannot overwrite committed entry ${first}`);
    if (first === this.offset + this.unstable.length) {
      this.unstable.push(...entries);
    } else if (first <= this.offset) {
      // The stored suffix from `first` is replaced when the host persists these.
      this.offset = first;
      this.unstable = [...entries];
    } else {
      this.unstable = this.unstable.slice(0, first - this.offset).concat(entries);
    }
  }

  commitTo(index: number): void {
    if (index > this.committed) {
      if (index > this.lastIndex())
        throw new Error(`commit ${index} is beyond the last index ${this.lastIndex()}`);
      this.committed = index;
    }
  }

  /** Leader rule: commit `index` only if its entry is of the leader's current term (§5.4.2). */
  maybeCommit(index: number, term: number): boolean {
    if (index > this.committed && this.term(index) === term) {
      this.commitTo(index);
      return true;
    }
    return false;
  }

  /** Installs a snapshot: the whole log is replaced by it. */
  restore(snapshot: SnapshotMeta): void {
    this.committed = snapshot.index;
    this.unstableSnapshot = snapshot;
    this.unstable = [];
    this.offset = snapshot.index + 1;
  }

  /**
   * The last index up to which the host has persisted this log. While a received snapshot is
   * not yet persisted, the stored entries are stale (the snapshot replaces them all), so only
   * the stored snapshot's index counts.
   */
  stableIndex(): number {
    if (this.unstableSnapshot) return Math.min(this.offset - 1, this.storage.snapshot().index);
    return this.offset - 1;
  }

  unstableEntries(): readonly Entry[] {
    return this.unstable;
  }

  pendingSnapshot(): SnapshotMeta | undefined {
    return this.unstableSnapshot;
  }

  /** Committed entries not yet handed out for applying. */
  nextCommitted(maxBytes: number): Entry[] {
    const lo = Math.max(this.applied + 1, this.firstIndex());
    if (lo > this.committed) return [];
    return this.slice(lo, this.committed + 1, maxBytes) ?? [];
  }

  hasNextCommitted(): boolean {
    return Math.max(this.applied + 1, this.firstIndex()) <= this.committed;
  }

  /** The host persisted entries up to `index` (with `term`). */
  stableTo(index: number, term: number): void {
    if (index < this.offset) return;
    const e = this.unstable[index - this.offset];
    if (!e || e.term !== term) return;
    this.unstable = this.unstable.slice(index + 1 - this.offset);
    this.offset = index + 1;
  }

  stableSnapTo(index: number): void {
    if (this.unstableSnapshot?.index === index) this.unstableSnapshot = undefined;
  }

  appliedTo(index: number): void {
    if (index > this.applied) this.applied = index;
  }
}
