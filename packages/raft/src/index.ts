export { applyConfChange, decodeConfChange, encodeConfChange } from "./core/config.js";
export { RaftLog } from "./core/log.js";
export type { ProgressState } from "./core/progress.js";
export {
  type FollowerStatus,
  type ProposeResult,
  Raft,
  type RaftConfig,
  type RaftStatus,
  type Ready,
} from "./core/raft.js";
export { type LogStore, type LogUpdate, MemoryStorage, type Storage, StorageError } from "./core/storage.js";
export {
  type ConfChange,
  EMPTY_HARD_STATE,
  EMPTY_SNAPSHOT,
  type Entry,
  type EntryType,
  type HardState,
  type Message,
  type MessageType,
  NONE,
  type NodeId,
  type RaftMember,
  type ReadState,
  type Role,
  type SnapshotMeta,
  type SoftState,
} from "./core/types.js";
export { RaftMetrics } from "./node/metrics.js";
export { type CoreOptions, type Logger, RaftNode, type RaftNodeOptions } from "./node/raft-node.js";
export { openDatabase, SqliteLogStore, type SqliteLogStoreOptions } from "./storage/sqlite-log-store.js";
export {
  type DecodeResult,
  decodeFrame,
  encodeFrame,
  type RaftFrame,
  type SnapshotAck,
  type SnapshotChunk,
} from "./wire/codec.js";
