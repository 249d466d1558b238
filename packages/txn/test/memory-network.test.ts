import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MemoryNetwork, systemClock } from "@quorum/transport";
import {
  CoordinatorNode,
  decodeKvReads,
  encodeKvOps,
  KvParticipant,
  MemoryDecisionLog,
  ParticipantNode,
  SqliteDecisionLog,
  SqliteKvStorage,
  TxnError,
} from "@quorum/txn";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

let dir: string;
const cleanups: (() => Promise<void> | void)[] = [];
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "quorum-txn-e2e-"));
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  rmSync(dir, { recursive: true, force: true });
});

async function waitFor(what: string, predicate: () => boolean | Promise<boolean>, ms = 5_000): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await predicate()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`timed out waiting for: ${what}`);
}

const fast = { voteTimeoutMs: 1_000, retryIntervalMs: 20 };

async function startParticipant(net: MemoryNetwork, id: string, initial: [string, string][]) {
  const transport = net.join(id);
  const kv = new KvParticipant(new SqliteKvStorage(join(dir, `${id}.db`), initial), { clock: systemClock });
  const node = await ParticipantNode.start({
    transport,
    clock: systemClock,
    participant: kv,
    config: { outcomeQueryIntervalMs: 30 },
  });
  const stop = async () => {
    await node.close();
    kv.close();
    await transport.close();
  };
  cleanups.push(stop);
  return { kv, node, stop };
}

async function startCoordinator(net: MemoryNetwork) {
  const transport = net.join("c1");
  const log = new SqliteDecisionLog(join(dir, "c1.db"));
  const node = await CoordinatorNode.start({ transport, clock: systemClock, log, config: fast });
  const stop = async () => {
    await node.close();
    await log.close();
    await transport.close();
  };
  cleanups.push(stop);
  return { node, log, stop };
}

