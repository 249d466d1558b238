import { describe, expect, it } from "vitest";
import { CoreCluster, cmd, text } from "../testing/core-cluster.js";
import { seededRandom } from "../testing/prng.js";
import { Paxos } from "./paxos.js";
import { checkQuorums } from "./quorum.js";
import { type AcceptorState, type Ballot, type Message, type SlotEntry, ZERO_BALLOT } from "./types.js";

const ids = ["n1", "n2", "n3"];

function msg(fields: Partial<Message> & Pick<Message, "type" | "from" | "to" | "ballot">): Message {
  return {
    slot: 0,
    entries: [],
    commit: 0,
    reject: false,
    promised: ZERO_BALLOT,
    context: "",
    slots: [],
    ...fields,
  };
}

const b = (round: number, node: string): Ballot => ({ round, node });

function stateWith(promised: Ballot, accepted: SlotEntry[]): AcceptorState {
  return { promised, accepted: new Map(accepted.map((e) => [e.slot, e])), chosen: new Map() };
}

function entry(slot: number, ballot: Ballot, ...commands: string[]): SlotEntry {
  return { slot, ballot, value: { id: `v:${commands.join(",")}`, commands: commands.map(cmd) } };
}

describe("Synod acceptor rules", () => {
  it("phase 1b: an acceptor promises a ballot at least as high as any it promised, and reports what it accepted", () => {
    const n = new Paxos({
      id: "n2",
      voters: ids,
      random: seededRandom(1),
      state: stateWith(b(2, "n1"), [entry(1, b(2, "n1"), "x")]),
    });
    n.step(msg({ type: "prepare", from: "n3", to: "n2", ballot: b(3, "n3"), slot: 1 }));
    const rd = n.ready();
    expect(rd.persist?.promised).toEqual(b(3, "n3"));
    const promise = rd.messages[0]!;
    expect(promise).toMatchObject({ type: "promise", to: "n3", reject: false });
    expect(promise.entries.map((e) => [e.slot, e.ballot, text(e.value)])).toEqual([[1, b(2, "n1"), ["x"]]]);
  });

  it("phase 1b: an acceptor refuses a prepare below its promise and names the higher ballot", () => {
    const n = new Paxos({ id: "n2", voters: ids, random: seededRandom(1), state: stateWith(b(5, "n1"), []) });
    n.step(msg({ type: "prepare", from: "n3", to: "n2", ballot: b(4, "n3"), slot: 1 }));
    const rd = n.ready();
    expect(rd.persist).toBeUndefined();
    expect(rd.messages[0]).toMatchObject({ type: "promise", reject: true, promised: b(5, "n1") });
  });

  it("ballots are ordered by round, then node id: the same round from a higher id wins", () => {
    const n = new Paxos({ id: "n2", voters: ids, random: seededRandom(1), state: stateWith(b(4, "n1"), []) });
    n.step(msg({ type: "prepare", from: "n3", to: "n2", ballot: b(4, "n3"), slot: 1 }));
    expect(n.ready().messages[0]).toMatchObject({ reject: false });
  });

  it("phase 2b: an acceptor accepts unless it promised a higher ballot", () => {
    const n = new Paxos({ id: "n2", voters: ids, random: seededRandom(1), state: stateWith(b(3, "n3"), []) });
    const value = { id: "v", commands: [cmd("a")] };
    n.step(
      msg({
        type: "accept",
        from: "n1",
        to: "n2",
        ballot: b(2, "n1"),
        entries: [{ slot: 1, ballot: b(2, "n1"), value }],
      }),
    );
    let rd = n.ready();
    expect(rd.persist).toBeUndefined();
    expect(rd.messages[0]).toMatchObject({ type: "accepted", reject: true, promised: b(3, "n3") });
    n.step(
      msg({
        type: "accept",
        from: "n3",
        to: "n2",
        ballot: b(3, "n3"),
        entries: [{ slot: 1, ballot: b(3, "n3"), value }],
      }),
    );
    rd = n.ready();
    expect(rd.persist?.accepted.map((e) => e.slot)).toEqual([1]);
    expect(rd.messages[0]).toMatchObject({ type: "accepted", reject: false, slots: [1] });
  });

  it("durability: the promise and accepted state is in the Ready that carries the message, so the host persists it before sending", () => {
    const c = new CoreCluster(ids);
    c.elect("n1");
    c.propose("n1", "a");
    c.deliver();
    for (const id of ["n2", "n3"]) {
      for (const rd of c.readies.get(id)!) {
        for (const m of rd.messages) {
          if (m.type === "promise" && !m.reject) expect(rd.persist?.promised).toEqual(m.ballot);
          if (m.type === "accepted" && !m.reject) {
            const persisted = rd.persist?.accepted.map((e) => e.slot) ?? [];
            for (const s of m.slots) expect(persisted).toContain(s);
          }
        }
      }
    }
  });
});

