import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ShardMap } from "../src/shard/split.js";
import { etcdctl, findBinary, type Run, Watching } from "./etcdctl.js";
import { ProcessCluster } from "./helpers/process-cluster.js";

/**
 * The real etcdctl 3.4 against three `quorum node --shards 3` processes (issue 5: "the same
 * against a 3-shard cluster with keys in every shard"). Keys starting with a digit or '/' are
 * in shard 0, upper case in shard 1, lower case and '_' in shard 2 (README, "Sharding").
 * Commands go through every node, so most of them are forwarded to some shard's leader.
 */

interface JsonEvent {
  type?: number; // 1 = DELETE; absent = PUT
  kv: { key: string; value?: string; mod_revision: number };
}

/** `etcdctl watch -w json` prints one JSON object per response. */
function parseWatchJson(out: string): { revision: number; key: string; value: string; type: string }[] {
  const events: { revision: number; key: string; value: string; type: string }[] = [];
  for (const line of out.split("\n")) {
    if (!line.startsWith("{")) continue;
    const resp = JSON.parse(line) as { Events?: JsonEvent[] };
    for (const e of resp.Events ?? []) {
      events.push({
        revision: e.kv.mod_revision,
        key: Buffer.from(e.kv.key, "base64").toString(),
        value: e.kv.value ? Buffer.from(e.kv.value, "base64").toString() : "",
        type: e.type === 1 ? "DELETE" : "PUT",
      });
    }
  }
  return events;
}

const byteOrder = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));
const map = ShardMap.ofCount(3);
const shardOf = (k: string) => map.shardOf(Buffer.from(k));

