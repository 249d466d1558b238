export {
  Paxos,
  type PaxosConfig,
  type PaxosStatus,
  type ProposeOutcome,
  type Ready,
} from "./core/paxos.js";
export { checkQuorums, majorityQuorums, type Quorums } from "./core/quorum.js";
export {
  type AcceptorState,
  type AcceptorUpdate,
  type Ballot,
  ballotEquals,
  type ChosenSlot,
  type Compaction,
  compareBallots,
  type Message,
  type MessageType,
  NONE,
  type NodeId,
  type ReadState,
  type Role,
  type SlotEntry,
  type Value,
  valueWidth,
  ZERO_BALLOT,
} from "./core/types.js";
export { PaxosMetrics } from "./node/metrics.js";
export { type Logger, PaxosNode, type PaxosNodeOptions, type PaxosNodeStats } from "./node/paxos-node.js";
export { type AcceptorStore, MemoryAcceptorStore, StorageError } from "./storage/acceptor-store.js";
export { SqliteAcceptorStore } from "./storage/sqlite-acceptor-store.js";
export {
  decodeMessage,
  encodeMessage,
  MalformedMessage,
  PAXOS_CHANNEL,
  PAXOS_SNAPSHOT_CHANNEL,
} from "./wire.js";
