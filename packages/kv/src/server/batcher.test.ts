import { ConsensusError, type Proposed, type ProposeOptions } from "@quorum/consensus";
import { SingleNodeLog } from "@quorum/consensus/testing";
import { describe, expect, it } from "vitest";
import { ProposalBatcher, ReadBarrier } from "./batcher.js";

/** A log whose entries settle one by one; "fail" entries time out, the others commit. */
function fakeLog() {
  const turns: string[][] = [];
  let turn: string[] | undefined;
  let index = 0;
  const log = {
    propose(command: Uint8Array, _options?: ProposeOptions): Promise<Proposed<string>> {
      const text = Buffer.from(command).toString();
      if (!turn) {
        turn = [];
        turns.push(turn);
        queueMicrotask(() => {
          turn = undefined;
        });
      }
      turn.push(text);
      const at = ++index;
      return text.startsWith("fail")
        ? Promise.reject(new ConsensusError("TIMEOUT", `entry ${at} timed out`))
        : Promise.resolve({ index: at, result: `applied ${text}` });
    },
    // Promise.all semantics, as Raft's and Paxos's: the batcher must not rely on it.
    proposeBatch(commands: readonly Uint8Array[], options?: ProposeOptions): Promise<Proposed<string>[]> {
      return Promise.all(commands.map((c) => log.propose(c, options)));
    },
  };
  return { log, turns };
}

describe("ProposalBatcher", () => {
  it("proposes one turn's requests together but settles each by its own entry", async () => {
    const { log, turns } = fakeLog();
    const sizes: number[] = [];
    // biome-ignore lint/suspicious/noExplicitAny: only propose/proposeBatch are used
    const batcher = new ProposalBatcher<string>(log as any, { onBatch: (n) => sizes.push(n) });
    const outcomes = await Promise.allSettled(
      ["a", "fail-b", "c"].map((c) => batcher.submit(Buffer.from(c))),
    );
    expect(sizes).toEqual([3]);
    expect(turns).toEqual([["a", "fail-b", "c"]]); // one append for the whole batch, in order
    expect(outcomes.map((o) => (o.status === "fulfilled" ? o.value : String(o.reason.code)))).toEqual([
      "applied a",
      "TIMEOUT",
      "applied c",
    ]);
  });

  it("rejects only the entry whose propose throws synchronously", async () => {
    const { log } = fakeLog();
    let calls = 0;
    const throwing = {
      ...log,
      propose(command: Uint8Array, options?: ProposeOptions) {
        if (++calls === 1) throw new ConsensusError("NOT_LEADER", "not the leader");
        return log.propose(command, options);
      },
    };
    // biome-ignore lint/suspicious/noExplicitAny: see above
    const batcher = new ProposalBatcher<string>(throwing as any);
    const outcomes = await Promise.allSettled(["x", "y"].map((c) => batcher.submit(Buffer.from(c))));
    expect(outcomes.map((o) => o.status)).toEqual(["rejected", "fulfilled"]);
  });

  it("hands a log with an all-or-nothing proposeBatch the whole batch in one call", async () => {
    const { log } = fakeLog();
    const calls: number[] = [];
    const atomic = {
      ...log,
      proposeBatch(commands: readonly Uint8Array[], options?: ProposeOptions) {
        calls.push(commands.length);
        return log.proposeBatch(commands, options);
      },
    };
    // biome-ignore lint/suspicious/noExplicitAny: see above
    const batcher = new ProposalBatcher<string>(atomic as any, { atomicProposeBatch: true });
    expect(await Promise.all(["a", "b"].map((c) => batcher.submit(Buffer.from(c))))).toEqual([
      "applied a",
      "applied b",
    ]);
    expect(calls).toEqual([2]);
  });

  it("works on SingleNodeLog, one result per request in order", async () => {
    let applied = 0;
    const machine = {
      appliedIndex: () => applied,
      apply: (entries: readonly { index: number; command: Uint8Array }[]) =>
        entries.map((e) => {
          applied = e.index;
          return Buffer.from(e.command).toString().toUpperCase();
        }),
      snapshot: () => Promise.reject(new Error("unused")),
      restore: () => Promise.reject(new Error("unused")),
    };
    // biome-ignore lint/suspicious/noExplicitAny: a minimal state machine
    const log = new SingleNodeLog<string>("n1", machine as any);
    await log.start();
    const batcher = new ProposalBatcher<string>(log);
    expect(await Promise.all(["p", "q", "r"].map((c) => batcher.submit(Buffer.from(c))))).toEqual([
      "P",
      "Q",
      "R",
    ]);
    expect(applied).toBe(3);
  });
});

describe("ProposalBatcher with merge", () => {
  const merge = {
    encode: (commands: readonly Uint8Array[]) =>
      Buffer.from(commands.map((c) => Buffer.from(c).toString()).join("|")),
    split: (result: string, count: number) => {
      const parts = result.replace(/^applied /, "").split("|");
      if (parts.length !== count) throw new Error(`${count} commands, ${parts.length} results`);
      return parts.map((p) => `applied ${p}`);
    },
    maxBytes: 5,
  };

  it("carries one turn's requests in entries of at most maxBytes (one request alone may exceed it)", async () => {
    const { log, turns } = fakeLog();
    // biome-ignore lint/suspicious/noExplicitAny: only propose is used
    const batcher = new ProposalBatcher<string>(log as any, { merge });
    const results = await Promise.all(
      ["a", "b", "c", "dddddd", "e"].map((c) => batcher.submit(Buffer.from(c))),
    );
    expect(turns).toEqual([["a|b|c", "dddddd", "e"]]); // 5 bytes: a, b, c (1 byte each) fit; "dddddd" alone
    expect(results).toEqual(["applied a", "applied b", "applied c", "applied dddddd", "applied e"]);
  });

  it("fails every request of an entry that fails, and of one whose result does not split", async () => {
    const { log } = fakeLog();
    // biome-ignore lint/suspicious/noExplicitAny: only propose is used
    const batcher = new ProposalBatcher<string>(log as any, { merge: { ...merge, maxBytes: 100 } });
    const failed = await Promise.allSettled(["fail", "x"].map((c) => batcher.submit(Buffer.from(c))));
    expect(failed.map((o) => (o.status === "rejected" ? String(o.reason.code) : o.value))).toEqual([
      "TIMEOUT",
      "TIMEOUT",
    ]);
    const wrong = new ProposalBatcher<string>(
      // biome-ignore lint/suspicious/noExplicitAny: only propose is used
      log as any,
      { merge: { ...merge, maxBytes: 100, split: () => [] as string[] } },
    );
    const outcomes = await Promise.allSettled(["y", "z"].map((c) => wrong.submit(Buffer.from(c))));
    expect(outcomes.map((o) => (o.status === "rejected" ? String(o.reason.message) : o.value))).toEqual([
      "a batch of 2 commands got 0 results",
      "a batch of 2 commands got 0 results",
    ]);
  });
});

describe("ReadBarrier", () => {
  it("shares one read among the reads of one turn, and starts a new one for later reads", async () => {
    let reads = 0;
    const barrier = new ReadBarrier({
      read: async () => ({ index: ++reads }),
    });
    await Promise.all([barrier.wait(), barrier.wait(), barrier.wait()]);
    expect(reads).toBe(1);
    await barrier.wait();
    expect(reads).toBe(2);
  });
});
