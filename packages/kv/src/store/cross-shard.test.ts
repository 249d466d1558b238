import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { encodeCommand } from "../command.js";
import {
  Compare,
  Compare_CompareResult,
  Compare_CompareTarget,
  PutRequest,
  RangeRequest,
  TxnRequest,
} from "../gen/etcdserverpb/rpc.js";
import {
  type TxnDecision,
  type TxnPart,
  TxnVote_CompareResult,
  TxnVote_Outcome,
} from "../gen/quorum/kv/v1/command.js";
import { type ApplyResult, KvStore, type RevisionChanges } from "./kv-store.js";

// A shard's side of a cross-shard Txn, on the store alone: prepare locks and votes, a
// decision writes (or not) and unlocks, and everything survives a restart.

const b = (s: string) => Buffer.from(s);
let dir: string;
let store: KvStore;
let index = 0;

function apply(command: Uint8Array): ApplyResult {
  return store.apply([{ index: ++index, command }])[0]!;
}
const put = (key: string, value: string) =>
  apply(encodeCommand.put(PutRequest.fromPartial({ key: b(key), value: b(value) })));

function part(txId: string, txn: Partial<TxnRequest>, startTs = 1n): TxnPart {
  return {
    txId: b(txId),
    anchor: 0,
    startTs,
    shards: [0, 1],
    txn: TxnRequest.fromPartial(txn),
    attemptMs: 0n,
    request: undefined,
    minRevision: 0n,
  };
}
const transfer = (txId: string) =>
  part(txId, {
    compare: [
      Compare.fromPartial({
        key: b("a"),
        target: Compare_CompareTarget.VALUE,
        result: Compare_CompareResult.EQUAL,
        value: b("10"),
      }),
    ],
    success: [{ requestPut: PutRequest.fromPartial({ key: b("a"), value: b("5"), prevKv: true }) }],
    failure: [{ requestRange: RangeRequest.fromPartial({ key: b("a") }) }],
  });
