import { status } from "@grpc/grpc-js";
import { createGrpcClient } from "@quorum/transport";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ShardTxnClient, type ShardTxnResults } from "../src/gen/quorum/kv/v1/command.js";
import { type ShardedSingleNodeKv, startShardedSingleNodeKv } from "../src/testing/index.js";

/**
 * The internal `ShardTxn.Batch` service that nodes forward cross-shard prepares, decisions
 * and fences with: every op is answered on its own, in order, and a malformed op gets a clear
 * error without failing the others.
 */
describe("ShardTxn.Batch", () => {
  let kv: ShardedSingleNodeKv;
  let client: InstanceType<typeof ShardTxnClient>;

  beforeAll(async () => {
    // The service is there when the node has an engine for cross-shard Txns (this one has none to run).
    kv = await startShardedSingleNodeKv(2, {
      crossShardTxn: () => ({ txn: () => Promise.reject(new Error("unused")), close() {} }),
    });
    client = createGrpcClient(ShardTxnClient, kv.endpoint);
  });
  afterAll(async () => {
    client?.close();
    await kv?.stop();
  });

  const batch = (ops: Parameters<InstanceType<typeof ShardTxnClient>["batch"]>[0]["ops"]) =>
    new Promise<ShardTxnResults>((resolve, reject) =>
      client.batch({ ops }, (err, r) => (err ? reject(err) : resolve(r))),
    );

  it("answers each op on its own, in order: a fence, an empty op, an unknown shard, a decision", async () => {
    const tx = Buffer.from("tx-service-1");
    const { results } = await batch([
      { shard: 1, fence: tx },
      { shard: 0 },
      { shard: 7, fence: tx },
      { shard: 1, decide: { txId: tx, commit: true, revision: 5n, succeeded: true } },
    ]);
    expect(results).toHaveLength(4);
    // The fence found nothing prepared and recorded an abort, which the later commit cannot overturn.
    expect(results[0]!.state?.decided?.commit).toBe(false);
    expect(results[1]!.error).toEqual({
      code: status.INVALID_ARGUMENT,
      message: "quorum: a ShardTxn op without a prepare, decide, fence or forget",
    });
    expect(results[2]!.error).toEqual({
      code: status.INVALID_ARGUMENT,
      message: "quorum: no shard 7 (this node has 2)",
    });
    expect(results[3]!.decision?.commit).toBe(false);
    expect(kv.shards[1]!.store.txnRecord(tx)?.commit).toBe(false);
    expect(kv.shards[0]!.store.txnRecord(tx)).toBeUndefined();
  });

  it("forgets records through the batch", async () => {
    const tx = Buffer.from("tx-service-2");
    await batch([{ shard: 1, decide: { txId: tx, commit: false, revision: 0n, succeeded: false } }]);
    expect(kv.shards[1]!.store.txnRecord(tx)).toBeDefined();
    const { results } = await batch([{ shard: 1, forget: { txIds: [tx], belowRevision: 0n } }]);
    expect(results[0]!.forgotten).toBe(true);
    expect(kv.shards[1]!.store.txnRecord(tx)).toBeUndefined();
  });
});
