import { execFile, spawn } from "node:child_process";
import { promisify } from "node:util";
import { status } from "@grpc/grpc-js";
import {
  Compare,
  Compare_CompareResult,
  Compare_CompareTarget,
  EtcdError,
  PutRequest,
  RangeRequest,
  type ShardTxnAccess,
  type TxnPart,
  TxnRequest,
  type TxnVote,
  TxnVote_Outcome,
} from "@quorum/kv";
import { type ShardedSingleNodeKv, startShardedSingleNodeKv } from "@quorum/kv/testing";
import { EtcdError as ClientError, Etcd3 } from "etcd3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ShardTxnEngine } from "../src/index.js";

// Txns over several shards of one node (three shards, each a SingleNodeLog + SQLite store,
// behind one etcd endpoint), through real clients: etcdctl and the etcd3 npm client. With the
// default split of 3 shards, keys starting with a digit are in shard 0, upper case in shard 1,
// lower case in shard 2.

const run = promisify(execFile);
let kv: ShardedSingleNodeKv;
let engine: ShardTxnEngine;
let access: ShardTxnAccess;
let client: Etcd3;

const putOp = (key: string, value: string) => ({
  requestPut: PutRequest.fromPartial({ key: Buffer.from(key), value: Buffer.from(value) }),
});

async function etcdctl(args: string[], stdin?: string): Promise<string> {
  const child = run("etcdctl", [`--endpoints=${kv.endpoint}`, "--command-timeout=5s", ...args], {
    env: { ...process.env, ETCDCTL_API: "3" },
  });
  if (stdin !== undefined) child.child.stdin!.end(stdin);
  return (await child).stdout;
}

beforeAll(async () => {
  kv = await startShardedSingleNodeKv(3, {
    crossShardTxn: (a) => {
      access = a;
      // Recovery runs only when a test asks (recoverNow), with no staleness wait.
      engine = new ShardTxnEngine(a, { staleAfterMs: 0, recoveryIntervalMs: 3_600_000 });
      return engine;
    },
  });
  client = new Etcd3({ hosts: kv.endpoint });
});

afterAll(async () => {
  client?.close();
  await kv?.stop();
});