describe("two-phase commit over a MemoryNetwork with SQLite files", () => {
  it("commits a transfer across two participants and reads a consistent total", async () => {
    const net = new MemoryNetwork();
    const p1 = await startParticipant(net, "p1", [["alice", "100"]]);
    const p2 = await startParticipant(net, "p2", [["bob", "50"]]);
    const c = await startCoordinator(net);
    const r = await c.node.transact([
      { participant: "p1", ops: encodeKvOps([{ op: "add", key: "alice", delta: -30, min: 0 }]) },
      { participant: "p2", ops: encodeKvOps([{ op: "add", key: "bob", delta: 30 }]) },
    ]);
    expect(r.status).toBe("committed");
    await waitFor("both applied", () => p1.kv.get("alice") === "70" && p2.kv.get("bob") === "80");

    const overdraft = await c.node.transact([
      { participant: "p1", ops: encodeKvOps([{ op: "add", key: "alice", delta: -1000, min: 0 }]) },
      { participant: "p2", ops: encodeKvOps([{ op: "add", key: "bob", delta: 1000 }]) },
    ]);
    expect(overdraft).toMatchObject({ status: "aborted", retryable: false });
    await waitFor("locks released", () => p2.kv.lockStats().lockedKeys === 0);
    expect(p2.kv.get("bob")).toBe("80");

    const read = await c.node.transact([
      { participant: "p1", ops: encodeKvOps([{ op: "get", key: "alice" }]) },
      { participant: "p2", ops: encodeKvOps([{ op: "get", key: "bob" }]) },
    ]);
    if (read.status !== "committed") throw new Error(read.reason);
    const values = [...read.results.values()].flatMap((b) => Object.values(decodeKvReads(b)));
    expect(values.map(Number).reduce((a, b) => a + b)).toBe(150);
  });

  it("rejects a bad transaction with a clear error instead of running it", async () => {
    const net = new MemoryNetwork();
    const c = await startCoordinator(net);
    await expect(c.node.transact([])).rejects.toThrow(TxnError);
    await expect(c.node.transact([])).rejects.toThrow(/at least one participant/);
  });

  it("a participant that does not answer makes the coordinator abort on timeout", async () => {
    const net = new MemoryNetwork();
    const p1 = await startParticipant(net, "p1", [["a", "1"]]);
    net.join("silent"); // a member that never subscribes
    const c = await startCoordinator(net);
    const r = await c.node.transact([
      { participant: "p1", ops: encodeKvOps([{ op: "put", key: "a", value: "2" }]) },
      { participant: "silent", ops: encodeKvOps([{ op: "put", key: "b", value: "2" }]) },
    ]);
    expect(r).toMatchObject({ status: "aborted", retryable: true });
    expect(r.status === "aborted" ? r.reason : "").toMatch(/no vote from silent/);
    await waitFor("p1 released its lock", () => p1.kv.lockStats().lockedKeys === 0);
    expect(p1.kv.get("a")).toBe("1");
  });

  it("a restarted coordinator finishes the transaction it had decided", async () => {
    const net = new MemoryNetwork();
    const p1 = await startParticipant(net, "p1", [["a", "1"]]);
    const p2 = await startParticipant(net, "p2", [["b", "1"]]);
    // The previous incarnation got both yes votes and fsynced commit, then died.
    for (const [p, key] of [
      [p1, "a"],
      [p2, "b"],
    ] as const) {
      const v = await p.kv.prepare({
        txId: "t-old",
        coordinator: "c1",
        ops: encodeKvOps([{ op: "put", key, value: "done" }]),
        startTs: 1,
      });
      expect(v.yes).toBe(true);
    }
    const log = new SqliteDecisionLog(join(dir, "c1.db"));
    await log.decide({ txId: "t-old", decision: "commit", participants: ["p1", "p2"] });
    await log.close();

    const c = await startCoordinator(net);
    await waitFor("both committed", () => p1.kv.get("a") === "done" && p2.kv.get("b") === "done");
    await waitFor("record forgotten after the acks", async () => (await c.log.load()).length === 0);
  });

  it("a restarted participant holds its locks until the coordinator answers; undecided means abort", async () => {
    const net = new MemoryNetwork();
    const c = await startCoordinator(net);
    let p1 = await startParticipant(net, "p1", [["a", "1"]]);
    // Prepared under a coordinator incarnation that died before deciding: no record.
    const v = await p1.kv.prepare({
      txId: "t-undecided",
      coordinator: "c1",
      ops: encodeKvOps([{ op: "put", key: "a", value: "2" }]),
      startTs: 1,
    });
    expect(v.yes).toBe(true);
    await p1.stop();
    cleanups.pop();

    p1 = await startParticipant(net, "p1", []);
    // It asked c1 at start; presumed abort answers, and the lock goes.
    await waitFor("aborted", async () => (await p1.kv.status("t-undecided")) === "aborted");
    expect(p1.kv.lockStats().lockedKeys).toBe(0);
    expect(p1.kv.get("a")).toBe("1");
    expect(c.node.core.active()).toEqual([]);
  });
});

describe("a coordinator that stops mid-decision", () => {
  it("never reports a transaction aborted once its decision record is being written", async () => {
    const net = new MemoryNetwork();
    await startParticipant(net, "p1", [["alice", "100"]]);
    await startParticipant(net, "p2", [["bob", "50"]]);
    // A decision log whose writes never finish: the record may or may not reach the disk.
    const inner = new MemoryDecisionLog();
    let writes = 0;
    const stuck = Object.assign(Object.create(inner) as MemoryDecisionLog, {
      decide: () => {
        writes++;
        return new Promise<never>(() => {});
      },
    });
    const transport = net.join("c1");
    const node = await CoordinatorNode.start({ transport, clock: systemClock, log: stuck, config: fast });
    cleanups.push(() => transport.close());
    const outcome = node.transact([
      { participant: "p1", ops: encodeKvOps([{ op: "add", key: "alice", delta: -30, min: 0 }]) },
      { participant: "p2", ops: encodeKvOps([{ op: "add", key: "bob", delta: 30 }]) },
    ]);
    await waitFor("the commit decision to be handed to the log", () => writes === 1);
    await node.close();
    const err = await outcome.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TxnError);
    expect((err as TxnError).code).toBe("OUTCOME_UNKNOWN");
    expect((err as TxnError).retryable).toBe(false);
  });
});
