import { type ChildProcess, spawn } from "node:child_process";
import { credentials } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  LeaseClient,
  type LeaseTimeToLiveResponse,
  PutRequest,
  WatchClient,
  WatchCreateRequest,
  type WatchResponse,
} from "../src/gen/etcdserverpb/rpc.js";
import { prefixEnd } from "../src/store/keys.js";
import { etcdctl, findBinary } from "./etcdctl.js";
import { ProcessCluster, unary } from "./helpers/process-cluster.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function eventually<T>(what: string, f: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`not reached in ${ms} ms: ${what}`);
    await sleep(50);
  }
}

/**
 * Watch and Lease on three `quorum node` processes (Raft, SQLite): followers serve watches
 * from their own applied state and forward lease calls to the leader; a watch resumed on
 * another node continues without a gap; a leader failover does not expire leases at once.
 */
describe("watch and lease on three quorum node processes", () => {
  let cluster: ProcessCluster;
  let leader: string;
  let followers: string[];
  const ctl = (name: string, args: string[]) => etcdctl(cluster.node(name).client, args);
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    if (!findBinary("etcdctl")) {
      throw new Error("etcdctl is missing: install Debian's etcd-client (apt-get install -y etcd-client)");
    }
    cluster = await ProcessCluster.start({ prefix: "quorum-watch-lease-" });
    leader = await cluster.waitForLeader();
    followers = cluster.nodes.map((n) => n.name).filter((n) => n !== leader);
    // Linearizable reads wait for a first write in the new term (see etcdctl-cluster.test.ts).
    expect((await ctl(leader, ["put", "warmup", "1"])).stdout).toBe("OK\n");
  }, 30_000);
  afterAll(async () => {
    for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
    await cluster?.close();
  });

  it("a follower serves etcdctl watch; writes go through the leader", async () => {
    const follower = followers[0]!;
    const child = spawn(
      "etcdctl",
      [`--endpoints=${cluster.node(follower).client}`, "watch", "fw/", "--prefix"],
      {
        env: { ...process.env, ETCDCTL_API: "3" },
      },
    );
    children.push(child);
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    await sleep(500); // etcdctl prints nothing on create
    await ctl(leader, ["put", "fw/1", "a"]);
    await ctl(followers[1]!, ["put", "fw/2", "b"]);
    await ctl(leader, ["del", "fw/1"]);
    await eventually("three events", async () => (out.includes("DELETE") ? true : undefined), 5_000);
    expect(out).toBe("PUT\nfw/1\na\nPUT\nfw/2\nb\nDELETE\nfw/1\n\n");
    child.kill("SIGKILL");
  });

  it("serves every Lease call through a follower (forwarded to the leader)", async () => {
    const f = followers[0]!;
    const id = /lease ([0-9a-f]{16}) granted with TTL\(60s\)/.exec(
      (await ctl(f, ["lease", "grant", "60"])).stdout,
    )?.[1];
    expect(id).toBeDefined();
    expect((await ctl(f, ["put", "fl/k", "v", `--lease=${id}`])).stdout).toBe("OK\n");
    expect((await ctl(f, ["lease", "keep-alive", "--once", id!])).stdout).toBe(
      `lease ${id} keepalived with TTL(60)\n`,
    );
    expect((await ctl(followers[1]!, ["lease", "timetolive", "--keys", id!])).stdout).toMatch(
      new RegExp(
        `^lease ${id} granted with TTL\\(60s\\), remaining\\((59|60)s\\), attached keys\\(\\[fl/k\\]\\)\n$`,
      ),
    );
    expect((await ctl(f, ["lease", "list"])).stdout).toContain(id!);
    expect((await ctl(f, ["lease", "revoke", id!])).stdout).toBe(`lease ${id} revoked\n`);
    // The revoke is applied on every node: each one's own (serializable) read shows the key gone.
    for (const n of cluster.nodes) {
      await eventually(`fl/k gone on ${n.name}`, async () =>
        (await ctl(n.name, ["get", "fl/k", "--consistency=s"])).stdout === "" ? true : undefined,
      );
    }
  });

  it("a watch resumed on another node from its last revision sees every revision once", async () => {
    const [a, b] = followers as [string, string];
    const start = Number(
      (
        await unary<{ header: { revision: bigint } }>(
          cluster.kv(leader),
          "put",
          PutRequest.fromPartial({ key: Buffer.from("rs/start") }),
        )
      ).header.revision,
    );
    const seen: number[] = [];
    const open = (node: string, from: number) => {
      const client = new WatchClient(cluster.node(node).client, credentials.createInsecure());
      const stream = client.watch();
      stream.on("data", (r: WatchResponse) => {
        for (const e of r.events) seen.push(Number(e.kv!.modRevision));
      });
      stream.on("error", () => {});
      stream.write({
        createRequest: WatchCreateRequest.fromPartial({
          key: Buffer.from("rs/"),
          rangeEnd: prefixEnd(Buffer.from("rs/")),
          startRevision: BigInt(from),
        }),
      });
      return {
        close: () => {
          stream.cancel();
          client.close();
        },
      };
    };
    const total = 120;
    const writes = (async () => {
      for (let i = 0; i < total; i++) {
        await unary(
          cluster.kv(leader),
          "put",
          PutRequest.fromPartial({ key: Buffer.from(`rs/${i % 7}`), value: Buffer.from(String(i)) }),
        );
      }
    })();
    const first = open(a, start + 1);
    await eventually("some events on the first node", async () => (seen.length >= 30 ? true : undefined));
    first.close();
    const last = seen[seen.length - 1]!;
    const second = open(b, last + 1);
    await writes;
    await eventually("every event", async () => (seen.length >= total ? true : undefined));
    await sleep(100);
    second.close();
    expect(seen).toEqual(Array.from({ length: total }, (_, i) => start + 1 + i));
  });

  it("keeps leases across a leader failover, then expires them on the new leader's clock", async () => {
    const grant = await ctl(leader, ["lease", "grant", "3"]);
    const id = /lease ([0-9a-f]{16})/.exec(grant.stdout)![1]!;
    await ctl(leader, ["put", "fo/k", "v", `--lease=${id}`]);
    await cluster.kill(leader);
    const next = await eventually("a new leader", async () => {
      const l = await cluster.leader();
      return l && l !== leader ? l : undefined;
    });
    const elected = Date.now();
    // etcd's rule: the new leader restarts the lease at its full TTL plus an election timeout.
    const leases = new LeaseClient(cluster.node(next).client, credentials.createInsecure());
    const ttl = await unary<LeaseTimeToLiveResponse>(leases, "leaseTimeToLive", {
      ID: BigInt(`0x${id}`),
      keys: true,
    });
    leases.close();
    expect(Number(ttl.TTL)).toBeGreaterThanOrEqual(2);
    expect(ttl.keys.map(String)).toEqual(["fo/k"]);
    const gone = await eventually(
      "the lease expired",
      async () => ((await ctl(next, ["get", "fo/k"])).stdout === "" ? Date.now() : undefined),
      15_000,
    );
    expect(gone - elected).toBeGreaterThanOrEqual(2_500);
  }, 30_000);
});
