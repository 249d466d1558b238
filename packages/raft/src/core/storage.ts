import { membersAfter } from "./config.js";
import {
  EMPTY_HARD_STATE,
  EMPTY_SNAPSHOT,
  type Entry,
  entrySize,
  type HardState,
  type SnapshotMeta,
} from "./types.js";

/**
 * What the core reads of the durable log (etcd's storage.go). The core never writes: the host
 * persists each Ready through a LogStore and then calls `advance()`.
 *
 * Indexes: entries `firstIndex()..lastIndex()` are present; `firstIndex() - 1` is the
 * snapshot's index, whose term is still known.
 */
export interface Storage {
  hardState(): HardState;
  /** Entries in `[lo, hi)`, at least one if any, stopping before `maxBytes` is exceeded. */
  entries(lo: number, hi: number, maxBytes?: number): Entry[];
  /** The term of entry `index`, or undefined when it is compacted or beyond the end. */
  term(index: number): number | undefined;
  firstIndex(): number;
  lastIndex(): number;
  snapshot(): SnapshotMeta;
  /** The `config` entries after the snapshot, in order (to rebuild the configuration). */
  configEntries(): Entry[];
}

/** What the host persists from one Ready, in one durable write (group commit). */
export interface LogUpdate {
  readonly hardState?: HardState | undefined;
  /** Replaces the whole log: entries up to and including its index are gone. */
  readonly snapshot?: SnapshotMeta | undefined;
  /** Appended after truncating any entries at or beyond the first one's index. */
  readonly entries?: readonly Entry[] | undefined;
}

/** A Storage the host can write: the in-memory and SQLite logs pass the same tests. */
export interface LogStore extends Storage {
  /**
   * Makes `update` durable, atomically: before returning, or, when it returns a promise, once
   * that resolves (a store that syncs off the event loop). Reads see the update at once either
   * way. The host awaits one save before starting the next.
   */
  save(update: LogUpdate): void | Promise<void>;
  /**
   * Discards entries up to and including `index` (which must be present and applied),
   * recording the snapshot metadata there (its term and configuration).
   */
  compact(index: number): void;
  close(): void;
}

export class StorageError extends Error {
  override readonly name = "StorageError";
}

/** A LogStore in memory: for tests and for nodes that need no durability. */
export class MemoryStorage implements LogStore {
  private hs: HardState = EMPTY_HARD_STATE;
  private snap: SnapshotMeta = EMPTY_SNAPSHOT;
  /** ents[i] has index snap.index + 1 + i. */
  private ents: Entry[] = [];

  /** A fresh log whose first snapshot holds the initial configuration (bootstrap). */
  static bootstrap(members: SnapshotMeta["members"]): MemoryStorage {
    const s = new MemoryStorage();
    s.snap = { index: 0, term: 0, members };
    return s;
  }

  hardState(): HardState {
    return this.hs;
  }

  entries(lo: number, hi: number, maxBytes = Number.POSITIVE_INFINITY): Entry[] {
    if (lo < this.firstIndex()) throw new StorageError(`entry ${lo} is compacted`);
    if (hi > this.lastIndex() + 1) throw new StorageError(`entry ${hi - 1} is beyond the end`);
    const out: Entry[] = [];
    let bytes = 0;
    for (let i = lo; i < hi; i++) {
      const e = this.ents[i - this.snap.index - 1]!;
      bytes += entrySize(e);
      if (out.length > 0 && bytes > maxBytes) break;
      out.push(e);
    }
    return out;
  }

  term(index: number): number | undefined {
    if (index === this.snap.index) return this.snap.term;
    if (index < this.snap.index || index > this.lastIndex()) return undefined;
    return this.ents[index - this.snap.index - 1]!.term;
  }

  firstIndex(): number {
    return this.snap.index + 1;
  }

  lastIndex(): number {
    return this.snap.index + this.ents.length;
  }

  snapshot(): SnapshotMeta {
    return this.snap;
  }

  configEntries(): Entry[] {
    return this.ents.filter((e) => e.type === "config");
  }

  save(update: LogUpdate): void {
    if (update.snapshot) {
      this.snap = update.snapshot;
      this.ents = [];
    }
    const entries = update.entries ?? [];
    if (entries.length > 0) {
      const first = entries[0]!.index;
      if (first <= this.snap.index) throw new StorageError(`entry ${first} is compacted`);
      if (first > this.lastIndex() + 1) {
        throw new StorageError(`entry ${first} would leave a gap after ${this.lastIndex()}`);
      }
      this.ents.length = first - this.snap.index - 1;
      this.ents.push(...entries);
    }
    if (update.hardState) this.hs = update.hardState;
  }

  compact(index: number): void {
    if (index <= this.snap.index) return;
    if (index > this.lastIndex()) throw new StorageError(`cannot compact to ${index} beyond the end`);
    const drop = index - this.snap.index;
    const members = membersAfter(this.snap.members, this.ents.slice(0, drop));
    this.snap = { index, term: this.term(index)!, members };
    this.ents = this.ents.slice(drop);
  }

  close(): void {}
}
