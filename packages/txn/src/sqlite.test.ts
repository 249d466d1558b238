import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { systemClock } from "@quorum/transport";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { SqliteDecisionLog } from "./decision-log.js";
import { KvParticipant } from "./kv/kv-participant.js";
import { decodeKvReads, encodeKvOps, type KvOp } from "./kv/ops.js";
import { type KvStorage, MemoryKvStorage, SqliteKvStorage } from "./kv/storage.js";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "quorum-txn-"));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const prep = (txId: string, ops: KvOp[], startTs = 1) => ({
  txId,
  coordinator: "c1",
  ops: encodeKvOps(ops),
  startTs,
});

describe("SqliteDecisionLog", () => {
  it("keeps decisions across a reopen, first writer wins, and forgets", async () => {
    const path = join(dir, "decisions.db");
    let log = new SqliteDecisionLog(path);
    const [a, b] = await Promise.all([
      log.decide({ txId: "t1", decision: "commit", participants: ["p1", "p2"] }),
      log.decide({ txId: "t2", decision: "abort", participants: ["p3"] }),
    ]);
    expect(a.decision).toBe("commit");
    expect(b.decision).toBe("abort");
    // A recovery agent racing to abort t1 loses: the commit is kept.
    expect((await log.decide({ txId: "t1", decision: "abort", participants: ["p1", "p2"] })).decision).toBe(
      "commit",
    );
    await log.close();
    log = new SqliteDecisionLog(path);
    expect((await log.load()).sort((x, y) => x.txId.localeCompare(y.txId))).toEqual([
      { txId: "t1", decision: "commit", participants: ["p1", "p2"] },
      { txId: "t2", decision: "abort", participants: ["p3"] },
    ]);
    await log.forget(["t1"]);
    expect(await log.get("t1")).toBeUndefined();
    await log.close();
    await expect(log.load()).rejects.toThrow(/closed/);
  });

  it("uses WAL and synchronous=FULL", async () => {
    const log = new SqliteDecisionLog(join(dir, "d.db"));
    const db = (log as unknown as { db: { pragma(s: string, o: { simple: boolean }): unknown } }).db;
    expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
    expect(db.pragma("synchronous", { simple: true })).toBe(2);
    await log.close();
  });
});

