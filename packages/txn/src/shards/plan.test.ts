import {
  Compare,
  Compare_CompareResult,
  Compare_CompareTarget,
  PutRequest,
  RangeRequest,
  ShardMap,
  TxnRequest,
  type TxnVote,
  TxnVote_CompareResult,
  TxnVote_Outcome,
} from "@quorum/kv";
import { describe, expect, it } from "vitest";
import { commitRevision, comparesHold, txnResponse } from "./outcome.js";
import { planTxn } from "./plan.js";

const b = (s: string) => Buffer.from(s);
const map = ShardMap.ofCount(3); // "0.." shard 0, "A.." shard 1, "a.." shard 2
const version = (key: string, rangeEnd: string, v: bigint) =>
  Compare.fromPartial({
    key: b(key),
    rangeEnd: b(rangeEnd),
    target: Compare_CompareTarget.VERSION,
    result: Compare_CompareResult.EQUAL,
    version: v,
  });

describe("planTxn", () => {
  it("clips each compare and op to the shards it touches and remembers where each went", () => {
    const req = TxnRequest.fromPartial({
      compare: [version("0a", "", 1n), version("0", "~", 1n)],
      success: [
        { requestPut: PutRequest.fromPartial({ key: b("zz"), value: b("1") }) },
        { requestRange: RangeRequest.fromPartial({ key: b("5"), rangeEnd: b("B") }) },
      ],
      failure: [{ requestDeleteRange: { key: b("K"), rangeEnd: b("\0"), prevKv: false } }],
    });
    const plan = planTxn(req, map);
    expect(plan.shards).toEqual([0, 1, 2]);
    expect(plan.compares).toEqual([
      [{ shard: 0, index: 0 }],
      [
        { shard: 0, index: 1 },
        { shard: 1, index: 0 },
        { shard: 2, index: 0 },
      ],
    ]);
    expect(plan.parts.get(1)!.compare[0]!.key.toString()).toBe("@");
    expect(plan.parts.get(1)!.compare[0]!.rangeEnd.toString()).toBe("_");
    expect(plan.success).toEqual([
      [{ shard: 2, index: 0 }],
      [
        { shard: 0, index: 0 },
        { shard: 1, index: 0 },
      ],
    ]);
    expect(plan.parts.get(0)!.success[0]!.requestRange!.rangeEnd.toString()).toBe("@");
    expect(plan.failure).toEqual([
      [
        { shard: 1, index: 0 },
        { shard: 2, index: 0 },
      ],
    ]);
  });
});

describe("combining votes", () => {
  const vote = (
    compares: TxnVote_CompareResult[],
    provisional: bigint,
    responses: TxnVote["success"],
  ): TxnVote => ({
    outcome: TxnVote_Outcome.PREPARED,
    compares,
    success: responses,
    failure: { responses: [], errorCode: 0, errorMessage: "" },
    provisionalRevision: provisional,
    holderTxId: Buffer.alloc(0),
    holderStartTs: 0n,
  });
  const req = TxnRequest.fromPartial({
    compare: [version("0", "~", 0n)],
    success: [
      { requestPut: PutRequest.fromPartial({ key: b("0a"), value: b("1") }) },
      { requestRange: RangeRequest.fromPartial({ key: b("0"), rangeEnd: b("~") }) },
    ],
  });
  const plan = planTxn(req, map);
  const kv = (key: string, rev: bigint) => ({
    key: b(key),
    createRevision: 3n,
    modRevision: rev,
    version: 2n,
    value: b("v"),
    lease: 0n,
  });
  const range = (kvs: ReturnType<typeof kv>[]) => ({
    responseRange: { header: undefined, kvs, more: false, count: BigInt(kvs.length) },
  });
  const put = { responsePut: { header: undefined, prevKv: undefined } };

  it("a range compare holds when no shard has a key failing it, and on no keys at all as etcd does", () => {
    const votes = (r: TxnVote_CompareResult[]) =>
      new Map(plan.shards.map((s, i) => [s, vote([r[i]!], 5n, undefined)] as const));
    const { NO_KEYS, HOLDS, FAILS } = TxnVote_CompareResult;
    expect(comparesHold(req, plan, votes([NO_KEYS, NO_KEYS, NO_KEYS]))).toBe(true); // version 0 == 0
    expect(comparesHold(req, plan, votes([HOLDS, NO_KEYS, HOLDS]))).toBe(true);
    expect(comparesHold(req, plan, votes([HOLDS, FAILS, HOLDS]))).toBe(false);
  });

  it("puts the response together at the transaction's revision, rewriting each shard's provisional one", () => {
    const votes = new Map<number, TxnVote>([
      [
        0,
        vote([TxnVote_CompareResult.HOLDS], 5n, {
          responses: [put, range([kv("0a", 5n)])],
          errorCode: 0,
          errorMessage: "",
        }),
      ],
      [
        1,
        vote([TxnVote_CompareResult.NO_KEYS], 8n, {
          responses: [range([kv("Kb", 7n)])],
          errorCode: 0,
          errorMessage: "",
        }),
      ],
      [
        2,
        vote([TxnVote_CompareResult.NO_KEYS], 2n, { responses: [range([])], errorCode: 0, errorMessage: "" }),
      ],
    ]);
    const revision = commitRevision(votes, 3n);
    expect(revision).toBe(8n);
    const r = txnResponse(req, plan, votes, true, revision);
    expect(r.header?.revision).toBe(8n);
    expect(r.responses[0]!.responsePut?.header?.revision).toBe(8n);
    // Shard 0's own write (at its provisional 5) is at 8; shard 1's untouched key keeps 7.
    expect(r.responses[1]!.responseRange!.kvs.map((k) => [k.key.toString(), k.modRevision])).toEqual([
      ["0a", 8n],
      ["Kb", 7n],
    ]);
    expect(commitRevision(votes, 20n)).toBe(21n);
  });
});
