/** A node's name in a cluster, as the transport knows it. */
export type NodeId = string;

/** No node: no leader known. */
export const NONE: NodeId = "";

/**
 * A ballot number (Lamport's "ballot", Multi-Paxos's "round"). Ordered by `round`, then by
 * `node`, so two proposers never share one.
 */
export interface Ballot {
  readonly round: number;
  readonly node: NodeId;
}

/** Lower than every ballot a proposer uses (rounds start at 1). */
export const ZERO_BALLOT: Ballot = { round: 0, node: NONE };

export function compareBallots(a: Ballot, b: Ballot): number {
  if (a.round !== b.round) return a.round < b.round ? -1 : 1;
  return a.node < b.node ? -1 : a.node > b.node ? 1 : 0;
}

export function ballotEquals(a: Ballot, b: Ballot): boolean {
  return a.round === b.round && a.node === b.node;
}

export function maxBallot(a: Ballot, b: Ballot): Ballot {
  return compareBallots(a, b) >= 0 ? a : b;
}

export function formatBallot(b: Ballot): string {
  return `(${b.round},${b.node})`;
}

/**
 * What one slot holds: a batch of application commands, or a no-op (no commands) that a new
 * leader uses to fill a gap. `id` names the proposal so its proposer can tell whether the
 * slot was chosen with its value.
 */
export interface Value {
  readonly id: string;
  readonly commands: readonly Uint8Array[];
}

export function isNoop(v: Value): boolean {
  return v.commands.length === 0;
}

/**
 * How many log indexes a slot's value takes: one per command, and one for a no-op (so the
 * `ReplicatedLog` index has no gaps among all entries, the protocol's own included).
 */
export function valueWidth(v: Value): number {
  return Math.max(1, v.commands.length);
}

/** A value in a slot under a ballot (an acceptor's accepted pair, or a proposal). */
export interface SlotEntry {
  readonly slot: number;
  readonly ballot: Ballot;
  readonly value: Value;
}

export type MessageType =
  | "prepare"
  | "promise"
  | "accept"
  | "accepted"
  | "heartbeat"
  | "heartbeatResp"
  | "learn"
  | "readIndex"
  | "readIndexResp"
  | "timeoutNow";

/**
 * One flat message shape for every type. Field meanings by type:
 * - prepare: `ballot` is the candidate's; `slot` the first slot it does not know chosen.
 * - promise: `entries` are the acceptor's accepted values at or after that slot; `slot` is the
 *   acceptor's compaction point (values it no longer has).
 * - accept: `entries` are values proposed in `ballot`; `commit` is the leader's chosen prefix.
 * - accepted: `slots` are the slots accepted in `ballot`.
 * - heartbeat: `commit` is the leader's chosen prefix; `context` names a read-barrier round.
 * - promise, accepted, heartbeatResp: `commit` is the responder's own chosen prefix.
 * - learn: `entries` are chosen values, for a replica that lags (their ballots are unused).
 * - readIndex: a follower asks its leader (`ballot` is the leader's, as the follower knows
 *   it) to run a read barrier for `context`.
 * - readIndexResp: `commit` is the log index the read must wait for, or `reject` when the
 *   receiver does not lead.
 * - timeoutNow: the leader (`ballot` is its) asks a caught-up follower to campaign at once.
 * - a response with `reject`: `promised` is the higher ballot the acceptor has promised.
 */
export interface Message {
  readonly type: MessageType;
  readonly from: NodeId;
  readonly to: NodeId;
  readonly ballot: Ballot;
  readonly slot: number;
  readonly entries: readonly SlotEntry[];
  readonly commit: number;
  readonly reject: boolean;
  readonly promised: Ballot;
  readonly context: string;
  readonly slots: readonly number[];
}

export type MessageFields = Partial<Message> & Pick<Message, "type" | "to" | "ballot">;

export type Role = "follower" | "candidate" | "leader";

/**
 * Acceptor state that must be durable before any message that depends on it is sent: the
 * promised ballot, the accepted (ballot, value) per slot, and the chosen values learned.
 */
export interface AcceptorState {
  readonly promised: Ballot;
  /** Accepted entries by slot. */
  readonly accepted: ReadonlyMap<number, SlotEntry>;
  /** Chosen values by slot (not necessarily a prefix: gaps are filled by catch-up). */
  readonly chosen: ReadonlyMap<number, Value>;
  /**
   * Every slot up to here is chosen and reflected in the state machine's durable state, and
   * its values are gone from this store (log compaction). Absent: nothing compacted.
   */
  readonly compacted?: Compaction | undefined;
}

/** A compaction point: slots up to `slot` are dropped; `index` is the log index of its last entry. */
export interface Compaction {
  readonly slot: number;
  readonly index: number;
}

/** What the host persists from one Ready, in one durable write (group commit). */
export interface AcceptorUpdate {
  readonly promised?: Ballot | undefined;
  readonly accepted: readonly SlotEntry[];
  readonly chosen: readonly { readonly slot: number; readonly value: Value }[];
  /** Applied after the rest of the update: drop every accepted and chosen entry up to `compact.slot`. */
  readonly compact?: Compaction | undefined;
}

/** A slot in the chosen prefix, handed to the host to apply, with its first log index. */
export interface ChosenSlot {
  readonly slot: number;
  /** Log index of the value's first command (or of the no-op). */
  readonly index: number;
  readonly value: Value;
}

/** A read barrier confirmed: once the state machine has applied `index`, a read for `context` is linearizable. */
export interface ReadState {
  readonly context: string;
  readonly index: number;
  /** The leader a follower asked no longer leads: the read fails (NOT_LEADER) and may be retried. */
  readonly refused?: boolean;
}
