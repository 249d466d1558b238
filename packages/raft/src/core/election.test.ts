import { seededRandom } from "@quorum/transport";
import { describe, expect, it } from "vitest";
import { CoreCluster } from "../testing/core-cluster.js";
import { drain, msg, newRaft, storageWith } from "./test-util.js";

const ids = ["n1", "n2", "n3"];

describe("§5.2 leader election", () => {
  it("If a follower receives no communication over the election timeout, it begins an election", () => {
    const r = newRaft("n1", ids, { preVote: false });
    let ticks = 0;
    while (r.role === "follower" && ticks < 100) {
      r.tick();
      ticks++;
    }
    expect(ticks).toBeLessThan(20);
    expect(r.role).toBe("candidate");
    expect(r.term).toBe(1);
  });

  it("To begin an election, a follower increments its term, votes for itself and issues RequestVote RPCs in parallel", () => {
    const r = newRaft("n1", ids, { preVote: false });
    r.campaignNow();
    expect(r.term).toBe(1);
    expect(r.vote).toBe("n1");
    const sent = drain(r);
    expect(sent.map((m) => [m.type, m.to, m.term]).sort()).toEqual([
      ["vote", "n2", 1],
      ["vote", "n3", 1],
    ]);
  });

  it.each([
    // [cluster size, granted votes from others, expected role]
    [1, [], "leader"],
    [3, ["n2", "n3"], "leader"],
    [3, ["n2"], "leader"],
    [5, ["n2", "n3", "n4", "n5"], "leader"],
    [5, ["n2", "n3"], "leader"],
    [5, ["n2"], "candidate"],
    [3, [], "candidate"],
  ] as const)(
    "A candidate wins with votes from a majority of the full cluster (%i servers, yes from %j)",
    (size, yes, role) => {
      const all = Array.from({ length: size }, (_, i) => `n${i + 1}`);
      const r = newRaft("n1", all, { preVote: false });
      r.campaignNow();
      drain(r);
      for (const from of yes) r.step(msg({ type: "voteResp", from, to: "n1", term: 1 }));
      expect(r.role).toBe(role);
    },
  );

  it("A candidate that receives rejections from a majority returns to follower", () => {
    const r = newRaft("n1", ids, { preVote: false });
    r.campaignNow();
    r.step(msg({ type: "voteResp", from: "n2", to: "n1", term: 1, reject: true }));
    r.step(msg({ type: "voteResp", from: "n3", to: "n1", term: 1, reject: true }));
    expect(r.role).toBe("follower");
  });

  it("Each server will vote for at most one candidate in a given term, on a first-come-first-served basis", () => {
    const r = newRaft("n1", ids, { checkQuorum: false });
    r.step(msg({ type: "vote", from: "n2", to: "n1", term: 1 }));
    r.step(msg({ type: "vote", from: "n3", to: "n1", term: 1 }));
    r.step(msg({ type: "vote", from: "n2", to: "n1", term: 1 }));
    const resp = drain(r).map((m) => [m.to, m.reject]);
    expect(resp).toEqual([
      ["n2", false],
      ["n3", true],
      ["n2", false],
    ]);
    expect(r.vote).toBe("n2");
  });

  it("The voter denies its vote if its own log is more up-to-date than that of the candidate (§5.4.1)", () => {
    // n1's log: terms [1, 2]. Later last term wins; same last term, longer log wins.
    const cases: [number, number, boolean][] = [
      [2, 1, false], // lastTerm 1 < 2
      [1, 2, false], // same term, shorter
      [2, 2, true], // same
      [3, 2, true], // longer
      [1, 3, true], // higher last term, shorter
    ];
    for (const [index, logTerm, granted] of cases) {
      const r = newRaft("n1", ids, { checkQuorum: false }, storageWith(ids, [1, 2], 2));
      r.step(msg({ type: "vote", from: "n2", to: "n1", term: 3, index, logTerm }));
      const [resp] = drain(r);
      expect({ index, logTerm, granted: !resp!.reject }).toEqual({ index, logTerm, granted });
    }
  });

  it("If the AppendEntries RPC is from a leader whose term is at least as large, the candidate returns to follower", () => {
    const r = newRaft("n1", ids, { preVote: false });
    r.campaignNow();
    r.step(msg({ type: "append", from: "n2", to: "n1", term: 1 }));
    expect(r.role).toBe("follower");
    expect(r.leader).toBe("n2");
    expect(r.term).toBe(1);
  });

  it("If a server receives a request with a stale term number, it rejects the request (§5.1)", () => {
    const r = newRaft("n1", ids, { preVote: false, checkQuorum: false }, storageWith(ids, [], 3));
    r.step(msg({ type: "vote", from: "n2", to: "n1", term: 2, index: 5, logTerm: 2 }));
    r.step(msg({ type: "append", from: "n2", to: "n1", term: 2, index: 0, logTerm: 0, entries: [] }));
    expect(drain(r)).toEqual([]);
    expect(r.term).toBe(3);
    expect(r.vote).toBe("");
  });

  it("If a candidate or leader discovers that its term is out of date, it immediately reverts to follower (§5.1)", () => {
    const c = new CoreCluster(ids);
    c.campaign("n1");
    const r = c.raft("n1");
    expect(r.role).toBe("leader");
    r.step(msg({ type: "append", from: "n2", to: "n1", term: r.term + 1 }));
    expect(r.role).toBe("follower");
    expect(r.term).toBe(2);
    expect(r.leader).toBe("n2");
  });

  it("Raft uses randomized election timeouts, spread over [electionTimeout, 2·electionTimeout)", () => {
    const seen = new Set<number>();
    for (let seed = 1; seed <= 60; seed++) {
      const r = newRaft("n1", ids, { preVote: false, random: seededRandom(seed) });
      let ticks = 0;
      while (r.role === "follower") {
        r.tick();
        ticks++;
      }
      expect(ticks).toBeGreaterThanOrEqual(10);
      expect(ticks).toBeLessThan(20);
      seen.add(ticks);
    }
    expect(seen.size).toBeGreaterThan(5);
  });

  it("Leaders send periodic heartbeats to all followers to maintain their authority", () => {
    const c = new CoreCluster(ids, { config: { heartbeatTicks: 2 } });
    c.campaign("n1");
    c.sent.length = 0;
    c.tick("n1", 1);
    expect(c.queue.filter((m) => m.type === "heartbeat")).toHaveLength(0);
    c.tick("n1", 1);
    expect(
      c.queue
        .filter((m) => m.type === "heartbeat")
        .map((m) => m.to)
        .sort(),
    ).toEqual(["n2", "n3"]);
  });

  it("A cluster elects exactly one leader by timeouts alone, and re-elects when the leader is cut off", () => {
    const c = new CoreCluster(["n1", "n2", "n3", "n4", "n5"], { seed: 3 });
    for (let i = 0; i < 50 && !c.leader(); i++) {
      c.tick();
      c.stabilize();
    }
    const first = c.leader()!;
    expect(first).toBeDefined();
    c.isolate(first);
    for (let i = 0; i < 50; i++) {
      c.tick();
      c.stabilize();
    }
    const leaders = [...c.nodes.values()].filter((n) => n.raft.role === "leader").map((n) => n.id);
    // The cut-off leader stepped down (CheckQuorum); one new leader among the rest.
    expect(leaders).toHaveLength(1);
    expect(leaders[0]).not.toBe(first);
  });

  it("No leader is elected without a majority", () => {
    const c = new CoreCluster(["n1", "n2", "n3", "n4", "n5"], { seed: 5 });
    c.isolate("n1");
    c.isolate("n2");
    c.isolate("n3");
    for (let i = 0; i < 100; i++) {
      c.tick();
      c.stabilize();
    }
    expect(c.leader()).toBeUndefined();
  });
});

