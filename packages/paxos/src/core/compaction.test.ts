import { describe, expect, it } from "vitest";
import { CoreCluster, cmd } from "../testing/core-cluster.js";
import type { Message } from "./types.js";

const ids = ["n1", "n2", "n3"];
const isolate = CoreCluster.isolate;

/** Elects n1 and chooses `n` one-command slots (every node learns them). */
function withSlots(n: number): CoreCluster {
  const c = new CoreCluster(ids);
  c.elect("n1");
  for (let i = 1; i <= n; i++) {
    c.propose("n1", `c${i}`);
    c.deliver();
  }
  // A heartbeat carries the final commit notice.
  c.tick("n1");
  c.deliver();
  return c;
}

describe("log compaction", () => {
  it("compact drops chosen and accepted values through a slot and persists the point in one Ready", () => {
    const c = withSlots(5);
    const n2 = c.node("n2");
    expect(n2.status().executedSlot).toBe(5);
    expect(n2.compact(3)).toBe(true);
    expect(n2.chosenValue(3)).toBeUndefined();
    expect(n2.chosenValue(4)?.id).toBe("n1:c4");
    const rd = n2.ready();
    expect(rd.persist?.compact).toEqual({ slot: 3, index: 3 });
    n2.advance(rd);
    expect(n2.status()).toMatchObject({ compactedSlot: 3, compactedIndex: 3 });
    expect(n2.compact(2)).toBe(false);
    expect(() => n2.compact(9)).toThrow(/only 5 are executed/);
  });

  it("a restart recovers from the compaction point and replays only the later slots", () => {
    const c = withSlots(6);
    c.node("n2").compact(4);
    c.drain("n2");
    expect(c.stores.get("n2")!.size()).toEqual({ accepted: 2, chosen: 2 });
    const again = c.restart("n2");
    expect(again.status()).toMatchObject({
      chosenSlot: 6,
      executedSlot: 4,
      compactedSlot: 4,
      chosenIndex: 6,
    });
    c.drain("n2");
    expect(c.applied.get("n2")!.map((s) => s.slot)).toEqual([5, 6]);
    expect(c.applied.get("n2")![0]!.index).toBe(5);
  });

  it("slotForIndex maps a state-machine index to the last slot it fully reflects", () => {
    const c = new CoreCluster(ids);
    c.elect("n1");
    c.propose("n1", "a", "b"); // slot 1: indexes 1-2
    c.propose("n1", "c"); // slot 2: index 3
    c.deliver();
    const n1 = c.node("n1");
    expect(n1.slotForIndex(2)).toEqual({ slot: 1, index: 2 });
    expect(n1.slotForIndex(3)).toEqual({ slot: 2, index: 3 });
    expect(n1.slotForIndex(1)).toEqual({ slot: 0, index: 0 });
    n1.compact(1);
    expect(n1.slotForIndex(1)).toBeUndefined();
  });

  it("a leader asks its host to send a snapshot to a replica whose missing slots it compacted", () => {
    const c = withSlots(2);
    // n3 misses slots 3-6.
    for (let i = 3; i <= 6; i++) {
      c.propose("n1", `c${i}`);
      c.deliver(isolate("n3"));
    }
    c.node("n1").compact(5);
    c.drain("n1");
    c.tick("n1");
    const snapshots: string[] = [];
    const seen: Message[] = c.deliver();
    for (const rd of c.readies.get("n1")!) snapshots.push(...rd.snapshots);
    expect(snapshots).toContain("n3");
    expect(seen.some((m) => m.type === "learn" && m.to === "n3")).toBe(false);

    // The host restores n3's state machine, then tells the core; the rest comes by learn.
    expect(c.node("n3").installSnapshot(5, 5)).toBe(true);
    c.drain("n3");
    expect(c.node("n3").status()).toMatchObject({ executedSlot: 5, compactedSlot: 5 });
    c.tick("n1");
    c.deliver();
    expect(c.node("n3").status().chosenSlot).toBe(6);
    expect(c.commands("n3").at(-1)).toBe("c6");
    expect(c.node("n3").installSnapshot(4, 4)).toBe(false);
  });

  it("a candidate stands down when an acceptor has compacted slots it does not know chosen", () => {
    const c = withSlots(2);
    for (let i = 3; i <= 5; i++) {
      c.propose("n1", `c${i}`);
      c.deliver(isolate("n3"));
    }
    c.node("n2").compact(4);
    c.drain("n2");
    c.inbox = [];
    // n1 is gone; n3 (chosen prefix 2) campaigns and hears from n2 (compacted through 4).
    c.campaign("n3");
    c.deliver(isolate("n1"));
    expect(c.node("n3").status().role).toBe("follower");
    // n2, which knows more, wins instead; slot 5 (accepted by n2) survives.
    c.campaign("n2");
    c.deliver(isolate("n1"));
    expect(c.node("n2").status().role).toBe("leader");
    expect(c.node("n2").chosenValue(5)?.id).toBe("n1:c5");
    expect(c.checkAgreement()).toBeUndefined();
  });

  it("an acceptor ignores accepts and learns for compacted slots", () => {
    const c = withSlots(3);
    c.node("n3").compact(3);
    c.drain("n3");
    c.node("n3").step({
      type: "learn",
      from: "n1",
      to: "n3",
      ballot: c.node("n1").status().ballot,
      slot: 0,
      entries: [{ slot: 2, ballot: c.node("n1").status().ballot, value: { id: "x", commands: [cmd("x")] } }],
      commit: 3,
      reject: false,
      promised: { round: 0, node: "" },
      context: "",
      slots: [],
    });
    expect(c.node("n3").chosenValue(2)).toBeUndefined();
    expect(c.node("n3").ready().persist).toBeUndefined();
  });
});
