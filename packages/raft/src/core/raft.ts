import { applyConfChange, checkConfChange, decodeConfChange, encodeConfChange } from "./config.js";
import { RaftLog } from "./log.js";
import { Progress } from "./progress.js";
import type { Storage } from "./storage.js";
import {
  type ConfChange,
  type Entry,
  type EntryType,
  entrySize,
  type HardState,
  type Message,
  type MessageFields,
  NONE,
  type NodeId,
  type RaftMember,
  type ReadState,
  type Role,
  type SnapshotMeta,
  type SoftState,
} from "./types.js";

export interface RaftConfig {
  readonly id: NodeId;
  /** The durable log; the core only reads it. Its snapshot holds the initial configuration. */
  readonly storage: Storage;
  /** A seeded PRNG in [0, 1): the only source of randomness (election timeouts). */
  readonly random: () => number;
  /** Ticks without hearing from a leader before an election; randomized in [n, 2n). Default 10. */
  readonly electionTicks?: number;
  /** Ticks between a leader's heartbeats. Default 1. */
  readonly heartbeatTicks?: number;
  /** The state machine's applied index on start (entries after it are handed out again). */
  readonly applied?: number;
  /** Ask for pre-votes before disrupting a term (§9.6 of the dissertation). Default true. */
  readonly preVote?: boolean;
  /** A leader steps down when it has not heard from a quorum in an election timeout. Default true. */
  readonly checkQuorum?: boolean;
  /**
   * `safe`: ReadIndex confirms leadership with a round of heartbeats. `lease`: relies on
   * CheckQuorum's lease (bounded clock drift); needs `checkQuorum`. Default `safe`.
   */
  readonly readOnly?: "safe" | "lease";
  /** Most entries in one AppendEntries. Default 1024. */
  readonly maxEntriesPerMessage?: number;
  /** Most entry bytes in one AppendEntries (at least one entry is always sent). Default 1 MiB. */
  readonly maxBytesPerMessage?: number;
  /** Most unacknowledged AppendEntries per follower in replicate state. Default 256. */
  readonly maxInflight?: number;
  /** Most unacknowledged entry bytes per follower. Default 32 MiB. */
  readonly maxInflightBytes?: number;
  /** Most bytes of committed entries in one Ready. Default 8 MiB. */
  readonly maxCommittedBytesPerReady?: number;
}

/**
 * What the host must do, in this order: send `earlyMessages` (optional: they may also go with
 * the rest), persist, then send `messages`, then apply; then `advance(ready)`.
 */
export interface Ready {
  /** Changed leader or role (not persisted). */
  readonly softState: SoftState | undefined;
  /** Persist when defined. */
  readonly hardState: HardState | undefined;
  /** A snapshot to persist and install into the state machine (before `entries`). */
  readonly snapshot: SnapshotMeta | undefined;
  /** Entries to persist, replacing any stored suffix from the first one's index. */
  readonly entries: readonly Entry[];
  /** To send once the above is durable. */
  readonly messages: readonly Message[];
  /**
   * A leader's replication messages (append, heartbeat, snapshot, timeoutNow) of a term that
   * is already durable: the host may send them before persisting this Ready, so followers
   * write in parallel with the leader (§10.2.1 of the dissertation). The leader counts its
   * own entries toward commitment only once `advance` says they are persisted.
   */
  readonly earlyMessages: readonly Message[];
  /** Committed entries to apply, in order (they may be among `entries`: persist first). */
  readonly committedEntries: readonly Entry[];
  /** ReadIndex answers: serve each read once the state machine has applied its index. */
  readonly readStates: readonly ReadState[];
}

export type ProposeResult =
  | { readonly ok: true; readonly index: number; readonly term: number }
  | {
      readonly ok: false;
      /** `termNotCommitted`: retry once the new leader's first entry commits (soon). */
      readonly reason: "notLeader" | "transferring" | "changeInProgress" | "termNotCommitted" | "invalid";
      readonly message: string;
    };

export interface FollowerStatus {
  readonly id: NodeId;
  readonly matchIndex: number;
  readonly nextIndex: number;
  readonly state: Progress["state"];
  readonly learner: boolean;
}

export interface RaftStatus {
  readonly id: NodeId;
  readonly role: Role;
  readonly term: number;
  readonly vote: NodeId;
  readonly leader: NodeId;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly lastIndex: number;
  /** The last index the host has persisted (entries after it are still in memory only). */
  readonly stableIndex: number;
  readonly firstIndex: number;
  readonly members: readonly RaftMember[];
  readonly leadTransferee: NodeId;
  /** The leader's view of each follower. */
  readonly progress: readonly FollowerStatus[];
}

type CampaignType = "preElection" | "election" | "transfer";
/** A leader's messages that depend on nothing but its (durable) term: see `Ready.earlyMessages`. */
const EARLY_TYPES: ReadonlySet<Message["type"]> = new Set(["append", "heartbeat", "snapshot", "timeoutNow"]);
const CAMPAIGN_TRANSFER = "transfer";