describe("a Txn over several shards", () => {
  it("runs through etcdctl: both branches, one revision for every write", async () => {
    await etcdctl(["put", "0alice", "100"]);
    await etcdctl(["put", "Mbob", "50"]);
    const out = await etcdctl(
      ["txn"],
      'value("0alice") = "100"\nvalue("Mbob") = "50"\n\nput 0alice 90\nput Mbob 60\nput zcarol 1\n\nput 0alice broken\n\n',
    );
    expect(out.split("\n").slice(0, 4)).toEqual(["SUCCESS", "", "OK", ""]);
    const json = JSON.parse(await etcdctl(["get", "", "--prefix", "-w", "json"])) as {
      kvs: { key: string; value: string; mod_revision: number }[];
    };
    const got = json.kvs.map((k) => [
      Buffer.from(k.key, "base64").toString(),
      Buffer.from(k.value, "base64").toString(),
    ]);
    expect(got).toEqual([
      ["0alice", "90"],
      ["Mbob", "60"],
      ["zcarol", "1"],
    ]);
    expect(new Set(json.kvs.map((k) => k.mod_revision)).size).toBe(1);

    // The compare now fails in shard 1 only: the failure branch runs (and reads both shards).
    const failed = await etcdctl(
      ["txn", "-w", "json"],
      'value("Mbob") = "50"\n\nput 0alice 0\n\nget 0alice\nget Mbob\n\n',
    );
    const r = JSON.parse(failed) as {
      succeeded?: boolean;
      responses: { Response: { ResponseRange: { kvs: { value: string }[] } } }[];
    };
    expect(r.succeeded).toBeFalsy();
    expect(
      r.responses.map((x) => Buffer.from(x.Response.ResponseRange.kvs[0]!.value, "base64").toString()),
    ).toEqual(["90", "60"]);
    expect((await etcdctl(["get", "0alice", "--print-value-only"])).trim()).toBe("90");
  });

  it("runs through the etcd3 client, with reads of the transaction's own writes at its revision", async () => {
    const result = await client
      .if("0alice", "Value", "==", "90")
      .then(client.put("0alice").value("80"), client.put("zdave").value("7"), client.get("zdave"))
      .commit();
    expect(result.succeeded).toBe(true);
    const read = result.responses[2]!.response_range!;
    expect(read.kvs[0]!.value.toString()).toBe("7");
    expect(read.kvs[0]!.mod_revision).toBe(result.header.revision);
    expect(read.kvs[0]!.create_revision).toBe(result.header.revision);
    expect(await client.get("0alice").string()).toBe("80");
  });

  it("is one event group at one revision for a watcher over every shard", async () => {
    // The watch starts at the next revision, so it sees the transaction whether it is
    // established before it (live events) or after (replay from history).
    const next = Number((await client.get("0w").exec()).header.revision) + 1;
    const watch = spawn("etcdctl", [`--endpoints=${kv.endpoint}`, "watch", `--rev=${next}`, "0", "~"], {
      env: { ...process.env, ETCDCTL_API: "3" },
    });
    try {
      let out = "";
      watch.stdout.on("data", (d: Buffer) => {
        out += d.toString();
      });
      await client
        .if("0w", "Version", "==", 0)
        .then(client.put("0w").value("a"), client.put("Kw").value("b"), client.put("zw").value("c"))
        .commit();
      const deadline = Date.now() + 10_000;
      while (out.split("\n").length < 10 && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
      expect(out).toBe("PUT\n0w\na\nPUT\nKw\nb\nPUT\nzw\nc\n");
    } finally {
      watch.kill("SIGKILL");
    }
  });

  it("evaluates a range compare over several shards on all their keys", async () => {
    // (Neither etcdctl nor etcd3 can send a range compare; the engine takes etcd's TxnRequest.)
    const versionCompare = (key: string, rangeEnd: string, result: Compare_CompareResult, version: bigint) =>
      Compare.fromPartial({
        key: Buffer.from(key),
        rangeEnd: Buffer.from(rangeEnd),
        target: Compare_CompareTarget.VERSION,
        result,
        version,
      });
    const txn = (compare: Compare) =>
      engine.txn(
        TxnRequest.fromPartial({
          compare: [compare],
          success: [
            { requestRange: RangeRequest.fromPartial({ key: Buffer.from("0"), rangeEnd: Buffer.from("~") }) },
          ],
        }),
        [0, 1, 2],
      );
    // Every key in [0, ~), in every shard, has a version > 0.
    expect((await txn(versionCompare("0", "~", Compare_CompareResult.GREATER, 0n))).succeeded).toBe(true);
    // A key in shard 2 has version 1: "every key has version > 1" fails there only.
    await client.put("zone").value("1");
    expect((await txn(versionCompare("0", "~", Compare_CompareResult.GREATER, 1n))).succeeded).toBe(false);
    // No key in [5, A) (shards 0 and 1): the compare runs on no keys, as etcd's does (version 0).
    expect((await txn(versionCompare("5", "A", Compare_CompareResult.EQUAL, 0n))).succeeded).toBe(true);
  });

  it("refuses a nested Txn over several shards with a clear error", async () => {
    const put = (key: string) => ({
      requestPut: {
        key: Buffer.from(key),
        value: Buffer.from("1"),
        lease: 0n,
        prevKv: false,
        ignoreValue: false,
        ignoreLease: false,
      },
    });
    const nested = { compare: [], success: [put("0x")], failure: [] };
    await expect(
      engine.txn({ compare: [], success: [{ requestTxn: nested }, put("zx")], failure: [] }, [0, 2]),
    ).rejects.toThrow("a nested Txn inside a Txn over several shards is not supported");
  });

  it("keeps the total of concurrent transfers between shards, at every read and at the end", async () => {
    const accounts = ["0a", "1b", "Kc", "Ld", "pe", "qf"];
    for (const a of accounts) await client.put(a).value("100");
    let reads = 0;
    const readTotal = async () => {
      // One read-only Txn over every account: one consistent cut across the shards.
      const res = await client
        .if(accounts[0]!, "Version", ">", 0)
        .then(...accounts.map((a) => client.get(a)))
        .commit();
      reads++;
      return res.responses.reduce((sum, r) => sum + Number(r.response_range!.kvs[0]!.value.toString()), 0);
    };
    let conflicts = 0;
    const transfer = async (from: string, to: string, amount: number) => {
      for (;;) {
        const [f, t] = await Promise.all([client.get(from).exec(), client.get(to).exec()]);
        const fk = f.kvs[0]!;
        const tk = t.kvs[0]!;
        try {
          const r = await client
            .if(from, "Mod", "==", Number(fk.mod_revision))
            .and(to, "Mod", "==", Number(tk.mod_revision))
            .then(
              client.put(from).value(String(Number(fk.value.toString()) - amount)),
              client.put(to).value(String(Number(tk.value.toString()) + amount)),
            )
            .commit();
          if (r.succeeded) return;
        } catch (err) {
          // A lock conflict the engine gave up on: retryable, and it changed nothing.
          if (!(err instanceof ClientError)) throw err;
          conflicts++;
        }
      }
    };
    const workers = Array.from({ length: 6 }, async (_, w) => {
      for (let i = 0; i < 8; i++) {
        const from = accounts[(w + i) % accounts.length]!;
        const to = accounts[(w + 2 * i + 1) % accounts.length]!;
        if (from !== to) await transfer(from, to, 1 + ((w + i) % 5));
        if (i % 3 === 0) expect(await readTotal()).toBe(600);
      }
    });
    await Promise.all(workers);
    expect(await readTotal()).toBe(600);
    expect(reads).toBeGreaterThan(6);
    // Also a multi-shard Range: the router's consistent cut waits for pending transactions.
    const cut = await client.getAll().prefix("").strings();
    expect(accounts.reduce((sum, a) => sum + Number(cut[a]), 0)).toBe(600);
    console.log(`concurrent transfers: ${conflicts} gave up on conflicts and were retried by the client`);
    for (let s = 0; s < 3; s++) expect(access.prepared(s)).toEqual([]);
  });
  it("deletes a range over several shards atomically, at one revision, as etcd does", async () => {
    // Shard 0 (digits), 1 (upper case) and 2 ('_'): keys of earlier tests in the range go too.
    for (const k of ["9del", "Qdel", "_del"]) await client.put(k).value("x");
    const before = await client.getAll().inRange({ start: "9del", end: "_dem" }).keys();
    expect(before).toEqual(expect.arrayContaining(["9del", "Qdel", "_del"]));
    const out = await etcdctl(["del", "9del", "_dem", "--prev-kv", "-w", "json"]);
    const r = JSON.parse(out) as {
      header: { revision: number };
      deleted: number;
      prev_kvs: { key: string }[];
    };
    expect(r.deleted).toBe(before.length);
    expect(r.prev_kvs.map((kv) => Buffer.from(kv.key, "base64").toString())).toEqual(before);
    // Every key was there just below the delete's revision, and none is at it.
    expect(
      await client
        .getAll()
        .inRange({ start: "9del", end: "_dem" })
        .revision(r.header.revision - 1)
        .keys(),
    ).toEqual(before);
    expect(
      await client.getAll().inRange({ start: "9del", end: "_dem" }).revision(r.header.revision).keys(),
    ).toEqual([]);
    // All or nothing: while another transaction holds a lock on one shard's key, no shard deletes.
    for (const k of ["9del", "Qdel", "_del"]) await client.put(k).value("y");
    const holder = Buffer.from("holds-Qdel");
    const lock = await access.prepare(1, {
      txId: holder,
      anchor: 1,
      startTs: 1n,
      shards: [1],
      txn: TxnRequest.fromPartial({
        success: [{ requestPut: PutRequest.fromPartial({ key: Buffer.from("Qdel") }) }],
      }),
      attemptMs: 0n,
      request: undefined,
      minRevision: 0n,
    });
    expect(lock.outcome).toBe(TxnVote_Outcome.PREPARED);
    const deleting = etcdctl(["del", "9del", "_dem"]);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await etcdctl(["get", "9del", "--consistency=s", "--print-value-only"])).toBe("y\n");
    expect(await etcdctl(["get", "_del", "--consistency=s", "--print-value-only"])).toBe("y\n");
    await access.decide(1, { txId: holder, commit: false, revision: 0n, succeeded: false });
    expect(await deleting).toBe("3\n");
    // A delete that finds nothing leaves the revision where it was.
    const current = (await client.get("9del").exec()).header.revision;
    const empty = JSON.parse(await etcdctl(["del", "9del", "_dem", "-w", "json"])) as {
      header: { revision: number };
      deleted?: number;
    };
    expect([empty.deleted ?? 0, String(empty.header.revision)]).toEqual([0, current]);
  });
});

