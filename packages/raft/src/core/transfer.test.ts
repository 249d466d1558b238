import { describe, expect, it } from "vitest";
import { CoreCluster } from "../testing/core-cluster.js";

const ids = ["n1", "n2", "n3"];

function ready(): CoreCluster {
  const c = new CoreCluster(ids);
  c.campaign("n1");
  c.tick();
  c.stabilize();
  return c;
}

describe("§3.10 leadership transfer (dissertation)", () => {
  it("The leader sends TimeoutNow to an up-to-date target, which wins an election at once", () => {
    const c = ready();
    const term = c.raft("n1").term;
    expect(c.raft("n1").transferLeadership("n2").ok).toBe(true);
    c.stabilize();
    expect(c.leader()).toBe("n2");
    expect(c.raft("n2").term).toBe(term + 1);
    expect(c.raft("n1").role).toBe("follower");
  });

  it("A lagging target is first brought up to date", () => {
    const c = ready();
    c.isolate("n3");
    for (let i = 0; i < 5; i++) c.propose(`p${i}`);
    c.stabilize();
    c.heal();
    expect(c.raft("n1").transferLeadership("n3").ok).toBe(true);
    expect(c.queue.filter((m) => m.type === "timeoutNow")).toHaveLength(0);
    c.stabilize();
    expect(c.leader()).toBe("n3");
    expect(c.raft("n3").log.lastIndex()).toBeGreaterThanOrEqual(7);
  });

  it("The leader stops accepting proposals while a transfer is in progress", () => {
    const c = ready();
    c.isolate("n2");
    c.raft("n1").transferLeadership("n2");
    expect(c.raft("n1").propose([new Uint8Array([1])])).toMatchObject({ ok: false, reason: "transferring" });
  });

  it("A transfer that does not complete within an election timeout is abandoned", () => {
    const c = ready();
    c.isolate("n2");
    c.raft("n1").transferLeadership("n2");
    c.drop = (m) => m.to === "n2" || m.from === "n2";
    c.heal();
    c.drop = (m) => m.to === "n2" || m.from === "n2";
    for (let i = 0; i < 10; i++) {
      c.tick("n1");
      c.stabilize();
    }
    expect(c.raft("n1").role).toBe("leader");
    expect(c.raft("n1").status().leadTransferee).toBe("");
    expect(c.raft("n1").propose([new Uint8Array([1])]).ok).toBe(true);
  });

  it("Transferring to a non-voter is refused", () => {
    const c = ready();
    expect(c.raft("n1").transferLeadership("n9")).toMatchObject({ ok: false, reason: "invalid" });
    expect(c.raft("n2").transferLeadership("n3")).toMatchObject({ ok: false, reason: "notLeader" });
  });
});
