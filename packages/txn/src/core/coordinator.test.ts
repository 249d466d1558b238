import { describe, expect, it } from "vitest";
import { CoordinatorCore, type CoordinatorReady } from "./coordinator.js";
import type { TxnMessage } from "./types.js";

const bytes = (s: string) => new TextEncoder().encode(s);
const yes = (txId: string, result = ""): TxnMessage => ({
  type: "vote",
  txId,
  yes: true,
  reason: "",
  retryable: false,
  result: bytes(result),
});
const no = (txId: string, reason = "conflict"): TxnMessage => ({
  type: "vote",
  txId,
  yes: false,
  reason,
  retryable: true,
  result: new Uint8Array(0),
});
const ack = (txId: string): TxnMessage => ({ type: "ack", txId });

function sent(r: CoordinatorReady) {
  return r.messages.map(({ to, message: m }) =>
    m.type === "decision"
      ? `${to}:${m.decision}`
      : m.type === "outcomeReply"
        ? `${to}:reply-${m.outcome}`
        : `${to}:${m.type}`,
  );
}

function twoParty() {
  const c = new CoordinatorCore({ voteTimeoutMs: 100, retryIntervalMs: 10 });
  c.begin(
    "t1",
    5,
    [
      { participant: "a", ops: bytes("A") },
      { participant: "b", ops: bytes("B") },
    ],
    0,
  );
  return c;
}

