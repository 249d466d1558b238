export {
  type CoordinatorConfig,
  CoordinatorCore,
  type CoordinatorCounters,
  type CoordinatorPhase,
  type CoordinatorReady,
  type DecisionRecord,
  defaultCoordinatorConfig,
  type TxPart,
  type TxResult,
} from "./core/coordinator.js";
export { type LockAnswer, type LockRequest, LockTable } from "./core/lock-table.js";
export {
  defaultParticipantConfig,
  type InDoubt,
  type ParticipantAction,
  type ParticipantConfig,
  ParticipantCore,
  type ParticipantCounters,
  type ParticipantPhase,
  type ParticipantReady,
} from "./core/participant.js";
export type { Decision, NodeName, Outgoing, TxId, TxnMessage, Vote } from "./core/types.js";
export { isOlder } from "./core/types.js";
export { type DecisionLog, MemoryDecisionLog, SqliteDecisionLog } from "./decision-log.js";
export { TxnError, type TxnErrorCode } from "./errors.js";
export { KvParticipant, type KvParticipantOptions } from "./kv/kv-participant.js";
export {
  decodeKvOps,
  decodeKvReads,
  encodeKvOps,
  encodeKvReads,
  type KvOp,
  type KvReads,
  maxKeyBytes,
  maxOpsPerParticipant,
  maxValueBytes,
} from "./kv/ops.js";
export {
  type KvLoaded,
  type KvStorage,
  MemoryKvStorage,
  type PreparedRecord,
  SqliteKvStorage,
} from "./kv/storage.js";
export { type BeginOptions, CoordinatorNode, type CoordinatorNodeOptions } from "./node/coordinator-node.js";
export { ParticipantNode, type ParticipantNodeOptions } from "./node/participant-node.js";
export type { Participant, ParticipantTxStatus, PrepareRequest } from "./participant.js";
export { ShardTxnEngine, type ShardTxnEngineOptions } from "./shards/engine.js";
export {
  branchError,
  commitRevision,
  comparesHold,
  txnResponse,
  type Verdict,
  verdict,
} from "./shards/outcome.js";
export { type Placement, planTxn, type TxnPlan } from "./shards/plan.js";
export { ShardTxnRecovery } from "./shards/recovery.js";
export { decodeMessage, encodeMessage, maxTxIdLength, txnChannel } from "./wire/codec.js";