describe("Synod proposer rules", () => {
  it("phase 1: a new leader adopts the value with the highest ballot among the promises", () => {
    const c = new CoreCluster(ids);
    // n3 accepted x in ballot 1, n2 accepted y in ballot 2: y may have been chosen, x not.
    c.stores.get("n3")!.save({ accepted: [entry(1, b(1, "n1"), "x")], chosen: [], promised: b(1, "n1") });
    c.stores.get("n2")!.save({ accepted: [entry(1, b(2, "n2"), "y")], chosen: [], promised: b(2, "n2") });
    c.restart("n3");
    c.restart("n2");
    c.campaign("n3");
    c.deliver(CoreCluster.isolate("n1")); // phase-1 quorum {n3, n2}
    expect(c.leader()).toBe("n3");
    c.deliver();
    expect(c.commands("n3")).toEqual(["y"]);
    expect(c.checkAgreement()).toBeUndefined();
  });

  it("phase 1: a value any acceptor of the phase-1 quorum accepted is re-proposed (it may have been chosen)", () => {
    const c = new CoreCluster(ids);
    c.stores.get("n2")!.save({ accepted: [entry(1, b(1, "n1"), "x")], chosen: [], promised: b(1, "n1") });
    c.restart("n2");
    c.campaign("n3");
    c.deliver(CoreCluster.isolate("n1"));
    c.deliver();
    expect(c.commands("n3")).toEqual(["x"]);
  });

  it("Multi-Paxos: a new leader fills slots nobody accepted with no-ops, keeping log indexes gap-free", () => {
    const c = new CoreCluster(ids);
    c.stores.get("n2")!.save({ accepted: [entry(3, b(1, "n1"), "z")], chosen: [], promised: b(1, "n1") });
    c.restart("n2");
    c.campaign("n3");
    c.deliver(CoreCluster.isolate("n1"));
    const applied = c.applied.get("n3")!;
    expect(applied.map((s) => [s.slot, s.index, text(s.value)])).toEqual([
      [1, 1, []],
      [2, 2, []],
      [3, 3, ["z"]],
    ]);
  });

  it("Multi-Paxos: the leader runs phase 1 once, then each proposal costs only phase 2", () => {
    const c = new CoreCluster(ids);
    c.elect("n1");
    const delivered: Message[] = [];
    for (let i = 0; i < 5; i++) {
      c.propose("n1", `c${i}`);
      delivered.push(...c.deliver());
    }
    const types = new Set(delivered.map((m) => m.type));
    expect(types.has("prepare")).toBe(false);
    expect(types.has("promise")).toBe(false);
    expect(c.commands("n1")).toEqual(["c0", "c1", "c2", "c3", "c4"]);
  });

  it("Multi-Paxos: many slots are in flight at once and are applied in slot order", () => {
    const c = new CoreCluster(ids);
    c.elect("n1");
    const slots = [c.propose("n1", "a"), c.propose("n1", "b"), c.propose("n1", "c")];
    expect(slots).toEqual([1, 2, 3]);
    expect(c.node("n1").status().inflight).toBe(3);
    // Deliver the answers in reverse order: slot 3 is chosen first, but applied last.
    c.inbox.reverse();
    c.deliver();
    expect(c.commands("n1")).toEqual(["a", "b", "c"]);
  });

  it("Multi-Paxos: a slot holds a batch of commands, one log index each", () => {
    const c = new CoreCluster(ids);
    c.elect("n1");
    c.propose("n1", "a", "b", "c");
    c.propose("n1", "d");
    c.deliver();
    expect(c.applied.get("n1")!.map((s) => [s.slot, s.index])).toEqual([
      [1, 1],
      [2, 4],
    ]);
    expect(c.node("n1").status().chosenIndex).toBe(4);
  });

  it("learners: followers learn chosen values from the leader's commit notice", () => {
    const c = new CoreCluster(ids);
    c.elect("n1");
    c.propose("n1", "a");
    c.deliver();
    expect(c.commands("n2")).toEqual([]);
    c.tick("n1"); // heartbeat carries the chosen prefix
    c.deliver();
    expect(c.commands("n2")).toEqual(["a"]);
    expect(c.commands("n3")).toEqual(["a"]);
  });

  it("catch-up: a replica that missed accepts learns the chosen slots from the leader", () => {
    const c = new CoreCluster(ids);
    c.elect("n1");
    c.deliver();
    for (const s of ["a", "b", "c"]) c.propose("n1", s);
    c.deliver(CoreCluster.isolate("n3"));
    expect(c.commands("n3")).toEqual([]);
    c.tick("n1"); // heartbeat -> n3 reports its chosen prefix 0 -> learn
    c.deliver();
    expect(c.commands("n3")).toEqual(["a", "b", "c"]);
  });

  it("catch-up: a restarted replica replays its chosen slots and then catches up", () => {
    const c = new CoreCluster(ids);
    c.elect("n1");
    c.propose("n1", "a");
    c.tick("n1");
    c.deliver();
    c.restart("n3");
    c.drain("n3");
    expect(c.commands("n3")).toEqual(["a"]);
    c.propose("n1", "b");
    c.deliver(CoreCluster.isolate("n3"));
    c.tick("n1");
    c.deliver();
    expect(c.commands("n3")).toEqual(["a", "b"]);
  });
});