describe("a coordinator whose prepare did not come back PREPARED", () => {
  /** A lock held by an older transaction (start 0), as a shard would vote it. */
  const conflict: TxnVote = {
    outcome: TxnVote_Outcome.CONFLICT,
    compares: [],
    success: undefined,
    failure: undefined,
    provisionalRevision: 0n,
    holderTxId: Buffer.alloc(16),
    holderStartTs: 0n,
  };
  /** An engine over `access` whose first prepare in shard 2 applies but answers `reply` instead. */
  const faultyEngine = (reply: () => Promise<TxnVote>) => {
    const calls = { prepares: 0, fences: [] as number[] };
    let faulty = true;
    const e = new ShardTxnEngine(
      {
        ...access,
        prepare: async (shard, part) => {
          calls.prepares++;
          const vote = await access.prepare(shard, part);
          if (shard !== 2 || !faulty) return vote;
          faulty = false;
          return reply();
        },
        fence: (shard, txId) => {
          calls.fences.push(shard);
          return access.fence(shard, txId);
        },
      },
      { recoveryIntervalMs: 3_600_000 },
    );
    return { e, calls };
  };
  const check = async (name: string, revision: bigint) => {
    const [a, z] = await Promise.all([client.get(`0${name}`).exec(), client.get(`z${name}`).exec()]);
    expect([a.kvs[0]?.value.toString(), z.kvs[0]?.value.toString()]).toEqual(["1", "1"]);
    expect([a.kvs[0]!.mod_revision, z.kvs[0]!.mod_revision]).toEqual([String(revision), String(revision)]);
  };

  it("a lost reply: fences that shard, finds every part prepared, and commits once, without a retry", async () => {
    const { e, calls } = faultyEngine(() => Promise.reject(new EtcdError(status.UNAVAILABLE, "reply lost")));
    const r = await e.txn(
      TxnRequest.fromPartial({ success: [putOp("0lost", "1"), putOp("zlost", "1")] }),
      [0, 2],
    );
    e.close();
    expect(r.succeeded).toBe(true);
    expect(calls).toEqual({ prepares: 2, fences: [2] });
    await check("lost", r.header!.revision);
  });

  it("a CONFLICT from a part that was prepared after all (a duplicate applied first): commits once", async () => {
    const { e, calls } = faultyEngine(async () => conflict);
    const r = await e.txn(
      TxnRequest.fromPartial({ success: [putOp("0dup", "1"), putOp("zdup", "1")] }),
      [0, 2],
    );
    e.close();
    expect(calls).toEqual({ prepares: 2, fences: [2] });
    await check("dup", r.header!.revision);
  });

  it("a real CONFLICT: the fence records an abort there, so the part delivered late is refused; the retry commits", async () => {
    const late: TxnPart[] = [];
    const e = new ShardTxnEngine(
      {
        ...access,
        prepare: async (shard, part) => {
          if (shard !== 2 || late.length > 0) return access.prepare(shard, part);
          late.push(part); // not applied now: it arrives below, as a duplicate delayed in the network
          return conflict;
        },
      },
      { recoveryIntervalMs: 3_600_000 },
    );
    const r = await e.txn(
      TxnRequest.fromPartial({ success: [putOp("0real", "1"), putOp("zreal", "1")] }),
      [0, 2],
    );
    e.close();
    expect((await access.prepare(2, late[0]!)).outcome).toBe(TxnVote_Outcome.ABORTED);
    await check("real", r.header!.revision);
    await expect.poll(() => access.prepared(0)).toEqual([]);
  });
});