interface ReadRequest {
  readonly context: string;
  readonly from: NodeId;
  readonly index: number;
  readonly acks: Set<NodeId>;
}

/**
 * The Raft core: a deterministic state machine driven by `step`, `tick` and the proposal
 * calls, whose effects are collected in a `Ready` (etcd's raft.go + rawnode.go).
 */
export class Raft {
  readonly id: NodeId;
  term = 0;
  /** votedFor */
  vote: NodeId = NONE;
  leader: NodeId = NONE;
  role: Role = "follower";
  readonly log: RaftLog;

  private readonly random: () => number;
  private readonly electionTimeout: number;
  private readonly heartbeatTimeout: number;
  private readonly preVote: boolean;
  private readonly checkQuorum: boolean;
  private readonly readOnly: "safe" | "lease";
  private readonly maxEntriesPerMessage: number;
  private readonly maxBytesPerMessage: number;
  private readonly maxInflight: number;
  private readonly maxInflightBytes: number;
  private readonly maxCommittedBytesPerReady: number;

  /** The configuration of the snapshot, then one per config entry in the log (in effect once appended). */
  private baseMembers: readonly RaftMember[];
  private configs: { index: number; members: readonly RaftMember[] }[] = [];
  private progress = new Map<NodeId, Progress>();
  private votes = new Map<NodeId, boolean>();

  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout = 0;
  private leadTransferee: NodeId = NONE;

  private readRequests = new Map<string, ReadRequest>();
  private readQueue: string[] = [];
  /** ReadIndex requests that arrived before this leader committed an entry of its term. */
  private pendingReads: { context: string; from: NodeId }[] = [];

  private msgs: Message[] = [];
  private readStates: ReadState[] = [];
  private prevHardState: HardState;
  private prevSoftState: SoftState;

  constructor(config: RaftConfig) {
    this.id = config.id;
    if (this.id === NONE) throw new RangeError("a node id must not be empty");
    this.random = config.random;
    this.electionTimeout = config.electionTicks ?? 10;
    this.heartbeatTimeout = config.heartbeatTicks ?? 1;
    if (this.heartbeatTimeout < 1 || this.electionTimeout <= this.heartbeatTimeout) {
      throw new RangeError("electionTicks must exceed heartbeatTicks, which must be at least 1");
    }
    this.preVote = config.preVote ?? true;
    this.checkQuorum = config.checkQuorum ?? true;
    this.readOnly = config.readOnly ?? "safe";
    if (this.readOnly === "lease" && !this.checkQuorum) {
      throw new RangeError("lease reads need checkQuorum");
    }
    this.maxEntriesPerMessage = config.maxEntriesPerMessage ?? 1024;
    this.maxBytesPerMessage = config.maxBytesPerMessage ?? 1024 * 1024;
    this.maxInflight = config.maxInflight ?? 256;
    this.maxInflightBytes = config.maxInflightBytes ?? 32 * 1024 * 1024;
    this.maxCommittedBytesPerReady = config.maxCommittedBytesPerReady ?? 8 * 1024 * 1024;

    const storage = config.storage;
    this.log = new RaftLog(storage, config.applied ?? 0);
    const hs = storage.hardState();
    this.baseMembers = storage.snapshot().members;
    for (const e of storage.configEntries()) this.pushConfig(e);
    this.becomeFollower(hs.term, NONE);
    this.vote = hs.vote;
    this.prevHardState = hs;
    this.prevSoftState = { leader: this.leader, role: this.role };
  }

  // ---- configuration ----

  members(): readonly RaftMember[] {
    return this.configs.at(-1)?.members ?? this.baseMembers;
  }

  private voters(): NodeId[] {
    return this.members()
      .filter((m) => !m.learner)
      .map((m) => m.id);
  }

  private isVoter(id: NodeId): boolean {
    return this.members().some((m) => m.id === id && !m.learner);
  }

  private quorum(): number {
    return Math.floor(this.voters().length / 2) + 1;
  }

  /** Can this node become leader? Only a voter of its latest configuration. */
  promotable(): boolean {
    return this.isVoter(this.id);
  }

  private pushConfig(e: Entry): void {
    if (e.type !== "config") return;
    const change = decodeConfChange(e.data);
    if (!change) return;
    this.configs.push({ index: e.index, members: applyConfChange(this.members(), change) });
  }

  /** Appends to the log, rolling back configurations of a replaced suffix (§4.1 of the dissertation). */
  private appendToLog(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = entries[0]!.index;
    const before = this.members();
    this.log.append(entries);
    while (this.configs.length > 0 && this.configs.at(-1)!.index >= first) this.configs.pop();
    for (const e of entries) this.pushConfig(e);
    if (this.members() !== before) this.onConfigChanged();
  }