describe("§9.6 PreVote", () => {
  it("A pre-candidate asks for votes for term+1 without changing its own term", () => {
    const r = newRaft("n1", ids);
    r.campaignNow();
    expect(r.role).toBe("preCandidate");
    expect(r.term).toBe(0);
    expect(drain(r).map((m) => [m.type, m.term])).toEqual([
      ["preVote", 1],
      ["preVote", 1],
    ]);
  });

  it("Granting a pre-vote changes neither the voter's term nor its vote", () => {
    const r = newRaft("n1", ids);
    r.step(msg({ type: "preVote", from: "n2", to: "n1", term: 1 }));
    const [resp] = drain(r);
    expect(resp).toMatchObject({ type: "preVoteResp", reject: false, term: 1 });
    expect(r.term).toBe(0);
    expect(r.vote).toBe("");
  });

  it("A partitioned node does not raise its term, so rejoining does not depose the leader", () => {
    const c = new CoreCluster(ids);
    c.campaign("n1");
    const term = c.raft("n1").term;
    c.isolate("n3");
    for (let i = 0; i < 100; i++) {
      c.tick();
      c.stabilize();
    }
    expect(c.raft("n3").term).toBe(term);
    c.heal();
    for (let i = 0; i < 5; i++) {
      c.tick();
      c.stabilize();
    }
    expect(c.leader()).toBe("n1");
    expect(c.raft("n1").term).toBe(term);
  });

  it("Without PreVote, the same partitioned node forces a new election on rejoining", () => {
    const c = new CoreCluster(ids, { config: { preVote: false, checkQuorum: false } });
    c.campaign("n1");
    const term = c.raft("n1").term;
    c.isolate("n3");
    for (let i = 0; i < 100; i++) {
      c.tick();
      c.stabilize();
    }
    expect(c.raft("n3").term).toBeGreaterThan(term + 1);
    c.heal();
    for (let i = 0; i < 40; i++) {
      c.tick();
      c.stabilize();
    }
    expect(c.raft("n1").term).toBeGreaterThan(term);
  });
});