describe("leader election", () => {
  it("one stable leader emerges from election timeouts, and followers know it", () => {
    const c = new CoreCluster(ids);
    for (let t = 0; t < 60 && !c.leader(); t++) {
      for (const id of ids) c.tick(id);
      c.deliver();
    }
    const leader = c.leader();
    expect(leader).toBeDefined();
    for (let t = 0; t < 50; t++) {
      for (const id of ids) c.tick(id);
      c.deliver();
    }
    expect(c.leader()).toBe(leader);
    for (const id of ids) expect(c.node(id).status().leader).toBe(leader);
  });

  it("a failed leader is replaced by one with a higher ballot, which keeps chosen values", () => {
    const c = new CoreCluster(ids);
    c.elect("n1");
    c.propose("n1", "a");
    c.deliver();
    const old = c.node("n1").status().ballot;
    const live = ["n2", "n3"];
    for (let t = 0; t < 60; t++) {
      for (const id of live) c.tick(id);
      c.deliver(CoreCluster.isolate("n1"));
      if (live.some((id) => c.node(id).status().role === "leader")) break;
    }
    const next = live.find((id) => c.node(id).status().role === "leader")!;
    expect(next).toBeDefined();
    expect(c.node(next).status().ballot.round).toBeGreaterThan(old.round);
    c.propose(next, "b");
    c.deliver(CoreCluster.isolate("n1"));
    expect(c.commands(next)).toEqual(["a", "b"]);
  });

  it("duelling proposers: a refused candidate backs off and one leader emerges", () => {
    const c = new CoreCluster(["n1", "n2", "n3", "n4", "n5"]);
    c.campaign("n1");
    c.campaign("n2");
    c.deliver();
    for (let t = 0; t < 100 && !c.leader(); t++) {
      for (const id of c.ids) c.tick(id);
      c.deliver();
    }
    expect(c.leader()).toBeDefined();
    expect(c.checkAgreement()).toBeUndefined();
  });

  it("a leader that hears from no quorum for an election timeout steps down", () => {
    const c = new CoreCluster(ids);
    c.elect("n1");
    for (let t = 0; t < 25; t++) {
      c.tick("n1");
      c.deliver(CoreCluster.isolate("n1"));
    }
    expect(c.node("n1").status().role).toBe("follower");
  });

  it("an old leader learning of a higher ballot from a refusal stands down", () => {
    const c = new CoreCluster(ids);
    c.elect("n1");
    c.campaign("n2");
    c.deliver(CoreCluster.isolate("n1"));
    expect(c.node("n2").status().role).toBe("leader");
    const out = c.node("n1").propose("late", [cmd("late")]);
    expect(out.ok).toBe(true);
    c.drain("n1");
    c.deliver();
    expect(c.node("n1").status().role).toBe("follower");
    // The late proposal was refused by every other acceptor: it is never chosen.
    c.tick("n2");
    c.deliver();
    for (const id of ids) expect(c.commands(id)).not.toContain("late");
  });
});

