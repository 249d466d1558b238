import { SingleNodeLog } from "@quorum/consensus/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { encodeCommand } from "../command.js";
import {
  WatchCreateRequest_FilterType as Filter,
  type RequestOp,
  type ResponseHeader,
  WatchCreateRequest,
  type WatchResponse,
} from "../gen/etcdserverpb/rpc.js";
import { Event_EventType } from "../gen/mvccpb/kv.js";
import { prefixEnd } from "../store/keys.js";
import { type ApplyResult, KvStore } from "../store/kv-store.js";
import { ManualClock } from "../testing/manual-clock.js";
import { WatchHub, type WatchHubOptions, type WatchStream, watchErrors } from "./watch.js";

const b = (s: string) => Buffer.from(s);
const tick = () => new Promise((r) => setImmediate(r));

/** A client that can stall: while `blocked`, writes report backpressure. */
class Sink {
  received: WatchResponse[] = [];
  blocked = false;
  write(r: WatchResponse): boolean {
    this.received.push(r);
    return !this.blocked;
  }
  events(id = 0n): string[] {
    return this.received
      .filter((r) => r.watchId === id)
      .flatMap((r) =>
        r.events.map(
          (e) =>
            `${e.type === Event_EventType.PUT ? "PUT" : "DELETE"} ${e.kv!.key} ${e.kv!.modRevision}${
              e.prevKv ? ` prev=${e.prevKv.value}` : ""
            }`,
        ),
      );
  }
  revisions(id = 0n): number[] {
    return this.received
      .filter((r) => r.watchId === id)
      .flatMap((r) => r.events.map((e) => Number(e.kv!.modRevision)));
  }
}

