import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readSnapshot } from "@quorum/consensus";
import type Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { encodeCommand } from "../command.js";
import {
  Compare,
  Compare_CompareResult,
  Compare_CompareTarget,
  DeleteRangeRequest,
  PutRequest,
  RangeRequest,
  RangeRequest_SortOrder,
  RangeRequest_SortTarget,
  type RequestOp,
  TxnRequest,
} from "../gen/etcdserverpb/rpc.js";
import { Event_EventType } from "../gen/mvccpb/kv.js";
import { prefixEnd } from "./keys.js";
import { type ApplyResult, KvStore, type RevisionChanges } from "./kv-store.js";

const b = (s: string) => Buffer.from(s);
const put = (key: string, value: string, extra: Partial<PutRequest> = {}) =>
  PutRequest.fromPartial({ key: b(key), value: b(value), ...extra });
const range = (key: string, extra: Partial<RangeRequest> = {}) =>
  RangeRequest.fromPartial({ key: b(key), ...extra });
const keys = (r: { kvs: { key: Buffer }[] }) => r.kvs.map((kv) => kv.key.toString());
const values = (r: { kvs: { value: Buffer }[] }) => r.kvs.map((kv) => kv.value.toString());

let dir: string;
let store: KvStore;
let index = 0;

function applyOne(command: Uint8Array): ApplyResult {
  return store.apply([{ index: ++index, command }])[0]!;
}
function ok<T extends ApplyResult["type"]>(result: ApplyResult, type: T): Extract<ApplyResult, { type: T }> {
  if (result.type === "error") throw result.error;
  expect(result.type).toBe(type);
  return result as Extract<ApplyResult, { type: T }>;
}
const doPut = (key: string, value: string, extra: Partial<PutRequest> = {}) =>
  ok(applyOne(encodeCommand.put(put(key, value, extra))), "put").response;
const doDelete = (key: string, rangeEnd = "", prevKv = false) =>
  ok(
    applyOne(
      encodeCommand.deleteRange(
        DeleteRangeRequest.fromPartial({ key: b(key), rangeEnd: b(rangeEnd), prevKv }),
      ),
    ),
    "deleteRange",
  ).response;
