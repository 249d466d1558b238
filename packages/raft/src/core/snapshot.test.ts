import { describe, expect, it } from "vitest";
import { CoreCluster } from "../testing/core-cluster.js";
import { MemoryStorage } from "./storage.js";
import { drain, msg, newRaft, storageWith } from "./test-util.js";

const ids = ["n1", "n2", "n3"];

function run(c: CoreCluster, ticks = 3): void {
  for (let i = 0; i < ticks; i++) {
    c.tick();
    c.stabilize();
  }
}

describe("§7 log compaction", () => {
  it("The leader sends a snapshot to a follower that lags too far behind, and it catches up", () => {
    const c = new CoreCluster(ids);
    c.campaign("n1");
    c.crash("n3");
    for (let i = 0; i < 20; i++) c.propose(`p${i}`);
    c.stabilize();
    run(c, 1);
    const leader = c.node("n1");
    leader.storage.compact(leader.raft.log.applied);
    expect(leader.raft.log.firstIndex()).toBeGreaterThan(2);
    c.restart("n3");
    c.sent.length = 0;
    c.propose("after");
    run(c);
    expect(c.sent.filter((m) => m.type === "snapshot" && m.to === "n3")).toHaveLength(1);
    expect(c.appliedCommands("n3")).toEqual(c.appliedCommands("n1"));
    expect(c.appliedCommands("n3").at(-1)).toBe("after");
    expect(c.node("n3").storage.snapshot().index).toBe(leader.storage.snapshot().index);
  });

  it("A restarted follower whose log was replaced by a snapshot recovers from it", () => {
    const c = new CoreCluster(ids);
    c.campaign("n1");
    c.crash("n3");
    for (let i = 0; i < 10; i++) c.propose(`p${i}`);
    run(c, 1);
    c.node("n1").storage.compact(c.raft("n1").log.applied);
    c.node("n2").storage.compact(c.raft("n2").log.applied);
    c.restart("n3");
    run(c);
    c.crash("n3");
    c.restart("n3");
    expect(c.raft("n3").log.firstIndex()).toBe(c.node("n3").storage.snapshot().index + 1);
    c.propose("later");
    run(c);
    expect(c.appliedCommands("n3")).toEqual(c.appliedCommands("n1"));
  });

  it("If the snapshot describes a prefix of the follower's log, the entries following it are retained", () => {
    const s = storageWith(ids, [1, 1, 1, 1, 1], 1);
    const r = newRaft("n2", ids, {}, s);
    r.step(
      msg({ type: "snapshot", from: "n1", to: "n2", term: 1, snapshot: { index: 3, term: 1, members: [] } }),
    );
    const [resp] = drain(r, s);
    expect(r.log.lastIndex()).toBe(5);
    expect(r.log.committed).toBe(3);
    expect(resp).toMatchObject({ type: "appendResp", index: 3, reject: false });
  });

  it("A snapshot older than the follower's commit index is ignored", () => {
    const s = storageWith(ids, [1, 1, 1, 1, 1], 1);
    s.save({ hardState: { term: 1, vote: "", commit: 4 } });
    const r = newRaft("n2", ids, { applied: 0 }, s);
    r.step(
      msg({ type: "snapshot", from: "n1", to: "n2", term: 1, snapshot: { index: 2, term: 1, members: [] } }),
    );
    const rd = r.ready();
    expect(rd.snapshot).toBeUndefined();
    expect(rd.messages[0]).toMatchObject({ type: "appendResp", index: 4 });
  });

  it("Installing a snapshot discards the whole conflicting log and adopts the snapshot's configuration", () => {
    const s = storageWith(ids, [1, 1, 2, 2], 2);
    const r = newRaft("n2", ids, {}, s);
    const members = [...ids, "n4"].map((id) => ({ id, address: `${id}:1`, learner: false }));
    r.step(
      msg({ type: "snapshot", from: "n1", to: "n2", term: 3, snapshot: { index: 6, term: 3, members } }),
    );
    const rd = r.ready();
    expect(rd.snapshot?.index).toBe(6);
    s.save({ hardState: rd.hardState, snapshot: rd.snapshot, entries: rd.entries });
    r.advance(rd);
    expect(s.firstIndex()).toBe(7);
    expect(s.lastIndex()).toBe(6);
    expect(r.members().map((m) => m.id)).toEqual(["n1", "n2", "n3", "n4"]);
    expect(r.status().appliedIndex).toBe(6);
  });

  it("A node joining with an empty log is brought up to date by a snapshot", () => {
    const c = new CoreCluster(ids);
    c.campaign("n1");
    for (let i = 0; i < 5; i++) c.propose(`p${i}`);
    run(c, 1);
    c.node("n1").storage.compact(c.raft("n1").log.applied);
    c.addNode("n4", new MemoryStorage());
    const r = c.raft("n1").proposeConfChange({ type: "addLearner", id: "n4", address: "n4:1" });
    expect(r.ok).toBe(true);
    run(c, 4);
    expect(c.appliedCommands("n4")).toEqual(c.appliedCommands("n1"));
    expect(
      c
        .raft("n4")
        .members()
        .map((m) => m.id),
    ).toContain("n4");
  });
});
