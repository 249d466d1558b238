import { checkQuorums, majorityQuorums, type Quorums } from "./quorum.js";
import {
  type AcceptorState,
  type AcceptorUpdate,
  type Ballot,
  ballotEquals,
  type ChosenSlot,
  type Compaction,
  compareBallots,
  type Message,
  type MessageFields,
  NONE,
  type NodeId,
  type ReadState,
  type Role,
  type SlotEntry,
  type Value,
  valueWidth,
  ZERO_BALLOT,
} from "./types.js";

export interface PaxosConfig {
  readonly id: NodeId;
  /** Every voting member, this node included. */
  readonly voters: readonly NodeId[];
  /** Durable acceptor state recovered from storage (empty for a fresh node). */
  readonly state?: AcceptorState | undefined;
  /** Seeded randomness for election backoff; never an unseeded global source. */
  readonly random: () => number;
  /** Ticks without hearing a leader before campaigning (plus a random backoff). Default 10. */
  readonly electionTicks?: number | undefined;
  /** Ticks between a leader's heartbeats. Default 1. */
  readonly heartbeatTicks?: number | undefined;
  /** Flexible Paxos quorum sizes; default a majority for both phases. */
  readonly quorums?: Quorums | undefined;
  /** Most chosen slots sent to a lagging replica in one learn message. Default 256. */
  readonly maxCatchupSlots?: number | undefined;
  /** Most entries in one accept message. Default 256. */
  readonly maxAcceptEntries?: number | undefined;
  /** Most chosen slots handed to the host in one Ready. Default 1024. */
  readonly maxApplySlots?: number | undefined;
}

/**
 * Everything the host must do after an input, in this order: persist `persist` durably,
 * then send `messages`, then apply `committed` in order, then answer `readStates` once
 * applied, then call `advance(ready)`.
 */
export interface Ready {
  readonly persist: AcceptorUpdate | undefined;
  readonly messages: readonly Message[];
  /**
   * Peers that need slots this node compacted away: the host sends each a state-machine
   * snapshot (after persisting, like the messages) unless a transfer to it is under way.
   */
  readonly snapshots: readonly NodeId[];
  readonly committed: readonly ChosenSlot[];
  readonly readStates: readonly ReadState[];
}

export interface PaxosStatus {
  readonly id: NodeId;
  readonly role: Role;
  readonly leader: NodeId;
  /** The highest ballot this acceptor has promised. */
  readonly promised: Ballot;
  /** The ballot of the leader this node follows (or its own, when it leads or campaigns). */
  readonly ballot: Ballot;
  /** Every slot up to here is chosen and known here. */
  readonly chosenSlot: number;
  /** The log index of the last entry of `chosenSlot`. */
  readonly chosenIndex: number;
  /** Slots handed to the host to apply (advanced). */
  readonly executedSlot: number;
  readonly executedIndex: number;
  /** Leader only: slots proposed and not yet chosen. */
  readonly inflight: number;
  /** Slots up to here are compacted away (their effect lives in the state machine). */
  readonly compactedSlot: number;
  readonly compactedIndex: number;
}

export type ProposeOutcome =
  | { readonly ok: true; readonly slot: number }
  | { readonly ok: false; readonly leader: NodeId };

interface Inflight {
  readonly value: Value;
  readonly acks: Set<NodeId>;
  sentTick: number;
}

interface PendingRead {
  readonly context: string;
  readonly seq: number;
  readonly acks: Set<NodeId>;
  /** The follower that asked (readIndex message); undefined for the leader's own reads. */
  readonly from: NodeId | undefined;
}

interface Candidacy {
  readonly ballot: Ballot;
  readonly fromSlot: number;
  readonly promises: Map<NodeId, readonly SlotEntry[]>;
}

interface Leadership {
  readonly ballot: Ballot;
  nextSlot: number;
  /** Slots up to here were recovered in phase 1: reads wait until they are chosen. */
  readonly recoveredSlot: number;
  readonly inflight: Map<number, Inflight>;
  /** Each peer's chosen prefix, as it last reported. */
  readonly peerChosen: Map<NodeId, number>;
  /** Peers heard from since the last quorum check. */
  readonly active: Set<NodeId>;
  readonly reads: PendingRead[];
  nextReadSeq: number;
  /** Tick of the last learn message sent to each peer. */
  readonly learnSentTick: Map<NodeId, number>;
  /** A leadership transfer waiting for this peer to catch up. */
  transferee: NodeId | undefined;
}

const EMPTY: readonly never[] = [];

/** The `context` of a pre-vote prepare and its answer (nothing is promised). */
const PRE_VOTE = "pre-vote";

function noopValue(ballot: Ballot, slot: number): Value {
  return { id: `noop:${ballot.round}:${ballot.node}:${slot}`, commands: EMPTY };
}

