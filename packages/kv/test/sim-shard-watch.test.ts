import { ShardMap } from "@quorum/kv";
import { type Prng, runSeeds, type ScenarioContext, seedCount } from "@quorum/sim";
import { describe, expect, it } from "vitest";
import { DeleteRangeRequest, PutRequest } from "../src/gen/etcdserverpb/rpc.js";
import { ShardedWatchStream } from "../src/shard/sharded-watch.js";
import { leaderKiller, ResumingWatcher, type Seen, seen, sleep, within } from "./helpers/sim-clients.js";
import { type SimKv, simKv } from "./helpers/sim-kv.js";

/**
 * A watch over every shard of a 3-shard store on three simulated Raft nodes (issue 5: "a Watch
 * over several shards merges results in revision order; clients must never see revisions go
 * backwards on one watch"). The client watches the whole key space through a node's router
 * (the merged stream its gRPC Watch serves), while writers put and delete keys of every shard
 * through each shard's leader, leaders crash and the network partitions. When its node dies
 * (and now and then anyway) the client resumes from its last revision + 1 on another node.
 *
 * Revisions are one space over all shards but not unique across them: two shards may each
 * commit a write at the same revision (README, "Revisions across shards"). So what the
 * client received must be exactly the union of the shards' committed histories, each event
 * once, with revisions rising from one response to the next (the events of one revision
 * arrive together).
 */

const ids = ["n1", "n2", "n3"];
const SHARDS = 3;
const map = ShardMap.ofCount(SHARDS);
const KEYS = ["0a", "0b", "Ka", "Kb", "ka", "kb"];
const EVERYTHING = { key: Buffer.from([0]), rangeEnd: Buffer.from([0]) };

async function writer(ctx: ScenarioContext, kv: SimKv, prng: Prng, name: string, stop: () => boolean) {
  let n = 0;
  while (!stop()) {
    const key = Buffer.from(prng.pick(KEYS));
    const leader = kv.shardLeader(map.shardOf(key));
    const up = [...kv.cluster.runtimes().values()];
    // Mostly the shard's leader; sometimes another node (whose router answers "no leader"
    // without gRPC forwarding, which is fine: outcomes do not matter here).
    const node =
      (leader && prng.chance(0.9) ? kv.cluster.runtime(leader) : undefined) ??
      (up.length > 0 ? prng.pick(up) : undefined);
    const router = node?.router;
    if (router) {
      const op: Promise<unknown> = prng.chance(0.2)
        ? router.deleteRange(DeleteRangeRequest.fromPartial({ key }))
        : router.put(PutRequest.fromPartial({ key, value: Buffer.from(`${name}.${++n}`) }));
      await within(ctx, 1_000, op);
    }
    await sleep(ctx, prng.int(0, 30));
  }
}

const byRevisionAndKey = (a: Seen, b: Seen) => a.revision - b.revision || a.key.localeCompare(b.key);

