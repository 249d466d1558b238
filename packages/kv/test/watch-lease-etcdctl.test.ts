import { ManualClock, type SingleNodeKv, startSingleNodeKv } from "@quorum/kv/testing";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { etcdctl, findBinary, Watching } from "./etcdctl.js";

const lines = (...l: string[]) => `${l.join("\n")}\n`;

describe("etcdctl watch and lease against a single-node store", () => {
  let kv: SingleNodeKv;
  const clock = new ManualClock();
  const ctl = (args: string[], stdin?: string) => etcdctl(kv.endpoint, args, stdin);
  const watches: Watching[] = [];
  const watch = (args: string[]) => {
    const w = new Watching(kv.endpoint, args);
    watches.push(w);
    return w;
  };
  // etcdctl prints nothing when a watch is created, so wait until the server has it.
  const watchers = () => kv.server.watchers();

  beforeAll(async () => {
    if (!findBinary("etcdctl")) {
      throw new Error("etcdctl is missing: install Debian's etcd-client (apt-get install -y etcd-client)");
    }
    kv = await startSingleNodeKv({ clock, minLeaseTtlSeconds: 2 });
  });
  afterEach(async () => {
    for (const w of watches.splice(0)) await w.kill();
    // The server drops a killed client's watchers once it notices the connection closed.
    const deadline = Date.now() + 5_000;
    while (watchers() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  });
  afterAll(async () => {
    await kv?.stop();
  });

  async function started(n: number): Promise<void> {
    const deadline = Date.now() + 5_000;
    while (watchers() !== n) {
      if (Date.now() > deadline) throw new Error(`expected ${n} watchers, the server has ${watchers()}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  it("watches a key and prints PUT and DELETE events in order, with prev kv", async () => {
    const w = watch(["wk", "--prev-kv"]);
    await started(1);
    await ctl(["put", "wk", "v1"]);
    await ctl(["put", "other", "x"]);
    await ctl(["put", "wk", "v2"]);
    await ctl(["del", "wk"]);
    expect(await w.until((out) => out.includes("DELETE"))).toBe(
      lines("PUT", "wk", "v1", "PUT", "wk", "v1", "wk", "v2", "DELETE", "wk", "v2", "wk", ""),
    );
  });

  it("watches a prefix", async () => {
    const w = watch(["pre/", "--prefix"]);
    await started(1);
    await ctl(["put", "pre/a", "1"]);
    await ctl(["put", "prf", "no"]);
    await ctl(["txn"], 'version("x") = "0"\n\nput pre/b 2\nput pre/c 3\n\n\n');
    expect(await w.until((out) => out.includes("pre/c"))).toBe(
      lines("PUT", "pre/a", "1", "PUT", "pre/b", "2", "PUT", "pre/c", "3"),
    );
  });

  it("replays from an old revision, then continues live", async () => {
    const first = JSON.parse((await ctl(["put", "old", "1", "-w", "json"])).stdout).header.revision as number;
    await ctl(["put", "old", "2"]);
    await ctl(["del", "old"]);
    const w = watch(["old", `--rev=${first}`]);
    await w.until((out) => out.split("\n").length >= 8);
    await ctl(["put", "old", "3"]);
    expect(await w.until((out) => out.endsWith("3\n"))).toBe(
      lines("PUT", "old", "1", "PUT", "old", "2", "DELETE", "old", "", "PUT", "old", "3"),
    );
  });

  it("cancels a watch from a compacted revision (etcdctl exits with an error)", async () => {
    await ctl(["put", "cmp", "1"]);
    const rev = JSON.parse((await ctl(["put", "cmp", "2", "-w", "json"])).stdout).header.revision as number;
    await ctl(["compaction", String(rev)]);
    const w = watch(["cmp", "--rev=1"]);
    const code = await w.exited;
    expect(code).not.toBe(0);
    expect(w.stderr).toContain("watch was canceled");
  });

  it("grants, attaches, keeps alive, reports time to live and lists leases", async () => {
    const grant = await ctl(["lease", "grant", "30"]);
    const match = /^lease ([0-9a-f]{16}) granted with TTL\(30s\)\n$/.exec(grant.stdout);
    expect(match, grant.stdout + grant.stderr).not.toBeNull();
    const id = match![1]!;
    expect((await ctl(["put", "lk1", "v", `--lease=${id}`])).stdout).toBe("OK\n");
    expect((await ctl(["put", "lk2", "v", `--lease=${id}`])).stdout).toBe("OK\n");
    clock.advance(10_000);
    expect((await ctl(["lease", "timetolive", id])).stdout).toBe(
      `lease ${id} granted with TTL(30s), remaining(20s)\n`,
    );
    expect((await ctl(["lease", "keep-alive", "--once", id])).stdout).toBe(
      `lease ${id} keepalived with TTL(30)\n`,
    );
    expect((await ctl(["lease", "timetolive", "--keys", id])).stdout).toBe(
      `lease ${id} granted with TTL(30s), remaining(30s), attached keys([lk1 lk2])\n`,
    );
    expect((await ctl(["lease", "list"])).stdout).toContain(id);
    // etcd answers TTL 0 for an unknown lease; clientv3's KeepAliveOnce turns that into this error.
    const unknown = await ctl(["lease", "keep-alive", "--once", "123abc"]);
    expect([unknown.code, unknown.stdout, unknown.stderr]).toEqual([
      2,
      "",
      "Error: etcdserver: requested lease not found\n",
    ]);
    expect((await ctl(["lease", "timetolive", "123abc"])).stdout).toBe(
      "lease 0000000000123abc already expired\n",
    );
    expect((await ctl(["put", "lk3", "v", "--lease=123abc"])).stderr).toMatch(
      /\nError: etcdserver: requested lease not found\n$/,
    );
  });

  it("deletes the attached keys when the lease expires, as the leader's clock says", async () => {
    const grant = await ctl(["lease", "grant", "5"]);
    const id = /lease ([0-9a-f]{16})/.exec(grant.stdout)![1]!;
    await ctl(["put", "exp/a", "1", `--lease=${id}`]);
    await ctl(["put", "exp/b", "2", `--lease=${id}`]);
    const w = watch(["exp/", "--prefix"]);
    await started(1);
    clock.advance(4_900);
    await new Promise((r) => setTimeout(r, 50));
    expect((await ctl(["get", "exp/", "--prefix", "--keys-only"])).stdout).toBe(
      lines("exp/a", "", "exp/b", ""),
    );
    clock.advance(600);
    await w.until((out) => out.includes("exp/b"));
    expect((await ctl(["get", "exp/", "--prefix"])).stdout).toBe("");
    expect((await ctl(["lease", "timetolive", id])).stdout).toBe(`lease ${id} already expired\n`);
    // Both deletes at one revision, in one response.
    expect(w.stdout).toBe(lines("DELETE", "exp/a", "", "DELETE", "exp/b", ""));
  });

  it("revokes a lease and its keys", async () => {
    const id = /lease ([0-9a-f]{16})/.exec((await ctl(["lease", "grant", "60"])).stdout)![1]!;
    await ctl(["put", "rv", "1", `--lease=${id}`]);
    expect((await ctl(["lease", "revoke", id])).stdout).toBe(`lease ${id} revoked\n`);
    expect((await ctl(["get", "rv"])).stdout).toBe("");
    expect((await ctl(["lease", "revoke", id])).stderr).toContain(
      "Error: failed to revoke lease (etcdserver: requested lease not found)\n",
    );
    expect((await ctl(["lease", "list"])).stdout).not.toContain(id);
  });
});
