import { isConsensusError } from "@quorum/consensus";
import {
  checkLinearizability,
  formatOperation,
  History,
  type KvInput,
  type KvOutput,
  type Operation,
  type Prng,
  runSeeds,
  type ScenarioContext,
  Simulation,
  seedCount,
  type Value,
} from "@quorum/sim";
import { describe, expect, it } from "vitest";
import {
  CompactionRequest,
  Compare_CompareResult,
  Compare_CompareTarget,
  PutRequest,
  RangeRequest,
  TxnRequest,
} from "../src/gen/etcdserverpb/rpc.js";
import { type SimKv, type SimKvNode, simKv } from "./helpers/sim-kv.js";

/**
 * The whole store under deterministic simulation (DESIGN.md rule 2): RaftNodes on the
 * simulated network and clock, each with a KvStore and a KvService. Clients call the
 * service's handlers (what the gRPC server calls) with reads, writes and compare-and-set
 * (a Txn) on a few keys, while the network drops, duplicates, delays and partitions messages
 * and the Nemesis crashes and restarts nodes. Every operation goes into a History; after a
 * liveness phase and final reads through every node, the history must be linearizable per
 * key, and every replica must hold the same data.
 *
 * An operation whose answer never came (timeout, crashed node) or that failed ambiguously
 * (TIMEOUT, DROPPED, SHUTTING_DOWN) has an unknown outcome. NOT_LEADER means the command
 * never entered the log, so the client retries the same operation at the hinted leader, as
 * the server's forwarding does.
 */

const KEYS = ["a", "b", "c"];
const CLIENT_DEADLINE_MS = 1_000;

interface Scenario {
  readonly ids: readonly string[];
  readonly clients: number;
  readonly safetyMs: number;
}

interface Tally {
  ok: number;
  unknown: number;
  redirects: number;
  compactions: number;
}

function sleep(ctx: ScenarioContext, ms: number): Promise<void> {
  return new Promise((resolve) => ctx.sim.clock.schedule(ms, resolve));
}

function text(v: Value): Buffer {
  return Buffer.from(String(v));
}

/** One etcd request for one history operation, through the service's handlers. */
async function perform(node: SimKvNode, key: string, input: KvInput): Promise<KvOutput> {
  const k = Buffer.from(key);
  switch (input.type) {
    case "read": {
      const res = await node.service.range(RangeRequest.fromPartial({ key: k }));
      const kv = res.kvs[0];
      return { type: "read", value: kv ? kv.value.toString() : undefined };
    }
    case "write":
      await node.service.put(PutRequest.fromPartial({ key: k, value: text(input.value) }));
      return { type: "write" };
    case "cas": {
      const compare =
        input.expected === undefined
          ? {
              key: k,
              target: Compare_CompareTarget.CREATE,
              result: Compare_CompareResult.EQUAL,
              createRevision: 0n,
            }
          : {
              key: k,
              target: Compare_CompareTarget.VALUE,
              result: Compare_CompareResult.EQUAL,
              value: text(input.expected),
            };
      const res = await node.service.txn(
        TxnRequest.fromPartial({
          compare: [compare],
          success: [{ requestPut: { key: k, value: text(input.value) } }],
        }),
      );
      return { type: "cas", ok: res.succeeded };
    }
  }
}

/** Whether the error proves the request never reached the log. */
function neverProposed(err: unknown): err is { leader?: { id: string } } {
  return isConsensusError(err, "NOT_LEADER");
}

/** Whether the error means "may or may not have happened". */
function ambiguous(err: unknown): boolean {
  return isConsensusError(err) && ["TIMEOUT", "DROPPED", "SHUTTING_DOWN"].includes(err.code);
}

class Client {
  private leaderHint: string | undefined;
  private readonly seen = new Map<string, Value | undefined>();
  private writes = 0;

  constructor(
    readonly name: string,
    private readonly ctx: ScenarioContext,
    private readonly kv: SimKv,
    private readonly history: History,
    private readonly prng: Prng,
    private readonly tally: Tally,
  ) {}