function prepare(p: TxnPart) {
  const r = apply(encodeCommand.txnPrepare(p));
  if (r.type !== "txnVote") throw new Error(`expected a vote, got ${r.type}`);
  return r.vote;
}
function fence(txId: string) {
  const r = apply(encodeCommand.txnFence({ txId: b(txId) }));
  if (r.type !== "txnState") throw new Error(`expected a state, got ${r.type}`);
  return r.state;
}
function decide(d: Partial<TxnDecision> & { txId: Buffer }) {
  const r = apply(encodeCommand.txnDecide({ commit: false, revision: 0n, succeeded: false, ...d }));
  if (r.type !== "txnDecided") throw new Error(`expected a decision, got ${r.type}`);
  return r.decision;
}
const value = (key: string) =>
  store.range(RangeRequest.fromPartial({ key: b(key) })).kvs[0]?.value.toString();

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "quorum-xshard-"));
  store = KvStore.open({ path: join(dir, "kv.db") });
  index = 0;
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("a shard's part of a cross-shard Txn", () => {
  it("prepares: evaluates compares, dry-runs both branches, writes nothing", () => {
    put("a", "10");
    const vote = prepare(transfer("t1"));
    expect(vote.outcome).toBe(TxnVote_Outcome.PREPARED);
    expect(vote.compares).toEqual([TxnVote_CompareResult.HOLDS]);
    expect(vote.provisionalRevision).toBe(3n);
    expect(vote.success?.responses[0]?.responsePut?.prevKv?.value.toString()).toBe("10");
    expect(vote.failure?.responses[0]?.responseRange?.kvs[0]?.value.toString()).toBe("10");
    expect(value("a")).toBe("10");
    expect(store.revision()).toBe(2);
    expect(store.preparedTxns()).toHaveLength(1);
  });

  it("answers a branch of plain puts (and an empty one) as a dry run would, without running it", () => {
    put("a", "10");
    const plain = part("t1", {
      success: [
        { requestPut: PutRequest.fromPartial({ key: b("a"), value: b("5") }) },
        { requestPut: PutRequest.fromPartial({ key: b("b"), value: b("6") }) },
      ],
    });
    const vote = prepare(plain);
    decide({ txId: b("t1"), commit: false });
    // The same branch with prev_kv is dry-run; its responses differ only by what prev_kv adds.
    const withPrev = prepare(
      part("t2", {
        success: plain.txn!.success.map((op) => ({ requestPut: { ...op.requestPut!, prevKv: true } })),
      }),
    );
    const strip = (r: typeof vote.success) =>
      r?.responses.map((op) => ({ ...op.responsePut, header: undefined, prevKv: undefined }));
    expect(strip(vote.success)).toEqual(strip(withPrev.success));
    expect(withPrev.success?.responses[0]?.responsePut?.prevKv?.value.toString()).toBe("10");
    expect(vote.failure).toEqual({ responses: [], errorCode: 0, errorMessage: "" });
  });

  it("blocks other writers and conflicting prepares until decided; a commit writes at the given revision", () => {
    put("a", "10");
    prepare(transfer("t1"));
    expect(put("a", "11").type).toBe("locked");
    expect(put("b", "1").type).toBe("put");
    const other = prepare(transfer("t2"));
    expect(other.outcome).toBe(TxnVote_Outcome.CONFLICT);
    expect(other.holderTxId.toString()).toBe("t1");
    expect(store.pendingWriter(b("a"), Buffer.alloc(0))).toBeDefined();
    // The transaction's revision (3) is one this shard already used for "b": the rows still go in there.
    expect(decide({ txId: b("t1"), commit: true, revision: 3n, succeeded: true }).commit).toBe(true);
    expect(store.revision()).toBe(3);
    const kv = store.range(RangeRequest.fromPartial({ key: b("a") })).kvs[0]!;
    expect([kv.value.toString(), kv.modRevision]).toEqual(["5", 3n]);
    expect(store.preparedTxns()).toHaveLength(0);
    expect(put("a", "12").type).toBe("put");
  });

  it("records the first decision: a later one, or a late prepare, is answered with it", () => {
    put("a", "10");
    prepare(transfer("t1"));
    expect(decide({ txId: b("t1"), commit: false }).commit).toBe(false);
    expect(decide({ txId: b("t1"), commit: true, revision: 9n, succeeded: true }).commit).toBe(false);
    expect(value("a")).toBe("10");
    expect(prepare(transfer("t1")).outcome).toBe(TxnVote_Outcome.ABORTED);
    expect(store.preparedTxns()).toHaveLength(0);
    // A decision may arrive before the prepare (recovery aborted a transaction whose prepare was late).
    decide({ txId: b("t3"), commit: false });
    expect(prepare(transfer("t3")).outcome).toBe(TxnVote_Outcome.ABORTED);
  });

  it("answers a repeated prepare with the first vote", () => {
    put("a", "10");
    const first = prepare(transfer("t1"));
    put("z", "1");
    expect(prepare(transfer("t1"))).toEqual(first);
  });

  it("reports a failing branch's etcd error in the vote", () => {
    const vote = prepare(
      part("t1", {
        success: [{ requestPut: PutRequest.fromPartial({ key: b("x"), value: b("1"), lease: 42n }) }],
      }),
    );
    expect(vote.success?.errorMessage).toBe("etcdserver: requested lease not found");
    expect(vote.failure?.errorCode).toBe(0);
  });

  it("holds back watch changes above the prepare point, then releases them in revision order", () => {
    const seen: RevisionChanges[] = [];
    store.onChanges((c) => seen.push(...c));
    put("a", "10");
    prepare(transfer("t1"));
    put("b", "1");
    put("c", "1");
    expect(store.visibleRevision()).toBe(2);
    expect(seen.map((c) => c.revision)).toEqual([2]);
    decide({ txId: b("t1"), commit: true, revision: 3n, succeeded: true });
    expect(store.visibleRevision()).toBe(4);
    expect(seen.map((c) => [c.revision, c.events.map((e) => e.kv?.key.toString())])).toEqual([
      [2, ["a"]],
      [3, ["b", "a"]],
      [4, ["c"]],
    ]);
    // History agrees with what was delivered live.
    expect(store.changesBetween(3, 3).map((c) => c.events.map((e) => e.kv?.key.toString()))).toEqual([
      ["b", "a"],
    ]);
  });

  it("merges a commit written below the revision into that revision's changes, within one batch too", () => {
    const seen: RevisionChanges[] = [];
    store.onChanges((c) => seen.push(...c));
    put("a", "10");
    const batch = [
      encodeCommand.txnPrepare(transfer("t1")),
      encodeCommand.put(PutRequest.fromPartial({ key: b("b"), value: b("1") })),
      encodeCommand.txnDecide({ txId: b("t1"), commit: true, revision: 3n, succeeded: true }),
    ].map((command) => ({ index: ++index, command }));
    store.apply(batch);
    expect(seen.map((c) => [c.revision, c.events.map((e) => e.kv?.key.toString())])).toEqual([
      [2, ["a"]],
      [3, ["b", "a"]],
    ]);
  });

  it("fences: answers a prepared part with its vote and keeps it; else records an abort that refuses the part", () => {
    put("a", "10");
    const vote = prepare(transfer("t1"));
    const state = fence("t1");
    expect(state.prepared?.vote).toEqual(vote);
    expect(state.prepared?.part?.txId.toString()).toBe("t1");
    expect(state.decided).toBeUndefined();
    expect(store.preparedTxns()).toHaveLength(1);

    // Not prepared here: the fence aborts it, and its prepare arriving later is refused.
    expect(fence("t2").decided?.commit).toBe(false);
    expect(prepare({ ...transfer("t2"), txId: b("t2") }).outcome).toBe(TxnVote_Outcome.ABORTED);
    // Decided: the fence answers the decision and changes nothing.
    decide({ txId: b("t1"), commit: true, revision: 2n, succeeded: true });
    expect(fence("t1").decided).toMatchObject({ commit: true, revision: 2n, succeeded: true });
    expect(value("a")).toBe("5");
  });

  it("makes a lease revoke wait for a transaction that locked its keys or puts with the lease", () => {
    apply(encodeCommand.leaseGrant({ ID: 7n, TTL: 60n }));
    apply(encodeCommand.put(PutRequest.fromPartial({ key: b("a"), value: b("10"), lease: 7n })));
    prepare(transfer("t1")); // locks a
    expect(apply(encodeCommand.leaseRevoke({ ID: 7n })).type).toBe("locked");
    decide({ txId: b("t1"), commit: true, revision: 2n, succeeded: true });
    // The transfer's put kept no lease (etcd's put without lease detaches it): nothing to delete.
    expect(apply(encodeCommand.leaseRevoke({ ID: 7n })).type).toBe("leaseRevoke");
    expect(value("a")).toBe("5");

    // A prepared put of another key with the lease: the revoke waits for it, then deletes it.
    apply(encodeCommand.leaseGrant({ ID: 8n, TTL: 60n }));
    prepare(
      part("t2", {
        success: [{ requestPut: PutRequest.fromPartial({ key: b("b"), value: b("1"), lease: 8n }) }],
      }),
    );
    expect(apply(encodeCommand.leaseRevoke({ ID: 8n })).type).toBe("locked");
    decide({ txId: b("t2"), commit: true, revision: BigInt(store.revision() + 1), succeeded: true });
    expect(value("b")).toBe("1");
    expect(apply(encodeCommand.leaseRevoke({ ID: 8n })).type).toBe("leaseRevoke");
    expect(value("b")).toBeUndefined();
  });

  it("keeps prepared parts and records across a restart", () => {
    put("a", "10");
    prepare(transfer("t1"));
    decide({ txId: b("t0"), commit: false });
    store.close();
    store = KvStore.open({ path: join(dir, "kv.db") });
    expect(store.preparedTxns().map((i) => i.txId.toString())).toEqual(["t1"]);
    expect(store.visibleRevision()).toBe(2);
    expect(store.txnRecord(b("t0"))?.commit).toBe(false);
    expect(put("a", "1").type).toBe("locked");
    decide({ txId: b("t1"), commit: true, revision: 7n, succeeded: false });
    expect(value("a")).toBe("10");
    expect(store.revision()).toBe(2);
  });

  it("forgets records, and refuses parts at or below the forgotten ones' min_revision, across a restart", () => {
    put("a", "10");
    const t1 = { ...transfer("t1"), minRevision: 2n };
    expect(prepare(t1).outcome).toBe(TxnVote_Outcome.PREPARED);
    decide({ txId: b("t1"), commit: true, revision: 3n, succeeded: true });
    decide({ txId: b("t2"), commit: false });
    expect(store.txnRecordCount()).toBe(2);
    const r = apply(encodeCommand.txnForget({ txIds: [b("t1"), b("t2")], belowRevision: 2n }));
    expect(r.type).toBe("txnForgotten");
    expect(store.txnRecordCount()).toBe(0);
    expect(store.txnRecord(b("t1"))).toBeUndefined();
    store.close();
    store = KvStore.open({ path: join(dir, "kv.db") });
    // A late duplicate of t1's prepare: no record any more, yet refused, and nothing locked.
    expect(prepare(t1).outcome).toBe(TxnVote_Outcome.ABORTED);
    expect(store.preparedTxns()).toEqual([]);
    expect(value("a")).toBe("5");
    // A lower floor later changes nothing; a newer part prepares.
    apply(encodeCommand.txnForget({ txIds: [], belowRevision: 1n }));
    expect(prepare({ ...transfer("t3"), minRevision: 2n }).outcome).toBe(TxnVote_Outcome.ABORTED);
    expect(prepare({ ...transfer("t4"), minRevision: 3n }).outcome).toBe(TxnVote_Outcome.PREPARED);
  });
});