/**
 * Multi-Paxos as a deterministic state machine (Lamport, "Paxos Made Simple", §3; van
 * Renesse and Altinbuken, "Paxos Made Moderately Complex"). Every node is an acceptor and a
 * learner; one distinguished proposer (the leader) runs phase 1 once for all slots from its
 * chosen prefix on, then only phase 2 per slot.
 *
 * The core never reads a clock, draws randomness only from `config.random`, never performs
 * I/O: inputs are `step`, `tick`, `propose`, `readIndex`, `campaign`; outputs are collected
 * in a Ready that the host drains.
 */
export class Paxos {
  readonly id: NodeId;
  readonly voters: readonly NodeId[];
  readonly quorums: Quorums;
  private readonly peers: readonly NodeId[];
  private readonly random: () => number;
  private readonly electionTicks: number;
  private readonly heartbeatTicks: number;
  private readonly maxCatchupSlots: number;
  private readonly maxAcceptEntries: number;
  private readonly maxApplySlots: number;

  // Acceptor state (durable).
  private promised: Ballot;
  private readonly accepted = new Map<number, SlotEntry>();
  private readonly chosen = new Map<number, Value>();
  private compactedSlot = 0;
  private compactedIndex = 0;

  // Learner state (derived).
  private chosenSlot = 0;
  private chosenIndex = 0;
  private executedSlot = 0;
  private executedIndex = 0;

  // Proposer state (volatile).
  private role: Role = "follower";
  private leader: NodeId = NONE;
  private leaderBallot: Ballot = ZERO_BALLOT;
  private maxRoundSeen = 0;
  private candidacy: Candidacy | undefined;
  /** A pre-vote under way: the ballot we would use and who would promise it. */
  private preCandidacy:
    | { readonly ballot: Ballot; readonly fromSlot: number; readonly grants: Set<NodeId> }
    | undefined;
  private leadership: Leadership | undefined;
  private ticks = 0;
  private electionElapsed = 0;
  /** A follower promised a candidate's real prepare and has not heard of a leader since. */
  private promisedCandidate = false;
  private heartbeatElapsed = 0;
  private electionTimeout: number;

  // Outputs not yet drained.
  private messages: Message[] = [];
  private persistPromised: Ballot | undefined;
  private persistAccepted: SlotEntry[] = [];
  private persistChosen: { slot: number; value: Value }[] = [];
  private persistCompact: Compaction | undefined;
  private snapshotsToSend: NodeId[] = [];
  private readStates: ReadState[] = [];

  constructor(config: PaxosConfig) {
    if (!config.voters.includes(config.id)) {
      throw new RangeError(`node ${config.id} is not among the voters [${config.voters.join(", ")}]`);
    }
    if (new Set(config.voters).size !== config.voters.length) {
      throw new RangeError(`voters must be unique, got [${config.voters.join(", ")}]`);
    }
    this.id = config.id;
    this.voters = [...config.voters];
    this.peers = this.voters.filter((v) => v !== this.id);
    this.quorums = config.quorums ?? majorityQuorums(this.voters.length);
    const problem = checkQuorums(this.voters, this.quorums);
    if (problem) throw new RangeError(problem);
    this.random = config.random;
    this.electionTicks = positive("electionTicks", config.electionTicks ?? 10);
    this.heartbeatTicks = positive("heartbeatTicks", config.heartbeatTicks ?? 1);
    if (this.heartbeatTicks >= this.electionTicks) {
      throw new RangeError(
        `heartbeatTicks (${this.heartbeatTicks}) must be below electionTicks (${this.electionTicks})`,
      );
    }
    this.maxCatchupSlots = positive("maxCatchupSlots", config.maxCatchupSlots ?? 256);
    this.maxAcceptEntries = positive("maxAcceptEntries", config.maxAcceptEntries ?? 256);
    this.maxApplySlots = positive("maxApplySlots", config.maxApplySlots ?? 1024);

    const state = config.state;
    this.promised = state?.promised ?? ZERO_BALLOT;
    this.maxRoundSeen = this.promised.round;
    if (state) {
      const c = state.compacted;
      if (c && c.slot > 0) {
        this.compactedSlot = this.chosenSlot = this.executedSlot = c.slot;
        this.compactedIndex = this.chosenIndex = this.executedIndex = c.index;
      }
      for (const [slot, e] of state.accepted) {
        this.maxRoundSeen = Math.max(this.maxRoundSeen, e.ballot.round);
        if (slot > this.compactedSlot) this.accepted.set(slot, e);
      }
      for (const [slot, v] of state.chosen) if (slot > this.compactedSlot) this.chosen.set(slot, v);
    }
    this.advanceChosenPrefix();
    this.electionTimeout = this.randomElectionTimeout();
  }

  // ---------------------------------------------------------------------------------------
  // Inputs

