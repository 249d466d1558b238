/**
 * Messages in flight to one follower, bounded by count and bytes (etcd's Inflights): the
 * leader pipelines appends optimistically but stops when too many are unacknowledged.
 */
export class Inflights {
  private readonly items: { index: number; bytes: number }[] = [];
  private bytes = 0;

  constructor(
    readonly maxCount: number,
    readonly maxBytes: number,
  ) {}

  add(index: number, bytes: number): void {
    this.items.push({ index, bytes });
    this.bytes += bytes;
  }

  /** Frees every message whose last entry is at or before `index`. */
  freeLE(index: number): void {
    let n = 0;
    while (n < this.items.length && this.items[n]!.index <= index) {
      this.bytes -= this.items[n]!.bytes;
      n++;
    }
    this.items.splice(0, n);
  }

  full(): boolean {
    return this.items.length >= this.maxCount || this.bytes >= this.maxBytes;
  }

  count(): number {
    return this.items.length;
  }

  reset(): void {
    this.items.length = 0;
    this.bytes = 0;
  }
}

/**
 * - probe: one append at a time until the follower's matchIndex is found (after a rejection,
 *   at the start of a term, after a snapshot).
 * - replicate: nextIndex is advanced optimistically and appends are pipelined.
 * - snapshot: the follower needs a snapshot; nothing else is sent until it reports back.
 */
export type ProgressState = "probe" | "replicate" | "snapshot";

/** The leader's view of one follower (Figure 2's nextIndex and matchIndex, and flow control). */
export class Progress {
  matchIndex = 0;
  nextIndex: number;
  state: ProgressState = "probe";
  /** In probe state: an append was sent and not yet answered. In replicate: inflights full. */
  paused = false;
  pendingSnapshot = 0;
  /** Heard from since the last CheckQuorum round. */
  recentActive = false;
  readonly inflights: Inflights;

  constructor(nextIndex: number, maxInflight: number, maxInflightBytes: number) {
    this.nextIndex = nextIndex;
    this.inflights = new Inflights(maxInflight, maxInflightBytes);
  }

  private reset(state: ProgressState): void {
    this.paused = false;
    this.pendingSnapshot = 0;
    this.state = state;
    this.inflights.reset();
  }

  becomeProbe(): void {
    if (this.state === "snapshot") {
      const pending = this.pendingSnapshot;
      this.reset("probe");
      this.nextIndex = Math.max(this.matchIndex + 1, pending + 1);
    } else {
      this.reset("probe");
      this.nextIndex = this.matchIndex + 1;
    }
  }

  becomeReplicate(): void {
    this.reset("replicate");
    this.nextIndex = this.matchIndex + 1;
  }

  becomeSnapshot(index: number): void {
    this.reset("snapshot");
    this.pendingSnapshot = index;
  }

  /** An acknowledgement of entries up to `index`; true when matchIndex rose. */
  maybeUpdate(index: number): boolean {
    let updated = false;
    if (this.matchIndex < index) {
      this.matchIndex = index;
      updated = true;
      this.paused = false;
    }
    this.nextIndex = Math.max(this.nextIndex, index + 1);
    return updated;
  }

  /**
   * A rejection of the append at `rejected` (its prevLogIndex), with the follower's hint of
   * where agreement may be (`matchHint`). False when the rejection is stale.
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === "replicate") {
      if (rejected <= this.matchIndex) return false;
      this.nextIndex = this.matchIndex + 1;
      return true;
    }
    if (this.nextIndex - 1 !== rejected) return false;
    this.nextIndex = Math.max(Math.min(rejected, matchHint + 1), this.matchIndex + 1);
    this.paused = false;
    return true;
  }

  /** Records an append of `count` entries (`bytes` in total) just sent. */
  sentEntries(count: number, bytes: number): void {
    if (this.state === "replicate") {
      if (count > 0) {
        this.nextIndex += count;
        this.inflights.add(this.nextIndex - 1, bytes);
      }
      this.paused = this.inflights.full();
    } else if (this.state === "probe" && count > 0) {
      this.paused = true;
    }
  }

  isPaused(): boolean {
    return this.state === "snapshot" || this.paused;
  }
}
