import { type ChildProcess, spawn } from "node:child_process";
import { ManualClock, type ShardedSingleNodeKv, startShardedSingleNodeKv } from "@quorum/kv/testing";
import { Etcd3 } from "etcd3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RangeRequest_SortOrder, RangeRequest_SortTarget } from "../src/gen/etcdserverpb/rpc.js";
import { groupByRevision, mergeRange, takeUpTo } from "../src/shard/merge.js";
import { defaultSplitPoints, ShardMap } from "../src/shard/split.js";
import { etcdctl } from "./etcdctl.js";

const b = (s: string) => Buffer.from(s);
const kv = (key: string, mod: number) => ({
  key: b(key),
  value: b("v"),
  createRevision: BigInt(mod),
  modRevision: BigInt(mod),
  version: 1n,
  lease: 0n,
});

describe("shard split and merge", () => {
  it("splits printable ASCII evenly into contiguous ranges", () => {
    expect(defaultSplitPoints(1)).toEqual([]);
    expect(defaultSplitPoints(3).map((p) => p.toString())).toEqual(["@", "_"]);
    const m = ShardMap.ofCount(3);
    expect([
      m.shardOf(b("/a")),
      m.shardOf(b("Ab")),
      m.shardOf(b("ab")),
      m.shardOf(b("")),
      m.shardOf(b("@")),
    ]).toEqual([0, 1, 2, 0, 1]);
    expect(m.shardsOf(b("/"), b("zz"))).toEqual([0, 1, 2]);
    expect(m.shardsOf(b("/"), b("@"))).toEqual([0]);
    expect(m.shardsOf(b("/"), b("@a"))).toEqual([0, 1]);
    expect(m.shardsOf(b("a"), Buffer.from([0]))).toEqual([2]);
    expect(m.shardsOf(b("\0"), Buffer.from([0]))).toEqual([0, 1, 2]);
    expect(m.shardsOf(b("z"), b("a"))).toEqual([]);
    expect(m.clip(b("/"), b("zz"), 0)).toEqual({ key: b("/"), rangeEnd: b("@") });
    expect(m.clip(b("/"), b("zz"), 1)).toEqual({ key: b("@"), rangeEnd: b("_") });
    expect(m.clip(b("/"), Buffer.from([0]), 2)).toEqual({ key: b("_"), rangeEnd: Buffer.from([0]) });
  });

  it("merges ranges in key order with limit, count, more and sort", () => {
    const req = {
      key: b("/"),
      rangeEnd: b("z"),
      limit: 3n,
      revision: 0n,
      sortOrder: RangeRequest_SortOrder.NONE,
      sortTarget: RangeRequest_SortTarget.KEY,
      serializable: false,
      keysOnly: false,
      countOnly: false,
      minModRevision: 0n,
      maxModRevision: 0n,
      minCreateRevision: 0n,
      maxCreateRevision: 0n,
    };
    const parts = [
      { header: undefined, kvs: [kv("/a", 5), kv("/b", 2)], more: false, count: 2n },
      { header: undefined, kvs: [kv("Aa", 9), kv("Ab", 3)], more: true, count: 4n },
      { header: undefined, kvs: [kv("aa", 4)], more: false, count: 1n },
    ];
    const r = mergeRange(req, parts, 9n);
    expect(r.kvs.map((k) => k.key.toString())).toEqual(["/a", "/b", "Aa"]);
    expect([r.count, r.more]).toEqual([7n, true]);
    const byMod = mergeRange(
      { ...req, sortTarget: RangeRequest_SortTarget.MOD, sortOrder: RangeRequest_SortOrder.DESCEND },
      parts,
      9n,
    );
    expect(byMod.kvs.map((k) => k.key.toString())).toEqual(["Aa", "/a", "aa"]);
  });

  it("merges per-shard event groups up to the watermark in revision order", () => {
    const ev = (key: string, mod: number) => ({ type: 0, kv: kv(key, mod), prevKv: undefined });
    const q0 = groupByRevision([ev("/a", 3), ev("/b", 3), ev("/c", 7)]);
    const q1 = groupByRevision([ev("Aa", 5), ev("Ab", 7)]);
    const queues = [q0, q1];
    const first = takeUpTo(queues, 6);
    expect(first.map((g) => [g.revision, g.events.map((e) => e.kv!.key.toString())])).toEqual([
      [3, ["/a", "/b"]],
      [5, ["Aa"]],
    ]);
    const next = takeUpTo(queues, 7);
    expect(next.map((g) => [g.revision, g.events.map((e) => e.kv!.key.toString())])).toEqual([
      [7, ["/c", "Ab"]],
    ]);
    expect(queues.every((q) => q.length === 0)).toBe(true);
  });
});

