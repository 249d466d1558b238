import { describe, expect, it } from "vitest";
import type { TxnMessage } from "../core/types.js";
import * as pb from "../gen/quorum/txn/v1/txn.js";
import { decodeMessage, encodeMessage, maxTxIdLength } from "./codec.js";

const b = (s: string) => new TextEncoder().encode(s);

describe("wire codec", () => {
  it("round-trips every message", () => {
    const messages: TxnMessage[] = [
      { type: "prepare", txId: "t", ops: b("ops"), startTs: 42 },
      { type: "vote", txId: "t", yes: true, reason: "", retryable: false, result: b("r") },
      { type: "vote", txId: "t", yes: false, reason: "locked", retryable: true, result: new Uint8Array(0) },
      { type: "decision", txId: "t", decision: "commit" },
      { type: "decision", txId: "t", decision: "abort" },
      { type: "ack", txId: "t" },
      { type: "outcomeQuery", txId: "t" },
      { type: "outcomeReply", txId: "t", outcome: "pending" },
      { type: "outcomeReply", txId: "t", outcome: "commit" },
    ];
    for (const m of messages) expect(decodeMessage(encodeMessage(m))).toEqual(m);
  });

  it("drops malformed input instead of throwing", () => {
    expect(decodeMessage(new Uint8Array([0xff, 0xff, 0xff]))).toBeUndefined();
    expect(decodeMessage(new Uint8Array(0))).toBeUndefined(); // no body
    expect(
      decodeMessage(encodeMessage({ type: "ack", txId: "x".repeat(maxTxIdLength + 1) })),
    ).toBeUndefined();
    const empty = { prepare: undefined, vote: undefined, decision: undefined, outcomeQuery: undefined };
    const twoBodies = pb.Envelope.encode({
      ...empty,
      ack: { txId: "a" },
      outcomeReply: { txId: "a", outcome: 1 },
    });
    expect(decodeMessage(twoBodies.finish())).toBeUndefined();
    const badOutcome = pb.Envelope.encode({
      ...empty,
      ack: undefined,
      outcomeReply: undefined,
      decision: { txId: "a", outcome: pb.Outcome.OUTCOME_PENDING },
    });
    expect(decodeMessage(badOutcome.finish())).toBeUndefined();
  });
});