describe("Flexible Paxos quorums", () => {
  it("rejects quorum sizes whose phase-1 and phase-2 quorums need not intersect", () => {
    expect(checkQuorums(["a", "b", "c", "d"], { phase1: 2, phase2: 2 })).toMatch(/must exceed/);
    expect(checkQuorums(["a", "b", "c", "d"], { phase1: 3, phase2: 2 })).toBeUndefined();
    expect(
      () =>
        new Paxos({
          id: "a",
          voters: ["a", "b", "c"],
          random: Math.random,
          quorums: { phase1: 1, phase2: 1 },
        }),
    ).toThrow(/must exceed/);
  });

  it("with q2 = 2 of 5, a value is chosen once two acceptors accept it", () => {
    const five = ["n1", "n2", "n3", "n4", "n5"];
    const c = new CoreCluster(five, { quorums: { phase1: 4, phase2: 2 } });
    c.elect("n1");
    c.propose("n1", "a");
    // Only n2 hears the accept.
    c.deliver((m) => m.type !== "accept" || m.to === "n2");
    expect(c.commands("n1")).toEqual(["a"]);
  });

  it("with q1 = 4 of 5, a candidate with three promises is not yet leader", () => {
    const five = ["n1", "n2", "n3", "n4", "n5"];
    const c = new CoreCluster(five, { quorums: { phase1: 4, phase2: 2 } });
    c.campaign("n1");
    c.deliver((m) => m.to !== "n4" && m.to !== "n5" && m.from !== "n4" && m.from !== "n5");
    expect(c.node("n1").status().role).toBe("candidate");
  });
});

describe("read barrier", () => {
  it("a leader confirms it still leads with a phase-2 quorum before answering a read", () => {
    const c = new CoreCluster(ids);
    c.elect("n1");
    c.propose("n1", "a");
    c.deliver();
    expect(c.node("n1").readIndex("r1")).toBe(true);
    const before = c.node("n1").ready();
    c.node("n1").advance(before);
    expect(before.readStates).toEqual([]);
    c.inbox.push(...before.messages);
    c.deliver();
    const rs = c.readies.get("n1")!.flatMap((rd) => rd.readStates);
    expect(rs).toEqual([{ context: "r1", index: 1 }]);
  });

  it("a deposed leader gets no read state: the acceptors that promised a higher ballot refuse it", () => {
    const c = new CoreCluster(ids);
    c.elect("n1");
    c.campaign("n2");
    c.deliver(CoreCluster.isolate("n1"));
    c.node("n1").readIndex("stale");
    c.drain("n1");
    c.deliver();
    expect(c.readies.get("n1")!.flatMap((rd) => rd.readStates)).toEqual([]);
    expect(c.node("n1").status().role).toBe("follower");
  });

  it("a follower that knows no leader cannot start a read barrier", () => {
    const c = new CoreCluster(ids);
    expect(c.node("n2").readIndex("r")).toBe(false);
  });

  it("a follower's read barrier runs on the leader and returns the leader's chosen index", () => {
    const c = new CoreCluster(ids);
    c.elect("n1");
    c.propose("n1", "a", "b");
    // n2 has not heard that slot 1 is chosen yet: hold the leader's commit notices to it.
    const held = c.take((m) => m.to === "n3");
    expect(c.node("n2").readIndex("f1")).toBe(true);
    c.drain("n2");
    const delivered = c.deliver((m) => m.to !== "n3" && m.from !== "n3");
    expect(delivered.some((m) => m.type === "readIndex" && m.from === "n2" && m.to === "n1")).toBe(true);
    // The leader confirmed with a heartbeat round before answering (n2's ack suffices with n1).
    const resp = delivered.find((m) => m.type === "readIndexResp");
    expect(resp).toMatchObject({ to: "n2", reject: false, commit: 2, context: "f1" });
    const rs = c.readies.get("n2")!.flatMap((rd) => rd.readStates);
    expect(rs).toEqual([{ context: "f1", index: 2 }]);
    c.release(held);
  });

  it("a node asked for a read barrier that does not lead refuses it", () => {
    const c = new CoreCluster(ids);
    c.elect("n1");
    // n2 believes n1 leads, but n1 was deposed by n3 meanwhile (n2 did not hear of it).
    c.campaign("n3");
    c.deliver((m) => m.to !== "n2" && m.from !== "n2");
    expect(c.node("n1").status().role).toBe("follower");
    expect(c.node("n2").readIndex("f2")).toBe(true);
    c.drain("n2");
    c.deliver((m) => (m.from === "n2" && m.to === "n1") || (m.from === "n1" && m.to === "n2"));
    const rs = c.readies.get("n2")!.flatMap((rd) => rd.readStates);
    expect(rs).toEqual([{ context: "f2", index: 0, refused: true }]);
  });
});

