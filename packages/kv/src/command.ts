import type {
  CompactionRequest,
  DeleteRangeRequest,
  LeaseGrantRequest,
  LeaseRevokeRequest,
  PutRequest,
  TxnRequest,
} from "./gen/etcdserverpb/rpc.js";
import {
  Command,
  type TxnDecision,
  type TxnFence,
  type TxnForget,
  type TxnPart,
} from "./gen/quorum/kv/v1/command.js";

/** The bytes proposed to the log for one etcd write request. */
export const encodeCommand = {
  put: (put: PutRequest): Uint8Array => Command.encode({ put, floor: 0n, batch: [] }).finish(),
  deleteRange: (deleteRange: DeleteRangeRequest): Uint8Array =>
    Command.encode({ deleteRange, floor: 0n, batch: [] }).finish(),
  txn: (txn: TxnRequest): Uint8Array => Command.encode({ txn, floor: 0n, batch: [] }).finish(),
  compaction: (compaction: CompactionRequest): Uint8Array =>
    Command.encode({ compaction, floor: 0n, batch: [] }).finish(),
  leaseGrant: (leaseGrant: LeaseGrantRequest): Uint8Array =>
    Command.encode({ leaseGrant, floor: 0n, batch: [] }).finish(),
  leaseRevoke: (leaseRevoke: LeaseRevokeRequest): Uint8Array =>
    Command.encode({ leaseRevoke, floor: 0n, batch: [] }).finish(),
  txnPrepare: (txnPrepare: TxnPart): Uint8Array =>
    Command.encode({ txnPrepare, floor: 0n, batch: [] }).finish(),
  txnDecide: (txnDecide: TxnDecision): Uint8Array =>
    Command.encode({ txnDecide, floor: 0n, batch: [] }).finish(),
  txnFence: (txnFence: TxnFence): Uint8Array => Command.encode({ txnFence, floor: 0n, batch: [] }).finish(),
  txnForget: (txnForget: TxnForget): Uint8Array =>
    Command.encode({ txnForget, floor: 0n, batch: [] }).finish(),
  /** Commands proposed together, in one entry (see `Command.batch`). */
  batch: (commands: readonly Uint8Array[]): Uint8Array =>
    Command.encode({
      floor: 0n,
      batch: commands.map((c) => Buffer.from(c.buffer, c.byteOffset, c.byteLength)),
    }).finish(),
};