  /** One unit of time: heartbeats for a leader, election timeouts for everyone else. */
  tick(): void {
    this.ticks++;
    if (this.role === "leader") {
      this.tickLeader();
      return;
    }
    this.electionElapsed++;
    if (this.role === "candidate" && this.ticks % this.heartbeatTicks === 0) this.resendPrepares();
    if (this.electionElapsed >= this.electionTimeout) this.preCampaign();
  }

  /** The one door for messages from peers. */
  step(m: Message): void {
    if (m.to !== this.id || !this.peers.includes(m.from)) return;
    this.maxRoundSeen = Math.max(this.maxRoundSeen, m.ballot.round, m.promised.round);
    switch (m.type) {
      case "prepare":
        this.onPrepare(m);
        break;
      case "promise":
        this.onPromise(m);
        break;
      case "accept":
        this.onAccept(m);
        break;
      case "accepted":
        this.onAccepted(m);
        break;
      case "heartbeat":
        this.onHeartbeat(m);
        break;
      case "heartbeatResp":
        this.onHeartbeatResp(m);
        break;
      case "learn":
        this.onLearn(m);
        break;
      case "readIndex":
        this.onReadIndex(m);
        break;
      case "readIndexResp":
        this.onReadIndexResp(m);
        break;
      case "timeoutNow":
        // Only the leader we follow may hand us leadership.
        if (this.role === "follower" && m.from === this.leader && ballotEquals(m.ballot, this.leaderBallot))
          this.campaign();
        break;
    }
  }

  /**
   * Proposes a batch of commands as one slot's value. Only a leader accepts; others answer
   * with the leader they know. `id` must be unique per proposal (the proposer uses it to
   * recognise its value when the slot is chosen).
   */
  propose(id: string, commands: readonly Uint8Array[]): ProposeOutcome {
    const l = this.leadership;
    if (this.role !== "leader" || !l) return { ok: false, leader: this.leader };
    if (commands.length === 0) throw new RangeError("propose needs at least one command");
    const slot = l.nextSlot++;
    this.proposeSlot(l, slot, { id, commands: [...commands] });
    for (const p of this.peers) this.sendAccepts(l, p, [slot]);
    this.checkChosen(l, slot);
    return { ok: true, slot };
  }

  /**
   * Starts a linearizable read barrier (the leader confirms with a phase-2 quorum that no
   * higher ballot has been promised, as Raft's ReadIndex). A follower that knows a leader
   * asks it to run the barrier (etcd's MsgReadIndex). Returns false when this node neither
   * leads nor knows a leader. A ReadState for `context` appears in a later Ready (`refused`
   * when the node asked turned out not to lead).
   */
  readIndex(context: string): boolean {
    const l = this.leadership;
    if (this.role === "leader" && l) {
      this.startRead(l, context, undefined);
      return true;
    }
    if (this.role !== "follower" || this.leader === NONE) return false;
    this.send({ type: "readIndex", to: this.leader, ballot: this.leaderBallot, context });
    return true;
  }

  /**
   * Leadership transfer (Raft's, thesis §3.10): once `to` has reported every slot this leader
   * knows chosen, it is told to campaign at once (a forced phase 1 with a higher ballot,
   * which deposes this leader). Returns false when this node does not lead or `to` is not a
   * peer. The host watches for `to` becoming leader.
   */
  transferLeadership(to: NodeId): boolean {
    const l = this.leadership;
    if (this.role !== "leader" || !l || !this.peers.includes(to)) return false;
    l.transferee = to;
    this.maybeSendTimeoutNow(l);
    return true;
  }

  private maybeSendTimeoutNow(l: Leadership): void {
    const to = l.transferee;
    if (to === undefined || (l.peerChosen.get(to) ?? 0) < this.chosenSlot) return;
    l.transferee = undefined;
    this.send({ type: "timeoutNow", to, ballot: l.ballot });
  }

  private startRead(l: Leadership, context: string, from: NodeId | undefined): void {
    const seq = l.nextReadSeq++;
    l.reads.push({ context, seq, acks: new Set(), from });
    if (this.quorums.phase2 === 1) {
      this.checkReads(l);
      return;
    }
    for (const p of this.peers) {
      this.send({
        type: "heartbeat",
        to: p,
        ballot: l.ballot,
        commit: this.chosenSlot,
        context: String(seq),
      });
    }
  }

  /** A follower's read barrier: run it as our own, answer with the index to wait for. */
  private onReadIndex(m: Message): void {
    const l = this.leadership;
    if (this.role !== "leader" || !l) {
      this.send({ type: "readIndexResp", to: m.from, ballot: m.ballot, context: m.context, reject: true });
      return;
    }
    this.startRead(l, m.context, m.from);
  }

  private onReadIndexResp(m: Message): void {
    if (m.reject) this.readStates.push({ context: m.context, index: 0, refused: true });
    else this.readStates.push({ context: m.context, index: m.commit });
  }

