import type { LogStatus, ReplicatedLog } from "@quorum/consensus";
import { describe, expect, it } from "vitest";
import { ManualClock } from "../testing/manual-clock.js";
import { LeaderBalancer } from "./leader-balancer.js";

const members = ["n1", "n2", "n3"].map((id) => ({ id, address: `${id}:1`, learner: false }));

/** A shard's log as node n1 sees it: who leads, and transfers that move the leader. */
function shard(leader: string | undefined, fail = false) {
  const moves: string[] = [];
  const log = {
    status: (): LogStatus => ({
      nodeId: "n1",
      role: leader === "n1" ? "leader" : "follower",
      leaderId: leader,
      term: 1,
      commitIndex: 0,
      appliedIndex: 0,
      members,
    }),
    async transferLeadership(id: string) {
      if (fail) throw new Error("target behind");
      moves.push(id);
      leader = id;
    },
  };
  return { log: log as unknown as ReplicatedLog<unknown>, moves };
}

describe("LeaderBalancer", () => {
  it("hands shards over until no node leads two more than another", async () => {
    const shards = [shard("n1"), shard("n1"), shard("n1")];
    const b = new LeaderBalancer(
      shards.map((s) => s.log),
      { clock: new ManualClock(), intervalMs: 1_000 },
    );
    expect(await b.balanceOnce()).toEqual({ shard: 2, to: "n2" });
    expect(await b.balanceOnce()).toEqual({ shard: 1, to: "n3" });
    expect(await b.balanceOnce()).toBeUndefined();
    expect(shards.map((s) => s.moves)).toEqual([[], ["n3"], ["n2"]]);
    b.close();
  });

  it("does nothing during an election, when balanced, or when it does not lead the excess", async () => {
    const clock = new ManualClock();
    const during = new LeaderBalancer([shard("n1").log, shard("n1").log, shard(undefined).log], {
      clock,
      intervalMs: 1,
    });
    expect(await during.balanceOnce()).toBeUndefined();
    const balanced = new LeaderBalancer([shard("n1").log, shard("n2").log, shard("n3").log], {
      clock,
      intervalMs: 1,
    });
    expect(await balanced.balanceOnce()).toBeUndefined();
    const other = new LeaderBalancer([shard("n2").log, shard("n2").log, shard("n2").log], {
      clock,
      intervalMs: 1,
    });
    expect(await other.balanceOnce()).toBeUndefined();
    const failing = new LeaderBalancer(
      [shard("n1", true).log, shard("n1", true).log, shard("n1", true).log],
      {
        clock,
        intervalMs: 1,
      },
    );
    expect(await failing.balanceOnce()).toBeUndefined();
    for (const b of [during, balanced, other, failing]) b.close();
  });
});