const doTxn = (txn: Partial<TxnRequest>) => applyOne(encodeCommand.txn(TxnRequest.fromPartial(txn)));
const errorOf = (r: ApplyResult) => (r.type === "error" ? r.error.message : `no error (${r.type})`);

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "kv-store-"));
  store = KvStore.open({ path: join(dir, "kv.db") });
  index = 0;
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("MVCC revisions", () => {
  it("starts at revision 1 and gives each put the next revision", () => {
    expect(store.revision()).toBe(1);
    expect(doPut("a", "1").header!.revision).toBe(2n);
    expect(doPut("b", "1").header!.revision).toBe(3n);
    const second = doPut("a", "2", { prevKv: true });
    expect(second.header!.revision).toBe(4n);
    expect(second.prevKv).toMatchObject({
      key: b("a"),
      value: b("1"),
      createRevision: 2n,
      modRevision: 2n,
      version: 1n,
    });
    const r = store.range(range("a"));
    expect(r.header!.revision).toBe(4n);
    expect(r.kvs[0]).toMatchObject({
      createRevision: 2n,
      modRevision: 4n,
      version: 2n,
      value: b("2"),
      lease: 0n,
    });
    expect(r.count).toBe(1n);
  });

  it("keeps history: reads at old revisions see old values and deleted keys", () => {
    doPut("a", "1"); // 2
    doPut("a", "2"); // 3
    const del = doDelete("a"); // 4
    expect(del.deleted).toBe(1n);
    expect(del.header!.revision).toBe(4n);
    doPut("a", "3"); // 5: recreated, version restarts
    expect(values(store.range(range("a", { revision: 2n })))).toEqual(["1"]);
    expect(values(store.range(range("a", { revision: 3n })))).toEqual(["2"]);
    expect(store.range(range("a", { revision: 4n })).kvs).toEqual([]);
    const now = store.range(range("a"));
    expect(now.kvs[0]).toMatchObject({ createRevision: 5n, version: 1n });
    // The header always carries the current revision, even for a historical read.
    expect(store.range(range("a", { revision: 2n })).header!.revision).toBe(5n);
    expect(() => store.range(range("a", { revision: 6n }))).toThrow("required revision is a future revision");
  });

  it("a delete of nothing does not bump the revision", () => {
    doPut("a", "1");
    const del = doDelete("zzz");
    expect(del.deleted).toBe(0n);
    expect(del.header!.revision).toBe(2n);
    expect(store.revision()).toBe(2);
  });

  it("answers ranges: prefix, from-key, limit/more/count, keys_only, count_only, sorting, filters", () => {
    for (const k of ["a", "ab", "abc", "b", "c"]) doPut(k, `v-${k}`); // revisions 2..6
    doPut("ab", "again"); // 7
    expect(keys(store.range(range("a", { rangeEnd: prefixEnd(b("a")) })))).toEqual(["a", "ab", "abc"]);
    expect(keys(store.range(range("b", { rangeEnd: Buffer.from([0]) })))).toEqual(["b", "c"]);
    expect(keys(store.range(range("c", { rangeEnd: b("a") })))).toEqual([]);
    const limited = store.range(range("a", { rangeEnd: b("z"), limit: 2n }));
    expect(keys(limited)).toEqual(["a", "ab"]);
    expect(limited.more).toBe(true);
    expect(limited.count).toBe(5n);
    const exact = store.range(range("a", { rangeEnd: b("z"), limit: 5n }));
    expect(exact.more).toBe(false);
    expect(values(store.range(range("a", { rangeEnd: b("b"), keysOnly: true })))).toEqual(["", "", ""]);
    const counted = store.range(range("a", { rangeEnd: b("z"), countOnly: true }));
    expect(counted.kvs).toEqual([]);
    expect(counted.count).toBe(5n);
    const desc = store.range(range("a", { rangeEnd: b("z"), sortOrder: RangeRequest_SortOrder.DESCEND }));
    expect(keys(desc)).toEqual(["c", "b", "abc", "ab", "a"]);
    // A non-KEY target with NONE order sorts ascending.
    const byMod = store.range(
      range("a", { rangeEnd: b("z"), sortTarget: RangeRequest_SortTarget.MOD, limit: 2n }),
    );
    expect(keys(byMod)).toEqual(["a", "abc"]);
    expect(byMod.more).toBe(true);
    const byVersionDesc = store.range(
      range("a", {
        rangeEnd: b("z"),
        sortTarget: RangeRequest_SortTarget.VERSION,
        sortOrder: RangeRequest_SortOrder.DESCEND,
        limit: 1n,
      }),
    );
    expect(keys(byVersionDesc)).toEqual(["ab"]);
    // Filters drop kvs but not the count.
    const filtered = store.range(range("a", { rangeEnd: b("z"), minModRevision: 5n, maxCreateRevision: 5n }));
    expect(keys(filtered)).toEqual(["ab", "b"]);
    expect(filtered.count).toBe(5n);
    // Historical range with a prefix.
    expect(values(store.range(range("a", { rangeEnd: prefixEnd(b("a")), revision: 4n })))).toEqual([
      "v-a",
      "v-ab",
      "v-abc",
    ]);
  });

  it("checks ignore_value, ignore_lease and leases on put", () => {
    expect(errorOf(applyOne(encodeCommand.put(put("nope", "", { ignoreValue: true }))))).toBe(
      "etcdserver: key not found",
    );
    expect(errorOf(applyOne(encodeCommand.put(put("a", "1", { lease: 12345n }))))).toBe(
      "etcdserver: requested lease not found",
    );
    expect(store.revision()).toBe(1);
    doPut("a", "keep");
    const touched = doPut("a", "", { ignoreValue: true });
    expect(touched.header!.revision).toBe(3n);
    expect(store.range(range("a")).kvs[0]).toMatchObject({ value: b("keep"), version: 2n });
  });
});

