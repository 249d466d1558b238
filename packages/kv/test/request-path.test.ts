import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { credentials, type ServiceError, status } from "@grpc/grpc-js";
import { ConsensusError, type LogEvent, type ReplicatedLog } from "@quorum/consensus";
import type { SingleNodeLog } from "@quorum/consensus/testing";
import { type ApplyResult, type KvServer, KvStore, startKvService } from "@quorum/kv";
import { type SingleNodeKv, startSingleNodeKv } from "@quorum/kv/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KVClient, PutRequest, RangeRequest, TxnRequest } from "../src/gen/etcdserverpb/rpc.js";

type Client = InstanceType<typeof KVClient>;

function call<Res>(client: Client, method: "range" | "put" | "txn", req: unknown): Promise<Res> {
  return new Promise((resolve, reject) => {
    // biome-ignore lint/suspicious/noExplicitAny: chosen by name
    (client as any)[method](req, { deadline: Date.now() + 5_000 }, (err: ServiceError | null, res: Res) =>
      err ? reject(err) : resolve(res),
    );
  });
}

/** A follower's view of the log: it never leads, and says who does (`elect` changes that). */
function followerLog(
  inner: SingleNodeLog<ApplyResult>,
  initialLeader: string | undefined,
): ReplicatedLog<ApplyResult> & { elect(id: string): void } {
  let leaderId = initialLeader;
  const listeners = new Set<(e: LogEvent) => void>();
  const notLeader = () =>
    new ConsensusError("NOT_LEADER", "not the leader", leaderId ? { id: leaderId } : undefined);
  return {
    elect(id: string) {
      leaderId = id;
      for (const l of [...listeners]) l({ type: "leaderChanged", leaderId: id, term: 2 });
    },
    nodeId: "n2",
    start: async () => {},
    propose: async () => {
      throw notLeader();
    },
    proposeBatch: async () => {
      throw notLeader();
    },
    read: async () => {
      throw notLeader();
    },
    status: () => ({ ...inner.status(), nodeId: "n2", role: "follower", leaderId }),
    changeMembership: async () => {
      throw notLeader();
    },
    subscribe: (listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    close: async () => {},
  };
}

describe("request path over gRPC", () => {
  let leader: SingleNodeKv;
  let follower: KvServer;
  let orphan: KvServer;
  let followerStore: KvStore;
  let dir: string;
  const clients: Client[] = [];
  const client = (address: string) => {
    const c = new KVClient(address, credentials.createInsecure(), {
      "grpc.max_send_message_length": 16 << 20,
    });
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    leader = await startSingleNodeKv();
    dir = mkdtempSync(join(tmpdir(), "kv-follower-"));
    followerStore = KvStore.open({ path: join(dir, "f.db") });
    const log = followerLog(leader.log, "n1");
    follower = await startKvService({
      log,
      store: followerStore,
      listen: "127.0.0.1:0",
      leaderClientAddress: (id) => (id === "n1" ? leader.endpoint : undefined),
    });
    orphan = await startKvService({
      log: followerLog(leader.log, undefined),
      store: followerStore,
      listen: "127.0.0.1:0",
    });
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await follower?.close(100);
    await orphan?.close(100);
    followerStore?.close();
    await leader?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("batches concurrent writes into few proposals", async () => {
    const c = client(leader.endpoint);
    const batches: number[] = [];
    const original = leader.log.proposeBatch.bind(leader.log);
    leader.log.proposeBatch = (commands) => {
      batches.push(commands.length);
      return original(commands);
    };
    try {
      const results = await Promise.all(
        Array.from({ length: 64 }, (_, i) =>
          call<{ header: { revision: bigint } }>(
            c,
            "put",
            PutRequest.fromPartial({ key: Buffer.from(`batch/${i}`), value: Buffer.from("v") }),
          ),
        ),
      );
      const revisions = results.map((r) => r.header.revision).sort((a, b) => (a < b ? -1 : 1));
      expect(new Set(revisions).size).toBe(64);
      expect(batches.reduce((a, b) => a + b, 0)).toBe(64);
      expect(batches.length).toBeLessThan(64);
    } finally {
      leader.log.proposeBatch = original;
    }
  });

  it("forwards writes and linearizable reads from a follower to the leader", async () => {
    const c = client(follower.address);
    const put = await call<{ header: { revision: bigint; memberId: bigint } }>(
      c,
      "put",
      PutRequest.fromPartial({ key: Buffer.from("fwd"), value: Buffer.from("via-follower") }),
    );
    expect(put.header.revision).toBe(BigInt(leader.store.revision()));
    expect(
      leader.store.range(RangeRequest.fromPartial({ key: Buffer.from("fwd") })).kvs[0]!.value.toString(),
    ).toBe("via-follower");
    const got = await call<{ kvs: { value: Buffer }[] }>(
      c,
      "range",
      RangeRequest.fromPartial({ key: Buffer.from("fwd") }),
    );
    expect(got.kvs[0]!.value.toString()).toBe("via-follower");
    // A serializable read answers from the follower's own (here empty) replica.
    const local = await call<{ kvs: unknown[] }>(
      c,
      "range",
      RangeRequest.fromPartial({ key: Buffer.from("fwd"), serializable: true }),
    );
    expect(local.kvs).toEqual([]);
  });

  it("waits for a leader that comes within a second (an election, a leadership transfer) and forwards to it", async () => {
    const log = followerLog(leader.log, undefined);
    const waiting = await startKvService({
      log,
      store: followerStore,
      listen: "127.0.0.1:0",
      leaderClientAddress: (id) => (id === "n1" ? leader.endpoint : undefined),
    });
    try {
      const put = call<{ header: { revision: bigint } }>(
        client(waiting.address),
        "put",
        PutRequest.fromPartial({ key: Buffer.from("elected"), value: Buffer.from("yes") }),
      );
      setTimeout(() => log.elect("n1"), 200);
      expect((await put).header.revision).toBe(BigInt(leader.store.revision()));
    } finally {
      await waiting.close(100);
    }
  });

  it("answers UNAVAILABLE `etcdserver: no leader` when no leader is known (after waiting a second for one)", async () => {
    const c = client(orphan.address);
    const err = await call(
      c,
      "put",
      PutRequest.fromPartial({ key: Buffer.from("x"), value: Buffer.from("y") }),
    ).catch((e: ServiceError) => e);
    expect((err as ServiceError).code).toBe(status.UNAVAILABLE);
    expect((err as ServiceError).details).toBe("etcdserver: no leader");
  });

  it("refuses oversized messages and too many txn ops with etcd's codes and messages", async () => {
    const c = client(leader.endpoint);
    const huge = await call(
      c,
      "put",
      PutRequest.fromPartial({ key: Buffer.from("k"), value: Buffer.alloc(3 << 20) }),
    ).catch((e: ServiceError) => e);
    expect((huge as ServiceError).code).toBe(status.RESOURCE_EXHAUSTED);
    expect((huge as ServiceError).details).toMatch(
      /^grpc: received message larger than max \(\d+ vs\. 2097152\)$/,
    );
    const tooMany = await call(
      c,
      "txn",
      TxnRequest.fromPartial({
        success: Array.from({ length: 129 }, (_, i) => ({
          requestRange: RangeRequest.fromPartial({ key: Buffer.from(`k${i}`) }),
        })),
      }),
    ).catch((e: ServiceError) => e);
    expect((tooMany as ServiceError).code).toBe(status.INVALID_ARGUMENT);
    // --max-request-bytes (1.5 MiB) counts the proposal as etcd does: 1-byte key, value up to 1,572,839 bytes.
    await call(c, "put", PutRequest.fromPartial({ key: Buffer.from("k"), value: Buffer.alloc(1_572_839) }));
    const over = await call(
      c,
      "put",
      PutRequest.fromPartial({ key: Buffer.from("k"), value: Buffer.alloc(1_572_840) }),
    ).catch((e: ServiceError) => e);
    expect((over as ServiceError).code).toBe(status.INVALID_ARGUMENT);
    expect((over as ServiceError).details).toBe("etcdserver: request is too large");
    expect((tooMany as ServiceError).details).toBe("etcdserver: too many operations in txn request");
  });
});
