export { encodeCommand } from "./command.js";
export { EtcdError, etcdErrors, isEtcdError } from "./errors.js";
// etcd's message types and codecs (ts-proto: `X.fromPartial`, `X.encode`), for callers that
// build requests without a gRPC client.
export {
  Compare,
  Compare_CompareResult,
  Compare_CompareTarget,
  PutRequest,
  RangeRequest,
  type RangeResponse,
  type RequestOp,
  type ResponseOp,
  TxnRequest,
  type TxnResponse,
} from "./gen/etcdserverpb/rpc.js";
export type { KeyValue } from "./gen/mvccpb/kv.js";
export type {
  BranchResult,
  TxnDecision,
  TxnForget,
  TxnPart,
  TxnPrepared,
  TxnState,
  TxnVote,
} from "./gen/quorum/kv/v1/command.js";
export { TxnVote_CompareResult, TxnVote_Outcome } from "./gen/quorum/kv/v1/command.js";
export type { KvServer, KvServiceOptions, MemberInfo } from "./server/kv-server.js";
export { KvService, startKvService } from "./server/kv-server.js";
export { defaultMaxRequestBytes, defaultMaxTxnOps } from "./server/validate.js";
export { mergeDelete, mergeRange } from "./shard/merge.js";
export type { CrossShardTxn, ShardedKvServiceOptions, ShardReplica, ShardTxnAccess } from "./shard/router.js";
export { ShardedKvService, startShardedKvService } from "./shard/router.js";
export { defaultSplitPoints, ShardMap } from "./shard/split.js";
export { evaluateCompare } from "./store/compare.js";
export type { Intent as PreparedTxn } from "./store/intents.js";
export type { KeyRange } from "./store/keys.js";
export { inRange, keyRange, prefixEnd } from "./store/keys.js";
export type { ApplyResult, KvStoreOptions, RevisionChanges } from "./store/kv-store.js";
export { KvStore, revisionHeader } from "./store/kv-store.js";
