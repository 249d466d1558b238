import { checkLinearizability, formatOperation, type Operation } from "@quorum/sim";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ShardMap } from "../src/shard/split.js";
import { debugLog, missingWrites, nudge, rand, runKillWorkload } from "./helpers/kill-workload.js";
import { ProcessCluster } from "./helpers/process-cluster.js";

/**
 * kill.test.ts with `--shards 3` (issue 5, "Real processes: the kill tests of the previous
 * issue pass with --shards 3"): three `quorum node --shards 3` processes, each hosting a
 * replica of three Raft groups on one transport. Clients read, write and compare-and-set
 * keys of all three shards through random nodes while a node, usually the leader of some
 * shard, is SIGKILLed and restarted every few seconds. Each key's history must be
 * linearizable; after SIGKILLing and restarting every process, every acknowledged write must
 * be there at its revision.
 */

const SHARDS = 3;
// Two keys per shard: "0…" in shard 0, upper case in shard 1, lower case in shard 2.
const KEYS = ["0a", "0b", "Ka", "Kb", "ka", "kb"];
const NUDGE = ["0nudge", "Nudge", "nudge"];
const debug = debugLog("shard-kill");

describe("three quorum node --shards 3 processes under SIGKILL", () => {
  let cluster: ProcessCluster | undefined;

  beforeAll(async () => {
    cluster = await ProcessCluster.start({ prefix: "quorum-shard-kill-", shards: SHARDS });
  }, 20_000);
  afterAll(async () => {
    await cluster?.close();
  });

  it("the keys cover every shard", () => {
    const map = ShardMap.ofCount(SHARDS);
    const shardsOf = (keys: readonly string[]) =>
      [...new Set(keys.map((k) => map.shardOf(Buffer.from(k))))].sort();
    expect(shardsOf(KEYS)).toEqual([0, 1, 2]);
    expect(shardsOf(NUDGE)).toEqual([0, 1, 2]);
  });

  it("keeps every key's history linearizable while nodes (mostly shard leaders) are killed, and loses no acknowledged write", {
    timeout: 70_000,
  }, async () => {
    const c = cluster!;
    const names = c.nodes.map((n) => n.name);
    const leadersAtStart = await c.shardLeaders();
    debug(`shard leaders at start: ${leadersAtStart.join(", ")}`);

    const r = await runKillWorkload(c, {
      keys: KEYS,
      nudgeKeys: NUDGE,
      workloadMs: 15_000,
      killEveryMs: [1_800, 3_000],
      minKills: 3,
      tag: "shard-kill",
      pickVictim: async (cl, n) => {
        const leaders = await cl.shardLeaders();
        const shard = rand(0, SHARDS - 1);
        const leader = leaders[shard];
        // The first victim leads a shard (the assertions below count on one), then mostly.
        if (leader && (n === 0 || Math.random() < 0.75)) {
          const led = leaders.flatMap((l, i) => (l === leader ? [i] : []));
          return { victim: leader, label: `${leader} (leader of shard ${led.join("+")})` };
        }
        const victim = names[rand(0, names.length - 1)]!;
        const led = leaders.flatMap((l, i) => (l === victim ? [i] : []));
        return { victim, label: led.length ? `${victim} (leader of shard ${led.join("+")})` : victim };
      },
    });
    debug(r.summary);
    if (process.env.QUORUM_DEBUG) console.log(r.summary);
    expect(r.finalReadFailures, `${r.summary}\n${c.tail()}`).toEqual([]);

    // Killed processes leave many outcomes unknown, and each multiplies the search: give it
    // room (a "limit" result says nothing about correctness; a "violation" does).
    const result = checkLinearizability(r.ops, { maxSteps: 20_000_000 });
    if (!result.ok) {
      const show = (list: readonly Operation[]) => list.map(formatOperation).join("\n");
      throw new Error(
        `not linearizable (${result.kind}) on ${result.key}: ${result.explanation}\n${show(result.operations)}\n${r.summary}`,
      );
    }
    expect(r.kills.length, r.summary).toBeGreaterThanOrEqual(3);
    expect(r.kills.filter((k) => k.includes("(leader")).length, r.summary).toBeGreaterThanOrEqual(1);
    expect(r.completed, r.summary).toBeGreaterThan(300);
    // Every shard took acknowledged writes.
    const map = ShardMap.ofCount(SHARDS);
    const perShard = [0, 0, 0];
    for (const a of r.acked) perShard[map.shardOf(Buffer.from(a.key))]!++;
    expect(
      perShard.every((n) => n > 20),
      `acked writes per shard ${perShard}; ${r.summary}`,
    ).toBe(true);

    // Every process dies at once; after the restart every acknowledged write is there.
    await c.killAll();
    for (const name of names) c.spawn(name);
    await Promise.all(c.nodes.map((n) => n.ready));
    await c.waitForLeader();
    await c.waitUntilAllKnowLeaders();
    await nudge(c, NUDGE);
    debug(`restarted all; checking ${r.acked.length} acknowledged writes`);
    const missing = await missingWrites(c, r.acked);
    debug("done");
    expect(missing, `acknowledged writes lost after restarting every node (of ${r.acked.length})`).toEqual(
      [],
    );
    expect(r.acked.length).toBeGreaterThan(100);
  });
});
