import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { etcdctl, findBinary, type Run } from "./etcdctl.js";
import { ProcessCluster } from "./helpers/process-cluster.js";

/**
 * The real etcdctl 3.4 against a three-node cluster of `quorum node` processes (Raft, SQLite
 * files). Commands go to followers as well as to the leader: a follower forwards writes and
 * ReadIndex reads to the leader.
 */
describe("etcdctl against three quorum node processes", () => {
  let cluster: ProcessCluster;
  let leader: string;
  let followers: string[];
  const endpointOf = (name: string) => cluster.node(name).client;
  /** Runs etcdctl through one node's endpoint. */
  const at = (name: string, args: string[], stdin?: string): Promise<Run> =>
    etcdctl(endpointOf(name), args, stdin);

  beforeAll(async () => {
    if (!findBinary("etcdctl")) {
      throw new Error("etcdctl is missing: install Debian's etcd-client (apt-get install -y etcd-client)");
    }
    cluster = await ProcessCluster.start({ prefix: "quorum-etcdctl-" });
    leader = await cluster.waitForLeader();
    followers = cluster.nodes.map((n) => n.name).filter((n) => n !== leader);
  }, 30_000);
  afterAll(async () => {
    await cluster?.close();
  });

  // Must run first: the cluster has seen no write yet (see linearizability.sim.test.ts,
  // "linearizable reads after an election").
  it("answers a linearizable get before the first write", { timeout: 20_000 }, async () => {
    const get = await at(followers[0]!, ["get", "nothing-yet"]);
    expect(get.stderr).toBe("");
    expect(get.code).toBe(0);
    expect(get.stdout).toBe("");
    const onLeader = await at(leader, ["get", "nothing-yet"]);
    expect(onLeader.stderr).toBe("");
    expect(onLeader.code).toBe(0);
  });

  it("puts through a follower and reads through every node", async () => {
    expect((await at(followers[0]!, ["put", "foo", "bar"])).stdout).toBe("OK\n");
    for (const name of cluster.nodes.map((n) => n.name)) {
      const get = await at(name, ["get", "foo"]);
      expect(get.stderr, name).toBe("");
      expect(get.stdout, name).toBe("foo\nbar\n");
    }
    const prev = await at(followers[1]!, ["put", "foo", "baz", "--prev-kv"]);
    expect(prev.stdout).toBe("OK\nfoo\nbar\n");
  });

  it("gets by prefix, range and old revision", async () => {
    for (const [i, [k, v]] of [
      ["p/a", "1"],
      ["p/b", "2"],
      ["p/c", "3"],
      ["q", "4"],
    ].entries()) {
      const r = await at(cluster.nodes[i % 3]!.name, ["put", k!, v!]);
      expect(r.stdout, r.stderr).toBe("OK\n");
    }
    expect((await at(followers[0]!, ["get", "p/", "--prefix"])).stdout).toBe("p/a\n1\np/b\n2\np/c\n3\n");
    expect((await at(leader, ["get", "p/a", "p/c"])).stdout).toBe("p/a\n1\np/b\n2\n");
    const json = JSON.parse((await at(followers[1]!, ["get", "p/a", "-w", "json"])).stdout);
    const rev = json.kvs[0].mod_revision as number;
    expect(json.count).toBe(1);
    await at(followers[0]!, ["put", "p/a", "changed"]);
    expect((await at(followers[1]!, ["get", "p/a", `--rev=${rev}`])).stdout).toBe("p/a\n1\n");
    expect((await at(followers[1]!, ["get", "p/a"])).stdout).toBe("p/a\nchanged\n");
  });

  it("deletes through a follower", async () => {
    await at(leader, ["put", "d/1", "x"]);
    await at(leader, ["put", "d/2", "y"]);
    expect((await at(followers[0]!, ["del", "d/1"])).stdout).toBe("1\n");
    expect((await at(followers[1]!, ["del", "d/", "--prefix", "--prev-kv"])).stdout).toBe("1\nd/2\ny\n");
    expect((await at(leader, ["get", "d/", "--prefix"])).stdout).toBe("");
  });

  it("runs txn on both branches through a follower", async () => {
    await at(leader, ["put", "t", "v1"]);
    const yes = await at(followers[0]!, ["txn"], 'value("t") = "v1"\n\nput t v2\nget t\n\nput t never\n\n');
    expect(yes.stdout).toBe("SUCCESS\n\nOK\n\nt\nv2\n");
    const no = await at(followers[1]!, ["txn"], 'value("t") = "v1"\n\nput t never\n\nget t\n\n');
    expect(no.stdout).toBe("FAILURE\n\nt\nv2\n");
  });

  it("compacts through a follower; every node refuses the compacted revision", async () => {
    await at(leader, ["put", "c", "1"]);
    const rev = JSON.parse((await at(leader, ["put", "c", "2", "-w", "json"])).stdout).header
      .revision as number;
    expect((await at(followers[0]!, ["compaction", String(rev)])).stdout).toBe(`compacted revision ${rev}\n`);
    for (const name of cluster.nodes.map((n) => n.name)) {
      const old = await at(name, ["get", "c", `--rev=${rev - 1}`]);
      expect(old.code, name).not.toBe(0);
      expect(old.stderr, name).toContain("Error: etcdserver: mvcc: required revision has been compacted");
      expect((await at(name, ["get", "c", `--rev=${rev}`])).stdout, name).toBe("c\n2\n");
    }
  });

  it("prints endpoint status of every node with exactly one leader", async () => {
    const all = cluster.endpoints.join(",");
    const r = await etcdctl(all, ["endpoint", "status", "-w", "json"]);
    expect(r.stderr).toBe("");
    const statuses = JSON.parse(r.stdout) as {
      Endpoint: string;
      Status: { header: { member_id: number; revision: number; raft_term: number }; leader: number };
    }[];
    expect(statuses.map((s) => s.Endpoint).sort()).toEqual([...cluster.endpoints].sort());
    const memberIds = new Set(statuses.map((s) => s.Status.header.member_id));
    expect(memberIds.size).toBe(3);
    const leaders = new Set(statuses.map((s) => s.Status.leader));
    expect(leaders.size).toBe(1);
    const [leaderId] = [...leaders];
    expect(statuses.filter((s) => s.Status.header.member_id === leaderId)).toHaveLength(1);
    const table = await etcdctl(all, ["endpoint", "status"]);
    const lines = table.stdout.trim().split("\n");
    expect(lines, table.stdout).toHaveLength(3);
    expect(lines.filter((l) => /, true, false, \d+, \d+, \d+,/.test(l))).toHaveLength(1);
    expect(
      lines.filter((l) => /, false, false, \d+, \d+, \d+,/.test(l)),
      table.stdout,
    ).toHaveLength(2);
    const health = await etcdctl(all, ["endpoint", "health"]);
    expect(health.code, health.stderr).toBe(0);
    expect(health.stderr.match(/is healthy: successfully committed proposal/g)).toHaveLength(3);
  });

  it("lists three started members with their peer and client URLs, through any node", async () => {
    for (const name of cluster.nodes.map((n) => n.name)) {
      const r = await at(name, ["member", "list"]);
      expect(r.stderr).toBe("");
      const lines = r.stdout.trim().split("\n");
      expect(lines).toHaveLength(3);
      for (const node of cluster.nodes) {
        const line = lines.find((l) => l.includes(`, ${node.name}, `));
        expect(line, node.name).toMatch(
          new RegExp(`^[0-9a-f]+, started, ${node.name}, http://${node.peer}, http://${node.client}, false$`),
        );
      }
    }
  });
});