  /**
   * Pre-vote (as Raft's, Ongaro's thesis §9.6): before raising any promise, ask whether a
   * phase-1 quorum would promise a higher ballot, which acceptors deny while they hear from a
   * live leader. A node cut off in a minority thus never raises its ballot and, once the
   * partition heals, follows the leader instead of deposing it. Nothing is persisted.
   */
  private preCampaign(): void {
    const ballot: Ballot = { round: Math.max(this.promised.round, this.maxRoundSeen) + 1, node: this.id };
    if (this.role !== "follower" || this.leader !== NONE) this.becomeFollower(NONE, this.leaderBallot);
    // The candidate we promised did not win in time: stop deferring to it.
    this.promisedCandidate = false;
    this.electionElapsed = 0;
    this.electionTimeout = this.randomElectionTimeout();
    const fromSlot = this.chosenSlot + 1;
    this.preCandidacy = { ballot, fromSlot, grants: new Set([this.id]) };
    if (this.preCandidacy.grants.size >= this.quorums.phase1) {
      this.campaign();
      return;
    }
    for (const p of this.peers)
      this.send({ type: "prepare", to: p, ballot, slot: fromSlot, context: PRE_VOTE });
  }

  /**
   * Whether this node hears from a live leader (its own leadership included), or promised a
   * candidate's real prepare within an election timeout: that candidate is likely to win, and
   * granting a pre-vote to another would let two proposers duel (a leader elected a moment
   * ago, deposed by a node that timed out before hearing from it).
   */
  private hasLiveLeader(): boolean {
    if (this.role === "leader") return true;
    if (this.role !== "follower" || this.electionElapsed >= this.electionTicks) return false;
    return this.leader !== NONE || this.promisedCandidate;
  }

  private onPreVote(m: Message): void {
    const grant = !this.hasLiveLeader() && compareBallots(m.ballot, this.promised) > 0;
    this.send({
      type: "promise",
      to: m.from,
      ballot: m.ballot,
      reject: !grant,
      promised: this.promised,
      context: PRE_VOTE,
      commit: this.chosenSlot,
      slot: this.compactedSlot,
    });
  }

  private onPreVoteResponse(m: Message): void {
    const pre = this.preCandidacy;
    if (!pre || !ballotEquals(m.ballot, pre.ballot) || m.reject || m.slot >= pre.fromSlot) return;
    pre.grants.add(m.from);
    if (pre.grants.size >= this.quorums.phase1) this.campaign();
  }

  /** Runs phase 1 with a ballot above every ballot seen (at once: no pre-vote). */
  campaign(): void {
    this.preCandidacy = undefined;
    const ballot: Ballot = { round: Math.max(this.promised.round, this.maxRoundSeen) + 1, node: this.id };
    this.maxRoundSeen = ballot.round;
    this.leadership = undefined;
    this.role = "candidate";
    this.leader = NONE;
    this.leaderBallot = ballot;
    this.electionElapsed = 0;
    this.electionTimeout = this.randomElectionTimeout();
    this.setPromised(ballot);
    const fromSlot = this.chosenSlot + 1;
    this.candidacy = { ballot, fromSlot, promises: new Map([[this.id, this.acceptedFrom(fromSlot)]]) };
    if (this.candidacy.promises.size >= this.quorums.phase1) {
      this.becomeLeader();
      return;
    }
    this.resendPrepares();
  }

  // ---------------------------------------------------------------------------------------
  // Outputs

  hasReady(): boolean {
    return (
      this.messages.length > 0 ||
      this.persistPromised !== undefined ||
      this.persistAccepted.length > 0 ||
      this.persistChosen.length > 0 ||
      this.readStates.length > 0 ||
      this.persistCompact !== undefined ||
      this.snapshotsToSend.length > 0 ||
      this.executedSlot < this.chosenSlot
    );
  }

  /**
   * Log compaction: the state machine durably reflects every slot up to `slot` (which must
   * be executed), so their accepted and chosen values can go. Returns false when there is
   * nothing new to drop.
   */
  compact(slot: number): boolean {
    if (!Number.isInteger(slot) || slot <= this.compactedSlot) return false;
    if (slot > this.executedSlot) {
      throw new RangeError(`cannot compact to slot ${slot}: only ${this.executedSlot} are executed`);
    }
    let index = this.compactedIndex;
    for (let s = this.compactedSlot + 1; s <= slot; s++) index += valueWidth(this.chosen.get(s)!);
    this.dropThrough({ slot, index });
    return true;
  }

  /**
   * The last slot that a state-machine image at log index `index` fully reflects, with its
   * last index (the metadata of a snapshot taken at `index`). Undefined when `index` is
   * below the compaction point.
   */
  slotForIndex(index: number): Compaction | undefined {
    if (index < this.compactedIndex) return undefined;
    let slot = this.compactedSlot;
    let end = this.compactedIndex;
    for (let s = slot + 1; s <= this.executedSlot; s++) {
      const w = valueWidth(this.chosen.get(s)!);
      if (end + w > index) break;
      slot = s;
      end += w;
    }
    return { slot, index: end };
  }

