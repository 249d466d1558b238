import { describe, expect, it } from "vitest";
import { CoreCluster } from "../testing/core-cluster.js";
import { drain, entries, msg, newRaft, storageWith } from "./test-util.js";

const ids = ["n1", "n2", "n3"];
const five = ["n1", "n2", "n3", "n4", "n5"];

function termsOf(c: CoreCluster, id: string): number[] {
  const log = c.raft(id).log;
  return (log.slice(log.firstIndex(), log.lastIndex() + 1) ?? []).map((e) => e.term);
}

describe("§5.3 log replication", () => {
  it("The leader appends the command to its log as a new entry, then issues AppendEntries RPCs in parallel", () => {
    const c = new CoreCluster(ids);
    c.campaign("n1");
    const index = c.propose("x");
    expect(index).toBe(2); // after the leader's no-op
    const appends = c.queue.filter((m) => m.type === "append");
    expect(appends.map((m) => m.to).sort()).toEqual(["n2", "n3"]);
    for (const m of appends) expect(m.entries.map((e) => e.index)).toEqual([2]);
  });

  it("A log entry is committed once the leader has replicated it on a majority of the servers", () => {
    const c = new CoreCluster(five);
    c.campaign("n1");
    c.isolate("n4");
    c.isolate("n5");
    c.heal();
    c.drop = (m) => m.to === "n4" || m.to === "n5" || m.to === "n3";
    const index = c.propose("x");
    c.stabilize();
    expect(c.raft("n1").log.committed).toBeLessThan(index);
    c.drop = (m) => m.to === "n4" || m.to === "n5";
    c.tick("n1");
    c.stabilize();
    expect(c.raft("n1").log.committed).toBe(index);
  });

  it("Once a follower learns that an entry is committed, it applies it to its state machine, in log order", () => {
    const c = new CoreCluster(ids);
    c.campaign("n1");
    for (const x of ["a", "b", "c"]) c.propose(x);
    c.stabilize();
    c.tick("n1");
    c.stabilize();
    for (const id of ids) expect(c.appliedCommands(id)).toEqual(["a", "b", "c"]);
  });

  it("A leader never commits an entry of an earlier term by counting replicas (§5.4.2, Figure 8)", () => {
    // The leader's log holds [1, 2] from earlier terms; elected in term 4 it appends a no-op at 3.
    const s = storageWith(ids, [1, 2], 3);
    const r = newRaft("n1", ids, { preVote: false }, s);
    r.campaignNow();
    drain(r, s);
    r.step(msg({ type: "voteResp", from: "n2", to: "n1", term: 4 }));
    expect(r.role).toBe("leader");
    drain(r, s);
    // A majority holds entry 2 (of term 2): still not committed.
    r.step(msg({ type: "appendResp", from: "n2", to: "n1", term: 4, index: 2 }));
    expect(r.log.committed).toBe(0);
    // Once the term-4 entry is on a majority, it and everything before it commit.
    r.step(msg({ type: "appendResp", from: "n2", to: "n1", term: 4, index: 3 }));
    expect(r.log.committed).toBe(3);
  });

  it("Figure 8: an entry of term 2 replicated on a majority by the leader of term 4 is not committed, and is safely overwritten", () => {
    // (c) of Figure 8: S1 leads term 4; S5 (log [1, 3]) could still win term 5 with the votes of
    // S2, S3, S4, whose last entry is of term 2. If S1 had committed index 2 by counting, (d)
    // would overwrite a committed entry and the checker would throw.
    const c = new CoreCluster(five, {
      config: { preVote: false, checkQuorum: false, maxEntriesPerMessage: 1 },
      storages: {
        n1: storageWith(five, [1, 2], 3),
        n2: storageWith(five, [1, 2], 3),
        n3: storageWith(five, [1], 3),
        n4: storageWith(five, [1], 3),
        n5: storageWith(five, [1, 3], 3),
      },
    });
    const inMinority = (id: string) => id === "n4" || id === "n5";
    // Votes of S1, S2, S3 only; no entry of term 4 reaches anyone.
    c.drop = (m) => inMinority(m.to) || inMinority(m.from) || m.entries.some((e) => e.term === 4);
    c.campaign("n1");
    expect(c.raft("n1").role).toBe("leader");
    expect(c.raft("n1").term).toBe(4);
    // What S1 would see if its term-4 entries were lost but its probes arrived: S2 holds index
    // 2; S3 rejects an empty probe at index 2 and then accepts entry 2 alone.
    c.raft("n1").step(msg({ type: "appendResp", from: "n2", to: "n1", term: 4, index: 2 }));
    c.processReady(c.node("n1"));
    c.raft("n3").step(msg({ type: "append", from: "n1", to: "n3", term: 4, index: 2, logTerm: 2 }));
    c.processReady(c.node("n3"));
    c.stabilize();
    expect(termsOf(c, "n3")).toEqual([1, 2]); // index 2 (term 2) is on S1, S2, S3: a majority
    expect(c.raft("n1").log.committed).toBe(0);
    // (d) S1 crashes; S5 is elected in term 5 and overwrites index 2 everywhere.
    c.crash("n1");
    c.drop = () => false;
    c.campaign("n5"); // term 4: S2 and S3 already voted for S1
    c.campaign("n5");
    expect(c.leader()).toBe("n5");
    expect(c.raft("n5").term).toBe(5);
    c.tick("n5");
    c.stabilize();
    for (const id of ["n2", "n3", "n4", "n5"]) expect(termsOf(c, id)).toEqual([1, 3, 5]);
    c.restart("n1");
    c.tick("n5");
    c.stabilize();
    expect(termsOf(c, "n1")).toEqual([1, 3, 5]);
  });

  it("If the follower does not find an entry with the same index and term, it refuses the new entries", () => {
    const s = storageWith(ids, [1, 1], 2);
    const r = newRaft("n2", ids, {}, s);
    r.step(
      msg({ type: "append", from: "n1", to: "n2", term: 2, index: 2, logTerm: 2, entries: entries([2], 3) }),
    );
    const [resp] = drain(r, s);
    expect(resp).toMatchObject({ type: "appendResp", reject: true, index: 2, rejectHint: 2, logTerm: 1 });
    expect(r.log.lastIndex()).toBe(2);
  });

  it("If an existing entry conflicts with a new one, the follower deletes it and all that follow (Figure 2, rule 3)", () => {
    const s = storageWith(ids, [1, 1, 1, 1], 1);
    const r = newRaft("n2", ids, {}, s);
    r.step(
      msg({
        type: "append",
        from: "n1",
        to: "n2",
        term: 2,
        index: 2,
        logTerm: 1,
        entries: entries([2], 3),
        commit: 3,
      }),
    );
    const [resp] = drain(r, s);
    expect(resp).toMatchObject({ reject: false, index: 3 });
    expect(s.lastIndex()).toBe(3);
    expect(s.term(3)).toBe(2);
    expect(r.log.committed).toBe(3);
  });

  it("Appending entries the follower already has changes nothing (an old duplicate AppendEntries is harmless)", () => {
    const s = storageWith(ids, [1, 1, 1], 1);
    const r = newRaft("n2", ids, {}, s);
    r.step(
      msg({ type: "append", from: "n1", to: "n2", term: 1, index: 0, logTerm: 0, entries: entries([1]) }),
    );
    drain(r, s);
    expect(s.lastIndex()).toBe(3);
  });

  // Figure 7: the leader at the top and followers (a)–(f) with missing and extraneous entries.
  const leaderLog = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
  const figure7: Record<string, number[]> = {
    a: [1, 1, 1, 4, 4, 5, 5, 6, 6],
    b: [1, 1, 1, 4],
    c: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    d: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    e: [1, 1, 1, 4, 4, 4, 4],
    f: [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
  };
  it.each(Object.keys(figure7))(
    "The leader brings follower (%s) of Figure 7 into consistency with its own log",
    (name) => {
      const c = new CoreCluster(ids, {
        config: { preVote: false },
        storages: {
          n1: storageWith(ids, leaderLog, 7),
          n2: storageWith(ids, figure7[name]!, 7),
          n3: storageWith(ids, leaderLog, 7),
        },
      });
      c.campaign("n1");
      expect(c.leader()).toBe("n1");
      c.tick("n1");
      c.stabilize();
      expect(termsOf(c, "n2")).toEqual([...leaderLog, 8]);
      expect(c.raft("n2").log.committed).toBe(11);
    },
  );

  it("Fast backtracking: a long divergent follower log is repaired in a bounded number of round trips", () => {
    const long = (t: number) => [1, ...Array.from({ length: 50 }, () => t)];
    const c = new CoreCluster(ids, {
      config: { preVote: false },
      storages: {
        n1: storageWith(ids, long(3), 3),
        n2: storageWith(ids, long(2), 3),
        n3: storageWith(ids, long(3), 3),
      },
    });
    c.campaign("n1");
    c.tick("n1");
    c.stabilize();
    const rejections = c.sent.filter((m) => m.type === "appendResp" && m.reject && m.from === "n2");
    expect(rejections.length).toBeLessThanOrEqual(2);
    expect(termsOf(c, "n2")).toEqual([...long(3), 4]);
  });

  it("A bounded number of messages per agreement: one entry costs at most 8 messages in a 3-node cluster", () => {
    const c = new CoreCluster(ids);
    c.campaign("n1");
    c.tick("n1");
    c.stabilize();
    c.sent.length = 0;
    c.propose("x");
    c.stabilize();
    expect(c.sent.length).toBeLessThanOrEqual(8);
    for (const id of ids) expect(c.appliedCommands(id)).toEqual(["x"]);
  });

  it("Pipelining: the leader sends up to maxInflight appends before hearing back, then waits", () => {
    const c = new CoreCluster(ids, { config: { maxInflight: 3 } });
    c.campaign("n1");
    c.tick("n1");
    c.stabilize();
    for (let i = 0; i < 10; i++) c.propose(`p${i}`);
    const toN2 = c.queue.filter((m) => m.type === "append" && m.to === "n2");
    expect(toN2).toHaveLength(3);
    c.stabilize();
    for (const id of ids) expect(c.appliedCommands(id)).toHaveLength(10);
  });

  it("Batching: a lagging follower receives many entries per AppendEntries, bounded by maxEntriesPerMessage", () => {
    const c = new CoreCluster(ids, { config: { maxEntriesPerMessage: 16 } });
    c.campaign("n1");
    c.crash("n3");
    for (let i = 0; i < 100; i++) c.propose(`p${i}`);
    c.stabilize();
    c.restart("n3");
    c.sent.length = 0;
    c.tick("n1");
    c.stabilize();
    const toN3 = c.sent.filter((m) => m.type === "append" && m.to === "n3" && m.entries.length > 0);
    expect(Math.max(...toN3.map((m) => m.entries.length))).toBe(16);
    expect(toN3.length).toBeLessThanOrEqual(8);
    expect(c.appliedCommands("n3")).toHaveLength(100);
  });

  it("Agreement despite a cut-off follower, and the follower catches up when it returns", () => {
    const c = new CoreCluster(ids);
    c.campaign("n1");
    c.isolate("n3");
    for (let i = 0; i < 5; i++) c.propose(`p${i}`);
    c.stabilize();
    c.tick("n1");
    c.stabilize();
    expect(c.appliedCommands("n2")).toHaveLength(5);
    expect(c.appliedCommands("n3")).toHaveLength(0);
    c.heal();
    c.tick("n1");
    c.stabilize();
    c.tick("n1");
    c.stabilize();
    expect(c.appliedCommands("n3")).toHaveLength(5);
  });

  it("A partitioned old leader rejoins: its uncommitted entries are replaced by the new leader's", () => {
    const c = new CoreCluster(five, { seed: 11 });
    c.campaign("n1");
    c.propose("committed");
    c.stabilize();
    c.isolate("n1");
    c.propose("lost-1", "n1");
    c.propose("lost-2", "n1");
    c.stabilize();
    // n1 still believes it leads (until CheckQuorum): wait for a leader of a later term.
    for (let i = 0; i < 50 && c.leader() === "n1"; i++) {
      c.tick();
      c.stabilize();
    }
    expect(c.leader()).not.toBe("n1");
    c.propose("new");
    c.stabilize();
    c.heal();
    for (let i = 0; i < 3; i++) {
      c.tick();
      c.stabilize();
    }
    for (const id of five) expect(c.appliedCommands(id)).toEqual(["committed", "new"]);
  });

  it("Persistence: a cluster whose nodes all crash and restart keeps every committed entry", () => {
    const c = new CoreCluster(ids);
    c.campaign("n1");
    for (let i = 0; i < 5; i++) c.propose(`p${i}`);
    c.stabilize();
    for (const id of ids) c.crash(id);
    for (const id of ids) c.restart(id);
    for (let i = 0; i < 40 && !c.leader(); i++) {
      c.tick();
      c.stabilize();
    }
    c.propose("after");
    c.stabilize();
    c.tick();
    c.stabilize();
    for (const id of ids) expect(c.appliedCommands(id)).toEqual(["p0", "p1", "p2", "p3", "p4", "after"]);
  });
});
