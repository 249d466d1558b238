import { ShardMap } from "@quorum/kv";
import { GRPCAbortedError, GRPCUnavailableError } from "etcd3";
import { describe, expect, it } from "vitest";
import { parseCrossShard } from "../src/demo/cluster-view.js";
import { HostBreaker, HostDownError } from "../src/demo/etcd-client.js";
import { shardPrefixes } from "../src/demo/shard-keys.js";

describe("shardPrefixes", () => {
  it("names the three default shards /bank/, Bank/ and bank/", () => {
    expect(shardPrefixes(3, "bank")).toEqual(["/bank/", "Bank/", "bank/"]);
  });

  it("gives every shard of any count a prefix whose keys all land in that shard", () => {
    for (const count of [1, 2, 3, 5, 8, 20, 94]) {
      const map = ShardMap.ofCount(count);
      const prefixes = shardPrefixes(count, "bank");
      expect(prefixes).toHaveLength(count);
      prefixes.forEach((p, shard) => {
        for (const key of [p, `${p}01`, `${p}\xff`]) expect(map.shardOf(Buffer.from(key))).toBe(shard);
      });
    }
  });
});

describe("parseCrossShard", () => {
  it("reads the engine's outcome counters from a Prometheus page", () => {
    const page = [
      "# HELP quorum_txn_cross_shard_total Txns over several shards by outcome",
      "# TYPE quorum_txn_cross_shard_total counter",
      'quorum_txn_cross_shard_total{outcome="committed"} 12',
      'quorum_txn_cross_shard_total{outcome="conflict"} 3',
      'quorum_txn_cross_shard_total{outcome="aborted"} 1',
      'quorum_txn_recovered_total{decision="commit"} 7',
    ].join("\n");
    expect(parseCrossShard(page)).toEqual({ committed: 12, conflict: 3, aborted: 1, failed: 0 });
    expect(parseCrossShard("")).toEqual({ committed: 0, conflict: 0, aborted: 0, failed: 0 });
  });
});

describe("HostBreaker", () => {
  const fail = (err: Error) => () => Promise.reject(err);

  it("opens after three UNAVAILABLE in a row and then skips the node without calling it", async () => {
    const breaker = new HostBreaker(3, 60_000);
    for (let i = 0; i < 3; i++)
      await expect(breaker.execute(fail(new GRPCUnavailableError("down")))).rejects.toBeInstanceOf(
        GRPCUnavailableError,
      );
    let called = false;
    await expect(
      breaker.execute(async () => {
        called = true;
      }),
    ).rejects.toBeInstanceOf(HostDownError);
    expect(called).toBe(false);
  });

  it("never opens on ABORTED (a transaction conflict) nor on a node's own UNAVAILABLE (no leader yet)", async () => {
    const breaker = new HostBreaker(3, 60_000);
    for (let i = 0; i < 10; i++) {
      await expect(breaker.execute(fail(new GRPCAbortedError("conflict")))).rejects.toBeInstanceOf(
        GRPCAbortedError,
      );
      await expect(
        breaker.execute(fail(new GRPCUnavailableError("14 UNAVAILABLE: etcdserver: no leader"))),
      ).rejects.toBeInstanceOf(GRPCUnavailableError);
    }
    await expect(breaker.execute(async () => "ok")).resolves.toBe("ok");
  });

  it("lets one call through after the open time; a failure then opens it again at once", async () => {
    let now = 0;
    const breaker = new HostBreaker(3, 2000, () => now);
    const down = fail(new GRPCUnavailableError("down"));
    for (let i = 0; i < 3; i++) await breaker.execute(down).catch(() => {});
    await expect(breaker.execute(async () => "ok")).rejects.toBeInstanceOf(HostDownError);
    now = 2000;
    await expect(breaker.execute(down)).rejects.toBeInstanceOf(GRPCUnavailableError);
    await expect(breaker.execute(async () => "ok")).rejects.toBeInstanceOf(HostDownError);
    now = 4000;
    await expect(breaker.execute(async () => "ok")).resolves.toBe("ok");
    // Closed again: it takes three failures in a row to open it.
    for (let i = 0; i < 2; i++) await breaker.execute(down).catch(() => {});
    await expect(breaker.execute(async () => "ok")).resolves.toBe("ok");
  });
});