  /**
   * The host restored the state machine from a peer's snapshot covering slots up to `slot`
   * (last log index `index`): those slots count as chosen and executed. Returns false (and
   * changes nothing) when this node has already executed that far.
   */
  installSnapshot(slot: number, index: number): boolean {
    if (!Number.isInteger(slot) || slot <= this.executedSlot) return false;
    if (slot > this.chosenSlot) {
      this.chosenSlot = slot;
      this.chosenIndex = index;
    }
    this.executedSlot = slot;
    this.executedIndex = index;
    this.dropThrough({ slot, index });
    this.advanceChosenPrefix();
    return true;
  }

  /** Drains the outputs. The host must handle them in order and then call `advance`. */
  ready(): Ready {
    const persist =
      this.persistPromised !== undefined ||
      this.persistAccepted.length > 0 ||
      this.persistChosen.length > 0 ||
      this.persistCompact !== undefined
        ? {
            promised: this.persistPromised,
            accepted: this.persistAccepted,
            chosen: this.persistChosen,
            compact: this.persistCompact,
          }
        : undefined;
    const committed: ChosenSlot[] = [];
    let index = this.executedIndex + 1;
    const last = Math.min(this.chosenSlot, this.executedSlot + this.maxApplySlots);
    for (let slot = this.executedSlot + 1; slot <= last; slot++) {
      const value = this.chosen.get(slot)!;
      committed.push({ slot, index, value });
      index += valueWidth(value);
    }
    const rd: Ready = {
      persist,
      messages: this.messages,
      snapshots: this.snapshotsToSend,
      committed,
      readStates: this.readStates,
    };
    this.messages = [];
    this.persistPromised = undefined;
    this.persistAccepted = [];
    this.persistChosen = [];
    this.persistCompact = undefined;
    this.snapshotsToSend = [];
    this.readStates = [];
    return rd;
  }

  /** The host has persisted, sent and applied `rd`. */
  advance(rd: Ready): void {
    const last = rd.committed.at(-1);
    if (last && last.slot > this.executedSlot) {
      this.executedSlot = last.slot;
      this.executedIndex = last.index + valueWidth(last.value) - 1;
    }
  }

  status(): PaxosStatus {
    return {
      id: this.id,
      role: this.role,
      leader: this.leader,
      promised: this.promised,
      ballot: this.leaderBallot,
      chosenSlot: this.chosenSlot,
      chosenIndex: this.chosenIndex,
      executedSlot: this.executedSlot,
      executedIndex: this.executedIndex,
      inflight: this.leadership?.inflight.size ?? 0,
      compactedSlot: this.compactedSlot,
      compactedIndex: this.compactedIndex,
    };
  }

  /** The value chosen for `slot`, if this node knows it (for checkers). */
  chosenValue(slot: number): Value | undefined {
    return this.chosen.get(slot);
  }

  /** Every chosen slot this node knows (for checkers). */
  chosenSlots(): ReadonlyMap<number, Value> {
    return this.chosen;
  }

  // ---------------------------------------------------------------------------------------
  // Acceptor

  /** Phase 1b: promise never to accept a lower ballot, and report what was accepted. */
  private onPrepare(m: Message): void {
    if (m.context === PRE_VOTE) {
      this.onPreVote(m);
      return;
    }
    if (compareBallots(m.ballot, this.promised) < 0) {
      this.send({ type: "promise", to: m.from, ballot: m.ballot, reject: true, promised: this.promised });
      return;
    }
    if (compareBallots(m.ballot, this.promised) > 0) {
      this.setPromised(m.ballot);
      if (this.role !== "follower" || this.leader !== NONE) this.becomeFollower(NONE, m.ballot);
      // Give the candidate time to finish phase 1 before campaigning against it, and drop our
      // own pre-vote: grants collected before this promise must not start a duel with it.
      this.electionElapsed = 0;
      this.promisedCandidate = true;
      this.preCandidacy = undefined;
    }
    this.send({
      type: "promise",
      to: m.from,
      ballot: m.ballot,
      entries: this.acceptedFrom(m.slot),
      commit: this.chosenSlot,
      slot: this.compactedSlot,
    });
  }

  /** Phase 2b: accept unless a higher ballot was promised. */
  private onAccept(m: Message): void {
    if (compareBallots(m.ballot, this.promised) < 0) {
      this.send({ type: "accepted", to: m.from, ballot: m.ballot, reject: true, promised: this.promised });
      return;
    }
    if (compareBallots(m.ballot, this.promised) > 0) this.setPromised(m.ballot);
    this.followLeader(m.from, m.ballot);
    const slots: number[] = [];
    for (const e of m.entries) {
      slots.push(e.slot);
      if (e.slot <= this.compactedSlot || this.chosen.has(e.slot)) continue;
      const entry: SlotEntry = { slot: e.slot, ballot: m.ballot, value: e.value };
      this.accepted.set(e.slot, entry);
      this.persistAccepted.push(entry);
    }
    this.learnCommit(m.ballot, m.commit);
    this.send({ type: "accepted", to: m.from, ballot: m.ballot, slots, commit: this.chosenSlot });
  }