describe("compaction", () => {
  it("removes superseded versions, keeps the newest at the compacted revision, and refuses old reads", () => {
    doPut("a", "1"); // 2
    doPut("a", "2"); // 3
    doPut("b", "1"); // 4
    doDelete("b"); // 5
    doPut("a", "3"); // 6
    const compacted = ok(applyOne(encodeCommand.compaction({ revision: 5n, physical: false })), "compaction");
    expect(compacted.response.header!.revision).toBe(6n);
    expect(store.compactRevision()).toBe(5);
    expect(() => store.range(range("a", { revision: 4n }))).toThrow("required revision has been compacted");
    expect(values(store.range(range("a", { revision: 5n })))).toEqual(["2"]);
    expect(store.range(range("b", { revision: 5n })).kvs).toEqual([]);
    expect(values(store.range(range("a")))).toEqual(["3"]);
    expect(errorOf(applyOne(encodeCommand.compaction({ revision: 5n, physical: false })))).toBe(
      "etcdserver: mvcc: required revision has been compacted",
    );
    expect(errorOf(applyOne(encodeCommand.compaction({ revision: 7n, physical: false })))).toBe(
      "etcdserver: mvcc: required revision is a future revision",
    );
    expect(() => store.changesBetween(4, 6)).toThrow("compacted");
    // From the compacted revision itself is allowed (etcd: only minRev < compactRev fails);
    // the tombstone at 5 is gone with the compaction, as in etcd.
    expect(store.changesBetween(5, 6).map((c) => c.revision)).toEqual([6]);
    expect(store.changesBetween(6, 6).map((c) => c.revision)).toEqual([6]);
  });
});

