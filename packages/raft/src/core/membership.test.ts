import { describe, expect, it } from "vitest";
import { CoreCluster } from "../testing/core-cluster.js";
import { encodeConfChange } from "./config.js";
import { MemoryStorage } from "./storage.js";
import { drain, msg, newRaft, storageWith } from "./test-util.js";

const ids = ["n1", "n2", "n3"];

function run(c: CoreCluster, ticks = 3): void {
  for (let i = 0; i < ticks; i++) {
    c.tick();
    c.stabilize();
  }
}

function ready(ids: readonly string[]): CoreCluster {
  const c = new CoreCluster(ids);
  c.campaign(ids[0]!);
  run(c, 1);
  return c;
}

describe("§4 membership changes (dissertation): one server at a time", () => {
  it("A learner receives the log but does not count toward the quorum and never campaigns", () => {
    const c = new CoreCluster(["n1", "n2", "n3", "n4"], { learners: ["n4"] });
    c.campaign("n1");
    // With n2 and n3 cut off, n1 and the learner n4 are not a quorum of the voters {n1,n2,n3}.
    c.isolate("n2");
    c.isolate("n3");
    const index = c.propose("x");
    run(c, 2);
    expect(c.raft("n4").log.lastIndex()).toBe(index);
    expect(c.raft("n1").log.committed).toBeLessThan(index);
    c.isolate("n1");
    for (let i = 0; i < 50; i++) c.tick("n4");
    expect(c.raft("n4").role).toBe("follower");
    expect(c.raft("n4").term).toBe(c.raft("n1").term);
  });

  it("A server uses the latest configuration in its log, whether or not the entry is committed", () => {
    const s = storageWith(ids, [1], 1);
    const r = newRaft("n2", ids, {}, s);
    const change = {
      term: 1,
      index: 2,
      type: "config" as const,
      data: encodeConfChange({ type: "addLearner", id: "n4", address: "n4:1" }),
    };
    r.step(
      msg({
        type: "append",
        from: "n1",
        to: "n2",
        term: 1,
        index: 1,
        logTerm: 1,
        entries: [change],
        commit: 0,
      }),
    );
    drain(r, s);
    expect(r.log.committed).toBe(0);
    expect(r.members().map((m) => m.id)).toEqual(["n1", "n2", "n3", "n4"]);
    // The uncommitted change is rolled back when a new leader overwrites it.
    r.step(
      msg({
        type: "append",
        from: "n3",
        to: "n2",
        term: 2,
        index: 1,
        logTerm: 1,
        entries: [{ term: 2, index: 2, type: "noop", data: new Uint8Array() }],
      }),
    );
    drain(r, s);
    expect(r.members().map((m) => m.id)).toEqual(["n1", "n2", "n3"]);
  });

  it("Adding a learner, then promoting it, makes it count toward the quorum", () => {
    const c = ready(ids);
    c.addNode("n4", new MemoryStorage());
    expect(c.raft("n1").proposeConfChange({ type: "addLearner", id: "n4", address: "n4:1" }).ok).toBe(true);
    run(c);
    expect(
      c
        .raft("n1")
        .status()
        .progress.find((p) => p.id === "n4"),
    ).toMatchObject({ learner: true });
    expect(c.raft("n1").proposeConfChange({ type: "promote", id: "n4" }).ok).toBe(true);
    run(c);
    // Four voters: a quorum is three. With n2 and n3 cut off, n1 and n4 cannot commit.
    c.isolate("n2");
    c.isolate("n3");
    const index = c.propose("y");
    run(c, 2);
    expect(c.raft("n4").log.lastIndex()).toBe(index);
    expect(c.raft("n1").log.committed).toBeLessThan(index);
    c.heal();
    run(c, 2);
    expect(c.raft("n1").log.committed).toBeGreaterThanOrEqual(index);
  });

  it("The leader refuses a membership change until it has committed an entry of its term", () => {
    const c = new CoreCluster(ids, { config: { preVote: false } });
    c.raft("n1").campaignNow();
    c.processReady(c.node("n1"));
    c.deliverAll(); // votes requested
    c.deliverAll(); // votes granted: n1 leads, its no-op is not yet replicated
    expect(c.raft("n1").role).toBe("leader");
    const r = c.raft("n1").proposeConfChange({ type: "remove", id: "n3" });
    expect(r).toMatchObject({ ok: false, reason: "termNotCommitted" });
    c.stabilize();
    expect(c.raft("n1").proposeConfChange({ type: "remove", id: "n3" }).ok).toBe(true);
  });

  it("Only one membership change may be uncommitted at a time", () => {
    const c = ready(ids);
    c.isolate("n2");
    c.isolate("n3");
    expect(c.raft("n1").proposeConfChange({ type: "addLearner", id: "n4", address: "n4:1" }).ok).toBe(true);
    expect(c.raft("n1").proposeConfChange({ type: "addLearner", id: "n5", address: "n5:1" })).toMatchObject({
      ok: false,
      reason: "changeInProgress",
    });
  });

  it("Invalid changes are refused with a reason", () => {
    const c = ready(["n1"]);
    expect(c.raft("n1").proposeConfChange({ type: "remove", id: "n9" })).toMatchObject({
      ok: false,
      reason: "invalid",
    });
    expect(c.raft("n1").proposeConfChange({ type: "remove", id: "n1" })).toMatchObject({
      ok: false,
      reason: "invalid",
    });
    expect(c.raft("n1").proposeConfChange({ type: "promote", id: "n1" })).toMatchObject({
      ok: false,
      reason: "invalid",
    });
  });

  it("Removing a follower shrinks the quorum: the remaining two commit without it", () => {
    const c = ready(ids);
    expect(c.raft("n1").proposeConfChange({ type: "remove", id: "n3" }).ok).toBe(true);
    run(c);
    c.crash("n3");
    c.isolate("n3");
    const index = c.propose("z");
    run(c, 2);
    expect(c.raft("n1").log.committed).toBeGreaterThanOrEqual(index);
    expect(c.appliedCommands("n2")).toEqual(["z"]);
  });

  it("A leader that removes itself steps down once the change is committed, and the rest elect a leader", () => {
    const c = ready(ids);
    expect(c.raft("n1").proposeConfChange({ type: "remove", id: "n1" }).ok).toBe(true);
    c.stabilize();
    run(c, 1);
    expect(c.raft("n1").role).toBe("follower");
    c.crash("n1");
    run(c, 40);
    const leader = c.leader();
    expect(["n2", "n3"]).toContain(leader);
    c.propose("after");
    run(c, 2);
    expect(c.appliedCommands("n2")).toEqual(["after"]);
  });

  it("Adding and removing members under load keeps every node's applied log identical", () => {
    const c = ready(ids);
    c.addNode("n4", new MemoryStorage());
    const changes = [
      { type: "addLearner", id: "n4", address: "n4:1" },
      { type: "promote", id: "n4" },
      { type: "remove", id: "n2" },
    ] as const;
    for (const change of changes) {
      for (let i = 0; i < 3; i++) c.propose(`${change.type}-${i}`);
      let r = c.raft(c.leader()!).proposeConfChange(change);
      for (let i = 0; i < 10 && !r.ok; i++) {
        run(c, 1);
        r = c.raft(c.leader()!).proposeConfChange(change);
      }
      expect(r.ok).toBe(true);
      run(c, 2);
    }
    run(c, 3);
    expect(
      c
        .raft(c.leader()!)
        .members()
        .map((m) => m.id)
        .sort(),
    ).toEqual(["n1", "n3", "n4"]);
    expect(c.appliedCommands("n4")).toEqual(c.appliedCommands("n1"));
    expect(c.appliedCommands("n3")).toEqual(c.appliedCommands("n1"));
    expect(c.appliedCommands("n1")).toHaveLength(9);
  });
});