describe("forgetting the records of finished transactions", () => {
  it("deletes them in every shard once decided everywhere; a late duplicate prepare is refused", async () => {
    const parts: TxnPart[] = [];
    const e = new ShardTxnEngine(
      {
        ...access,
        prepare: (shard, part) => {
          parts.push(part);
          return access.prepare(shard, part);
        },
      },
      // Forgets go out when the test asks (forgetNow), with no wait after the decisions.
      { recoveryIntervalMs: 3_600_000, forgetAfterMs: 0, forgetIntervalMs: 3_600_000 },
    );
    try {
      for (let i = 0; i < 5; i++) {
        const r = await e.txn(
          TxnRequest.fromPartial({ success: [putOp(`0f${i}`, "1"), putOp(`zf${i}`, "1")] }),
          [0, 2],
        );
        expect(r.succeeded).toBe(true);
      }
      const ids = [...new Set(parts.map((p) => p.txId.toString("hex")))].map((h) => Buffer.from(h, "hex"));
      expect(ids).toHaveLength(5);
      const recorded = () =>
        [0, 2].map((s) => ids.filter((id) => kv.shards[s]!.store.txnRecord(id) !== undefined).length);
      // The decisions are sent in the background: once both shards applied them, the engine
      // has all five to forget.
      await expect.poll(recorded).toEqual([5, 5]);
      await expect.poll(() => e.forgetNow()).toBe(5);
      expect(recorded()).toEqual([0, 0]);
      // A prepare delivered late (a duplicate from the network) finds no record, and is refused.
      const late = parts.find((p) => p.shards.indexOf(2) >= 0 && p.anchor === 0 && p.request === undefined)!;
      expect((await access.prepare(2, late)).outcome).toBe(TxnVote_Outcome.ABORTED);
      expect(access.prepared(2)).toEqual([]);
      // New transactions (above the forgotten ones' revisions) go on.
      const after = await e.txn(
        TxnRequest.fromPartial({ success: [putOp("0f9", "1"), putOp("zf9", "1")] }),
        [0, 2],
      );
      expect(after.succeeded).toBe(true);
    } finally {
      e.close();
    }
  });
});

