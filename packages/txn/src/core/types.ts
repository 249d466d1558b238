/** A transaction's id: unique forever (a coordinator never reuses one, even after a restart). */
export type TxId = string;

/** A node's name on the Transport (coordinator or participant). */
export type NodeName = string;

export type Decision = "commit" | "abort";

/** A participant's answer to prepare. A yes vote is a promise: it is durable and holds locks. */
export type Vote =
  | { readonly yes: true; readonly result: Uint8Array }
  | { readonly yes: false; readonly reason: string; readonly retryable: boolean };

/** Messages of the protocol, as the cores see them (the wire codec maps them to protobuf). */
export type TxnMessage =
  | { readonly type: "prepare"; readonly txId: TxId; readonly ops: Uint8Array; readonly startTs: number }
  | ({ readonly type: "vote"; readonly txId: TxId } & VoteFields)
  | { readonly type: "decision"; readonly txId: TxId; readonly decision: Decision }
  | { readonly type: "ack"; readonly txId: TxId }
  | { readonly type: "outcomeQuery"; readonly txId: TxId }
  | { readonly type: "outcomeReply"; readonly txId: TxId; readonly outcome: Decision | "pending" };

export interface VoteFields {
  readonly yes: boolean;
  readonly reason: string;
  readonly retryable: boolean;
  readonly result: Uint8Array;
}

export interface Outgoing {
  readonly to: NodeName;
  readonly message: TxnMessage;
}

export function voteFields(vote: Vote): VoteFields {
  return vote.yes
    ? { yes: true, reason: "", retryable: false, result: vote.result }
    : { yes: false, reason: vote.reason, retryable: vote.retryable, result: new Uint8Array(0) };
}

export function voteFromFields(f: VoteFields): Vote {
  return f.yes ? { yes: true, result: f.result } : { yes: false, reason: f.reason, retryable: f.retryable };
}

/**
 * Wait-die order: the transaction that started first is older; ties break on the id so two
 * transactions are never equally old.
 */
export function isOlder(a: { startTs: number; txId: TxId }, b: { startTs: number; txId: TxId }): boolean {
  return a.startTs < b.startTs || (a.startTs === b.startTs && a.txId < b.txId);
}