describe("watch hub", () => {
  let store: KvStore;
  let log: SingleNodeLog<ApplyResult>;
  let hub: WatchHub;
  let clock: ManualClock;

  const header = (revision: bigint): ResponseHeader => ({
    clusterId: 1n,
    memberId: 2n,
    revision,
    raftTerm: 1n,
  });
  const put = (key: string, value: string) =>
    log.propose(
      encodeCommand.put({
        key: b(key),
        value: b(value),
        lease: 0n,
        prevKv: false,
        ignoreValue: false,
        ignoreLease: false,
      }),
    );
  const del = (key: string, end = "") =>
    log.propose(encodeCommand.deleteRange({ key: b(key), rangeEnd: b(end), prevKv: false }));
  const open = (options: Partial<WatchHubOptions> = {}) => {
    hub = new WatchHub({ store, clock, header, ...options });
    const sink = new Sink();
    const stream = hub.open(sink);
    return { sink, stream };
  };
  const create = (stream: WatchStream, key: string, extra: Partial<WatchCreateRequest> = {}) =>
    stream.handle({ createRequest: WatchCreateRequest.fromPartial({ key: b(key), ...extra }) });

  beforeEach(async () => {
    store = KvStore.open({ path: ":memory:" });
    log = new SingleNodeLog("n1", store);
    await log.start();
    clock = new ManualClock();
  });
  afterEach(async () => {
    hub?.close();
    await log.close();
    store.close();
  });

  it("answers creates in order with server-assigned and client ids, and refuses duplicates and empty ranges", async () => {
    await put("a", "1");
    const { sink, stream } = open();
    create(stream, "a");
    create(stream, "b", { watchId: 7n });
    create(stream, "c");
    create(stream, "d", { watchId: 7n });
    create(stream, "z", { rangeEnd: b("a") });
    create(stream, "q", { rangeEnd: b("q") });
    expect(
      sink.received.map((r) => [r.watchId, r.created, r.canceled, r.cancelReason, r.header!.revision]),
    ).toEqual([
      [0n, true, false, "", 2n],
      [7n, true, false, "", 2n],
      [1n, true, false, "", 2n],
      [-1n, true, true, watchErrors.duplicateId, 2n],
      [-1n, true, true, watchErrors.emptyRange, 2n],
      [-1n, true, true, watchErrors.emptyRange, 2n],
    ]);
    stream.handle({ cancelRequest: { watchId: 99n } });
    expect(sink.received).toHaveLength(6);
    stream.handle({ cancelRequest: { watchId: 7n } });
    expect(sink.received[6]).toMatchObject({ watchId: 7n, canceled: true, created: false });
    await put("b", "ignored");
    expect(sink.received).toHaveLength(7);
  });

  it("filters puts or deletes, strips prev_kv unless asked, and watches ranges", async () => {
    const { sink, stream } = open();
    create(stream, "k/", { rangeEnd: prefixEnd(b("k/")), filters: [Filter.NOPUT], prevKv: true }); // 0
    create(stream, "k/", { rangeEnd: prefixEnd(b("k/")), filters: [Filter.NODELETE] }); // 1
    create(stream, "", { rangeEnd: Buffer.from([0]) }); // 2: every key
    await put("k/a", "1");
    await put("k/a", "2");
    await put("j", "x");
    await del("k/", "k0");
    expect(sink.events(0n)).toEqual(["DELETE k/a 5 prev=2"]);
    expect(sink.events(1n)).toEqual(["PUT k/a 2", "PUT k/a 3"]);
    expect(sink.revisions(2n)).toEqual([2, 3, 4, 5]);
    // One response per revision, headed with that revision.
    expect(
      sink.received.filter((r) => r.watchId === 2n && !r.created).map((r) => r.header!.revision),
    ).toEqual([2n, 3n, 4n, 5n]);
  });

  it("replays history then switches to live with no gap and no duplicate while writes continue", async () => {
    for (let i = 0; i < 50; i++) await put(`r/${i}`, "x");
    const { sink, stream } = open({ catchUpRevisions: 3 });
    let writing = true;
    const writer = (async () => {
      for (let i = 50; i < 150; i++) {
        await put(`r/${i}`, "y");
        if (i % 3 === 0) await tick();
      }
      writing = false;
    })();
    create(stream, "r/", { rangeEnd: prefixEnd(b("r/")), startRevision: 2n });
    await writer;
    expect(writing).toBe(false);
    for (let i = 0; i < 100 && stream.isSynced(0n) === false; i++) await tick();
    expect(stream.isSynced(0n)).toBe(true);
    await put("r/last", "z");
    const revs = sink.revisions(0n);
    expect(revs).toEqual(Array.from({ length: 151 }, (_, i) => i + 2));
    expect(sink.received[0]!.created).toBe(true);
  });

  it("waits for a future start revision without error", async () => {
    const { sink, stream } = open();
    create(stream, "f", { startRevision: 4n });
    await put("f", "1"); // 2
    await put("f", "2"); // 3
    await put("f", "3"); // 4
    expect(sink.revisions(0n)).toEqual([4]);
  });

  it("cancels a watch from a compacted revision with compact_revision, after created", async () => {
    for (let i = 0; i < 5; i++) await put("c", String(i));
    await log.propose(encodeCommand.compaction({ revision: 4n, physical: true }));
    const { sink, stream } = open();
    create(stream, "c", { startRevision: 2n });
    create(stream, "c", { startRevision: 4n });
    await tick();
    await tick();
    expect(sink.received[0]).toMatchObject({ watchId: 0n, created: true });
    expect(sink.received[1]).toMatchObject({ watchId: 1n, created: true });
    const cancel = sink.received.find((r) => r.canceled);
    expect(cancel).toMatchObject({ watchId: 0n, canceled: true, compactRevision: 4n, cancelReason: "" });
    expect(cancel!.header!.revision).toBe(0n);
    expect(sink.revisions(1n)).toEqual([4, 5, 6]);
    expect(stream.watcherIds()).toEqual([1n]);
  });

  it("does not let a stalled client hold writers: its watcher falls back to history, then catches up exactly", async () => {
    const { sink, stream } = open({ maxPendingResponses: 16 });
    create(stream, "s/", { rangeEnd: prefixEnd(b("s/")) });
    sink.blocked = true;
    await put("s/0", "x"); // fills the transport; later responses queue
    // Every write completes while the client is still stalled: writers never wait for it.
    for (let i = 1; i < 2000; i++) await put(`s/${i}`, "x");
    expect(sink.blocked).toBe(true);
    expect(stream.pendingResponses()).toBeLessThanOrEqual(16);
    expect(stream.isSynced(0n)).toBe(false);
    // The client drains: what was queued, then history, then live again.
    sink.blocked = false;
    stream.drain();
    for (let i = 0; i < 200 && !stream.isSynced(0n); i++) await tick();
    expect(stream.isSynced(0n)).toBe(true);
    await put("s/live", "x");
    expect(sink.revisions(0n)).toEqual(Array.from({ length: 2001 }, (_, i) => i + 2));
  });

  it("cancels a watcher that fell behind past a compaction", async () => {
    const { sink, stream } = open({ maxPendingResponses: 4 });
    create(stream, "p");
    sink.blocked = true;
    for (let i = 0; i < 20; i++) await put("p", String(i));
    expect(stream.isSynced(0n)).toBe(false);
    await log.propose(encodeCommand.compaction({ revision: 18n, physical: true }));
    sink.blocked = false;
    stream.drain();
    for (let i = 0; i < 10; i++) await tick();
    const last = sink.received[sink.received.length - 1]!;
    expect(last).toMatchObject({ watchId: 0n, canceled: true, compactRevision: 18n });
    expect(stream.watcherIds()).toEqual([]);
  });

  it("sends progress: on request (watch_id -1) and periodically to idle watchers that asked", async () => {
    const { sink, stream } = open({ progressNotifyIntervalMs: 1000 });
    create(stream, "a", { progressNotify: true });
    create(stream, "b", { progressNotify: true });
    create(stream, "c");
    await put("a", "1");
    stream.handle({ progressRequest: {} });
    expect(sink.received[4]).toMatchObject({ watchId: -1n, events: [] });
    expect(sink.received[4]!.header!.revision).toBe(2n);
    sink.received = [];
    clock.advance(1000);
    // "a" had an event since the last tick; "b" was idle; "c" did not ask.
    expect(sink.received.map((r) => [r.watchId, r.header!.revision, r.events.length])).toEqual([[1n, 2n, 0]]);
    sink.received = [];
    clock.advance(1000);
    expect(sink.received.map((r) => r.watchId)).toEqual([0n, 1n]);
  });

  it("fragments large responses between events when asked", async () => {
    const { sink, stream } = open({ fragmentBytes: 300 });
    create(stream, "g/", { rangeEnd: prefixEnd(b("g/")), fragment: true });
    create(stream, "g/", { rangeEnd: prefixEnd(b("g/")) });
    const ops: RequestOp[] = Array.from({ length: 10 }, (_, i) => ({
      requestPut: {
        key: b(`g/${i}`),
        value: Buffer.alloc(100, 1),
        lease: 0n,
        prevKv: false,
        ignoreValue: false,
        ignoreLease: false,
      },
    }));
    await log.propose(encodeCommand.txn({ compare: [], success: ops, failure: [] }));
    const parts = sink.received.filter((r) => r.watchId === 0n && r.events.length > 0);
    expect(parts.length).toBeGreaterThan(2);
    expect(parts.map((p) => p.fragment)).toEqual([...Array(parts.length - 1).fill(true), false]);
    expect(parts.flatMap((p) => p.events.map((e) => e.kv!.key.toString()))).toEqual(
      ops.map((o) => o.requestPut!.key.toString()),
    );
    expect(sink.received.filter((r) => r.watchId === 1n && r.events.length > 0)).toHaveLength(1);
  });

  it("catches up watchers when the store jumps (a snapshot was installed)", async () => {
    const other = KvStore.open({ path: ":memory:" });
    const otherLog = new SingleNodeLog<ApplyResult>("n2", other);
    await otherLog.start();
    const { sink, stream } = open();
    create(stream, "j");
    for (let i = 0; i < 5; i++) {
      await otherLog.propose(
        encodeCommand.put({
          key: b("j"),
          value: b(String(i)),
          lease: 0n,
          prevKv: false,
          ignoreValue: false,
          ignoreLease: false,
        }),
      );
    }
    await store.restore(await other.snapshot());
    await otherLog.close();
    other.close();
    // The next change reveals the jump; the missed revisions come from history first.
    await log.close();
    log = new SingleNodeLog("n1", store);
    await log.start();
    await log.propose(
      encodeCommand.put({
        key: b("j"),
        value: b("after"),
        lease: 0n,
        prevKv: false,
        ignoreValue: false,
        ignoreLease: false,
      }),
    );
    for (let i = 0; i < 5; i++) await tick();
    expect(sink.revisions(0n)).toEqual([2, 3, 4, 5, 6, 7]);
  });
});