  private pickNode(): [string, SimKvNode] | undefined {
    const up = [...this.kv.cluster.runtimes().entries()];
    if (up.length === 0) return undefined;
    // Mostly the believed leader; sometimes any node (follower reads, redirects).
    if (this.leaderHint && this.prng.chance(0.75)) {
      const n = this.kv.cluster.runtime(this.leaderHint);
      if (n) return [this.leaderHint, n];
    }
    return this.prng.pick(up);
  }

  nextInput(key: string): KvInput {
    const r = this.prng.next();
    if (r < 0.4) return { type: "read" };
    const value = `${this.name}.${++this.writes}`;
    if (r < 0.7) return { type: "write", value };
    // CAS from the value this client last saw (often current), sometimes from a stale guess.
    const expected = this.prng.chance(0.8) ? this.seen.get(key) : undefined;
    return { type: "cas", expected, value };
  }

  /** Runs one operation to a known or unknown outcome, recording it. */
  async run(key: string, input: KvInput, onlyAt?: string): Promise<void> {
    const id = this.history.invoke(this.name, key, input);
    const deadline = this.ctx.sim.now() + CLIENT_DEADLINE_MS;
    let target: [string, SimKvNode] | undefined;
    for (;;) {
      if (onlyAt) {
        const n = this.kv.cluster.runtime(onlyAt);
        target = n ? [onlyAt, n] : undefined;
      } else {
        target ??= this.pickNode();
      }
      if (!target) {
        if (this.ctx.sim.now() >= deadline) break;
        await sleep(this.ctx, 20);
        continue;
      }
      const left = deadline - this.ctx.sim.now();
      if (left <= 0) break;
      // The client's own deadline: a node that crashes mid-call never answers.
      const outcome = await Promise.race([
        perform(target[1], key, input).then(
          (output) => ({ output }),
          (error: unknown) => ({ error }),
        ),
        sleep(this.ctx, left).then(() => ({ gone: true as const })),
      ]);
      if ("output" in outcome) {
        this.history.complete(id, outcome.output);
        if (outcome.output.type === "read") this.seen.set(key, outcome.output.value);
        else if (outcome.output.type === "write" && input.type === "write") this.seen.set(key, input.value);
        else if (outcome.output.type === "cas" && outcome.output.ok && input.type === "cas")
          this.seen.set(key, input.value);
        if (!onlyAt) this.leaderHint = target[0];
        this.tally.ok++;
        return;
      }
      if ("gone" in outcome) break;
      const err = outcome.error;
      if (neverProposed(err)) {
        // Not in the log: the same operation may be sent again (what forwarding does).
        this.tally.redirects++;
        const hint = err.leader?.id;
        this.leaderHint = hint;
        target = undefined;
        if (!onlyAt && hint) {
          const n = this.kv.cluster.runtime(hint);
          if (n) target = [hint, n];
        }
        await sleep(this.ctx, target ? 1 : 10 + this.prng.int(0, 20));
        continue;
      }
      // A read has no effect, so one that timed out (e.g. its ReadIndex request was lost in a
      // partition) is simply asked again, as etcd's clients retry reads.
      if (ambiguous(err) && input.type === "read") {
        await sleep(this.ctx, 5);
        continue;
      }
      if (ambiguous(err)) break;
      throw err;
    }
    this.history.unknown(id);
    this.leaderHint = undefined;
    this.tally.unknown++;
  }

  async loop(stop: () => boolean): Promise<void> {
    while (!stop()) {
      const key = this.prng.pick(KEYS);
      await this.run(key, this.nextInput(key));
      await sleep(this.ctx, this.prng.int(0, 15));
    }
  }
}

