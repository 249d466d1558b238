import { describe, expect, it } from "vitest";
import { LockTable } from "./lock-table.js";

describe("lock table (wait-die)", () => {
  it("grants free keys all at once and releases them", () => {
    const l = new LockTable();
    expect(l.acquire({ txId: "a", startTs: 1, keys: ["x", "y"] })).toEqual({ kind: "granted" });
    expect(l.holderOf("x")).toBe("a");
    expect(l.release("a").sort()).toEqual(["x", "y"]);
    expect(l.size()).toBe(0);
  });

  it("rule: an older requester waits for a younger holder", () => {
    const l = new LockTable();
    l.acquire({ txId: "young", startTs: 10, keys: ["x"] });
    expect(l.acquire({ txId: "old", startTs: 5, keys: ["x", "z"] })).toEqual({
      kind: "wait",
      holders: ["young"],
    });
    // Waiting holds nothing: z is still free.
    expect(l.holderOf("z")).toBeUndefined();
  });

  it("rule: a younger requester dies when it meets an older holder", () => {
    const l = new LockTable();
    l.acquire({ txId: "old", startTs: 5, keys: ["x"] });
    expect(l.acquire({ txId: "young", startTs: 10, keys: ["x"] })).toEqual({
      kind: "die",
      holder: "old",
      key: "x",
    });
  });

  it("rule: equal start times break on the id, so two transactions never both wait", () => {
    const l = new LockTable();
    l.acquire({ txId: "b", startTs: 5, keys: ["x"] });
    l.acquire({ txId: "a", startTs: 5, keys: ["y"] });
    expect(l.acquire({ txId: "a", startTs: 5, keys: ["x"] }).kind).toBe("wait");
    expect(l.acquire({ txId: "b", startTs: 5, keys: ["y"] }).kind).toBe("die");
  });

  it("a transaction may re-acquire its own keys", () => {
    const l = new LockTable();
    l.acquire({ txId: "a", startTs: 1, keys: ["x"] });
    expect(l.acquire({ txId: "a", startTs: 1, keys: ["x", "y"] }).kind).toBe("granted");
    expect(l.lockedBy("a").sort()).toEqual(["x", "y"]);
  });
});