  private onConfigChanged(): void {
    const members = this.members();
    const ids = new Set(members.map((m) => m.id));
    for (const id of [...this.progress.keys()]) if (!ids.has(id)) this.progress.delete(id);
    for (const m of members) {
      if (this.progress.has(m.id)) continue;
      const pr = new Progress(this.log.lastIndex() + 1, this.maxInflight, this.maxInflightBytes);
      // A new member has not had the chance to answer yet; do not count it out for CheckQuorum.
      pr.recentActive = true;
      this.progress.set(m.id, pr);
    }
    if (this.role === "leader" && this.leadTransferee !== NONE && !this.isVoter(this.leadTransferee)) {
      this.leadTransferee = NONE;
    }
  }

  // ---- state transitions ----

  private reset(term: number): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = NONE;
    }
    this.leader = NONE;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.randomizedElectionTimeout = this.electionTimeout + Math.floor(this.random() * this.electionTimeout);
    this.leadTransferee = NONE;
    this.votes.clear();
    this.progress.clear();
    const last = this.log.lastIndex();
    for (const m of this.members()) {
      const pr = new Progress(last + 1, this.maxInflight, this.maxInflightBytes);
      // Its own log counts only as far as it is durable (§10.2.1).
      if (m.id === this.id) pr.matchIndex = this.log.stableIndex();
      this.progress.set(m.id, pr);
    }
    this.readRequests.clear();
    this.readQueue = [];
    this.pendingReads = [];
  }

  private becomeFollower(term: number, leader: NodeId): void {
    this.reset(term);
    this.role = "follower";
    this.leader = leader;
  }

  private becomePreCandidate(): void {
    // Neither the term nor the vote changes: a pre-vote disrupts nobody.
    this.votes.clear();
    this.leader = NONE;
    this.role = "preCandidate";
  }

  private becomeCandidate(): void {
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = "candidate";
  }

  private becomeLeader(): void {
    this.reset(this.term);
    this.leader = this.id;
    this.role = "leader";
    const self = this.progress.get(this.id);
    if (self) {
      self.becomeReplicate();
      self.recentActive = true;
    }
    // §8: a new leader commits a blank no-op entry of its own term, which commits the entries
    // of earlier terms before it (they cannot be committed by counting replicas, Figure 8).
    this.appendEntries([{ type: "noop", data: new Uint8Array(0) }]);
  }

  // ---- the one door for messages from peers ----

  /** Handles a message from a peer. Messages not addressed to this node are ignored. */
  step(m: Message): void {
    if (m.to !== this.id || m.from === this.id || m.from === NONE) return;
    if (m.term > this.term) {
      if (m.type === "vote" || m.type === "preVote") {
        const force = m.context === CAMPAIGN_TRANSFER;
        const inLease =
          this.checkQuorum && this.leader !== NONE && this.electionElapsed < this.electionTimeout;
        // §4.2.3 of the dissertation: a server that heard from a leader within the minimum
        // election timeout ignores vote requests, so a removed or partitioned server cannot
        // disrupt a healthy cluster.
        if (!force && inLease) return;
      }
      if (m.type === "preVote") {
        // Never change the term in answer to a pre-vote.
      } else if (m.type === "preVoteResp" && !m.reject) {
        // A granted pre-vote carries the future term; counted in stepCandidate.
      } else if (m.type === "append" || m.type === "heartbeat" || m.type === "snapshot") {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, NONE);
      }
    } else if (m.term < this.term) {
      if ((this.checkQuorum || this.preVote) && (m.type === "heartbeat" || m.type === "append")) {
        // A stale leader, perhaps cut off: tell it the term so it steps down (with CheckQuorum
        // or PreVote this node may never otherwise raise its term past it).
        this.send({ type: "appendResp", to: m.from });
      } else if (m.type === "preVote") {
        this.send({ type: "preVoteResp", to: m.from, term: this.term, reject: true });
      }
      return;
    }

    if (m.type === "vote" || m.type === "preVote") {
      this.handleVoteRequest(m);
      return;
    }
    switch (this.role) {
      case "leader":
        this.stepLeader(m);
        break;
      case "candidate":
      case "preCandidate":
        this.stepCandidate(m);
        break;
      case "follower":
        this.stepFollower(m);
        break;
    }
  }

  private handleVoteRequest(m: Message): void {
    const respType = m.type === "vote" ? "voteResp" : "preVoteResp";
    // Figure 2, RequestVote rule 2: grant if votedFor is null or candidateId, and the
    // candidate's log is at least as up-to-date as the receiver's.
    const canVote =
      this.vote === m.from ||
      (this.vote === NONE && this.leader === NONE) ||
      (m.type === "preVote" && m.term > this.term);
    if (canVote && this.log.isUpToDate(m.index, m.logTerm)) {
      this.send({ type: respType, to: m.from, term: m.term });
      if (m.type === "vote") {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.send({ type: respType, to: m.from, term: this.term, reject: true });
    }
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case "append":
        this.electionElapsed = 0;
        this.leader = m.from;
        this.handleAppendEntries(m);
        break;
      case "heartbeat":
        this.electionElapsed = 0;
        this.leader = m.from;
        this.handleHeartbeat(m);
        break;
      case "snapshot":
        this.electionElapsed = 0;
        this.leader = m.from;
        this.handleSnapshot(m);
        break;
      case "timeoutNow":
        // §3.10: the leader hands over; start an election at once, skipping the pre-vote.
        this.hup("transfer");
        break;
      case "readIndexResp":
        this.readStates.push({ index: m.index, context: m.context });
        break;
      default:
        break;
    }
  }

  private stepCandidate(m: Message): void {
    const myResp = this.role === "preCandidate" ? "preVoteResp" : "voteResp";
    switch (m.type) {
      case "append":
        this.becomeFollower(m.term, m.from);
        this.handleAppendEntries(m);
        break;
      case "heartbeat":
        this.becomeFollower(m.term, m.from);
        this.handleHeartbeat(m);
        break;
      case "snapshot":
        this.becomeFollower(m.term, m.from);
        this.handleSnapshot(m);
        break;
      case myResp: {
        const result = this.poll(m.from, !m.reject);
        if (result === "won") {
          if (this.role === "preCandidate") this.campaign("election");
          else {
            this.becomeLeader();
            this.broadcastAppend();
          }
        } else if (result === "lost") {
          this.becomeFollower(this.term, NONE);
        }
        break;
      }
      default:
        break;
    }
  }

  private stepLeader(m: Message): void {
    const pr = this.progress.get(m.from);
    switch (m.type) {
      case "appendResp":
        if (pr) this.handleAppendResponse(m, pr);
        break;
      case "heartbeatResp":
        if (pr) this.handleHeartbeatResponse(m, pr);
        break;
      case "readIndex":
        if (pr) this.handleReadIndex(m.context, m.from);
        break;
      default:
        break;
    }
  }

  // ---- follower side of replication ----

  private handleAppendEntries(m: Message): void {
    if (m.index < this.log.committed) {
      this.send({ type: "appendResp", to: m.from, index: this.log.committed });
      return;
    }
    // Figure 2, AppendEntries rule 2: reply false if the log has no entry at prevLogIndex
    // whose term matches prevLogTerm.
    if (this.log.matchTerm(m.index, m.logTerm)) {
      const lastNew = m.index + m.entries.length;
      // Rule 3: an existing entry that conflicts with a new one (same index, different
      // terms) is deleted with all that follow it. Rule 4: append the entries not already in the log.
      const conflict = this.log.findConflict(m.entries);
      if (conflict !== 0) {
        if (conflict <= this.log.committed) {
          throw new Error(`${this.id}: entry ${conflict} conflicts with committed entries`);
        }
        this.appendToLog(m.entries.slice(conflict - m.index - 1));
      }
      // Rule 5: commitIndex = min(leaderCommit, index of last new entry).
      this.log.commitTo(Math.min(m.commit, lastNew));
      this.send({ type: "appendResp", to: m.from, index: lastNew });
      return;
    }
    // Fast backtracking (§5.3): hint the leader at the last index whose term is at most the
    // leader's prevLogTerm, so it skips a whole term of conflicting entries per round trip.
    const hint = this.log.findConflictByTerm(Math.min(m.index, this.log.lastIndex()), m.logTerm);
    this.send({
      type: "appendResp",
      to: m.from,
      index: m.index,
      reject: true,
      rejectHint: hint.index,
      logTerm: hint.term,
    });
  }

  private handleHeartbeat(m: Message): void {
    this.log.commitTo(Math.min(m.commit, this.log.lastIndex()));
    this.send({ type: "heartbeatResp", to: m.from, context: m.context });
  }

  private handleSnapshot(m: Message): void {
    const s = m.snapshot;
    if (s && this.restore(s)) {
      this.send({ type: "appendResp", to: m.from, index: this.log.lastIndex() });
    } else {
      this.send({ type: "appendResp", to: m.from, index: this.log.committed });
    }
  }

  /** §7: installs a snapshot unless this log already holds what it covers. */
  private restore(s: SnapshotMeta): boolean {
    if (s.index <= this.log.committed) return false;
    if (this.log.matchTerm(s.index, s.term)) {
      // The log already contains the snapshot's last entry: keep the entries after it.
      this.log.commitTo(s.index);
      return false;
    }
    this.log.restore(s);
    this.baseMembers = s.members;
    this.configs = [];
    this.onConfigChanged();
    return true;
  }

  // ---- leader side of replication ----

  private handleAppendResponse(m: Message, pr: Progress): void {
    pr.recentActive = true;
    if (m.reject) {
      let nextProbe = m.rejectHint;
      if (m.logTerm > 0) {
        // The follower's hint says its entry at rejectHint has term logTerm; skip back to the
        // last index where this log's term is at most that, which may match.
        nextProbe = this.log.findConflictByTerm(m.rejectHint, m.logTerm).index;
      }
      if (pr.maybeDecrTo(m.index, nextProbe)) {
        if (pr.state === "replicate") pr.becomeProbe();
        this.sendAppend(m.from);
      }
      return;
    }
    const wasPaused = pr.isPaused();
    // A probe answered at the known matchIndex also ends probing (nothing new was missing).
    if (!pr.maybeUpdate(m.index) && !(pr.state === "probe" && pr.matchIndex === m.index)) return;
    if (pr.state === "probe") pr.becomeReplicate();
    else if (pr.state === "snapshot" && pr.matchIndex >= pr.pendingSnapshot) {
      pr.becomeProbe();
      pr.becomeReplicate();
    } else if (pr.state === "replicate") pr.inflights.freeLE(m.index);

    if (this.maybeCommit()) {
      if (this.role !== "leader") return;
      this.broadcastAppend();
    } else if (wasPaused) {
      this.sendAppend(m.from);
    }
    // Pipelining: fill the window while there is more to send.
    while (this.maybeSendAppend(m.from, false)) {}
    if (m.from === this.leadTransferee && pr.matchIndex === this.log.lastIndex()) {
      this.send({ type: "timeoutNow", to: m.from });
    }
  }

  private handleHeartbeatResponse(m: Message, pr: Progress): void {
    pr.recentActive = true;
    pr.paused = false;
    if (pr.matchIndex < this.log.lastIndex() || pr.state === "probe") this.sendAppend(m.from);
    if (this.readOnly !== "safe" || m.context === "") return;
    const req = this.readRequests.get(m.context);
    if (!req) return;
    req.acks.add(m.from);
    if (this.countVoters(req.acks) < this.quorum()) return;
    // Leadership for every request up to this one is confirmed: release them in order.
    const at = this.readQueue.indexOf(m.context);
    const released = this.readQueue.splice(0, at + 1);
    for (const ctx of released) {
      const r = this.readRequests.get(ctx)!;
      this.readRequests.delete(ctx);
      this.answerRead(r.context, r.from, r.index);
    }
  }

  private countVoters(ids: Iterable<NodeId>): number {
    let n = 0;
    for (const id of ids) if (this.isVoter(id)) n++;
    return n;
  }

  /** Figure 2, leader rule 4: commit the highest index replicated on a quorum, if of this term. */
  private maybeCommit(): boolean {
    const matches = this.voters()
      .map((id) => this.progress.get(id)?.matchIndex ?? 0)
      .sort((a, b) => b - a);
    const index = matches[this.quorum() - 1] ?? 0;
    if (!this.log.maybeCommit(index, this.term)) return false;
    this.onCommitted();
    return true;
  }

  private onCommitted(): void {
    if (this.role !== "leader") return;
    if (this.log.term(this.log.committed) === this.term && this.pendingReads.length > 0) {
      const reads = this.pendingReads;
      this.pendingReads = [];
      for (const r of reads) this.handleReadIndex(r.context, r.from);
    }
    // §4.2.2 of the dissertation: a leader removed from the configuration steps down once the
    // entry removing it is committed.
    const latest = this.configs.at(-1);
    if (!this.promotable() && latest && latest.index <= this.log.committed) {
      this.becomeFollower(this.term, NONE);
    }
  }

  private sendAppend(to: NodeId): void {
    this.maybeSendAppend(to, true);
  }

  /** Sends the next batch of entries to `to` if its flow control allows; true when sent. */
  private maybeSendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.progress.get(to);
    if (!pr || pr.isPaused()) return false;
    const prevIndex = pr.nextIndex - 1;
    const prevTerm = this.log.term(prevIndex);
    if (prevTerm === undefined) return this.maybeSendSnapshot(to, pr);
    let entries: Entry[] = [];
    if (pr.state !== "replicate" || !pr.inflights.full()) {
      const hi = pr.nextIndex + this.maxEntriesPerMessage;
      const got = this.log.slice(pr.nextIndex, hi, this.maxBytesPerMessage);
      if (got === undefined) return this.maybeSendSnapshot(to, pr);
      entries = got;
    }
    if (entries.length === 0 && !sendIfEmpty) return false;
    this.send({
      type: "append",
      to,
      index: prevIndex,
      logTerm: prevTerm,
      entries,
      commit: this.log.committed,
    });
    let bytes = 0;
    for (const e of entries) bytes += entrySize(e);
    pr.sentEntries(entries.length, bytes);
    return true;
  }

  private maybeSendSnapshot(to: NodeId, pr: Progress): boolean {
    // A follower that has not answered recently may be down: do not start a transfer yet.
    if (!pr.recentActive) return false;
    const snapshot = this.log.storage.snapshot();
    pr.becomeSnapshot(snapshot.index);
    this.send({ type: "snapshot", to, snapshot });
    return true;
  }

  private broadcastAppend(): void {
    for (const id of this.progress.keys()) if (id !== this.id) this.sendAppend(id);
  }

  private broadcastHeartbeat(context = ""): void {
    for (const [id, pr] of this.progress) {
      if (id === this.id) continue;
      // Never advertise a commit index beyond what the follower is known to hold.
      const commit = Math.min(pr.matchIndex, this.log.committed);
      this.send({ type: "heartbeat", to: id, commit, context });
    }
  }

  private appendEntries(entries: { type: EntryType; data: Uint8Array }[]): { index: number; term: number } {
    const last = this.log.lastIndex();
    const full: Entry[] = entries.map((e, i) => ({
      term: this.term,
      index: last + 1 + i,
      type: e.type,
      data: e.data,
    }));
    this.appendToLog(full);
    // The leader's own copy counts toward a quorum once the host has persisted it (`advance`),
    // not now: the followers may get these entries before the leader's write is durable.
    return { index: last + 1, term: this.term };
  }

  // ---- elections ----

  private poll(from: NodeId, granted: boolean): "won" | "lost" | "pending" {
    if (!this.votes.has(from)) this.votes.set(from, granted);
    let yes = 0;
    let no = 0;
    for (const id of this.voters()) {
      const v = this.votes.get(id);
      if (v === true) yes++;
      else if (v === false) no++;
    }
    const q = this.quorum();
    if (yes >= q) return "won";
    if (no > this.voters().length - q) return "lost";
    return "pending";
  }

  private hup(type: CampaignType): void {
    if (this.role === "leader" || !this.promotable()) return;
    this.campaign(type);
  }

  private campaign(type: CampaignType): void {
    let term: number;
    let voteType: "vote" | "preVote";
    if (type === "preElection") {
      this.becomePreCandidate();
      voteType = "preVote";
      // The term this node would use; its own term stays.
      term = this.term + 1;
    } else {
      this.becomeCandidate();
      voteType = "vote";
      term = this.term;
    }
    if (this.poll(this.id, true) === "won") {
      if (type === "preElection") this.campaign("election");
      else this.becomeLeader();
      return;
    }
    for (const id of this.voters()) {
      if (id === this.id) continue;
      this.send({
        type: voteType,
        to: id,
        term,
        index: this.log.lastIndex(),
        logTerm: this.log.lastTerm(),
        context: type === "transfer" ? CAMPAIGN_TRANSFER : "",
      });
    }
  }

  // ---- time ----

  /** One unit of logical time. */
  tick(): void {
    if (this.role === "leader") this.tickHeartbeat();
    else this.tickElection();
  }

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.hup(this.preVote ? "preElection" : "election");
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.electionTimeout) {
      this.electionElapsed = 0;
      if (this.checkQuorum) {
        // §6.2: a leader that cannot reach a quorum within an election timeout steps down, so
        // clients stop waiting on it.
        if (!this.quorumActive()) {
          this.becomeFollower(this.term, NONE);
          return;
        }
        for (const [id, pr] of this.progress) if (id !== this.id) pr.recentActive = false;
      }
      // A transfer that has not finished in an election timeout is abandoned (§3.10).
      this.leadTransferee = NONE;
    }
    if (this.heartbeatElapsed >= this.heartbeatTimeout) {
      this.heartbeatElapsed = 0;
      this.broadcastHeartbeat();
    }
  }

  private quorumActive(): boolean {
    let active = 0;
    for (const id of this.voters()) {
      if (id === this.id || this.progress.get(id)?.recentActive) active++;
    }
    return active >= this.quorum();
  }

  // ---- host calls ----

  /** Starts an election now (as if the election timeout elapsed). */
  campaignNow(): void {
    this.hup(this.preVote ? "preElection" : "election");
  }

  /**
   * The host's transport saw its connection to `id` break: the peer's stream ended, as it
   * does within a millisecond when the peer's process dies (its OS resets its connections).
   * If `id` is this follower's leader, the follower stops counting on it: it forgets the
   * leader, which also ends the lease it gave it (it will answer a pre-vote at once), and it
   * returns true: the host should call `campaignIfLeaderLost` soon, after a random delay of
   * its own so that two followers that saw the same break do not split the vote.
   *
   * This only shortens failure detection; no vote is granted that Figure 2 would refuse.
   * It needs PreVote and CheckQuorum, which keep a false alarm (one broken link to a live
   * leader) from disrupting anyone: the pre-vote fails, because the leader and every
   * follower that still hears from it ignore vote requests within their lease (§4.2.3), and
   * this node's term stays where it was. It is off with lease reads, whose safety rests on
   * followers keeping that lease for a full election timeout.
   */
  reportLeaderDisconnected(id: NodeId): boolean {
    if (!this.preVote || !this.checkQuorum || this.readOnly === "lease") return false;
    if (this.role !== "follower" || this.leader !== id || id === NONE || !this.promotable()) return false;
    this.leader = NONE;
    return true;
  }

  /**
   * Starts a pre-vote unless this follower has found another leader since it reported `id`
   * disconnected (see `reportLeaderDisconnected`). A message `id` sent just before it died may
   * still arrive after the report and make it the leader again: that is no sign of life.
   */
  campaignIfLeaderLost(id: NodeId): void {
    if (this.role !== "follower" || (this.leader !== NONE && this.leader !== id) || !this.preVote) return;
    this.electionElapsed = 0;
    this.hup("preElection");
  }

  /** Appends commands to the log as one batch (leader only). */
  propose(commands: readonly Uint8Array[]): ProposeResult {
    const refused = this.refuseProposal();
    if (refused) return refused;
    if (commands.length === 0) return { ok: false, reason: "invalid", message: "no commands to propose" };
    const at = this.appendEntries(commands.map((data) => ({ type: "normal", data })));
    this.broadcastAppend();
    return { ok: true, ...at };
  }

  /**
   * Proposes a single-server membership change (§4.1 of the dissertation). Refused until this
   * leader has committed an entry of its term (the fix for the bug found in single-server
   * changes, Ongaro's raft-dev post of 2015) and while an earlier change is uncommitted.
   */
  proposeConfChange(change: ConfChange): ProposeResult {
    const refused = this.refuseProposal();
    if (refused) return refused;
    if (this.log.term(this.log.committed) !== this.term) {
      return {
        ok: false,
        reason: "termNotCommitted",
        message: "the leader has not committed an entry of its term yet",
      };
    }
    const latest = this.configs.at(-1);
    if (latest && latest.index > this.log.committed) {
      return {
        ok: false,
        reason: "changeInProgress",
        message: `membership change at ${latest.index} is not committed yet`,
      };
    }
    const why = checkConfChange(this.members(), change);
    if (why) return { ok: false, reason: "invalid", message: why };
    const at = this.appendEntries([{ type: "config", data: encodeConfChange(change) }]);
    this.broadcastAppend();
    return { ok: true, ...at };
  }

  private refuseProposal(): ProposeResult | undefined {
    if (this.role !== "leader")
      return { ok: false, reason: "notLeader", message: `${this.id} is not the leader` };
    if (this.leadTransferee !== NONE) {
      return { ok: false, reason: "transferring", message: `leadership is moving to ${this.leadTransferee}` };
    }
    return undefined;
  }

  /**
   * Asks for a linearizable read point (§6.4). The answer comes back as a ReadState with the
   * same context, on this node; nothing comes back when there is no leader (the host times out).
   */
  readIndex(context: string): void {
    if (this.role === "leader") this.handleReadIndex(context, this.id);
    else if (this.leader !== NONE) this.send({ type: "readIndex", to: this.leader, context });
  }

  private handleReadIndex(context: string, from: NodeId): void {
    if (this.voters().length === 1 && this.isVoter(this.id)) {
      this.answerRead(context, from, this.log.committed);
      return;
    }
    // §6.4 step 1: until it commits an entry of its term, the leader may not know the latest
    // commit index.
    if (this.log.term(this.log.committed) !== this.term) {
      this.pendingReads.push({ context, from });
      return;
    }
    if (this.readOnly === "lease") {
      this.answerRead(context, from, this.log.committed);
      return;
    }
    if (this.readRequests.has(context)) return;
    this.readRequests.set(context, { context, from, index: this.log.committed, acks: new Set([this.id]) });
    this.readQueue.push(context);
    // §6.4 step 3: confirm leadership with a round of heartbeats.
    this.broadcastHeartbeat(context);
  }

  private answerRead(context: string, from: NodeId, index: number): void {
    if (from === this.id) this.readStates.push({ index, context });
    else this.send({ type: "readIndexResp", to: from, index, context });
  }

  /** Hands leadership to `to` (§3.10): catch it up, then tell it to time out now. */
  transferLeadership(to: NodeId): ProposeResult {
    if (this.role !== "leader")
      return { ok: false, reason: "notLeader", message: `${this.id} is not the leader` };
    if (to === this.id) return { ok: true, index: this.log.lastIndex(), term: this.term };
    if (!this.isVoter(to)) return { ok: false, reason: "invalid", message: `${to} is not a voter` };
    if (this.leadTransferee === to) return { ok: true, index: this.log.lastIndex(), term: this.term };
    this.leadTransferee = to;
    this.electionElapsed = 0;
    const pr = this.progress.get(to)!;
    if (pr.matchIndex === this.log.lastIndex()) this.send({ type: "timeoutNow", to });
    else this.sendAppend(to);
    return { ok: true, index: this.log.lastIndex(), term: this.term };
  }

  /** The host's snapshot transfer to `to` finished (`ok`) or failed. */
  reportSnapshot(to: NodeId, ok: boolean): void {
    const pr = this.progress.get(to);
    if (this.role !== "leader" || !pr || pr.state !== "snapshot") return;
    if (!ok) pr.pendingSnapshot = 0;
    pr.becomeProbe();
    // Wait for the follower's answer (or the next heartbeat) before sending again.
    pr.paused = true;
  }

  /** The host could not reach `to`: stop pipelining to it. */
  reportUnreachable(to: NodeId): void {
    const pr = this.progress.get(to);
    if (this.role === "leader" && pr?.state === "replicate") pr.becomeProbe();
  }

  // ---- Ready ----

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  hasReady(): boolean {
    const hs = this.hardState();
    const p = this.prevHardState;
    return (
      this.msgs.length > 0 ||
      this.readStates.length > 0 ||
      this.log.unstableEntries().length > 0 ||
      this.log.pendingSnapshot() !== undefined ||
      this.log.hasNextCommitted() ||
      hs.term !== p.term ||
      hs.vote !== p.vote ||
      hs.commit !== p.commit ||
      this.leader !== this.prevSoftState.leader ||
      this.role !== this.prevSoftState.role
    );
  }

  /** Collects what the host must do; call `advance(ready)` when it is done. */
  ready(): Ready {
    const hs = this.hardState();
    const p = this.prevHardState;
    const hardChanged = hs.term !== p.term || hs.vote !== p.vote || hs.commit !== p.commit;
    const softChanged = this.leader !== this.prevSoftState.leader || this.role !== this.prevSoftState.role;
    const early: Message[] = [];
    const late: Message[] = [];
    for (const m of this.msgs) (this.sendableEarly(m) ? early : late).push(m);
    const rd: Ready = {
      softState: softChanged ? { leader: this.leader, role: this.role } : undefined,
      hardState: hardChanged ? hs : undefined,
      snapshot: this.log.pendingSnapshot(),
      entries: [...this.log.unstableEntries()],
      messages: late,
      earlyMessages: early,
      committedEntries: this.log.nextCommitted(this.maxCommittedBytesPerReady),
      readStates: this.readStates,
    };
    this.msgs = [];
    this.readStates = [];
    return rd;
  }

  /**
   * Only a leader's replication messages of a term already durable may go out before the
   * write they come with: a leader that crashed before persisting its term could restart
   * below it and vote again in it. (`prevHardState` is the last one the host persisted.)
   */
  private sendableEarly(m: Message): boolean {
    return this.role === "leader" && EARLY_TYPES.has(m.type) && m.term === this.prevHardState.term;
  }

  /**
   * While the host is still persisting a Ready: takes the messages that may leave before
   * their entries are durable (see `Ready.earlyMessages`), such as appends of entries
   * proposed meanwhile or the next appends to a follower that acknowledged. The rest waits
   * for the next Ready.
   */
  takeEarlyMessages(): Message[] {
    if (this.role !== "leader" || this.msgs.length === 0) return [];
    const early: Message[] = [];
    const rest: Message[] = [];
    for (const m of this.msgs) (this.sendableEarly(m) ? early : rest).push(m);
    this.msgs = rest;
    return early;
  }

  /** The host persisted, sent and applied `ready`. */
  advance(rd: Ready): void {
    if (rd.hardState) this.prevHardState = rd.hardState;
    if (rd.softState) this.prevSoftState = rd.softState;
    const last = rd.entries.at(-1);
    if (last) this.log.stableTo(last.index, last.term);
    if (rd.snapshot) {
      this.log.stableSnapTo(rd.snapshot.index);
      this.log.appliedTo(rd.snapshot.index);
    }
    const applied = rd.committedEntries.at(-1);
    if (applied) this.log.appliedTo(applied.index);
    // §10.2.1: the leader's entries now durable count toward the quorum.
    if (this.role === "leader" && last) {
      const self = this.progress.get(this.id);
      if (self?.maybeUpdate(this.log.stableIndex()) && this.maybeCommit() && this.role === "leader") {
        this.broadcastAppend();
      }
    }
  }

  status(): RaftStatus {
    const progress: FollowerStatus[] = [];
    if (this.role === "leader") {
      const learners = new Set(
        this.members()
          .filter((m) => m.learner)
          .map((m) => m.id),
      );
      for (const [id, pr] of this.progress) {
        progress.push({
          id,
          matchIndex: pr.matchIndex,
          nextIndex: pr.nextIndex,
          state: pr.state,
          learner: learners.has(id),
        });
      }
    }
    return {
      id: this.id,
      role: this.role,
      term: this.term,
      vote: this.vote,
      leader: this.leader,
      commitIndex: this.log.committed,
      appliedIndex: this.log.applied,
      lastIndex: this.log.lastIndex(),
      stableIndex: this.log.stableIndex(),
      firstIndex: this.log.firstIndex(),
      members: this.members(),
      leadTransferee: this.leadTransferee,
      progress,
    };
  }

  private send(fields: MessageFields): void {
    this.msgs.push({
      from: this.id,
      term: this.term,
      logTerm: 0,
      index: 0,
      entries: [],
      commit: 0,
      reject: false,
      rejectHint: 0,
      context: "",
      snapshot: undefined,
      ...fields,
    });
  }
}
