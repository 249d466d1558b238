import type { Entry, NodeId } from "../core/types.js";

/** What the checker sees of one node at one moment. */
export interface NodeView {
  readonly id: NodeId;
  readonly role: string;
  readonly term: number;
  readonly commitIndex: number;
  /** Index of the first entry in `entries` (entries before it are compacted). */
  readonly firstIndex: number;
  readonly entries: readonly Entry[];
  /** Term of the entry just before `firstIndex` (the snapshot's). */
  readonly snapshotTerm: number;
}

export class SafetyViolation extends Error {
  override readonly name = "SafetyViolation";
}

/**
 * Checks the five properties of Figure 3 of the Raft paper over a history of observations:
 * call `observe` after every step, `applied` for every entry a node applies.
 */
export class SafetyChecker {
  /** term → the leader elected in it. */
  private readonly leaders = new Map<number, NodeId>();
  /** The log a node held while leading, per (node, term): it may only grow. */
  private readonly leaderLogs = new Map<string, Map<number, number>>();
  /**
   * index → the entry's term, and the term of the node that first reported it committed (an
   * upper bound on the term in which it was committed: leaders of later terms must hold it).
   */
  private readonly committed = new Map<number, { term: number; commitTerm: number }>();
  /** "index/term" → "prevTerm/type/data" as first seen. */
  private readonly entrySigs = new Map<string, string>();
  /** index → the entry some node applied there. */
  private readonly appliedAt = new Map<number, { term: number; data: string }>();
  /**
   * Entry objects already checked for log matching, with the predecessor term they were
   * checked with. Entries are immutable and a log hands out the same objects step after
   * step, so re-checking one is the same computation with the same answer: skipping it keeps
   * the check after every step linear in the log with no string building (it was most of a
   * simulation's time).
   */
  private readonly matched = new WeakMap<Entry, number>();
  /** Entry objects already recorded as committed (same object, same index and term). */
  private readonly recorded = new WeakSet<Entry>();

  observe(nodes: readonly NodeView[]): void {
    for (const n of nodes) {
      if (n.role === "leader") this.checkLeader(n);
      // Record committed entries (they must never change).
      for (const e of n.entries) {
        if (e.index > n.commitIndex) break;
        if (this.recorded.has(e)) continue;
        this.recorded.add(e);
        const known = this.committed.get(e.index);
        if (known === undefined) this.committed.set(e.index, { term: e.term, commitTerm: n.term });
        else if (known.term !== e.term) {
          throw new SafetyViolation(
            `state machine safety: ${n.id} has term ${e.term} at committed index ${e.index}, committed with term ${known.term}`,
          );
        }
      }
    }
    this.checkLogMatching(nodes);
    for (const n of nodes) if (n.role === "leader") this.checkLeaderCompleteness(n);
  }

  applied(id: NodeId, entry: Entry): void {
    const data = Buffer.from(entry.data).toString("hex") + entry.type;
    const known = this.appliedAt.get(entry.index);
    if (known === undefined) this.appliedAt.set(entry.index, { term: entry.term, data });
    else if (known.term !== entry.term || known.data !== data) {
      throw new SafetyViolation(
        `state machine safety: ${id} applied a different entry at index ${entry.index} (term ${entry.term} vs ${known.term})`,
      );
    }
  }

  /** Election safety: at most one leader per term. Leader append-only: its log only grows. */
  private checkLeader(n: NodeView): void {
    const prior = this.leaders.get(n.term);
    if (prior !== undefined && prior !== n.id) {
      throw new SafetyViolation(`election safety: ${prior} and ${n.id} both lead term ${n.term}`);
    }
    this.leaders.set(n.term, n.id);
    const key = `${n.id}@${n.term}`;
    const seen = this.leaderLogs.get(key) ?? new Map<number, number>();
    const current = new Map(n.entries.map((e) => [e.index, e.term]));
    for (const [index, term] of seen) {
      if (index < n.firstIndex) continue;
      if (current.get(index) !== term) {
        throw new SafetyViolation(
          `leader append-only: ${n.id} (term ${n.term}) lost or changed entry ${index}`,
        );
      }
    }
    for (const [index, term] of current) seen.set(index, term);
    this.leaderLogs.set(key, seen);
  }

  /**
   * Log matching: if two logs hold an entry with the same index and term, they are identical
   * up to it. Checked by induction: every (index, term) must always have the same content and
   * the same term before it, in every log.
   */
  private checkLogMatching(nodes: readonly NodeView[]): void {
    for (const n of nodes) {
      let prevTerm = n.snapshotTerm;
      for (const e of n.entries) {
        if (this.matched.get(e) === prevTerm) {
          prevTerm = e.term;
          continue;
        }
        const key = `${e.index}/${e.term}`;
        const sig = `${prevTerm}/${e.type}/${Buffer.from(e.data).toString("hex")}`;
        const known = this.entrySigs.get(key);
        if (known === undefined) this.entrySigs.set(key, sig);
        else if (known !== sig) {
          throw new SafetyViolation(
            `log matching: ${n.id} holds entry ${e.index} of term ${e.term} with a different content or predecessor`,
          );
        }
        this.matched.set(e, prevTerm);
        prevTerm = e.term;
      }
    }
  }

  /** Leader completeness: a leader holds every entry committed in earlier terms. */
  private checkLeaderCompleteness(n: NodeView): void {
    const terms = new Map(n.entries.map((e) => [e.index, e.term]));
    for (const [index, { term, commitTerm }] of this.committed) {
      if (commitTerm >= n.term || index < n.firstIndex) continue;
      if (terms.get(index) !== term) {
        throw new SafetyViolation(
          `leader completeness: leader ${n.id} of term ${n.term} lacks committed entry ${index} (term ${term})`,
        );
      }
    }
  }
}