describe("txn", () => {
  const cmp = (
    key: string,
    target: Compare_CompareTarget,
    result: Compare_CompareResult,
    value: Partial<Compare>,
  ) => Compare.fromPartial({ key: b(key), target, result, ...value });
  const opPut = (key: string, value: string): RequestOp => ({ requestPut: put(key, value) });
  const opGet = (key: string, extra: Partial<RangeRequest> = {}): RequestOp => ({
    requestRange: range(key, extra),
  });

  it("takes the success branch, writes everything at one revision, and reads its own writes", () => {
    doPut("k", "v"); // 2
    const r = ok(
      doTxn({
        compare: [cmp("k", Compare_CompareTarget.VALUE, Compare_CompareResult.EQUAL, { value: b("v") })],
        success: [opPut("x", "1"), opPut("y", "2"), opGet("x")],
        failure: [opPut("z", "no")],
      }),
      "txn",
    ).response;
    expect(r.succeeded).toBe(true);
    expect(r.header!.revision).toBe(3n);
    expect(
      r.responses.map((x) => Object.keys(x).find((k) => (x as Record<string, unknown>)[k] !== undefined)),
    ).toEqual(["responsePut", "responsePut", "responseRange"]);
    expect(r.responses[0]!.responsePut!.header!.revision).toBe(3n);
    expect(r.responses[2]!.responseRange!.kvs[0]).toMatchObject({ value: b("1"), modRevision: 3n });
    expect(store.range(range("y")).kvs[0]!.modRevision).toBe(3n);
  });

  it("takes the failure branch; a value compare on a missing key is false; missing keys compare as zero", () => {
    const r = ok(
      doTxn({
        compare: [
          cmp("missing", Compare_CompareTarget.VALUE, Compare_CompareResult.NOT_EQUAL, { value: b("x") }),
        ],
        success: [opPut("s", "1")],
        failure: [opGet("missing")],
      }),
      "txn",
    ).response;
    expect(r.succeeded).toBe(false);
    expect(r.header!.revision).toBe(1n);
    const r2 = ok(
      doTxn({
        compare: [
          cmp("missing", Compare_CompareTarget.CREATE, Compare_CompareResult.EQUAL, { createRevision: 0n }),
        ],
        success: [opPut("lock", "me")],
      }),
      "txn",
    ).response;
    expect(r2.succeeded).toBe(true);
    expect(r2.header!.revision).toBe(2n);
  });

  it("compares every key of a range, and on version/mod/lease with <, >", () => {
    doPut("p/a", "1"); // 2
    doPut("p/b", "1"); // 3
    doPut("p/b", "2"); // 4
    const verGt0 = cmp("p/", Compare_CompareTarget.VERSION, Compare_CompareResult.GREATER, {
      version: 0n,
      rangeEnd: prefixEnd(b("p/")),
    });
    expect(ok(doTxn({ compare: [verGt0] }), "txn").response.succeeded).toBe(true);
    const verGt1 = cmp("p/", Compare_CompareTarget.VERSION, Compare_CompareResult.GREATER, {
      version: 1n,
      rangeEnd: prefixEnd(b("p/")),
    });
    expect(ok(doTxn({ compare: [verGt1] }), "txn").response.succeeded).toBe(false);
    const modLt = cmp("p/b", Compare_CompareTarget.MOD, Compare_CompareResult.LESS, { modRevision: 5n });
    expect(ok(doTxn({ compare: [modLt] }), "txn").response.succeeded).toBe(true);
    const leaseEq = cmp("p/b", Compare_CompareTarget.LEASE, Compare_CompareResult.EQUAL, { lease: 0n });
    expect(ok(doTxn({ compare: [leaseEq] }), "txn").response.succeeded).toBe(true);
  });

  it("fails whole when an op fails its check, writing nothing", () => {
    doPut("a", "1"); // 2
    const r = doTxn({
      success: [opPut("b", "1"), { requestPut: put("missing", "", { ignoreValue: true }) }],
    });
    expect(errorOf(r)).toBe("etcdserver: key not found");
    const r2 = doTxn({ success: [opPut("b", "1"), opGet("a", { revision: 99n })] });
    expect(errorOf(r2)).toBe("etcdserver: mvcc: required revision is a future revision");
    expect(store.revision()).toBe(2);
    expect(store.range(range("b")).kvs).toEqual([]);
  });

  it("runs nested txns with compares evaluated before any write; nested headers are empty", () => {
    doPut("a", "1"); // 2
    const r = ok(
      doTxn({
        success: [
          opPut("a", "2"),
          {
            requestTxn: TxnRequest.fromPartial({
              // Sees the state before the outer put: a == "1".
              compare: [
                cmp("a", Compare_CompareTarget.VALUE, Compare_CompareResult.EQUAL, { value: b("1") }),
              ],
              success: [opPut("n", "then"), opGet("a")],
              failure: [opPut("n", "else")],
            }),
          },
        ],
      }),
      "txn",
    ).response;
    const nested = r.responses[1]!.responseTxn!;
    expect(nested.succeeded).toBe(true);
    expect(nested.header).toEqual({ clusterId: 0n, memberId: 0n, revision: 0n, raftTerm: 0n });
    expect(nested.responses[1]!.responseRange!.kvs[0]!.value).toEqual(b("2"));
    expect(values(store.range(range("n")))).toEqual(["then"]);
    expect(r.header!.revision).toBe(3n);
  });

  it("serves read-only txns locally", () => {
    doPut("a", "1");
    const r = store.txnReadOnly(TxnRequest.fromPartial({ success: [opGet("a")] }));
    expect(r.succeeded).toBe(true);
    expect(r.header!.revision).toBe(2n);
    expect(values(r.responses[0]!.responseRange!)).toEqual(["1"]);
  });
});