  private onHeartbeat(m: Message): void {
    if (compareBallots(m.ballot, this.promised) < 0) {
      this.send({
        type: "heartbeatResp",
        to: m.from,
        ballot: m.ballot,
        reject: true,
        promised: this.promised,
        context: m.context,
      });
      return;
    }
    this.followLeader(m.from, m.ballot);
    this.learnCommit(m.ballot, m.commit);
    this.send({
      type: "heartbeatResp",
      to: m.from,
      ballot: m.ballot,
      commit: this.chosenSlot,
      context: m.context,
    });
  }

  /** Chosen values are facts: any replica may learn them from any peer. */
  private onLearn(m: Message): void {
    for (const e of m.entries) this.choose(e.slot, e.value);
    this.advanceChosenPrefix();
  }

  /**
   * A commit notice: every slot up to `commit` is chosen, and where this acceptor accepted a
   * value in the leader's own ballot, that is the value the leader proposed, hence the chosen
   * one. Other slots are learned by catch-up.
   */
  private learnCommit(ballot: Ballot, commit: number): void {
    if (commit <= this.chosenSlot) return;
    const consider = (slot: number, e: SlotEntry | undefined) => {
      if (slot > this.chosenSlot && slot <= commit && e && ballotEquals(e.ballot, ballot)) {
        this.choose(slot, e.value);
      }
    };
    if (commit - this.chosenSlot <= this.accepted.size) {
      for (let s = this.chosenSlot + 1; s <= commit; s++) consider(s, this.accepted.get(s));
    } else {
      for (const [s, e] of this.accepted) consider(s, e);
    }
    this.advanceChosenPrefix();
  }

  // ---------------------------------------------------------------------------------------
  // Proposer: phase 1

  private onPromise(m: Message): void {
    if (m.context === PRE_VOTE) {
      this.onPreVoteResponse(m);
      return;
    }
    if (m.reject) {
      this.observeRejection(m.promised);
      return;
    }
    const c = this.candidacy;
    if (this.role !== "candidate" || !c || !ballotEquals(m.ballot, c.ballot)) return;
    if (m.slot >= c.fromSlot) {
      // The acceptor compacted slots we do not know chosen: it cannot report what it accepted
      // there, so phase 1 would miss values. Stand down; a leader will send us a snapshot.
      this.becomeFollower(NONE, c.ballot);
      return;
    }
    c.promises.set(m.from, m.entries);
    if (c.promises.size >= this.quorums.phase1) this.becomeLeader();
  }

  /**
   * Phase 1 is done for every slot from the candidate's chosen prefix on. For each such slot
   * it proposes the value with the highest ballot any promise reported (the Synod rule), a
   * value it already knows chosen, or a no-op where nothing was accepted.
   */
  private becomeLeader(): void {
    const c = this.candidacy!;
    const highest = new Map<number, SlotEntry>();
    for (const entries of c.promises.values()) {
      for (const e of entries) {
        const seen = highest.get(e.slot);
        if (!seen || compareBallots(e.ballot, seen.ballot) > 0) highest.set(e.slot, e);
      }
    }
    let maxSlot = this.chosenSlot;
    for (const s of highest.keys()) maxSlot = Math.max(maxSlot, s);
    for (const s of this.chosen.keys()) maxSlot = Math.max(maxSlot, s);

    const l: Leadership = {
      ballot: c.ballot,
      nextSlot: maxSlot + 1,
      recoveredSlot: maxSlot,
      inflight: new Map(),
      peerChosen: new Map(),
      active: new Set(),
      reads: [],
      nextReadSeq: 1,
      learnSentTick: new Map(),
      transferee: undefined,
    };
    this.candidacy = undefined;
    this.leadership = l;
    this.role = "leader";
    this.leader = this.id;
    this.leaderBallot = c.ballot;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;

    const slots: number[] = [];
    for (let s = this.chosenSlot + 1; s <= maxSlot; s++) {
      if (this.chosen.has(s)) continue;
      this.proposeSlot(l, s, highest.get(s)?.value ?? noopValue(c.ballot, s));
      slots.push(s);
    }
    for (const p of this.peers) {
      if (slots.length > 0) this.sendAccepts(l, p, slots);
      else this.send({ type: "heartbeat", to: p, ballot: l.ballot, commit: this.chosenSlot });
    }
    for (const s of slots) this.checkChosen(l, s);
  }

