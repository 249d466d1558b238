import { describe, expect, it } from "vitest";
import type { Message } from "./core/types.js";
import * as pb from "./gen/quorum/paxos/v1/paxos.js";
import { decodeMessage, encodeMessage, MalformedMessage } from "./wire.js";

const base: Message = {
  type: "accept",
  from: "n1",
  to: "n2",
  ballot: { round: 7, node: "n1" },
  slot: 0,
  entries: [
    { slot: 3, ballot: { round: 7, node: "n1" }, value: { id: "v", commands: [new Uint8Array([1, 2])] } },
  ],
  commit: 2,
  reject: false,
  promised: { round: 0, node: "" },
  context: "",
  slots: [],
};

describe("wire", () => {
  it("round-trips a message", () => {
    const m = decodeMessage(encodeMessage(base));
    expect(m.type).toBe("accept");
    expect(m.ballot).toEqual(base.ballot);
    expect(m.entries[0]!.slot).toBe(3);
    expect([...m.entries[0]!.value.commands[0]!]).toEqual([1, 2]);
    expect(m.commit).toBe(2);
  });

  it("rejects garbage bytes as malformed instead of throwing anything else", () => {
    expect(() => decodeMessage(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x0f]))).toThrow(MalformedMessage);
  });

  it("rejects a message without a ballot, sender or known type", () => {
    const noBallot = pb.Message.encode({
      ...pb.Message.fromPartial({ type: 3, from: "a", to: "b" }),
    }).finish();
    expect(() => decodeMessage(noBallot)).toThrow(/ballot is missing/);
    const noType = pb.Message.encode(
      pb.Message.fromPartial({ from: "a", to: "b", ballot: { round: 1, node: "a" } }),
    ).finish();
    expect(() => decodeMessage(noType)).toThrow(/unknown message type/);
    const noFrom = pb.Message.encode(
      pb.Message.fromPartial({ type: 1, to: "b", ballot: { round: 1, node: "a" } }),
    ).finish();
    expect(() => decodeMessage(noFrom)).toThrow(/without sender/);
  });

  it("rejects an entry for slot 0 or without a value", () => {
    const slot0 = pb.Message.fromPartial({
      type: 3,
      from: "a",
      to: "b",
      ballot: { round: 1, node: "a" },
      entries: [{ slot: 0, value: { id: "x" } }],
    });
    expect(() => decodeMessage(pb.Message.encode(slot0).finish())).toThrow(/slot 0/);
    const noValue = pb.Message.fromPartial({
      type: 3,
      from: "a",
      to: "b",
      ballot: { round: 1, node: "a" },
      entries: [{ slot: 1 }],
    });
    expect(() => decodeMessage(pb.Message.encode(noValue).finish())).toThrow(/no value/);
  });
});
