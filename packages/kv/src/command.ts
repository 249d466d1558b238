import type {
  CompactionRequest,
  DeleteRangeRequest,
  LeaseGrantRequest,
  LeaseRevokeRequest,
  PutRequest,
  TxnRequest,
} from "./gen/etcdserverpb/rpc.js";
import { Command } from "./gen/quorum/kv/v1/command.js";

/** The bytes proposed to the log for one etcd write request. */
export const encodeCommand = {
  put: (put: PutRequest): Uint8Array => Command.encode({ put }).finish(),
  deleteRange: (deleteRange: DeleteRangeRequest): Uint8Array => Command.encode({ deleteRange }).finish(),
  txn: (txn: TxnRequest): Uint8Array => Command.encode({ txn }).finish(),
  compaction: (compaction: CompactionRequest): Uint8Array => Command.encode({ compaction }).finish(),
  leaseGrant: (leaseGrant: LeaseGrantRequest): Uint8Array => Command.encode({ leaseGrant }).finish(),
  leaseRevoke: (leaseRevoke: LeaseRevokeRequest): Uint8Array => Command.encode({ leaseRevoke }).finish(),
};
