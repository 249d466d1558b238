import { describe, expect, it } from "vitest";
import { CoreCluster } from "../testing/core-cluster.js";

const ids = ["n1", "n2", "n3"];

function ready(config = {}): CoreCluster {
  const c = new CoreCluster(ids, { config });
  c.campaign("n1");
  c.tick();
  c.stabilize();
  return c;
}

describe("§6.4 linearizable reads (ReadIndex)", () => {
  it("The leader answers with its commit index only after a round of heartbeats from a majority", () => {
    const c = ready();
    c.propose("x");
    c.stabilize();
    const commit = c.raft("n1").log.committed;
    c.raft("n1").readIndex("r1");
    c.processReady(c.node("n1"));
    expect(c.node("n1").readStates).toEqual([]);
    expect(c.queue.filter((m) => m.type === "heartbeat" && m.context === "r1")).toHaveLength(2);
    c.stabilize();
    expect(c.node("n1").readStates).toEqual([{ index: commit, context: "r1" }]);
  });

  it("A leader cut off from the majority cannot answer a read", () => {
    const c = ready();
    c.isolate("n1");
    c.raft("n1").readIndex("r1");
    c.processReady(c.node("n1"));
    c.stabilize();
    expect(c.node("n1").readStates).toEqual([]);
  });

  it("A follower's read is forwarded to the leader, which answers with its commit index", () => {
    const c = ready();
    c.propose("x");
    c.stabilize();
    c.raft("n2").readIndex("f1");
    c.processReady(c.node("n2"));
    c.stabilize();
    expect(c.node("n2").readStates).toEqual([{ index: c.raft("n1").log.committed, context: "f1" }]);
  });

  it("A new leader defers reads until it has committed an entry of its term", () => {
    const c = new CoreCluster(ids, { config: { preVote: false } });
    c.raft("n1").campaignNow();
    c.processReady(c.node("n1"));
    c.deliverAll();
    c.deliverAll();
    expect(c.raft("n1").role).toBe("leader");
    c.raft("n1").readIndex("early");
    c.processReady(c.node("n1"));
    expect(c.queue.filter((m) => m.context === "early")).toHaveLength(0);
    c.stabilize();
    expect(c.node("n1").readStates).toEqual([{ index: 1, context: "early" }]);
  });

  it("Several reads are answered in order by one heartbeat round confirming the latest", () => {
    const c = ready();
    c.raft("n1").readIndex("a");
    c.raft("n1").readIndex("b");
    c.drop = (m) => m.type === "heartbeatResp" && m.context === "a";
    c.stabilize();
    expect(c.node("n1").readStates.map((r) => r.context)).toEqual(["a", "b"]);
  });

  it("With lease reads, the leader answers at once (relying on CheckQuorum)", () => {
    const c = ready({ readOnly: "lease" });
    c.raft("n1").readIndex("l1");
    c.processReady(c.node("n1"));
    expect(c.node("n1").readStates).toEqual([{ index: c.raft("n1").log.committed, context: "l1" }]);
  });

  it("A single-voter cluster answers at once", () => {
    const c = new CoreCluster(["n1"]);
    c.campaign("n1");
    c.raft("n1").readIndex("s");
    c.processReady(c.node("n1"));
    expect(c.node("n1").readStates).toEqual([{ index: 1, context: "s" }]);
  });
});