/** Now and then compacts to a recent revision (every replica applies it; reads are unaffected). */
async function compactor(ctx: ScenarioContext, kv: SimKv, tally: Tally, stop: () => boolean): Promise<void> {
  const prng = ctx.sim.prng.fork("compactor");
  while (!stop()) {
    await sleep(ctx, prng.int(100, 400));
    const leader = kv.leader();
    const node = leader ? kv.cluster.runtime(leader) : undefined;
    if (!node) continue;
    const current = Number(node.service.status({}).header?.revision ?? 0n);
    const revision = BigInt(Math.max(1, current - prng.int(0, 5)));
    try {
      await Promise.race([
        node.service.compact(CompactionRequest.fromPartial({ revision })),
        sleep(ctx, 1_000),
      ]);
      tally.compactions++;
    } catch {
      // compacted already, lost leadership, timed out: nothing to check
    }
  }
}

function explain(ops: readonly Operation[]): string {
  return ops.map(formatOperation).join("\n");
}

async function kvScenario(ctx: ScenarioContext, scenario: Scenario): Promise<void> {
  const { sim, seed } = ctx;
  sim.network.setFaults({ minDelayMs: 1, maxDelayMs: 15, dropRate: 0.05, duplicateRate: 0.05 });
  const kv = simKv(sim, scenario.ids, {
    raft: () => ({
      snapshotThreshold: 40 + (seed % 40),
      snapshotCatchUpEntries: seed % 3 === 0 ? 0 : 10,
      snapshotChunkBytes: 2048,
      core: { maxEntriesPerMessage: 1 + (seed % 8), maxInflight: 1 + (seed % 4) },
    }),
  });
  const history = new History(sim.clock);
  const tally: Tally = { ok: 0, unknown: 0, redirects: 0, compactions: 0 };
  try {
    await kv.cluster.start();
    let stop = false;
    const clients = Array.from(
      { length: scenario.clients },
      (_, i) => new Client(`c${i + 1}`, ctx, kv, history, sim.prng.fork(`client/${i}`), tally),
    );
    const running = [...clients.map((c) => c.loop(() => stop)), compactor(ctx, kv, tally, () => stop)].map(
      (p) => p.catch((e: unknown) => sim.fail(e)),
    );

    const nemesis = kv.cluster.startNemesis({ intervalMs: [50, 300], downMs: [20, 500] });
    await sim.runUntilTime(scenario.safetyMs);
    await kv.cluster.livenessPhase();
    const okBefore = tally.ok;
    await sim.eventually("10 more operations complete after healing", () => tally.ok >= okBefore + 10, 5_000);
    stop = true;
    const done = Promise.all(running);
    let finished = false;
    void done.then(() => (finished = true));
    await sim.eventually("clients stop", () => finished, 5_000);

    // Final reads through every node: every acknowledged write must be visible.
    const reader = new Client("final", ctx, kv, history, sim.prng.fork("final"), tally);
    let readsDone = false;
    void (async () => {
      for (const id of scenario.ids) for (const key of KEYS) await reader.run(key, { type: "read" }, id);
      readsDone = true;
    })().catch((e: unknown) => sim.fail(e));
    await sim.eventually("final reads finish", () => readsDone, 20_000);
    const finals = history.operations().filter((op) => op.client === "final");
    const unknownFinals = finals.filter((op) => op.output === undefined);
    if (unknownFinals.length > 0)
      throw new Error(`final reads without an answer:\n${explain(unknownFinals)}`);

    const result = checkLinearizability(history);
    if (!result.ok) {
      throw new Error(
        `history of ${history.size()} operations is not linearizable (${result.kind}) on key ${result.key}: ${result.explanation}\n${explain(result.operations)}\nnemesis:\n${nemesis.log.join("\n")}`,
      );
    }

    // Every replica converges on the same data (revisions included).
    await sim.eventually(
      "every replica applies the same log",
      () => {
        const applied = [...kv.durable.values()].map((d) => d.store.appliedIndex());
        return applied.every((a) => a === applied[0]);
      },
      5_000,
    );
    const dumps = scenario.ids.map((id) => {
      const store = kv.durable.get(id)!.store;
      const all = store.range(
        RangeRequest.fromPartial({ key: Buffer.from([0]), rangeEnd: Buffer.from([0]) }),
      );
      return JSON.stringify({
        revision: store.revision(),
        kvs: all.kvs.map((k) => [
          k.key.toString(),
          k.value.toString(),
          `${k.createRevision}`,
          `${k.modRevision}`,
          `${k.version}`,
        ]),
      });
    });
    for (const [i, d] of dumps.entries()) {
      if (d !== dumps[0])
        throw new Error(`${scenario.ids[i]} holds ${d}, ${scenario.ids[0]} holds ${dumps[0]}`);
    }
    if (process.env.QUORUM_DEBUG) {
      console.log(`seed ${seed}: ${history.size()} ops`, tally, nemesis.log.length, "faults");
    }
    if (tally.ok < 20) throw new Error(`only ${tally.ok} operations completed: the workload did not run`);
  } finally {
    await kv.close();
  }
}

