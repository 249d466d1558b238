import { type SingleNodeKv, startSingleNodeKv } from "@quorum/kv/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { etcdctl, findBinary } from "./etcdctl.js";

// etcdctl 3.4 (Debian's etcd-client) against one store on SingleNodeLog over real gRPC.
describe("etcdctl against a single-node store", () => {
  let kv: SingleNodeKv;
  const ctl = (args: string[], stdin?: string) => etcdctl(kv.endpoint, args, stdin);

  beforeAll(async () => {
    if (!findBinary("etcdctl")) {
      throw new Error("etcdctl is missing: install Debian's etcd-client (apt-get install -y etcd-client)");
    }
    kv = await startSingleNodeKv();
  });
  afterAll(async () => {
    await kv?.stop();
  });

  it("puts, gets, and reports revisions in -w json", async () => {
    expect((await ctl(["put", "foo", "bar"])).stdout).toBe("OK\n");
    expect((await ctl(["get", "foo"])).stdout).toBe("foo\nbar\n");
    const put2 = await ctl(["put", "foo", "baz", "--prev-kv"]);
    expect(put2.stdout).toBe("OK\nfoo\nbar\n");
    const json = JSON.parse((await ctl(["get", "foo", "-w", "json"])).stdout);
    expect(json.header.revision).toBe(3);
    expect(json.header.member_id).toBeGreaterThan(0);
    expect(json.header.raft_term).toBe(1);
    expect(json.count).toBe(1);
    expect(json.kvs).toEqual([
      {
        key: Buffer.from("foo").toString("base64"),
        create_revision: 2,
        mod_revision: 3,
        version: 2,
        value: Buffer.from("baz").toString("base64"),
      },
    ]);
    expect((await ctl(["get", "nothing"])).stdout).toBe("");
  });

  it("gets by prefix, range, from-key, limit and old revision", async () => {
    for (const [k, v] of [
      ["p/a", "1"],
      ["p/b", "2"],
      ["p/c", "3"],
      ["q", "4"],
    ]) {
      expect((await ctl(["put", k!, v!])).code).toBe(0);
    }
    expect((await ctl(["get", "p/", "--prefix"])).stdout).toBe("p/a\n1\np/b\n2\np/c\n3\n");
    expect((await ctl(["get", "p/a", "p/c"])).stdout).toBe("p/a\n1\np/b\n2\n");
    expect((await ctl(["get", "p/c", "--from-key", "--keys-only"])).stdout).toBe("p/c\n\nq\n\n");
    expect(
      (await ctl(["get", "p/", "--prefix", "--limit=1", "--sort-by=MODIFY", "--order=DESCEND"])).stdout,
    ).toBe("p/c\n3\n");
    const limited = JSON.parse((await ctl(["get", "p/", "--prefix", "--limit=2", "-w", "json"])).stdout);
    expect(limited.more).toBe(true);
    expect(limited.count).toBe(3);
    const rev = JSON.parse((await ctl(["get", "p/a", "-w", "json"])).stdout).kvs[0].mod_revision as number;
    await ctl(["put", "p/a", "changed"]);
    expect((await ctl(["get", "p/a", `--rev=${rev}`])).stdout).toBe("p/a\n1\n");
    expect((await ctl(["get", "p/a", "--consistency=s"])).stdout).toBe("p/a\nchanged\n");
  });

  it("deletes with counts and previous values", async () => {
    await ctl(["put", "d/1", "x"]);
    await ctl(["put", "d/2", "y"]);
    expect((await ctl(["del", "d/1"])).stdout).toBe("1\n");
    expect((await ctl(["del", "d/", "--prefix", "--prev-kv"])).stdout).toBe("1\nd/2\ny\n");
    expect((await ctl(["del", "d/", "--prefix"])).stdout).toBe("0\n");
  });

  it("runs txn on both branches (stdin)", async () => {
    await ctl(["put", "t", "v1"]);
    const yes = await ctl(["txn"], 'value("t") = "v1"\n\nput t v2\nget t\n\nput t never\n\n');
    expect(yes.stdout).toBe("SUCCESS\n\nOK\n\nt\nv2\n");
    const no = await ctl(["txn"], 'value("t") = "v1"\n\nput t never\n\nget t\n\n');
    expect(no.stdout).toBe("FAILURE\n\nt\nv2\n");
    const ver = await ctl(["txn"], 'ver("t") > "1"\nmod("t") != "0"\ncreate("nope") = "0"\n\ndel t\n\n\n');
    expect(ver.stdout).toBe("SUCCESS\n\n1\n");
  });

  it("compacts, and then refuses compacted and future revisions", async () => {
    await ctl(["put", "c", "1"]);
    const rev = JSON.parse((await ctl(["put", "c", "2", "-w", "json"])).stdout).header.revision as number;
    expect((await ctl(["compaction", String(rev)])).stdout).toBe(`compacted revision ${rev}\n`);
    const old = await ctl(["get", "c", `--rev=${rev - 1}`]);
    expect(old.code).not.toBe(0);
    expect(old.stderr).toContain("Error: etcdserver: mvcc: required revision has been compacted");
    const again = await ctl(["compaction", String(rev)]);
    expect(again.stderr).toContain("etcdserver: mvcc: required revision has been compacted");
    const future = await ctl(["get", "c", `--rev=${rev + 1000}`]);
    expect(future.stderr).toContain("Error: etcdserver: mvcc: required revision is a future revision");
    expect((await ctl(["get", "c", `--rev=${rev}`])).stdout).toBe("c\n2\n");
  });

  it("reports errors as etcd does", async () => {
    const empty = await ctl(["get", ""]);
    expect(empty.code).not.toBe(0);
    expect(empty.stderr).toContain("Error: etcdserver: key is not provided");
    const touch = await ctl(["put", "no-such-key", "--ignore-value"]);
    expect(touch.stderr).toContain("Error: etcdserver: key not found");
    const lease = await ctl(["put", "k", "v", "--lease=1234"]);
    expect(lease.stderr).toContain("Error: etcdserver: requested lease not found");
    const dup = await ctl(["txn"], "\nput a 1\nput a 2\n\n\n");
    expect(dup.stderr).toContain("Error: etcdserver: duplicate key given in txn request");
  });

  it("prints endpoint status and member list", async () => {
    const status = JSON.parse((await ctl(["endpoint", "status", "-w", "json"])).stdout);
    expect(status).toHaveLength(1);
    const s = status[0].Status;
    expect(s.version).toBe("3.5.0");
    expect(s.leader).toBe(s.header.member_id);
    expect(s.raftAppliedIndex).toBe(kv.store.appliedIndex());
    expect(s.header.revision).toBe(kv.store.revision());
    expect(s.dbSize).toBeGreaterThan(0);
    const table = await ctl(["endpoint", "status"]);
    expect(table.stdout).toMatch(
      new RegExp(`^${kv.endpoint}, [0-9a-f]+, 3\\.5\\.0, .*, true, false, 1, \\d+, \\d+, \\n$`),
    );
    const members = await ctl(["member", "list"]);
    expect(members.stdout).toMatch(new RegExp(`^[0-9a-f]+, started, n1, , http://${kv.endpoint}, false\\n$`));
    const health = await ctl(["endpoint", "health"]);
    expect(health.stderr).toContain("is healthy: successfully committed proposal");
  });
});