describe("§6.2 CheckQuorum", () => {
  it("A leader that cannot hear from a quorum within an election timeout steps down", () => {
    const c = new CoreCluster(ids);
    c.campaign("n1");
    c.isolate("n1");
    for (let i = 0; i < 25; i++) {
      c.tick("n1");
      c.stabilize();
    }
    expect(c.raft("n1").role).toBe("follower");
  });

  it("A follower that heard from the leader within the election timeout ignores vote requests", () => {
    const c = new CoreCluster(ids, { config: { preVote: false } });
    c.campaign("n1");
    const f = c.raft("n2");
    const term = f.term;
    f.step(msg({ type: "vote", from: "n3", to: "n2", term: term + 5, index: 100, logTerm: 100 }));
    expect(f.term).toBe(term);
    expect(f.leader).toBe("n1");
    expect(drain(f)).toEqual([]);
  });
});

describe("early election when the leader's connection breaks (host input)", () => {
  it("a follower told its leader's stream ended forgets the leader and can start a pre-vote without waiting out its timer", () => {
    const c = new CoreCluster(ids);
    c.campaign("n1");
    const f = c.raft("n2");
    expect(f.reportLeaderDisconnected("n3")).toBe(false); // not its leader
    expect(f.leader).toBe("n1");
    expect(f.reportLeaderDisconnected("n1")).toBe(true);
    expect(f.leader).toBe("");
    f.campaignIfLeaderLost("n1");
    expect(f.role).toBe("preCandidate");
  });

  it("still campaigns after a message the dead leader sent before dying, but not once another leader is known", () => {
    const c = new CoreCluster(ids);
    c.campaign("n1");
    const term = c.raft("n1").term;
    const f = c.raft("n2");
    f.reportLeaderDisconnected("n1");
    f.step(msg({ type: "heartbeat", from: "n1", to: "n2", term })); // in flight when n1 died
    expect(f.leader).toBe("n1");
    f.campaignIfLeaderLost("n1");
    expect(f.role).toBe("preCandidate");

    const g = c.raft("n3");
    g.reportLeaderDisconnected("n1");
    g.step(msg({ type: "append", from: "n2", to: "n3", term: term + 1, index: 0, logTerm: 0 }));
    g.campaignIfLeaderLost("n1");
    expect(g.role).toBe("follower");
    expect(g.leader).toBe("n2");
  });

  it("is ignored by leaders, and without PreVote, without CheckQuorum or with lease reads", () => {
    for (const config of [{ preVote: false }, { checkQuorum: false }, { readOnly: "lease" as const }]) {
      const c = new CoreCluster(ids, { config });
      c.campaign("n1");
      expect(c.raft("n2").reportLeaderDisconnected("n1")).toBe(false);
      expect(c.raft("n2").leader).toBe("n1");
    }
    const c = new CoreCluster(ids);
    c.campaign("n1");
    expect(c.raft("n1").reportLeaderDisconnected("n1")).toBe(false);
    expect(c.raft("n1").role).toBe("leader");
  });

  it("after a leader crash, the survivors that saw its streams end elect a new leader with no tick at all", () => {
    const c = new CoreCluster(ids);
    c.campaign("n1");
    const term = c.raft("n1").term;
    c.crash("n1");
    expect(c.raft("n2").reportLeaderDisconnected("n1")).toBe(true);
    expect(c.raft("n3").reportLeaderDisconnected("n1")).toBe(true);
    c.raft("n2").campaignIfLeaderLost("n1");
    c.stabilize();
    expect(c.leader()).toBe("n2");
    expect(c.raft("n2").term).toBe(term + 1);
    expect(c.raft("n3").leader).toBe("n2");
  });

  it("a false alarm (one broken link to a live leader) disrupts nobody: the pre-vote fails inside the others' lease", () => {
    const c = new CoreCluster(ids);
    c.campaign("n1");
    const term = c.raft("n1").term;
    expect(c.raft("n2").reportLeaderDisconnected("n1")).toBe(true);
    c.raft("n2").campaignIfLeaderLost("n1");
    c.stabilize();
    // n3 and n1 still hear from the leader (or are it): they ignore the pre-vote.
    expect(c.raft("n2").role).toBe("preCandidate");
    expect(c.raft("n1").role).toBe("leader");
    for (const id of ids) expect(c.raft(id).term).toBe(term);
    // The leader's next heartbeat brings n2 back.
    c.tick("n1");
    c.stabilize();
    expect(c.raft("n2").role).toBe("follower");
    expect(c.raft("n2").leader).toBe("n1");
    expect(c.raft("n1").term).toBe(term);
  });
});
