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

/** A Command with no floor and no batch of its own, encoded. */
const encode = (op: Partial<Command>): Uint8Array => Command.encode({ floor: 0n, batch: [], ...op }).finish();

/** The bytes proposed to the log for one etcd write request. */
export const encodeCommand = {
  put: (put: PutRequest): Uint8Array => encode({ put }),
  deleteRange: (deleteRange: DeleteRangeRequest): Uint8Array => encode({ deleteRange }),
  txn: (txn: TxnRequest): Uint8Array => encode({ txn }),
  compaction: (compaction: CompactionRequest): Uint8Array => encode({ compaction }),
  leaseGrant: (leaseGrant: LeaseGrantRequest): Uint8Array => encode({ leaseGrant }),
  leaseRevoke: (leaseRevoke: LeaseRevokeRequest): Uint8Array => encode({ leaseRevoke }),
  txnPrepare: (txnPrepare: TxnPart): Uint8Array => encode({ txnPrepare }),
  txnDecide: (txnDecide: TxnDecision): Uint8Array => encode({ txnDecide }),
  txnFence: (txnFence: TxnFence): Uint8Array => encode({ txnFence }),
  txnForget: (txnForget: TxnForget): Uint8Array => encode({ txnForget }),
  /** Commands proposed together, in one entry (see `Command.batch`). */
  batch: (commands: readonly Uint8Array[]): Uint8Array =>
    encode({ batch: commands.map((c) => Buffer.from(c.buffer, c.byteOffset, c.byteLength)) }),
};