describe("coordinator core", () => {
  it("sends prepare with the ops and the age to every participant", () => {
    const c = twoParty();
    const r = c.takeReady();
    expect(r.messages).toEqual([
      { to: "a", message: { type: "prepare", txId: "t1", ops: bytes("A"), startTs: 5 } },
      { to: "b", message: { type: "prepare", txId: "t1", ops: bytes("B"), startTs: 5 } },
    ]);
  });

  it("rule: the commit decision is durable before any participant hears commit", () => {
    const c = twoParty();
    c.takeReady();
    c.step("a", yes("t1"), 1);
    c.step("b", yes("t1"), 2);
    let r = c.takeReady();
    expect(r.persist).toEqual([{ txId: "t1", decision: "commit", participants: ["a", "b"] }]);
    expect(r.messages).toEqual([]);
    expect(r.results).toEqual([]);
    // Time passing while the record is written neither aborts nor commits.
    c.tick(500);
    r = c.takeReady();
    expect(r.messages).toEqual([]);
    expect(c.phaseOf("t1")).toBe("persisting");
    c.decisionDurable("t1", "commit", 501);
    r = c.takeReady();
    expect(sent(r)).toEqual(["a:commit", "b:commit"]);
    expect(r.results[0]?.status).toBe("committed");
  });

  it("rule: the client gets every participant's yes-vote result on commit", () => {
    const c = twoParty();
    c.step("a", yes("t1", "ra"), 1);
    c.step("b", yes("t1", "rb"), 1);
    c.decisionDurable("t1", "commit", 2);
    const res = c.takeReady().results[0];
    if (res?.status !== "committed") throw new Error("expected commit");
    expect(new TextDecoder().decode(res.results.get("a"))).toBe("ra");
    expect(new TextDecoder().decode(res.results.get("b"))).toBe("rb");
  });

  it("rule: one no vote aborts at once, without a record, and the no voter is not sent abort", () => {
    const c = twoParty();
    c.takeReady();
    c.step("a", no("t1", "locked"), 1);
    const r = c.takeReady();
    expect(r.persist).toEqual([]);
    expect(sent(r)).toEqual(["b:abort"]);
    expect(r.results).toEqual([
      { status: "aborted", txId: "t1", reason: "a voted no: locked", retryable: true },
    ]);
  });

  it("rule: a transaction still missing votes at its deadline aborts (retryable)", () => {
    const c = twoParty();
    c.step("a", yes("t1"), 1);
    c.takeReady();
    c.tick(99);
    expect(c.takeReady().results).toEqual([]);
    c.tick(100);
    const r = c.takeReady();
    expect(r.results[0]).toMatchObject({ status: "aborted", retryable: true });
    expect(sent(r)).toEqual(["a:abort", "b:abort"]);
    expect(c.counters.timeouts).toBe(1);
  });

  it("rule: prepare is resent to silent participants until they vote", () => {
    const c = twoParty();
    c.step("a", yes("t1"), 1);
    c.takeReady();
    c.tick(10);
    expect(sent(c.takeReady())).toEqual(["b:prepare"]);
    c.tick(15);
    expect(sent(c.takeReady())).toEqual([]);
    c.tick(20);
    expect(sent(c.takeReady())).toEqual(["b:prepare"]);
  });

  it("rule: commit is resent until acknowledged, then the record is forgotten", () => {
    const c = twoParty();
    c.step("a", yes("t1"), 1);
    c.step("b", yes("t1"), 1);
    c.decisionDurable("t1", "commit", 2);
    c.takeReady();
    c.step("a", ack("t1"), 3);
    c.tick(12);
    expect(sent(c.takeReady())).toEqual(["b:commit"]);
    c.step("b", ack("t1"), 13);
    const r = c.takeReady();
    expect(r.forget).toEqual(["t1"]);
    expect(c.phaseOf("t1")).toBeUndefined();
    c.tick(100);
    expect(sent(c.takeReady())).toEqual([]);
  });

  it("rule: abort is resent until acknowledged, and needs no record to forget", () => {
    const c = twoParty();
    c.tick(100);
    c.takeReady();
    c.step("a", ack("t1"), 101);
    c.tick(110);
    expect(sent(c.takeReady())).toEqual(["b:abort"]);
    c.step("b", ack("t1"), 111);
    expect(c.takeReady().forget).toEqual([]);
    expect(c.active()).toEqual([]);
  });

  it("rule (presumed abort): a question about an unknown transaction is answered abort", () => {
    const c = new CoordinatorCore();
    c.step("a", { type: "outcomeQuery", txId: "ghost" }, 0);
    expect(sent(c.takeReady())).toEqual(["a:reply-abort"]);
  });

  it("rule (presumed abort): a yes vote for an unknown transaction gets abort back", () => {
    const c = new CoordinatorCore();
    c.step("a", yes("ghost"), 0);
    expect(sent(c.takeReady())).toEqual(["a:abort"]);
    c.step("a", no("ghost"), 0);
    expect(sent(c.takeReady())).toEqual([]);
  });

  it("rule: while undecided (collecting or persisting) the answer to a question is pending", () => {
    const c = twoParty();
    c.step("a", { type: "outcomeQuery", txId: "t1" }, 1);
    expect(sent(c.takeReady())).toContain("a:reply-pending");
    c.step("a", yes("t1"), 1);
    c.step("b", yes("t1"), 1);
    c.step("a", { type: "outcomeQuery", txId: "t1" }, 1);
    expect(sent(c.takeReady())).toEqual(["a:reply-pending"]);
    c.decisionDurable("t1", "commit", 2);
    c.takeReady();
    c.step("a", { type: "outcomeQuery", txId: "t1" }, 3);
    expect(sent(c.takeReady())).toEqual(["a:reply-commit"]);
  });

  it("rule: duplicate votes count once, and a late no after commit is not an ack", () => {
    const c = twoParty();
    c.step("a", yes("t1"), 1);
    c.step("a", yes("t1"), 1);
    expect(c.takeReady().persist).toEqual([]);
    c.step("b", yes("t1"), 1);
    c.decisionDurable("t1", "commit", 2);
    c.takeReady();
    // A stale no (from an earlier attempt that lost a lock race) must not end the commit.
    c.step("b", no("t1"), 3);
    c.step("a", ack("t1"), 3);
    expect(c.phaseOf("t1")).toBe("committing");
    // A repeated yes means our commit was lost: resend it.
    c.step("b", yes("t1"), 4);
    expect(sent(c.takeReady())).toEqual(["b:commit"]);
  });

  it("rule: a vote from a node that is not a participant is ignored", () => {
    const c = twoParty();
    c.takeReady();
    c.step("mallory", no("t1"), 1);
    expect(c.phaseOf("t1")).toBe("collecting");
    expect(c.counters.ignored).toBe(1);
  });

  it("rule: a decision log that already holds abort wins over our commit", () => {
    const c = twoParty();
    c.step("a", yes("t1"), 1);
    c.step("b", yes("t1"), 1);
    c.takeReady();
    c.decisionDurable("t1", "abort", 2);
    const r = c.takeReady();
    expect(sent(r)).toEqual(["a:abort", "b:abort"]);
    expect(r.results[0]?.status).toBe("aborted");
  });

  it("recovery: a restarted coordinator resends every logged decision, reporting to no client", () => {
    const c = new CoordinatorCore({ voteTimeoutMs: 100, retryIntervalMs: 10 });
    c.recover(
      [
        { txId: "t1", decision: "commit", participants: ["a", "b"] },
        { txId: "t2", decision: "abort", participants: ["c"] },
      ],
      0,
    );
    const r = c.takeReady();
    expect(sent(r)).toEqual(["a:commit", "b:commit", "c:abort"]);
    expect(r.results).toEqual([]);
    c.step("a", ack("t1"), 1);
    c.step("b", ack("t1"), 1);
    c.step("c", ack("t2"), 1);
    expect(c.takeReady().forget).toEqual(["t1", "t2"]);
  });

  it("rejects bad transactions with a clear error", () => {
    const c = new CoordinatorCore();
    expect(() => c.begin("t", 0, [], 0)).toThrow(/at least one participant/);
    expect(() =>
      c.begin(
        "t",
        0,
        [
          { participant: "a", ops: bytes("") },
          { participant: "a", ops: bytes("") },
        ],
        0,
      ),
    ).toThrow(/appears twice/);
    c.begin("t", 0, [{ participant: "a", ops: bytes("") }], 0);
    expect(() => c.begin("t", 0, [{ participant: "a", ops: bytes("") }], 0)).toThrow(/already exists/);
  });
});
