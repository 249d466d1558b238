import type { Decision, TxnMessage } from "../core/types.js";
import * as pb from "../gen/quorum/txn/v1/txn.js";

/** The Transport channel two-phase commit runs on. */
export const txnChannel = "txn/v1";

/** Bounds on what a peer may send us (DESIGN.md rule 5). */
export const maxTxIdLength = 256;

const empty = (): pb.Envelope => ({
  prepare: undefined,
  vote: undefined,
  decision: undefined,
  ack: undefined,
  outcomeQuery: undefined,
  outcomeReply: undefined,
});

function outcomeToPb(o: Decision | "pending"): pb.Outcome {
  if (o === "commit") return pb.Outcome.OUTCOME_COMMIT;
  if (o === "abort") return pb.Outcome.OUTCOME_ABORT;
  return pb.Outcome.OUTCOME_PENDING;
}

export function encodeMessage(m: TxnMessage): Uint8Array {
  const e = empty();
  switch (m.type) {
    case "prepare":
      e.prepare = { txId: m.txId, ops: Buffer.from(m.ops), startTs: m.startTs };
      break;
    case "vote":
      e.vote = {
        txId: m.txId,
        yes: m.yes,
        reason: m.reason,
        retryable: m.retryable,
        result: Buffer.from(m.result),
      };
      break;
    case "decision":
      e.decision = { txId: m.txId, outcome: outcomeToPb(m.decision) };
      break;
    case "ack":
      e.ack = { txId: m.txId };
      break;
    case "outcomeQuery":
      e.outcomeQuery = { txId: m.txId };
      break;
    case "outcomeReply":
      e.outcomeReply = { txId: m.txId, outcome: outcomeToPb(m.outcome) };
      break;
  }
  return pb.Envelope.encode(e).finish();
}

const validId = (id: string) => id.length > 0 && id.length <= maxTxIdLength;

/**
 * Decodes one payload; a malformed message (bad bytes, no body or two bodies, an empty or
 * oversized id, an unknown outcome) gives `undefined` for the caller to drop and count.
 */
export function decodeMessage(bytes: Uint8Array): TxnMessage | undefined {
  let e: pb.Envelope;
  try {
    e = pb.Envelope.decode(bytes);
  } catch {
    return undefined;
  }
  const bodies = [e.prepare, e.vote, e.decision, e.ack, e.outcomeQuery, e.outcomeReply].filter(
    (b) => b !== undefined,
  );
  if (bodies.length !== 1) return undefined;
  if (e.prepare) {
    const { txId, ops, startTs } = e.prepare;
    if (!validId(txId) || !Number.isSafeInteger(startTs) || startTs < 0) return undefined;
    return { type: "prepare", txId, ops: new Uint8Array(ops), startTs };
  }
  if (e.vote) {
    const { txId, yes, reason, retryable, result } = e.vote;
    if (!validId(txId)) return undefined;
    return { type: "vote", txId, yes, reason, retryable, result: new Uint8Array(result) };
  }
  if (e.decision) {
    const { txId, outcome } = e.decision;
    if (!validId(txId)) return undefined;
    if (outcome === pb.Outcome.OUTCOME_COMMIT) return { type: "decision", txId, decision: "commit" };
    if (outcome === pb.Outcome.OUTCOME_ABORT) return { type: "decision", txId, decision: "abort" };
    return undefined;
  }
  if (e.ack) return validId(e.ack.txId) ? { type: "ack", txId: e.ack.txId } : undefined;
  if (e.outcomeQuery) {
    return validId(e.outcomeQuery.txId) ? { type: "outcomeQuery", txId: e.outcomeQuery.txId } : undefined;
  }
  if (e.outcomeReply) {
    const { txId, outcome } = e.outcomeReply;
    if (!validId(txId)) return undefined;
    if (outcome === pb.Outcome.OUTCOME_COMMIT) return { type: "outcomeReply", txId, outcome: "commit" };
    if (outcome === pb.Outcome.OUTCOME_ABORT) return { type: "outcomeReply", txId, outcome: "abort" };
    if (outcome === pb.Outcome.OUTCOME_PENDING) return { type: "outcomeReply", txId, outcome: "pending" };
  }
  return undefined;
}
