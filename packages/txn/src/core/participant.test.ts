import { describe, expect, it } from "vitest";
import { ParticipantCore, type ParticipantReady } from "./participant.js";
import type { TxnMessage } from "./types.js";

const bytes = (s: string) => new TextEncoder().encode(s);
const prepare = (txId: string): TxnMessage => ({ type: "prepare", txId, ops: bytes("ops"), startTs: 1 });
const decision = (txId: string, d: "commit" | "abort"): TxnMessage => ({
  type: "decision",
  txId,
  decision: d,
});

function show(r: ParticipantReady) {
  return [
    ...r.actions.map((a) => `do:${a.kind}`),
    ...r.messages.map(({ to, message: m }) =>
      m.type === "vote" ? `${to}:vote-${m.yes ? "yes" : "no"}` : `${to}:${m.type}`,
    ),
  ];
}

const core = () => new ParticipantCore({ outcomeQueryIntervalMs: 50 });

describe("participant core", () => {
  it("rule: vote only after the resource's prepare record is durable", () => {
    const p = core();
    p.step("c", prepare("t1"), 0);
    expect(show(p.takeReady())).toEqual(["do:prepare"]);
    p.prepared("t1", { yes: true, result: bytes("r") }, 1);
    const r = p.takeReady();
    expect(r.messages).toEqual([
      {
        to: "c",
        message: { type: "vote", txId: "t1", yes: true, reason: "", retryable: false, result: bytes("r") },
      },
    ]);
  });

  it("rule: a repeated prepare while preparing does nothing; once prepared it repeats the same yes", () => {
    const p = core();
    p.step("c", prepare("t1"), 0);
    p.step("c", prepare("t1"), 0);
    expect(show(p.takeReady())).toEqual(["do:prepare"]);
    p.prepared("t1", { yes: true, result: bytes("r") }, 1);
    p.takeReady();
    p.step("c", prepare("t1"), 2);
    const r = p.takeReady();
    expect(show(r)).toEqual(["c:vote-yes"]);
    expect(r.messages[0]?.message).toMatchObject({ result: bytes("r") });
  });

  it("rule: a no vote is sent and nothing is kept", () => {
    const p = core();
    p.step("c", prepare("t1"), 0);
    p.takeReady();
    p.prepared("t1", { yes: false, reason: "locked", retryable: true }, 1);
    expect(show(p.takeReady())).toEqual(["c:vote-no"]);
    expect(p.active()).toEqual([]);
  });

  it("rule: on commit or abort the resource applies it, then the coordinator gets an ack", () => {
    for (const d of ["commit", "abort"] as const) {
      const p = core();
      p.step("c", prepare("t1"), 0);
      p.prepared("t1", { yes: true, result: bytes("") }, 1);
      p.takeReady();
      p.step("c", decision("t1", d), 2);
      expect(show(p.takeReady())).toEqual([`do:${d}`]);
      p.step("c", decision("t1", d), 2); // duplicate while applying
      expect(show(p.takeReady())).toEqual([]);
      p.finished("t1");
      expect(show(p.takeReady())).toEqual(["c:ack"]);
    }
  });

  it("rule (termination protocol): a prepared participant that hears nothing asks, and keeps asking", () => {
    const p = core();
    p.step("c", prepare("t1"), 0);
    p.prepared("t1", { yes: true, result: bytes("") }, 10);
    p.takeReady();
    p.tick(59);
    expect(show(p.takeReady())).toEqual([]);
    p.tick(60);
    expect(show(p.takeReady())).toEqual(["c:outcomeQuery"]);
    p.step("c", { type: "outcomeReply", txId: "t1", outcome: "pending" }, 61);
    p.tick(110);
    expect(show(p.takeReady())).toEqual(["c:outcomeQuery"]);
    expect(p.phaseOf("t1")).toBe("prepared");
  });

  it("rule: it never decides alone: no amount of silence releases a prepared transaction", () => {
    const p = core();
    p.step("c", prepare("t1"), 0);
    p.prepared("t1", { yes: true, result: bytes("") }, 0);
    p.takeReady();
    for (let t = 0; t < 100_000; t += 1000) p.tick(t);
    expect(p.takeReady().actions).toEqual([]);
    expect(p.phaseOf("t1")).toBe("prepared");
  });

  it("rule: the answer to its question is applied like a decision", () => {
    const p = core();
    p.step("c", prepare("t1"), 0);
    p.prepared("t1", { yes: true, result: bytes("") }, 0);
    p.takeReady();
    p.step("c", { type: "outcomeReply", txId: "t1", outcome: "abort" }, 1);
    expect(show(p.takeReady())).toEqual(["do:abort"]);
  });

  it("rule: an abort that overtakes the prepare is applied when the prepare finishes, without a vote", () => {
    const p = core();
    p.step("c", prepare("t1"), 0);
    p.takeReady();
    p.step("c", decision("t1", "abort"), 1);
    expect(show(p.takeReady())).toEqual([]);
    p.prepared("t1", { yes: true, result: bytes("") }, 2);
    expect(show(p.takeReady())).toEqual(["do:abort"]);
    p.finished("t1");
    expect(show(p.takeReady())).toEqual(["c:ack"]);
  });

  it("rule: a decision for a transaction it does not know is passed to the resource (idempotent) and acked", () => {
    const p = core();
    p.step("c", decision("old", "commit"), 0);
    expect(show(p.takeReady())).toEqual(["do:commit"]);
    p.finished("old");
    expect(show(p.takeReady())).toEqual(["c:ack"]);
  });

  it("recovery: in-doubt transactions from storage ask their coordinator at once and repeat their vote", () => {
    const p = core();
    p.recover([{ txId: "t1", coordinator: "c", result: bytes("r") }], 100);
    expect(show(p.takeReady())).toEqual(["c:outcomeQuery"]);
    p.step("c", prepare("t1"), 101);
    const r = p.takeReady();
    expect(show(r)).toEqual(["c:vote-yes"]);
    expect(r.messages[0]?.message).toMatchObject({ result: bytes("r") });
  });

  it("rule: a failed apply stays prepared (locks held) and asks again", () => {
    const p = core();
    p.step("c", prepare("t1"), 0);
    p.prepared("t1", { yes: true, result: bytes("") }, 0);
    p.step("c", decision("t1", "commit"), 1);
    p.takeReady();
    p.finishFailed("t1");
    expect(p.phaseOf("t1")).toBe("prepared");
    p.tick(2);
    expect(show(p.takeReady())).toEqual(["c:outcomeQuery"]);
  });
});