describe("kv store under simulation", () => {
  const three =
    "three replicas: client histories stay linearizable under drops, duplicates, partitions and crashes";
  it(three, { timeout: 30_000 + 3_000 * seedCount({ seeds: 16 }) }, async () => {
    const { seeds } = await runSeeds(
      three,
      (_seed, ctx) => kvScenario(ctx, { ids: ["n1", "n2", "n3"], clients: 5, safetyMs: 4_000 }),
      { seeds: 16 },
    );
    expect(seeds.length).toBeGreaterThan(0);
  });

  const five =
    "five replicas: client histories stay linearizable under drops, duplicates, partitions and crashes";
  it(five, { timeout: 30_000 + 5_000 * seedCount({ seeds: 8 }) }, async () => {
    const { seeds } = await runSeeds(
      five,
      (_seed, ctx) => kvScenario(ctx, { ids: ["n1", "n2", "n3", "n4", "n5"], clients: 6, safetyMs: 4_000 }),
      { seeds: 8 },
    );
    expect(seeds.length).toBeGreaterThan(0);
  });
});

/**
 * A linearizable read must not depend on a later write. After an election the newest
 * committed entry is the leader's no-op; ReadIndex returns that index, so the read may be
 * served once the node has applied it. (Found by test/kill.test.ts: on a fresh three-node
 * cluster `etcdctl get` timed out until the first put.)
 */
describe("linearizable reads after an election", () => {
  async function answers(sim: Simulation, node: SimKvNode): Promise<boolean> {
    let done = false;
    node.service.range(RangeRequest.fromPartial({ key: Buffer.from("x") })).then(
      () => (done = true),
      () => {},
    );
    try {
      await sim.eventually("the read answers", () => done, 2_000);
    } catch {
      return false;
    }
    return true;
  }

  it("answers on a fresh cluster before any write, on the leader and on a follower", async () => {
    const sim = new Simulation(1);
    const kv = simKv(sim, ["n1", "n2", "n3"]);
    try {
      await kv.cluster.start();
      await sim.eventually("a leader", () => kv.leader() !== undefined, 5_000);
      const leader = kv.leader()!;
      const follower = ["n1", "n2", "n3"].find((id) => id !== leader)!;
      expect(await answers(sim, kv.cluster.runtime(leader)!), "read on the leader").toBe(true);
      expect(await answers(sim, kv.cluster.runtime(follower)!), "read on a follower").toBe(true);
    } finally {
      await kv.close();
    }
  });

  it("answers after the leader crashed, before the next write", async () => {
    const sim = new Simulation(2);
    const kv = simKv(sim, ["n1", "n2", "n3"]);
    try {
      await kv.cluster.start();
      await sim.eventually("a leader", () => kv.leader() !== undefined, 5_000);
      const first = kv.leader()!;
      let put = false;
      kv.cluster
        .runtime(first)!
        .service.put(PutRequest.fromPartial({ key: Buffer.from("x"), value: Buffer.from("1") }))
        .then(() => (put = true));
      await sim.eventually("the put is acknowledged", () => put, 2_000);
      kv.cluster.crash(first);
      await sim.eventually("a new leader", () => kv.leader() !== undefined, 5_000);
      expect(await answers(sim, kv.cluster.runtime(kv.leader()!)!), "read on the new leader").toBe(true);
    } finally {
      await kv.close();
    }
  });
});