async function shardWatchScenario(ctx: ScenarioContext, options: { slow: boolean }): Promise<void> {
  const { sim, seed } = ctx;
  sim.network.setFaults({ minDelayMs: 1, maxDelayMs: 15, dropRate: 0.03, duplicateRate: 0.03 });
  const kv = simKv(sim, ids, {
    shards: SHARDS,
    shardBumpMs: 20,
    // A slow client: each shard's stream overflows its 3 queued responses and catches up from history.
    ...(options.slow ? { service: { watchMaxPendingResponses: 3 } } : {}),
  });
  const log: string[] = [];
  try {
    await kv.cluster.start();
    await sim.eventually(
      "every shard has a leader",
      () => Array.from({ length: SHARDS }, (_, s) => kv.shardLeader(s)).every(Boolean),
      5_000,
    );
    let stop = false;
    let stopWatching = false;
    // The merged stream the router's gRPC Watch serves, over this node's replicas.
    const watcher = new ResumingWatcher(
      ctx,
      kv,
      sim.prng.fork("watcher"),
      EVERYTHING,
      (node, write, id) => {
        const router = node.router!;
        const stores = kv.durable.get(id)!.shards.map((s) => s.store);
        return new ShardedWatchStream(
          router.services.map((s) => s.watchHub),
          router.map,
          (rev) => router.services[0]!.header(rev),
          (shard) => stores[shard]!.revision(),
          write,
          () => {},
        );
      },
      options.slow ? 0.5 : 0,
    );
    const killer = leaderKiller(ctx, kv, sim.prng.fork("killer"), [600, 1500], [100, 700], () => stop, log);
    const nemesis = kv.cluster.startNemesis({ crash: false, intervalMs: [200, 800] });
    const watching = watcher.loop(() => stopWatching).catch((e: unknown) => sim.fail(e));
    const writing = Promise.all(
      [
        ...["c1", "c2", "c3"].map((name) =>
          writer(ctx, kv, sim.prng.fork(`writer/${name}`), name, () => stop),
        ),
        killer.done,
      ].map((p) => p.catch((e: unknown) => sim.fail(e))),
    );

    await sim.runUntilTime(sim.now() + 6_000);
    stop = true;
    await kv.cluster.livenessPhase();
    let writersDone = false;
    void writing.then(() => (writersDone = true));
    await sim.eventually("writers stop", () => writersDone, 5_000);
    if (kv.cluster.down().length > 0) await kv.cluster.livenessPhase();
    await sim.eventually(
      "every replica of every shard applies the same log",
      () =>
        kv.cluster.up().length === ids.length &&
        Array.from({ length: SHARDS }, (_, s) => ids.map((id) => kv.durable.get(id)!.shards[s]!.store)).every(
          (stores) => stores.every((st) => st.appliedIndex() === stores[0]!.appliedIndex()),
        ),
      10_000,
    );
    const committed = kv.durable
      .get(ids[0]!)!
      .shards.flatMap((s) => seen(s.store.changesBetween(1, s.store.revision(), { prevKv: false })))
      .sort(byRevisionAndKey);
    const last = committed.at(-1)?.revision ?? 0;
    await sim.eventually(
      "the watcher reaches the last committed revision",
      () => watcher.revision >= last,
      10_000,
    );
    stopWatching = true;
    let finished = false;
    void watching.then(() => (finished = true));
    await sim.eventually("the watcher stops", () => finished, 5_000);
    watcher.close();

    const context = `\nleader crashes:\n${log.join("\n")}\nnemesis:\n${nemesis.log.join("\n")}`;
    expect(watcher.problems, `watch problems${context}`).toEqual([]);
    if (killer.crashes() < 2) throw new Error(`only ${killer.crashes()} leader crashes${context}`);
    if (watcher.resumes < 2) throw new Error(`the watcher resumed only ${watcher.resumes} times${context}`);
    const shardsWritten = new Set(committed.map((e) => map.shardOf(Buffer.from(e.key))));
    if (committed.length < 50 || shardsWritten.size < SHARDS)
      throw new Error(`only ${committed.length} committed changes in ${shardsWritten.size} shards`);
    // Every committed event of every shard exactly once (the order was checked as it came).
    expect([...watcher.received].sort(byRevisionAndKey), `events received vs committed${context}`).toEqual(
      committed,
    );
    if (process.env.QUORUM_DEBUG)
      console.log(
        `seed ${seed}: ${committed.length} events, ${new Set(committed.map((e) => e.revision)).size} revisions, ${watcher.resumes} resumes, ${killer.crashes()} crashes`,
      );
  } finally {
    await kv.close();
  }
}

describe("a watch over several shards under simulation", () => {
  const name =
    "a watch over three shards, resumed across leader crashes and partitions, sees every shard's committed events exactly once, revisions never going back";
  it(name, { timeout: 30_000 + 8_000 * seedCount({ seeds: 4 }) }, async () => {
    const { seeds } = await runSeeds(name, (_seed, ctx) => shardWatchScenario(ctx, { slow: false }), {
      seeds: 4,
    });
    expect(seeds.length).toBeGreaterThan(0);
  });

  const slow =
    "the same with a slow client (each shard's bounded queue overflowing to catch-ups from history)";
  it(slow, { timeout: 30_000 + 8_000 * seedCount({ seeds: 4 }) }, async () => {
    const { seeds } = await runSeeds(slow, (_seed, ctx) => shardWatchScenario(ctx, { slow: true }), {
      seeds: 4,
    });
    expect(seeds.length).toBeGreaterThan(0);
  });
});
