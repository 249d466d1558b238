export type { ConsensusErrorCode } from "./errors.js";
export { ConsensusError, isConsensusError } from "./errors.js";
export type {
  LogEvent,
  LogStatus,
  Member,
  MembershipChange,
  Proposed,
  ProposeOptions,
  ReplicatedLog,
  Role,
} from "./replicated-log.js";
export { bytesSnapshot, readSnapshot } from "./snapshot.js";
export type { LogEntry, Snapshot, StateMachine } from "./state-machine.js";
