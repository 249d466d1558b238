import type { LogEntry } from "./state-machine.js";

export type Role = "leader" | "follower" | "candidate" | "learner" | "stopped";

export interface Member {
  readonly id: string;
  /** Peer (node-to-node) address. */
  readonly address: string;
  /** A learner receives the log but neither votes nor counts toward a quorum. */
  readonly learner: boolean;
}

export interface LogStatus {
  readonly nodeId: string;
  readonly role: Role;
  /** The leader this node knows of, if any. */
  readonly leaderId: string | undefined;
  /** Raft's term, Paxos's ballot round: rises with every leadership change. */
  readonly term: number;
  /** Highest index known committed (by a quorum). */
  readonly commitIndex: number;
  /** Highest index applied to the local state machine. */
  readonly appliedIndex: number;
  readonly members: readonly Member[];
}

export interface ProposeOptions {
  /** Give up after this long (the outcome is then unknown: TIMEOUT). */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

export interface Proposed<Result> {
  /** Where the command landed in the log. */
  readonly index: number;
  /** What the state machine's `apply` returned for it, on this node. */
  readonly result: Result;
}

export type MembershipChange =
  | { readonly type: "addLearner"; readonly member: Omit<Member, "learner"> }
  | { readonly type: "promote"; readonly id: string }
  | { readonly type: "addVoter"; readonly member: Omit<Member, "learner"> }
  | { readonly type: "remove"; readonly id: string };

export type LogEvent =
  | { readonly type: "leaderChanged"; readonly leaderId: string | undefined; readonly term: number }
  | { readonly type: "roleChanged"; readonly role: Role }
  | { readonly type: "applied"; readonly index: number }
  | { readonly type: "membersChanged"; readonly members: readonly Member[] };

/**
 * A replicated, totally ordered log of commands driving one StateMachine per replica:
 * what Raft and Multi-Paxos both provide. `@quorum/kv` runs on any implementation.
 */
export interface ReplicatedLog<Result = unknown> {
  readonly nodeId: string;
  /** Recovers durable state, replays committed entries into the state machine, joins the cluster. */
  start(): Promise<void>;
  /**
   * Appends `command` and resolves once it is committed and applied on this node, with the
   * state machine's result. Only the leader accepts proposals; others reject with
   * `ConsensusError` NOT_LEADER carrying the leader hint.
   */
  propose(command: Uint8Array, options?: ProposeOptions): Promise<Proposed<Result>>;
  /** Several commands in order, as one batch where the protocol allows it. */
  proposeBatch?(commands: readonly Uint8Array[], options?: ProposeOptions): Promise<Proposed<Result>[]>;
  /**
   * A linearizable read barrier: resolves once this node's state machine reflects every
   * command committed before the call (ReadIndex), with that index. Reading the local state
   * machine afterwards is linearizable. Rejects as `propose` does when it cannot.
   */
  read(options?: ProposeOptions): Promise<{ readonly index: number }>;
  status(): LogStatus;
  /** Changes the membership; resolves when the change is committed. One at a time. */
  changeMembership(change: MembershipChange, options?: ProposeOptions): Promise<readonly Member[]>;
  /** Hands leadership to `id` (a caught-up voter); resolves when it leads, or rejects. */
  transferLeadership?(id: string, options?: ProposeOptions): Promise<void>;
  /** Subscribes to events; returns the unsubscribe function. */
  subscribe(listener: (event: LogEvent) => void): () => void;
  /** Stops the node: pending proposals reject with SHUTTING_DOWN; durable state stays. */
  close(): Promise<void>;
}

export type { LogEntry };