describe("etcdctl against three quorum node --shards 3 processes", () => {
  let cluster: ProcessCluster | undefined;
  let names: string[] = [];
  const watches: Watching[] = [];
  /** Every key this file wrote and did not delete, with its value. */
  const live = new Map<string, string>();
  const at = (name: string, args: string[], stdin?: string): Promise<Run> =>
    etcdctl(cluster!.node(name).client, args, stdin);
  const ok = async (name: string, args: string[], stdout?: string) => {
    const r = await at(name, args);
    expect(r.stderr, `etcdctl ${args.join(" ")} through ${name}`).toBe("");
    expect(r.code, `etcdctl ${args.join(" ")} through ${name}`).toBe(0);
    if (stdout !== undefined) expect(r.stdout, `etcdctl ${args.join(" ")} through ${name}`).toBe(stdout);
    return r.stdout;
  };
  const put = async (name: string, key: string, value: string, ...flags: string[]) => {
    await ok(name, ["put", key, value, ...flags], "OK\n");
    live.set(key, value);
  };

  beforeAll(async () => {
    if (!findBinary("etcdctl")) {
      throw new Error("etcdctl is missing: install Debian's etcd-client (apt-get install -y etcd-client)");
    }
    cluster = await ProcessCluster.start({ prefix: "quorum-shard-etcdctl-", shards: 3 });
    names = cluster.nodes.map((n) => n.name);
    await cluster.waitUntilAllKnowLeaders();
  }, 20_000);
  afterAll(async () => {
    for (const w of watches.splice(0)) await w.kill();
    await cluster?.close();
  });

  it("the shards have their leaders (a snapshot of who leads what)", async () => {
    const leaders = await cluster!.shardLeaders();
    expect(leaders).toHaveLength(3);
    expect(leaders.every((l) => l !== undefined && names.includes(l))).toBe(true);
  });

  it("spreads shard leadership over the nodes: one shard each (LeaderBalancer)", async () => {
    let leaders = await cluster!.shardLeaders();
    const deadline = Date.now() + 30_000;
    // Spread means one leader per node; a shard between leaders (a transfer under way) reads
    // as undefined, which must not count as a third distinct leader.
    const spread = (l: readonly (string | undefined)[]) =>
      l.every((x) => x !== undefined) && new Set(l).size === names.length;
    while (!spread(leaders) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      leaders = await cluster!.shardLeaders();
    }
    expect([...leaders].sort()).toEqual([...names].sort());
  });

  it("puts and gets keys of every shard through every node", async () => {
    for (const name of names) {
      const keys = [`0/${name}`, `K${name}`, `k${name}`];
      expect(keys.map(shardOf)).toEqual([0, 1, 2]);
      for (const k of keys) await put(name, k, `v-${k}`);
    }
    for (const reader of names)
      for (const writer of names)
        for (const k of [`0/${writer}`, `K${writer}`, `k${writer}`])
          await ok(reader, ["get", k], `${k}\nv-${k}\n`);
    // --prev-kv through a node that leads no shard or some.
    await ok(names[1]!, ["put", "Kn1", "again", "--prev-kv"], "OK\nKn1\nv-Kn1\n");
    live.set("Kn1", "again");
  });

  it("gets ranges over several shards in key order: --prefix '', a range, --from-key, --limit, --rev", async () => {
    for (const [i, k] of ["1r", "Rr", "rr", "_r", "/r", "Zr"].entries()) await put(names[i % 3]!, k, `r${i}`);
    const all = [...live.keys()].sort(byteOrder);
    const show = (keys: string[]) => keys.map((k) => `${k}\n${live.get(k)}\n`).join("");
    for (const name of names) {
      await ok(name, ["get", "--prefix", ""], show(all));
      await ok(name, ["get", "--from-key", "1"], show(all.filter((k) => byteOrder(k, "1") >= 0)));
      await ok(
        name,
        ["get", "0", "l"],
        show(all.filter((k) => byteOrder(k, "0") >= 0 && byteOrder(k, "l") < 0)),
      );
      await ok(name, ["get", "--prefix", "", "--keys-only"], all.map((k) => `${k}\n\n`).join(""));
    }
    const limited = JSON.parse(await ok(names[2]!, ["get", "--prefix", "", "--limit=4", "-w", "json"]));
    expect(limited.kvs.map((kv: { key: string }) => Buffer.from(kv.key, "base64").toString())).toEqual(
      all.slice(0, 4),
    );
    expect([limited.count, limited.more]).toEqual([all.length, true]);

    // An old revision is a consistent cut over every shard.
    const rev = JSON.parse(await ok(names[0]!, ["get", "--prefix", "", "-w", "json"])).header
      .revision as number;
    await put(names[1]!, "1r", "changed");
    await put(names[2]!, "Rr", "changed");
    await put(names[0]!, "rr", "changed");
    const old = await ok(names[2]!, ["get", "--prefix", "", `--rev=${rev}`]);
    const before = new Map(live);
    before.set("1r", "r0");
    before.set("Rr", "r1");
    before.set("rr", "r2");
    expect(old).toBe(all.map((k) => `${k}\n${before.get(k)}\n`).join(""));
  });

  it("watches every shard from an old revision: etcdctl prints the events in revision order, once", {
    timeout: 15_000,
  }, async () => {
    // A live watch over every shard, started before the writes, through a node.
    const liveWatch = new Watching(cluster!.node(names[1]!).client, ["--prefix", "", "-w", "json"]);
    watches.push(liveWatch);
    // etcdctl prints nothing when the watch is created: write a marker in every shard until the
    // watch shows all three, so that it is known to be live everywhere before the writes.
    const markers = ["0wm", "Kwm", "kwm"];
    expect(markers.map(shardOf)).toEqual([0, 1, 2]);
    for (const m of markers) {
      const shown = (out: string) => parseWatchJson(out).some((e) => e.key === m);
      for (let attempt = 0; ; attempt++) {
        await put(names[0]!, m, "marker");
        if (await liveWatch.within(shown, 200)) break;
        expect(attempt, `the live watch never showed ${m}`).toBeLessThan(50);
      }
    }
    // Writes through names[0] get revisions above every revision it has seen (README, floors).
    const seen = JSON.parse(await ok(names[0]!, ["get", "--prefix", "", "-w", "json"])).header
      .revision as number;
    const from = seen + 1;
    // Through one node, one after the other: the revisions follow the order of the writes.
    const sequence = ["0w1", "Kw2", "kw3", "0w4", "_w5", "Kw6", "kw7"];
    for (const k of sequence) await put(names[0]!, k, "x");
    await ok(names[0]!, ["del", "Kw2"], "1\n");
    live.delete("Kw2");
    // Through every node, concurrently: the order is whatever the revisions say.
    const spread = ["0s1", "Ks2", "ks3", "0s4", "Ks5", "ks6"];
    await Promise.all(spread.map((k, i) => put(names[i % 3]!, k, "y")));
    const expectedCount = sequence.length + 1 + spread.length;

    const replay = new Watching(cluster!.node(names[2]!).client, [
      "--prefix",
      "",
      `--rev=${from}`,
      "-w",
      "json",
    ]);
    watches.push(replay);
    await replay.until((out) => parseWatchJson(out).length >= expectedCount);
    // The live watch started at its replicas' revisions, which may lag the writes acknowledged
    // before it (etcd's watch does the same): only what it saw from `from` on is compared.
    const fromOn = (out: string) => parseWatchJson(out).filter((e) => e.revision >= from);
    await liveWatch.until((out) => fromOn(out).length >= expectedCount);
    await new Promise((r) => setTimeout(r, 200)); // nothing more (no duplicate) arrives
    const events = parseWatchJson(replay.stdout);
    const watched = fromOn(liveWatch.stdout);
    for (const [label, evs] of [
      ["replay", events],
      ["live", watched],
    ] as const) {
      const revs = evs.map((e) => e.revision);
      expect(revs, `${label}: revisions in order`).toEqual([...revs].sort((a, b) => a - b));
      const ids = evs.map((e) => `${e.type} ${e.key}@${e.revision}`);
      expect(new Set(ids).size, `${label}: no duplicate: ${ids}`).toBe(ids.length);
      expect(evs.length, `${label}: ${ids}`).toBe(expectedCount);
      // The sequential part comes first, in write order.
      expect(
        evs.slice(0, sequence.length + 1).map((e) => `${e.type} ${e.key}`),
        label,
      ).toEqual([...sequence.map((k) => `PUT ${k}`), "DELETE Kw2"]);
      expect(
        evs
          .slice(sequence.length + 1)
          .map((e) => e.key)
          .sort(byteOrder),
      ).toEqual([...spread].sort(byteOrder));
    }
    expect(watched.map((e) => `${e.type} ${e.key}@${e.revision}`)).toEqual(
      events.map((e) => `${e.type} ${e.key}@${e.revision}`),
    );

    // The plain (not JSON) output: PUT / key / value lines in the same order.
    const plain = new Watching(cluster!.node(names[0]!).client, ["--prefix", "", `--rev=${from}`]);
    watches.push(plain);
    await plain.until(
      (out) => out.split("\n").filter((l) => l === "PUT" || l === "DELETE").length >= expectedCount,
    );
    const printed = plain.stdout
      .split("\n")
      .filter((_l, i, a) => a[i - 1] === "PUT" || a[i - 1] === "DELETE");
    expect(printed).toEqual(events.map((e) => e.key));
    for (const w of [liveWatch, replay, plain]) await w.kill();
  });

  it("leases: grant, put --lease in every shard, keep-alive --once, timetolive --keys, revoke deletes them all", {
    timeout: 15_000,
  }, async () => {
    const grant = await ok(names[1]!, ["lease", "grant", "60"]);
    const id = /^lease ([0-9a-f]{16}) granted with TTL\(60s\)\n$/.exec(grant)?.[1];
    expect(id, grant).toBeDefined();
    const keys = ["/lease0", "Lease1", "lease2"];
    expect(keys.map(shardOf)).toEqual([0, 1, 2]);
    for (const [i, k] of keys.entries()) await put(names[i]!, k, "leased", `--lease=${id}`);
    for (const name of names) {
      expect(await ok(name, ["lease", "keep-alive", "--once", id!])).toBe(
        `lease ${id} keepalived with TTL(60)\n`,
      );
    }
    for (const name of names) {
      const ttl = await ok(name, ["lease", "timetolive", "--keys", id!]);
      expect(ttl, `timetolive through ${name}`).toMatch(
        new RegExp(
          `^lease ${id} granted with TTL\\(60s\\), remaining\\((59|60)s\\), attached keys\\(\\[/lease0 Lease1 lease2\\]\\)\\n$`,
        ),
      );
    }
    expect(await ok(names[2]!, ["lease", "list"])).toContain(id);
    expect(await ok(names[2]!, ["lease", "revoke", id!])).toBe(`lease ${id} revoked\n`);
    for (const k of keys) live.delete(k);
    for (const name of names) {
      for (const k of keys) await ok(name, ["get", k], "");
      await ok(name, ["lease", "timetolive", id!], `lease ${id} already expired\n`);
    }
    const again = await at(names[0]!, ["lease", "revoke", id!]);
    expect(again.stderr).toContain("requested lease not found");
  });

  it("runs a Txn over several shards atomically through any node (two-phase commit)", async () => {
    const r = await at(names[0]!, ["txn"], 'mod("0x1") = "0"\n\nput Kt 1\nput kt 2\nput 0x1 3\n\n\n');
    expect(r.stdout).toBe("SUCCESS\n\nOK\n\nOK\n\nOK\n");
    // Its writes share one revision in all three shards, seen through another node.
    const revisions = new Set<number>();
    for (const key of ["Kt", "kt", "0x1"]) {
      const got = await at(names[2]!, ["get", key, "-w", "json"]);
      const json = JSON.parse(got.stdout) as { kvs: { mod_revision: number }[] };
      revisions.add(json.kvs[0]!.mod_revision);
    }
    expect(revisions.size).toBe(1);
    // A compare that fails in one shard runs the failure branch everywhere.
    const failed = await at(names[1]!, ["txn"], 'value("Kt") = "9"\n\nput kt 7\n\nput 0x1 4\n\n');
    expect(failed.stdout).toBe("FAILURE\n\nOK\n");
    expect((await at(names[0]!, ["get", "kt", "--print-value-only"])).stdout).toBe("2\n");
    expect((await at(names[0]!, ["get", "0x1", "--print-value-only"])).stdout).toBe("4\n");
    const single = await at(names[1]!, ["txn"], 'mod("kx") = "0"\n\nput kt 1\nput ku 2\n\n\n');
    expect(single.stdout).toBe("SUCCESS\n\nOK\n\nOK\n");
    live.set("Kt", "1");
    live.set("0x1", "4");
    live.set("kt", "1");
    live.set("ku", "2");
  });

  it("endpoint status and member list", async () => {
    const endpoints = cluster!.endpoints.join(",");
    const st = await etcdctl(endpoints, ["endpoint", "status", "-w", "json"]);
    expect(st.stderr).toBe("");
    const statuses = JSON.parse(st.stdout) as {
      Endpoint: string;
      Status: { header: { member_id: number; revision: number }; leader: number; raft_term: number };
    }[];
    expect(statuses.map((s) => s.Endpoint).sort()).toEqual([...cluster!.endpoints].sort());
    const leaders = new Set(statuses.map((s) => String(s.Status.leader)));
    expect(leaders.size, st.stdout).toBe(1);
    const memberIds = statuses.map((s) => String(s.Status.header.member_id));
    expect(memberIds).toContain([...leaders][0]);
    for (const s of statuses) expect(s.Status.header.revision).toBeGreaterThan(0);
    const table = await etcdctl(endpoints, ["endpoint", "status"]);
    expect(table.stdout.trim().split("\n")).toHaveLength(3);

    const members = await ok(names[2]!, ["member", "list"]);
    const rows = members
      .trim()
      .split("\n")
      .map((l) => l.split(", "));
    expect(rows.map((r) => r[2]).sort()).toEqual(names);
    for (const r of rows) {
      expect(r[1]).toBe("started");
      const name = r[2]!;
      expect(r[4]).toBe(`http://${cluster!.node(name).client}`);
    }
  });
});
