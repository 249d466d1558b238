/** A node's name in a cluster, as the transport knows it. */
export type NodeId = string;

/** No node: no vote cast, no leader known. */
export const NONE: NodeId = "";

/**
 * - `normal`: an application command.
 * - `noop`: the empty entry a new leader appends to commit entries of earlier terms (§8).
 * - `config`: a single-server membership change, in effect as soon as it is appended (§4.1
 *   of Ongaro's dissertation).
 */
export type EntryType = "normal" | "noop" | "config";

export interface Entry {
  readonly term: number;
  readonly index: number;
  readonly type: EntryType;
  readonly data: Uint8Array;
}

/** A member of the configuration; `address` travels with it so every node can reach it. */
export interface RaftMember {
  readonly id: NodeId;
  readonly address: string;
  /** A learner receives the log but neither votes nor counts toward a quorum. */
  readonly learner: boolean;
}

export type ConfChange =
  | { readonly type: "addLearner"; readonly id: NodeId; readonly address: string }
  | { readonly type: "addVoter"; readonly id: NodeId; readonly address: string }
  | { readonly type: "promote"; readonly id: NodeId }
  | { readonly type: "remove"; readonly id: NodeId };

/** State that must be durable before any message that depends on it is sent (Figure 2). */
export interface HardState {
  readonly term: number;
  /** votedFor: the candidate that received this node's vote in `term`, or NONE. */
  readonly vote: NodeId;
  readonly commit: number;
}

export const EMPTY_HARD_STATE: HardState = { term: 0, vote: NONE, commit: 0 };

/** What a snapshot covers: the last index and term it replaces, and the configuration there. */
export interface SnapshotMeta {
  readonly index: number;
  readonly term: number;
  readonly members: readonly RaftMember[];
}

export const EMPTY_SNAPSHOT: SnapshotMeta = { index: 0, term: 0, members: [] };

export type MessageType =
  | "preVote"
  | "preVoteResp"
  | "vote"
  | "voteResp"
  | "append"
  | "appendResp"
  | "heartbeat"
  | "heartbeatResp"
  | "snapshot"
  | "timeoutNow"
  | "readIndex"
  | "readIndexResp";

/**
 * One flat message shape for every type, as etcd's raftpb.Message. Field meanings by type:
 * - vote/preVote: `index`/`logTerm` are the candidate's lastLogIndex/lastLogTerm.
 * - append: `index`/`logTerm` are prevLogIndex/prevLogTerm, `commit` is leaderCommit.
 * - appendResp: accepted: `index` is the follower's new matchIndex; rejected: `index` is the
 *   rejected prevLogIndex, `rejectHint`/`logTerm` the follower's conflict index and term there.
 * - heartbeat(Resp)/readIndex(Resp): `context` identifies a ReadIndex round.
 * - snapshot: `snapshot` is the metadata; the runtime streams the bytes.
 */
export interface Message {
  readonly type: MessageType;
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: number;
  readonly logTerm: number;
  readonly index: number;
  readonly entries: readonly Entry[];
  readonly commit: number;
  readonly reject: boolean;
  readonly rejectHint: number;
  readonly context: string;
  readonly snapshot: SnapshotMeta | undefined;
}

export type MessageFields = Partial<Message> & Pick<Message, "type" | "to">;

export type Role = "follower" | "preCandidate" | "candidate" | "leader";

/** A ReadIndex answer: once the state machine has applied `index`, a read for `context` is linearizable. */
export interface ReadState {
  readonly index: number;
  readonly context: string;
}

export interface SoftState {
  readonly leader: NodeId;
  readonly role: Role;
}

export function entrySize(e: Entry): number {
  return e.data.byteLength + 24;
}