describe("recovery of a transaction whose coordinator vanished", () => {
  /**
   * Shard `shard`'s part of a Txn that puts `value` at "0<name>" (shard 0, the anchor) and
   * "z<name>" (shard 2), as the engine would prepare it: the anchor's carries the whole request.
   */
  const part = (txId: string, name: string, value: string, shard: 0 | 2, withRequest = true) => ({
    txId: Buffer.from(txId),
    anchor: 0,
    startTs: 1n,
    shards: [0, 2],
    attemptMs: BigInt(Date.now()),
    txn: { compare: [], success: [putOp(`${shard === 0 ? "0" : "z"}${name}`, value)], failure: [] },
    request:
      shard === 0 && withRequest
        ? { compare: [], success: [putOp(`0${name}`, value), putOp(`z${name}`, value)], failure: [] }
        : undefined,
    minRevision: BigInt(access.maxKnown()),
  });

  it("commits a transaction prepared in every shard (parallel commits); blocked writers then go through", async () => {
    await client.put("0lock").value("before");
    await access.prepare(0, part("vanished-1", "lock", "tx", 0));
    await access.prepare(2, part("vanished-1", "lock", "tx", 2));
    // A plain put on a locked key waits for the transaction to be decided.
    let done = false;
    const put = client
      .put("0lock")
      .value("after")
      .then(() => {
        done = true;
      });
    await new Promise((r) => setTimeout(r, 100));
    expect(done).toBe(false);
    expect(await engine.recoverNow()).toBe(2);
    await put;
    const [a, z] = await Promise.all([client.get("0lock").exec(), client.get("zlock").exec()]);
    expect([a.kvs[0]!.value.toString(), z.kvs[0]!.value.toString()]).toEqual(["after", "tx"]);
    // The transaction's writes share one revision in both shards, below the blocked put's.
    expect(await client.get("0lock").revision(z.kvs[0]!.mod_revision).string()).toBe("tx");
    expect(Number(a.kvs[0]!.mod_revision)).toBeGreaterThan(Number(z.kvs[0]!.mod_revision));
  });

  it("aborts a transaction prepared in only some shards: the missing part can no longer prepare", async () => {
    await access.prepare(0, part("vanished-2", "half", "no", 0));
    expect(await engine.recoverNow()).toBe(1);
    const late = await access.prepare(2, part("vanished-2", "half", "no", 2));
    expect(late.outcome).toBe(TxnVote_Outcome.ABORTED);
    expect(await client.get("0half").string()).toBeNull();
    expect(await client.get("zhalf").string()).toBeNull();
    expect(access.prepared(0)).toEqual([]);
  });

  it("aborts a part prepared without the client's request (before parallel commits, only the anchor's decision committed)", async () => {
    await access.prepare(0, part("vanished-3", "old", "no", 0, false));
    await access.prepare(2, part("vanished-3", "old", "no", 2));
    expect(await engine.recoverNow()).toBe(2);
    expect(await client.get("0old").string()).toBeNull();
    expect(await client.get("zold").string()).toBeNull();
  });

  it("commits the other shards of a transaction whose commit reached one shard", async () => {
    await access.prepare(0, part("vanished-4", "gone", "yes", 0));
    await access.prepare(2, part("vanished-4", "gone", "yes", 2));
    const revision = BigInt(access.maxKnown() + 1);
    await access.decide(0, { txId: Buffer.from("vanished-4"), commit: true, revision, succeeded: true });
    expect(access.prepared(2)).toHaveLength(1);
    expect(await engine.recoverNow()).toBe(1);
    const [a, z] = await Promise.all([client.get("0gone").exec(), client.get("zgone").exec()]);
    expect([a.kvs[0]!.value.toString(), z.kvs[0]!.value.toString()]).toEqual(["yes", "yes"]);
    expect(z.kvs[0]!.mod_revision).toBe(a.kvs[0]!.mod_revision);
  });

  it("does not let a late commit overturn an abort recorded by recovery", async () => {
    await access.prepare(0, part("vanished-5", "late", "no", 0));
    expect(await engine.recoverNow()).toBe(1);
    const answer = await access.decide(0, {
      txId: Buffer.from("vanished-5"),
      commit: true,
      revision: BigInt(access.maxKnown() + 1),
      succeeded: true,
    });
    expect(answer.commit).toBe(false);
    expect(await client.get("0late").string()).toBeNull();
  });
});