  private resendPrepares(): void {
    const c = this.candidacy;
    if (!c) return;
    for (const p of this.peers) {
      if (!c.promises.has(p)) this.send({ type: "prepare", to: p, ballot: c.ballot, slot: c.fromSlot });
    }
  }

  // ---------------------------------------------------------------------------------------
  // Proposer: phase 2

  /** The leader proposes `value` for `slot` and, as an acceptor, accepts it itself. */
  private proposeSlot(l: Leadership, slot: number, value: Value): void {
    const entry: SlotEntry = { slot, ballot: l.ballot, value };
    this.accepted.set(slot, entry);
    this.persistAccepted.push(entry);
    l.inflight.set(slot, { value, acks: new Set([this.id]), sentTick: this.ticks });
  }

  private sendAccepts(l: Leadership, to: NodeId, slots: readonly number[]): void {
    for (let i = 0; i < slots.length; i += this.maxAcceptEntries) {
      const entries: SlotEntry[] = [];
      for (const slot of slots.slice(i, i + this.maxAcceptEntries)) {
        const f = l.inflight.get(slot);
        if (f) entries.push({ slot, ballot: l.ballot, value: f.value });
      }
      if (entries.length > 0)
        this.send({ type: "accept", to, ballot: l.ballot, entries, commit: this.chosenSlot });
    }
  }

  private onAccepted(m: Message): void {
    if (m.reject) {
      this.observeRejection(m.promised);
      return;
    }
    const l = this.leadership;
    if (this.role !== "leader" || !l || !ballotEquals(m.ballot, l.ballot)) return;
    l.active.add(m.from);
    l.peerChosen.set(m.from, m.commit);
    for (const slot of m.slots) {
      const f = l.inflight.get(slot);
      if (!f) continue;
      f.acks.add(m.from);
      this.checkChosen(l, slot);
    }
    this.advanceChosenPrefix();
  }

  /** A value accepted by a phase-2 quorum in one ballot is chosen. */
  private checkChosen(l: Leadership, slot: number): void {
    const f = l.inflight.get(slot);
    if (!f || f.acks.size < this.quorums.phase2) return;
    l.inflight.delete(slot);
    this.choose(slot, f.value);
    this.advanceChosenPrefix();
  }

  private onHeartbeatResp(m: Message): void {
    if (m.reject) {
      this.observeRejection(m.promised);
      return;
    }
    const l = this.leadership;
    if (this.role !== "leader" || !l || !ballotEquals(m.ballot, l.ballot)) return;
    l.active.add(m.from);
    l.peerChosen.set(m.from, m.commit);
    const seq = Number(m.context);
    if (m.context !== "" && Number.isInteger(seq)) {
      // A heartbeat sent after read `seq` began confirms it and every earlier read.
      for (const r of l.reads) if (r.seq <= seq) r.acks.add(m.from);
      this.checkReads(l);
    }
    this.maybeSendLearn(l, m.from, m.commit);
    this.maybeSendTimeoutNow(l);
  }

  /** Catch-up: a replica that reports a chosen prefix behind the leader's gets the values. */
  private maybeSendLearn(l: Leadership, to: NodeId, theirChosen: number): void {
    if (theirChosen >= this.chosenSlot) return;
    const last = l.learnSentTick.get(to);
    if (last !== undefined && this.ticks - last < this.heartbeatTicks) return;
    l.learnSentTick.set(to, this.ticks);
    if (theirChosen < this.compactedSlot) {
      // The values it misses are compacted here: only a state-machine snapshot can help.
      if (!this.snapshotsToSend.includes(to)) this.snapshotsToSend.push(to);
      return;
    }
    const entries: SlotEntry[] = [];
    const end = Math.min(this.chosenSlot, theirChosen + this.maxCatchupSlots);
    for (let s = theirChosen + 1; s <= end; s++) {
      entries.push({ slot: s, ballot: l.ballot, value: this.chosen.get(s)! });
    }
    this.send({ type: "learn", to, ballot: l.ballot, entries, commit: this.chosenSlot });
  }

  private checkReads(l: Leadership): void {
    // Until every slot recovered in phase 1 is chosen, the chosen prefix may miss values
    // an earlier leader chose, so no read index is safe yet.
    if (this.chosenSlot < l.recoveredSlot) return;
    while (l.reads.length > 0 && l.reads[0]!.acks.size + 1 >= this.quorums.phase2) {
      const r = l.reads.shift()!;
      if (r.from === undefined) this.readStates.push({ context: r.context, index: this.chosenIndex });
      else {
        this.send({
          type: "readIndexResp",
          to: r.from,
          ballot: l.ballot,
          context: r.context,
          commit: this.chosenIndex,
        });
      }
    }
  }