describe("leadership transfer", () => {
  it("the leader tells a peer to campaign only once it has every chosen slot; the peer then leads", () => {
    const c = new CoreCluster(ids);
    c.elect("n1");
    c.propose("n1", "a");
    c.deliver(CoreCluster.isolate("n3"));
    expect(c.node("n1").transferLeadership("n3")).toBe(true);
    c.drain("n1");
    expect(
      c.inbox.some((m) => m.type === "timeoutNow"),
      "n3 has not caught up yet",
    ).toBe(false);
    // Heartbeats bring n3 up to date (learn), then it is told to campaign, and wins.
    for (let i = 0; i < 5 && c.node("n3").status().role !== "leader"; i++) {
      c.tick("n1");
      c.deliver();
    }
    expect(c.node("n3").status().role).toBe("leader");
    expect(c.node("n1").status().role).toBe("follower");
    expect(c.commands("n3")).toEqual(["a"]);
    expect(c.checkAgreement()).toBeUndefined();
  });

  it("a follower ignores timeoutNow from a node it does not follow", () => {
    const c = new CoreCluster(ids);
    c.elect("n1");
    const before = c.node("n3").status().promised;
    c.node("n3").step(msg({ type: "timeoutNow", from: "n2", to: "n3", ballot: before }));
    expect(c.node("n3").status().role).toBe("follower");
    expect(c.node("n3").status().promised).toEqual(before);
  });
});

describe("recovery", () => {
  it("a restarted acceptor keeps its promise: it never accepts below a ballot it promised", () => {
    const c = new CoreCluster(ids);
    c.elect("n2");
    c.restart("n3");
    const value = { id: "v", commands: [cmd("a")] };
    c.node("n3").step(
      msg({
        type: "accept",
        from: "n1",
        to: "n3",
        ballot: b(0, "n1"),
        entries: [{ slot: 1, ballot: b(0, "n1"), value }],
      }),
    );
    expect(c.node("n3").ready().messages[0]).toMatchObject({ reject: true });
  });

  it("a restarted candidate never reuses a ballot round it already used", () => {
    const c = new CoreCluster(ids);
    c.campaign("n1");
    const first = c.node("n1").status().ballot;
    c.restart("n1");
    c.campaign("n1");
    expect(c.node("n1").status().ballot.round).toBeGreaterThan(first.round);
  });

  it("a proposal to a non-leader is refused with the leader it knows", () => {
    const c = new CoreCluster(ids);
    c.elect("n1");
    c.tick("n1");
    c.deliver();
    expect(c.node("n2").propose("x", [cmd("x")])).toEqual({ ok: false, leader: "n1" });
  });
});