describe("durability and snapshots", () => {
  const dbOf = (s: KvStore) => (s as unknown as { db: Database.Database }).db;

  it("applies with WAL and synchronous=NORMAL; snapshot() first makes every apply durable with a FULL-synced checkpoint", async () => {
    const db = dbOf(store);
    expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
    const pragma = db.pragma.bind(db);
    // Records the synchronous mode in force at each checkpoint, and every mode change.
    const checkpoints: number[] = [];
    const changes: string[] = [];
    db.pragma = ((source: string, options?: object) => {
      if (source.startsWith("wal_checkpoint"))
        checkpoints.push(pragma("synchronous", { simple: true }) as number);
      if (source.startsWith("synchronous =")) changes.push(source);
      return pragma(source, options as never);
    }) as typeof db.pragma;
    for (let i = 0; i < 20; i++) doPut(`k${i}`, `v${i}`);
    expect(pragma("synchronous", { simple: true })).toBe(1); // NORMAL: applies do not fsync
    expect(checkpoints).toEqual([]);
    const snap = await store.snapshot();
    expect(snap.index).toBe(20);
    expect(checkpoints).toEqual([2]); // FULL during the checkpoint...
    expect(changes).toEqual(["synchronous = FULL", "synchronous = NORMAL"]);
    expect(pragma("synchronous", { simple: true })).toBe(1); // ...and NORMAL again for applies
    // Everything up to the snapshot index is in the database file itself, not only in the
    // WAL: a copy of the main file alone (as if the WAL were lost) is at the snapshot index.
    const copy = join(dir, "main-only.db");
    copyFileSync(join(dir, "kv.db"), copy);
    const alone = KvStore.open({ path: copy });
    expect(alone.appliedIndex()).toBe(20);
    expect(values(alone.range(range("k19")))).toEqual(["v19"]);
    alone.close();
    // Applies after the snapshot run with NORMAL again and still reach a reopened store.
    doPut("after", "1");
    expect(checkpoints).toEqual([2]);
    store.close();
    store = KvStore.open({ path: join(dir, "kv.db") });
    expect(store.appliedIndex()).toBe(21);
    expect(dbOf(store).pragma("synchronous", { simple: true })).toBe(1);
  });

  it("keeps the applied index, revision and data across a restart", () => {
    doPut("a", "1");
    doPut("b", "2");
    ok(applyOne(encodeCommand.compaction({ revision: 2n, physical: false })), "compaction");
    store.close();
    store = KvStore.open({ path: join(dir, "kv.db") });
    expect(store.appliedIndex()).toBe(3);
    expect(store.revision()).toBe(3);
    expect(store.compactRevision()).toBe(2);
    expect(values(store.range(range("a", { rangeEnd: b("z") })))).toEqual(["1", "2"]);
    expect(() => store.apply([{ index: 3, command: encodeCommand.put(put("c", "3")) }])).toThrow(
      "at or below applied index",
    );
    expect(store.revision()).toBe(3);
  });

  it("applies a batch in one transaction and reports changes in revision order", () => {
    const seen: RevisionChanges[] = [];
    const off = store.onChanges((changes) => seen.push(...changes));
    doPut("d", "0"); // 2
    const results = store.apply([
      { index: ++index, command: encodeCommand.put(put("a", "1")) },
      { index: ++index, command: encodeCommand.put(put("a", "2", { ignoreLease: true })) },
      {
        index: ++index,
        command: encodeCommand.deleteRange(DeleteRangeRequest.fromPartial({ key: b("a"), rangeEnd: b("e") })),
      },
    ]);
    off();
    expect(results.map((r) => r.type)).toEqual(["put", "put", "deleteRange"]);
    expect(seen.map((c) => c.revision)).toEqual([2, 3, 4, 5]);
    expect(seen[3]!.events.map((e) => [e.type, e.kv!.key.toString(), e.prevKv?.value.toString()])).toEqual([
      [Event_EventType.DELETE, "a", "2"],
      [Event_EventType.DELETE, "d", "0"],
    ]);
    const replay = store.changesBetween(2, 5);
    expect(replay.map((c) => c.events.length)).toEqual([1, 1, 1, 2]);
    expect(replay[3]!.events[0]!.prevKv!.value).toEqual(b("2"));
  });

  it("applies a batch entry's commands in order, one revision and one result each (an error stays its own)", () => {
    const seen: RevisionChanges[] = [];
    const off = store.onChanges((changes) => seen.push(...changes));
    doPut("d", "0"); // 2
    const before = store.revision();
    const [result] = store.apply([
      {
        index: ++index,
        command: encodeCommand.batch([
          encodeCommand.put(put("a", "1")),
          encodeCommand.put(put("zz", "1", { lease: 99n })), // no such lease: its own error
          encodeCommand.deleteRange(
            DeleteRangeRequest.fromPartial({ key: b("a"), rangeEnd: b("e"), prevKv: true }),
          ),
        ]),
      },
    ]);
    off();
    const results = ok(result!, "batch").results;
    expect(results.map((r) => r.type)).toEqual(["put", "error", "deleteRange"]);
    expect(errorOf(results[1]!)).toBe("etcdserver: requested lease not found");
    expect(
      results.map((r) =>
        r.type === "put" || r.type === "deleteRange" ? r.response.header?.revision : undefined,
      ),
    ).toEqual([BigInt(before + 1), undefined, BigInt(before + 2)]);
    expect(seen.map((c) => [c.revision, c.events.map((e) => e.kv!.key.toString())])).toEqual([
      [2, ["d"]],
      [3, ["a"]],
      [4, ["a", "d"]],
    ]);
    // A batch inside a batch is not something this store proposes: refused, not applied.
    const [nested] = store.apply([
      {
        index: ++index,
        command: encodeCommand.batch([encodeCommand.batch([encodeCommand.put(put("n", "1"))])]),
      },
    ]);
    expect(errorOf(ok(nested!, "batch").results[0]!)).toContain("a batch inside a batch");
    expect(store.range(range("n")).kvs).toEqual([]);
  });

  it("round-trips a snapshot into another store, which then continues identically", async () => {
    for (let i = 0; i < 50; i++) doPut(`k${i % 7}`, `v${i}`.repeat(100));
    ok(applyOne(encodeCommand.compaction({ revision: 20n, physical: false })), "compaction");
    const snap = await store.snapshot();
    expect(snap.index).toBe(index);
    const other = KvStore.open({ path: join(dir, "other.db") });
    try {
      other.apply([{ index: 1, command: encodeCommand.put(put("junk", "x")) }]);
      await other.restore(snap);
      expect(other.appliedIndex()).toBe(index);
      expect(other.revision()).toBe(store.revision());
      expect(other.compactRevision()).toBe(20);
      const all = range("\0", { rangeEnd: Buffer.from([0]) });
      expect(other.range(all)).toEqual(store.range(all));
      expect(other.range(range("junk")).kvs).toEqual([]);
      const next = { index: index + 1, command: encodeCommand.put(put("k1", "after")) };
      expect(other.apply([next])).toEqual(store.apply([next]));
      // A restored store survives a restart too.
      other.close();
      const reopened = KvStore.open({ path: join(dir, "other.db") });
      expect(reopened.appliedIndex()).toBe(index + 1);
      expect(values(reopened.range(range("k1")))).toEqual(["after"]);
      reopened.close();
    } finally {
      other.close();
    }
  });

  it("refuses a snapshot whose image does not match its index", async () => {
    doPut("a", "1");
    const snap = await store.snapshot();
    const other = KvStore.open({ path: ":memory:" });
    await expect(other.restore({ ...snap, index: 99, chunks: snap.chunks })).rejects.toThrow("expected 99");
    const good = await store.snapshot();
    await other.restore(good);
    expect(values(other.range(range("a")))).toEqual(["1"]);
    expect((await readSnapshot(await other.snapshot())).length).toBeGreaterThan(0);
    other.close();
  });
});