  private tickLeader(): void {
    const l = this.leadership!;
    this.heartbeatElapsed++;
    if (this.heartbeatElapsed >= this.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      const context = l.reads.length > 0 ? String(l.reads.at(-1)!.seq) : "";
      for (const p of this.peers) {
        this.send({ type: "heartbeat", to: p, ballot: l.ballot, commit: this.chosenSlot, context });
      }
      this.resendStaleAccepts(l);
    }
    this.electionElapsed++;
    if (this.electionElapsed >= this.electionTicks) {
      this.electionElapsed = 0;
      // A leader that cannot reach a phase-2 quorum steps down, so that clients go elsewhere.
      // (Any new leader's phase-1 quorum meets every phase-2 quorum, so q2 is what matters.)
      const reachable = l.active.size + 1;
      l.active.clear();
      if (reachable < this.quorums.phase2) this.becomeFollower(NONE, l.ballot);
    }
  }

  /** Accepts (or their answers) may be lost: resend those unanswered for a while. */
  private resendStaleAccepts(l: Leadership): void {
    const byPeer = new Map<NodeId, number[]>();
    for (const [slot, f] of l.inflight) {
      if (this.ticks - f.sentTick < 2 * this.heartbeatTicks) continue;
      f.sentTick = this.ticks;
      for (const p of this.peers) {
        if (f.acks.has(p)) continue;
        let list = byPeer.get(p);
        if (!list) byPeer.set(p, (list = []));
        list.push(slot);
      }
    }
    for (const [p, slots] of byPeer) this.sendAccepts(l, p, slots);
  }

  // ---------------------------------------------------------------------------------------
  // Roles

  /** A message from a higher ballot's leader: follow it. */
  private followLeader(leader: NodeId, ballot: Ballot): void {
    this.electionElapsed = 0;
    if (this.role === "follower" && this.leader === leader && ballotEquals(this.leaderBallot, ballot)) return;
    if (compareBallots(ballot, this.leaderBallot) < 0 && this.role === "follower" && this.leader !== NONE) {
      // A stale leader's message that still passed the promise check: keep the newer one.
      return;
    }
    this.becomeFollower(leader, ballot);
  }

  private becomeFollower(leader: NodeId, ballot: Ballot): void {
    this.role = "follower";
    this.promisedCandidate = false;
    this.preCandidacy = undefined;
    this.leader = leader;
    this.leaderBallot = ballot;
    this.candidacy = undefined;
    this.leadership = undefined;
    this.electionElapsed = 0;
    this.electionTimeout = this.randomElectionTimeout();
  }

  /**
   * An acceptor refused us because it promised a higher ballot: another proposer is active.
   * Stand down and wait a random backoff before competing, so duelling proposers separate.
   */
  private observeRejection(promised: Ballot): void {
    if (compareBallots(promised, this.leaderBallot) <= 0 || this.role === "follower") return;
    this.becomeFollower(NONE, promised);
  }

  /** Election timeout with seeded jitter: [electionTicks, 2 * electionTicks). */
  private randomElectionTimeout(): number {
    return this.electionTicks + Math.floor(this.random() * this.electionTicks);
  }

  // ---------------------------------------------------------------------------------------
  // Helpers

  private setPromised(ballot: Ballot): void {
    this.promised = ballot;
    this.persistPromised = ballot;
  }

  private acceptedFrom(fromSlot: number): SlotEntry[] {
    const out: SlotEntry[] = [];
    for (const [s, e] of this.accepted) if (s >= fromSlot) out.push(e);
    return out.sort((a, b) => a.slot - b.slot);
  }

  private choose(slot: number, value: Value): void {
    if (slot <= this.compactedSlot || this.chosen.has(slot)) return;
    this.chosen.set(slot, value);
    this.persistChosen.push({ slot, value });
  }

  private dropThrough(c: Compaction): void {
    for (const s of [...this.accepted.keys()]) if (s <= c.slot) this.accepted.delete(s);
    for (const s of [...this.chosen.keys()]) if (s <= c.slot) this.chosen.delete(s);
    this.persistAccepted = this.persistAccepted.filter((e) => e.slot > c.slot);
    this.persistChosen = this.persistChosen.filter((e) => e.slot > c.slot);
    this.compactedSlot = c.slot;
    this.compactedIndex = c.index;
    this.persistCompact = c;
  }

  private advanceChosenPrefix(): void {
    const before = this.chosenSlot;
    for (;;) {
      const v = this.chosen.get(this.chosenSlot + 1);
      if (!v) break;
      this.chosenSlot++;
      this.chosenIndex += valueWidth(v);
    }
    if (this.chosenSlot !== before && this.leadership) this.checkReads(this.leadership);
  }

  private send(fields: MessageFields): void {
    this.messages.push({
      from: this.id,
      slot: 0,
      entries: EMPTY,
      commit: 0,
      reject: false,
      promised: ZERO_BALLOT,
      context: "",
      slots: EMPTY,
      ...fields,
    });
  }
}

function positive(name: string, n: number): number {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`${name} must be a positive integer, got ${n}`);
  return n;
}
