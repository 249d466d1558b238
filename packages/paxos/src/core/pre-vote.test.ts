import { describe, expect, it } from "vitest";
import { CoreCluster } from "../testing/core-cluster.js";

const ids = ["n1", "n2", "n3"];

/** Ticks every node once and delivers what `keep` lets through. */
function round(c: CoreCluster, keep: Parameters<CoreCluster["deliver"]>[0]): void {
  for (const id of c.ids) c.tick(id);
  c.deliver(keep);
}

describe("leader stickiness (pre-vote)", () => {
  it("a node cut off in a minority never raises its ballot, and once healed follows the leader instead of deposing it", () => {
    const c = new CoreCluster(ids);
    c.elect("n1");
    const ballot = c.node("n1").status().ballot;
    const promisedBefore = c.node("n3").status().promised;

    for (let i = 0; i < 200; i++) round(c, CoreCluster.isolate("n3"));
    // n3 kept trying (pre-votes) but promised nothing new; the majority kept its leader.
    expect(c.node("n3").status().promised).toEqual(promisedBefore);
    expect(c.node("n1").status()).toMatchObject({ role: "leader", ballot });

    for (let i = 0; i < 5; i++) round(c, () => true);
    expect(c.node("n1").status()).toMatchObject({ role: "leader", ballot });
    expect(c.node("n3").status()).toMatchObject({ role: "follower", leader: "n1" });
  });

  it("acceptors deny a pre-vote while they hear from a live leader", () => {
    const c = new CoreCluster(ids);
    c.elect("n1");
    // n3 stops hearing the leader (one-way loss), so it times out and asks for pre-votes.
    for (let i = 0; i < 40; i++) round(c, (m) => !(m.from === "n1" && m.to === "n3"));
    expect(c.node("n1").status()).toMatchObject({ role: "leader" });
    expect(c.node("n2").status().leader).toBe("n1");
    expect(c.node("n3").status().role).not.toBe("leader");
  });

  it("an acceptor that just promised a candidate denies pre-votes to another node (no duel with a leader just elected)", () => {
    const c = new CoreCluster(ids);
    c.campaign("n1");
    // n1 wins with n2's promise; n3 never hears of n1, and n2 has not heard that n1 won yet.
    c.deliver((m) => m.to !== "n3" && m.from !== "n3" && !(m.from === "n1" && m.type !== "prepare"));
    expect(c.node("n1").status().role).toBe("leader");
    expect(c.node("n2").status().leader).toBe("");
    c.take(() => true);
    // n3 times out and asks n2 for a pre-vote (n1, leading, would deny it anyway).
    for (let i = 0; i < 25; i++) {
      c.tick("n3");
      c.deliver((m) => (m.from === "n3" && m.to === "n2") || (m.from === "n2" && m.to === "n3"));
    }
    expect(c.node("n3").status().promised.round, "n3 never ran a real phase 1").toBe(0);
    expect(c.node("n2").status().promised).toEqual(c.node("n1").status().ballot);
  });

  it("once the leader is gone, a pre-vote succeeds and a new leader is elected by ticks alone", () => {
    const c = new CoreCluster(ids);
    c.elect("n1");
    for (let i = 0; i < 60 && !["n2", "n3"].some((id) => c.node(id).status().role === "leader"); i++) {
      round(c, CoreCluster.isolate("n1"));
    }
    const leader = ["n2", "n3"].find((id) => c.node(id).status().role === "leader");
    expect(leader).toBeDefined();
    expect(c.node(leader!).status().ballot.round).toBeGreaterThan(1);
  });

  it("control: without pre-vote (a forced campaign), the healed node deposes the leader", () => {
    const c = new CoreCluster(ids);
    c.elect("n1");
    c.campaign("n3");
    c.deliver(CoreCluster.isolate("n1"));
    expect(c.node("n1").status().role).toBe("leader");
    for (let i = 0; i < 3; i++) round(c, () => true);
    expect(c.node("n1").status().role).not.toBe("leader");
  });
});