describe.each([
  ["memory", () => new MemoryKvStorage([["x", "10"]])],
  ["sqlite", () => new SqliteKvStorage(join(dir, "kv.db"), [["x", "10"]])],
] as const)("KvParticipant on %s storage", (_name, makeStorage) => {
  it("reads under lock at prepare, applies on commit, and discards on abort", async () => {
    const kv = new KvParticipant(makeStorage(), { clock: systemClock });
    const v = await kv.prepare(
      prep("t1", [
        { op: "get", key: "x" },
        { op: "add", key: "x", delta: 5 },
      ]),
    );
    if (!v.yes) throw new Error(v.reason);
    expect(decodeKvReads(v.result)).toEqual({ x: "10" });
    expect(kv.get("x")).toBe("10"); // invisible until commit
    await kv.commit("t1");
    expect(kv.get("x")).toBe("15");
    expect(await kv.prepare(prep("t2", [{ op: "put", key: "y", value: "v" }]))).toMatchObject({ yes: true });
    await kv.abort("t2");
    expect(kv.get("y")).toBeUndefined();
    expect(kv.lockStats()).toEqual({ lockedKeys: 0, prepared: 0, waiting: 0 });
    kv.close();
  });

  it("votes no (not retryable) when a check fails, and holds nothing", async () => {
    const kv = new KvParticipant(makeStorage(), { clock: systemClock });
    const v = await kv.prepare(prep("t1", [{ op: "add", key: "x", delta: -11, min: 0 }]));
    expect(v).toMatchObject({ yes: false, retryable: false });
    expect(v.yes ? "" : v.reason).toMatch(/below 0/);
    expect(kv.lockStats().lockedKeys).toBe(0);
    kv.close();
  });

  it("votes no on malformed ops with a readable reason", async () => {
    const kv = new KvParticipant(makeStorage(), { clock: systemClock });
    const v = await kv.prepare({
      txId: "t1",
      coordinator: "c",
      ops: new TextEncoder().encode("{"),
      startTs: 1,
    });
    expect(v).toMatchObject({ yes: false, retryable: false, reason: "ops are not valid UTF-8 JSON" });
    kv.close();
  });

  it("answers repeated messages idempotently", async () => {
    const kv = new KvParticipant(makeStorage(), { clock: systemClock });
    const ops = [{ op: "add", key: "x", delta: 1 }] as KvOp[];
    expect(await kv.prepare(prep("t1", ops))).toMatchObject({ yes: true });
    expect(await kv.prepare(prep("t1", ops))).toMatchObject({ yes: true });
    await kv.commit("t1");
    await kv.commit("t1");
    await kv.abort("t1"); // presumed-abort answer to a stale duplicate: the commit stands
    expect(kv.get("x")).toBe("11");
    expect(await kv.prepare(prep("t1", ops))).toMatchObject({ yes: true });
    expect(kv.lockStats().lockedKeys).toBe(0);
    await kv.abort("never-prepared");
    expect(await kv.prepare(prep("never-prepared", ops))).toMatchObject({ yes: false });
    expect(await kv.status("t1")).toBe("committed");
    kv.close();
  });

  it("wait-die: a younger transaction dies at once; an older one waits and then gets the lock", async () => {
    const kv = new KvParticipant(makeStorage(), { clock: systemClock, lockWaitMs: 5_000 });
    expect(await kv.prepare(prep("mid", [{ op: "add", key: "x", delta: 1 }], 5))).toMatchObject({
      yes: true,
    });
    const young = await kv.prepare(prep("young", [{ op: "add", key: "x", delta: 1 }], 9));
    expect(young).toMatchObject({ yes: false, retryable: true });
    expect(young.yes ? "" : young.reason).toMatch(/CONFLICT.*wait-die/);
    const old = kv.prepare(prep("old", [{ op: "get", key: "x" }], 1));
    expect(kv.lockStats().waiting).toBe(1);
    await kv.commit("mid");
    const v = await old;
    if (!v.yes) throw new Error(v.reason);
    expect(decodeKvReads(v.result)).toEqual({ x: "11" });
    await kv.abort("old");
    kv.close();
  });

  it("a lock wait is bounded: it ends in a retryable no, never a hang", async () => {
    const kv = new KvParticipant(makeStorage(), { clock: systemClock, lockWaitMs: 20 });
    await kv.prepare(prep("young", [{ op: "put", key: "x", value: "1" }], 9));
    const v = await kv.prepare(prep("old", [{ op: "put", key: "x", value: "2" }], 1));
    expect(v).toMatchObject({ yes: false, retryable: true });
    expect(v.yes ? "" : v.reason).toMatch(/waited 20ms/);
    kv.close();
  });
});

describe("SqliteKvStorage restart", () => {
  it("a restarted participant reloads its prepared transactions and their locks", async () => {
    const path = join(dir, "kv.db");
    const storage = (): KvStorage => new SqliteKvStorage(path, [["x", "10"]]);
    let kv = new KvParticipant(storage(), { clock: systemClock, lockWaitMs: 10 });
    const v = await kv.prepare(
      prep(
        "t1",
        [
          { op: "get", key: "x" },
          { op: "add", key: "x", delta: -3 },
        ],
        5,
      ),
    );
    expect(v.yes).toBe(true);
    expect(await kv.prepare(prep("t0", [{ op: "add", key: "z", delta: 1 }]))).toMatchObject({ yes: true });
    await kv.commit("t0");
    kv.close(); // a crash after the prepare record was fsynced

    kv = new KvParticipant(storage(), { clock: systemClock, lockWaitMs: 10 });
    expect(await kv.inDoubt()).toEqual([
      { txId: "t1", coordinator: "c1", result: v.yes ? v.result : undefined },
    ]);
    expect(await kv.status("t1")).toBe("prepared");
    expect(await kv.status("t0")).toBe("committed");
    expect(kv.get("z")).toBe("1");
    // The lock survived: a younger transaction dies on it.
    expect(await kv.prepare(prep("t2", [{ op: "put", key: "x", value: "0" }], 9))).toMatchObject({
      yes: false,
      retryable: true,
    });
    await kv.commit("t1");
    expect(kv.get("x")).toBe("7");
    kv.close();
    kv = new KvParticipant(storage(), { clock: systemClock });
    expect(kv.get("x")).toBe("7");
    expect(await kv.inDoubt()).toEqual([]);
    kv.close();
  });
});