describe("3 shards on one node behind one etcd endpoint", () => {
  let kvs: ShardedSingleNodeKv;
  const clock = new ManualClock();
  const ctl = (args: string[], stdin?: string) => etcdctl(kvs.endpoint, args, stdin);
  let client: Etcd3;

  beforeAll(async () => {
    kvs = await startShardedSingleNodeKv(3, { clock, minLeaseTtlSeconds: 2 });
    client = new Etcd3({ hosts: kvs.endpoint });
  });
  afterAll(async () => {
    client?.close();
    await kvs?.stop();
  });

  it("puts and gets in every shard; ranges merge in key order with limit", async () => {
    for (const k of ["/a", "/b", "Aa", "Ab", "aa", "ab"])
      expect((await ctl(["put", k, `v-${k}`])).stdout).toBe("OK\n");
    expect(
      kvs.shards.map(
        (s) =>
          s.store.range({
            key: b("\0"),
            rangeEnd: b("\0"),
            countOnly: true,
            limit: 0n,
            revision: 0n,
            sortOrder: 0,
            sortTarget: 0,
            serializable: true,
            keysOnly: false,
            minModRevision: 0n,
            maxModRevision: 0n,
            minCreateRevision: 0n,
            maxCreateRevision: 0n,
          }).count,
      ),
    ).toEqual([2n, 2n, 2n]);
    expect((await ctl(["get", "Ab"])).stdout).toBe("Ab\nv-Ab\n");
    const all = await ctl(["get", "/", "zz", "--keys-only"]);
    expect(all.stdout.split("\n").filter(Boolean)).toEqual(["/a", "/b", "Aa", "Ab", "aa", "ab"]);
    const limited = await ctl(["get", "/", "zz", "--limit", "3", "-w", "json"]);
    const j = JSON.parse(limited.stdout);
    expect(j.kvs.map((x: { key: string }) => Buffer.from(x.key, "base64").toString())).toEqual([
      "/a",
      "/b",
      "Aa",
    ]);
    expect([j.more, j.count]).toEqual([true, 6]);
    const desc = await ctl([
      "get",
      "/",
      "zz",
      "--keys-only",
      "--sort-by=KEY",
      "--order=DESCEND",
      "--limit=2",
    ]);
    expect(desc.stdout.split("\n").filter(Boolean)).toEqual(["ab", "aa"]);
    const fromEtcd3 = await client.getAll().prefix("").keys();
    expect(fromEtcd3).toEqual(["/a", "/b", "Aa", "Ab", "aa", "ab"]);
    expect(await client.get("aa").string()).toBe("v-aa");
  });

  it("reads at a revision across shards and compacts every shard", async () => {
    const before = JSON.parse((await ctl(["get", "/", "zz", "-w", "json"])).stdout);
    const rev = before.header.revision as number;
    await ctl(["put", "/a", "new"]);
    await ctl(["put", "aa", "new"]);
    const old = await ctl(["get", "/", "zz", `--rev=${rev}`]);
    expect(old.stdout).toContain("/a\nv-/a\n");
    expect(old.stdout).toContain("aa\nv-aa\n");
    expect((await ctl(["get", "/", "zz", "--rev=99999"])).stderr).toContain(
      "required revision is a future revision",
    );
    expect((await ctl(["compaction", String(rev)])).stdout).toBe(`compacted revision ${rev}\n`);
    expect(kvs.shards.every((s) => s.store.compactRevision() === rev)).toBe(true);
  });

  it("deletes a range across shards", async () => {
    await ctl(["put", "/del1", "x"]);
    await ctl(["put", "Del2", "x"]);
    await ctl(["put", "del3", "x"]);
    const r = await ctl(["del", "/del", "zz", "--prev-kv"]);
    // /del1, then every key from "@" to "zz": Aa Ab Del2 aa ab del3
    expect(r.stdout.split("\n")[0]).toBe("7");
    expect((await ctl(["get", "/", "zz", "--keys-only"])).stdout.split("\n").filter(Boolean)).toEqual([
      "/a",
      "/b",
    ]);
  });

  it("single-shard Txn works; a cross-shard Txn is UNIMPLEMENTED and names the shards", async () => {
    const ok = await ctl(["txn"], 'mod("/a") > "0"\n\nput /c 1\n\nput /d 2\n\n');
    expect(ok.stdout).toBe("SUCCESS\n\nOK\n");
    const bad = await ctl(["txn"], 'mod("/a") > "0"\n\nput Zz 1\nput zz 2\n\n\n');
    expect(bad.stderr).toContain("code = Unimplemented");
    expect(bad.stderr).toContain("shards 0, 1, 2");
    await expect(client.if("/a", "Mod", ">", 0).then(client.put("zz").value("1")).commit()).rejects.toThrow(
      /shards 0, 2/,
    );
  });

  it("a watch over every shard sees events in revision order, once", async () => {
    const events: { key: string; rev: number }[] = [];
    const watcher = await client.watch().prefix("").create();
    watcher.on("put", (e) => events.push({ key: e.key.toString(), rev: Number(e.mod_revision) }));
    watcher.on("delete", (e) => events.push({ key: `-${e.key.toString()}`, rev: Number(e.mod_revision) }));
    const keys = ["w0", "/w1", "W2", "w3", "/w4", "W5", "/w6"];
    for (const k of keys) await client.put(k).value("x");
    await client.delete().key("W2");
    // etcdctl's watch on the whole key space, from an old revision, replays the same order.
    const deadline = Date.now() + 5_000;
    while (events.length < keys.length + 1 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 10));
    await watcher.cancel();
    expect(events.map((e) => e.key)).toEqual([...keys, "-W2"]);
    const revs = events.map((e) => e.rev);
    expect([...revs].sort((x, y) => x - y)).toEqual(revs);
    expect(new Set(revs).size).toBe(revs.length);
    const from = revs[0]!;
    const child: ChildProcess = spawn(
      "etcdctl",
      [`--endpoints=${kvs.endpoint}`, "watch", "--prefix", "", `--rev=${from}`],
      {
        env: { ...process.env, ETCDCTL_API: "3" },
      },
    );
    let out = "";
    child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    const until = Date.now() + 5_000;
    while (!out.includes("DELETE\nW2") && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    child.kill("SIGKILL");
    const printed = out.split("\n").filter((l) => l === "PUT" || l === "DELETE").length;
    expect(printed).toBe(keys.length + 1);
    const order = out.split("\n").filter((_l, i, a) => a[i - 1] === "PUT" || a[i - 1] === "DELETE");
    expect(order).toEqual([...keys, "W2"]);
  });

  it("a lease with keys in every shard expires everywhere at once", async () => {
    const grant = await ctl(["lease", "grant", "10"]);
    const id = /lease ([0-9a-f]+) granted/.exec(grant.stdout)![1]!;
    for (const k of ["/l1", "Ll2", "ll3"])
      expect((await ctl(["put", k, "x", `--lease=${id}`])).stdout).toBe("OK\n");
    const ttl = await ctl(["lease", "timetolive", id, "--keys"]);
    expect(ttl.stdout).toContain("attached keys([/l1 Ll2 ll3])");
    expect(kvs.shards.every((s) => s.store.lease(BigInt(`0x${id}`)) !== undefined)).toBe(true);
    clock.advance(9_000);
    await new Promise((r) => setTimeout(r, 50));
    expect((await ctl(["get", "/l1"])).stdout).toBe("/l1\nx\n");
    clock.advance(1_500);
    const deadline = Date.now() + 5_000;
    while (kvs.shards.some((s) => s.store.lease(BigInt(`0x${id}`)) !== undefined) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    for (const k of ["/l1", "Ll2", "ll3"]) expect((await ctl(["get", k])).stdout).toBe("");
    expect((await ctl(["lease", "timetolive", id])).stdout).toContain("already expired");
  });

  it("lease revoke deletes keys in every shard", async () => {
    const lease = client.lease(5, { autoKeepAlive: false });
    await lease.put("/r1").value("x");
    await lease.put("rr2").value("x");
    await lease.revoke();
    expect(await client.getAll().prefix("").keys()).not.toContain("rr2");
    expect(await client.get("/r1").string()).toBeNull();
  });
});
