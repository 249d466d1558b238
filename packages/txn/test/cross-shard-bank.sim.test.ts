import { status } from "@grpc/grpc-js";
import {
  Compare_CompareResult,
  Compare_CompareTarget,
  isEtcdError,
  keyRange,
  PutRequest,
  RangeRequest,
  ShardMap,
  TxnRequest,
  type TxnResponse,
} from "@quorum/kv";
import { type Prng, runSeeds, type ScenarioContext, Simulation, seedCount } from "@quorum/sim";
import { describe, expect, it } from "vitest";
import { type ProtocolStep, type SimShardNode, type SimShards, simShards } from "./helpers/sim-shards.js";

/**
 * Issue 7, "Tests", first bullet: a bank over three shards of three simulated nodes (each
 * shard its own Raft group), every transfer an etcd Txn that compares both accounts'
 * mod_revision and writes both balances, run through a ShardTxnEngine on every node, while
 * nodes crash (at random times, and at chosen steps of the protocol, as coordinator and as
 * participant), messages are lost, delayed and duplicated and the network is partitioned.
 *
 * Checked:
 * - every read of all accounts sums to the total, and is a consistent cut of the accounts'
 *   histories that includes every transfer acknowledged before the read began (reads are
 *   strictly serializable). Reader "r1" sends a read-only Txn over the three shards to the
 *   router (a lock-free cut), reader "e1" to the engine (shared locks in every shard);
 * - each account's history is a chain: each write moves the balance by its transfer's amount
 *   from the write before (no lost update), and no transfer is half applied (each transfer id,
 *   which every written value carries, is in both accounts' histories or in neither);
 * - a transfer has one revision in both shards (so any cut by revision holds all or none of
 *   it), the one its client was answered with; each account's revisions increase; writes one
 *   node answered one after the other got increasing revisions;
 * - acknowledged transfers are in the histories, refused or aborted ones are not;
 * - from the heal on, no prepared part stays in a shard leader's replica longer than
 *   `lockBoundMs` (counted from the heal or its prepare), all are gone once the workload is
 *   quiet, the total is conserved at the end, and the replicas of each shard converge to the
 *   same data with nothing prepared.
 *
 * QUORUM_SEEDS=N runs N seeds, QUORUM_SEED=S replays one, QUORUM_DEBUG=1 prints each seed's
 * counts, QUORUM_TRACE=1 every call of the protocol and every client step.
 */

const IDS = ["n1", "n2", "n3"] as const;
const SHARDS = 3;
/** Three accounts per shard with the default split: digits -> 0, upper case -> 1, lower case -> 2. */
const ACCOUNTS = ["0a", "0b", "0c", "Ka", "Kb", "Kc", "ka", "kb", "kc"] as const;
const INITIAL = 100;
const TOTAL = INITIAL * ACCOUNTS.length;
const map = ShardMap.ofCount(SHARDS);
const shardOf = (key: string) => map.shardOf(Buffer.from(key));

/**
 * Engine timings vary by seed: recovery that races slow live coordinators (400 ms) or waits
 * longer. (Below a transaction's own duration, about 4 trips of up to 40 ms plus the shards'
 * log commits, recovery aborts live transactions, which then retry: a livelock.)
 */
function engineOptions(seed: number) {
  const staleAfterMs = [400, 1_000, 2_000][seed % 3]!;
  const recoveryIntervalMs = [50, 100, 200][Math.floor(seed / 3) % 3]!;
  // Forgetting records soon after the decisions (even at once) sends forgets while duplicates
  // of the same transactions are still in flight.
  const forgetAfterMs = [0, 300, 3_000][Math.floor(seed / 9) % 3]!;
  return {
    staleAfterMs,
    recoveryIntervalMs,
    forgetAfterMs,
    forgetIntervalMs: 100,
    requestTimeoutMs: 1_500,
    maxAttempts: 8,
  };
}
/**
 * The bound on locks (ShardTxnRecovery's promise): after healing, a prepared part leaves its
 * shard leader's replica within `staleAfterMs` (counted from the heal or its prepare, as that
 * leader's recovery first sees it) plus one recovery interval, plus 600 ms of slack for a
 * leader election after the heal (100-200 ms) and recovery's calls (fences, then decides, in
 * every shard at once: trips of at most 40 ms and a log commit each). Observed over 187 seeds:
 * at most 190 ms above `staleAfterMs + recoveryIntervalMs`.
 */
const lockBoundMs = (e: ReturnType<typeof engineOptions>) => e.staleAfterMs + e.recoveryIntervalMs + 600;
const SAFETY_MS = 5_000;
const CLIENT_DEADLINE_MS = 3_000;
/** A client's wait for one Txn: the engine's own deadline (1.5 s, retries included) and two trips. */
const TXN_TIMEOUT_MS = 2_000;
/** One attempt of a read (the service's own deadline is 500 ms). */
const ATTEMPT_MS = 700;
const TRANSFER_CLIENTS = 6;
/** Probability that a protocol step (see ProtocolStep) crashes the node it happens on. */
const STEP_CRASH_P = 0.01;

type Outcome = "pending" | "committed" | "refused" | "aborted" | "unknown";

interface Transfer {
  readonly tid: string;
  readonly from: string;
  readonly to: string;
  readonly amount: number;
  readonly crossShard: boolean;
  outcome: Outcome;
  invokedAt: number;
  completedAt: number;
  /** The node that answered (the coordinator across shards) and the revision it answered with. */
  node?: string | undefined;
  revision?: bigint | undefined;
}

interface Read {
  readonly by: string;
  readonly invokedAt: number;
  readonly completedAt: number;
  /** Per account (ACCOUNTS order): the balance and the id of the transfer that wrote it. */
  readonly values: readonly { balance: number; tid: string }[];
}

interface Stats {
  committedCross: number;
  committedSame: number;
  refused: number;
  aborted: number;
  unknown: number;
  reads: number;
  /** Reads of all accounts that gave up: the engine's ABORTED after maxAttempts conflicts, or no answer. */
  readFailures: number;
  readsAborted: number;
  /** Reads of all accounts that the engine ran (reader "e1"), of `reads`. */
  readsByEngine: number;
  stepCrashes: number;
}

const encode = (balance: number, tid: string) => Buffer.from(`${balance}|${tid}`);

function decode(value: Uint8Array, key: string): { balance: number; tid: string } {
  const text = Buffer.from(value).toString();
  const m = /^(-?\d+)\|(.+)$/.exec(text);
  if (!m) throw new Error(`account ${key} holds a malformed value ${JSON.stringify(text)}`);
  return { balance: Number(m[1]), tid: m[2]! };
}

function sleep(ctx: ScenarioContext, ms: number): Promise<void> {
  return new Promise((resolve) => ctx.sim.clock.schedule(ms, resolve));
}

/** A client outside the cluster: it talks to any live node, which it picks per request. */
class Client {
  private count = 0;

  constructor(
    readonly name: string,
    private readonly ctx: ScenarioContext,
    private readonly kv: SimShards,
    private readonly prng: Prng,
    private readonly transfers: Map<string, Transfer>,
    private readonly reads: Read[],
    private readonly stats: Stats,
  ) {}

  /** QUORUM_TRACE=1: what the client does, with the virtual time (replaying a seed). */
  private trace(what: string): void {
    if (process.env.QUORUM_TRACE) console.log(`${this.ctx.sim.now()} client ${this.name}: ${what}`);
  }

  private gateway(): SimShardNode | undefined {
    const up = [...this.kv.cluster.runtimes().values()];
    return up.length === 0 ? undefined : this.prng.pick(up);
  }

  /** The node a gateway would send a one-shard request to: the shard's leader as it believes. */
  private leaderVia(gateway: SimShardNode, shard: number): string {
    return gateway.rafts[shard]!.status().leaderId ?? gateway.id;
  }

  /** Sends `fn` to some node until it answers or fails for good; undefined at the deadline. */
  private async retrying<T>(
    deadline: number,
    target: (gateway: SimShardNode) => string,
    fn: (node: SimShardNode) => Promise<T>,
    attemptMs = ATTEMPT_MS,
  ): Promise<T | undefined> {
    while (this.ctx.sim.now() < deadline) {
      const gateway = this.gateway();
      if (gateway) {
        try {
          // A lost request or reply costs one attempt, not the whole deadline.
          const left = deadline - this.ctx.sim.now();
          return await this.kv.rpc("client", target(gateway), fn, Math.min(left, attemptMs));
        } catch (err) {
          this.trace(String(err));
          if (!(isEtcdError(err) && err.code === status.UNAVAILABLE)) throw err;
        }
      }
      await sleep(this.ctx, this.prng.int(5, 30));
    }
    return undefined;
  }

  private async readAccount(key: string, deadline: number) {
    const res = await this.retrying(
      deadline,
      (g) => this.leaderVia(g, shardOf(key)),
      (node) => node.router.range(RangeRequest.fromPartial({ key: Buffer.from(key) })),
    );
    const kv = res?.kvs[0];
    if (!kv) return undefined;
    return { ...decode(kv.value, key), modRevision: kv.modRevision };
  }

  async transfer(): Promise<void> {
    const from = this.prng.pick(ACCOUNTS);
    // Mostly across shards; some within one (the one-shard fast path meets the engine's locks).
    const same = this.prng.chance(0.2);
    const to = this.prng.pick(ACCOUNTS.filter((a) => a !== from && (shardOf(a) === shardOf(from)) === same));
    const amount = this.prng.int(1, 20);
    const deadline = this.ctx.sim.now() + CLIENT_DEADLINE_MS;
    const a = await this.readAccount(from, deadline);
    const b = a && (await this.readAccount(to, deadline));
    this.trace(`read ${from}=${a?.balance}@${a?.modRevision} ${to}=${b?.balance}@${b?.modRevision}`);
    if (!a || !b) return;
    const tid = `${this.name}.${++this.count}`;
    const crossShard = shardOf(from) !== shardOf(to);
    const t: Transfer = {
      tid,
      from,
      to,
      amount,
      crossShard,
      outcome: "pending",
      invokedAt: this.ctx.sim.now(),
      completedAt: 0,
    };
    this.transfers.set(tid, t);
    const compare = (key: string, modRevision: bigint) => ({
      key: Buffer.from(key),
      target: Compare_CompareTarget.MOD,
      result: Compare_CompareResult.EQUAL,
      modRevision,
    });
    const req = TxnRequest.fromPartial({
      compare: [compare(from, a.modRevision), compare(to, b.modRevision)],
      success: [
        { requestPut: { key: Buffer.from(from), value: encode(a.balance - amount, tid) } },
        { requestPut: { key: Buffer.from(to), value: encode(b.balance + amount, tid) } },
      ],
    });
    const gateway = this.gateway();
    let res: TxnResponse | undefined;
    // Across shards: the gateway's engine coordinates. Within one: its leader as the gateway knows.
    const target = gateway && (crossShard ? gateway.id : this.leaderVia(gateway, shardOf(from)));
    if (target) {
      try {
        res = await this.kv.rpc("client", target, (node) => node.router.txn(req), TXN_TIMEOUT_MS);
      } catch (err) {
        t.completedAt = this.ctx.sim.now();
        if (isEtcdError(err) && err.code === status.ABORTED) {
          t.outcome = "aborted";
          this.stats.aborted++;
          return;
        }
        if (isEtcdError(err) && err.code === status.UNAVAILABLE) {
          t.outcome = "unknown";
          this.stats.unknown++;
          return;
        }
        throw err;
      }
    }
    t.completedAt = this.ctx.sim.now();
    if (!res) {
      t.outcome = "refused";
      this.stats.refused++;
    } else if (res.succeeded) {
      t.outcome = "committed";
      t.node = target;
      t.revision = res.header?.revision;
      if (crossShard) this.stats.committedCross++;
      else this.stats.committedSame++;
    } else {
      t.outcome = "refused";
      this.stats.refused++;
    }
  }

  /** Reads every account in one read-only Txn over all shards, through `via` or any node. */
  async readAll(via?: string): Promise<Read | undefined> {
    const invokedAt = this.ctx.sim.now();
    // The router reads a Txn without writes over several shards at one cut, without locks. The
    // engine can run it too (shared locks in every shard): reader "e" goes to it directly.
    const engine = this.name.startsWith("e");
    const req = TxnRequest.fromPartial({
      success: ACCOUNTS.map((key) => ({ requestRange: { key: Buffer.from(key) } })),
    });
    let res: TxnResponse | undefined;
    try {
      res = await this.retrying(
        invokedAt + CLIENT_DEADLINE_MS,
        (g) => via ?? g.id,
        (node) => (engine ? node.engine.txn(req, [0, 1, 2]) : node.router.txn(req)),
        engine ? TXN_TIMEOUT_MS : ATTEMPT_MS,
      );
    } catch (err) {
      if (!(isEtcdError(err) && err.code === status.ABORTED)) throw err;
      this.trace(String(err));
      this.stats.readsAborted++;
    }
    if (!res) {
      this.stats.readFailures++;
      return undefined;
    }
    const values = res.responses.map((r, i) => {
      const kv = r.responseRange?.kvs[0];
      if (!kv) throw new Error(`read of all accounts lacks ${ACCOUNTS[i]}`);
      return decode(kv.value, ACCOUNTS[i]!);
    });
    const read: Read = { by: this.name, invokedAt, completedAt: this.ctx.sim.now(), values };
    const sum = values.reduce((s, v) => s + v.balance, 0);
    if (sum !== TOTAL)
      throw new Error(
        `read of all accounts at t=${read.completedAt} sums to ${sum}, not ${TOTAL}: ${describeRead(read)}`,
      );
    this.reads.push(read);
    this.stats.reads++;
    if (engine) this.stats.readsByEngine++;
    return read;
  }

  async loop(stop: () => boolean, what: "transfer" | "read"): Promise<void> {
    while (!stop()) {
      if (what === "transfer") await this.transfer();
      else await this.readAll();
      await sleep(this.ctx, this.prng.int(0, what === "read" ? 60 : 20));
    }
  }
}

const describeRead = (r: Read) =>
  ACCOUNTS.map((a, i) => `${a}=${r.values[i]!.balance} (${r.values[i]!.tid})`).join(", ");

/** One account's history from a replica of its shard: every version, oldest first. */
function accountHistory(
  kv: SimShards,
  key: string,
): { balance: number; tid: string; version: bigint; modRevision: bigint }[] {
  const store = kv.durable.get(IDS[0])!.shards[shardOf(key)]!.store;
  return store
    .changesBetween(0, Number.MAX_SAFE_INTEGER, {
      range: keyRange(Buffer.from(key), Buffer.alloc(0)),
      prevKv: false,
    })
    .flatMap((c) => c.events)
    .map((e) => ({ ...decode(e.kv!.value, key), version: e.kv!.version, modRevision: e.kv!.modRevision }));
}

/** Every check on the final histories; returns the violations found. */
function checkHistories(kv: SimShards, transfers: Map<string, Transfer>, reads: readonly Read[]): string[] {
  const bad: string[] = [];
  const histories = new Map<string, ReturnType<typeof accountHistory>>(
    ACCOUNTS.map((a) => [a, accountHistory(kv, a)]),
  );
  const position = new Map<string, Map<string, number>>();
  for (const [account, h] of histories) {
    const at = new Map<string, number>();
    position.set(account, at);
    h.forEach((w, i) => {
      if (w.version !== BigInt(i + 1)) bad.push(`${account}: version ${w.version} is write ${i + 1}`);
      if (i > 0 && w.modRevision <= h[i - 1]!.modRevision)
        bad.push(
          `${account}: ${w.tid} at revision ${w.modRevision} after ${h[i - 1]!.tid} at ${h[i - 1]!.modRevision}`,
        );
      if (at.has(w.tid)) bad.push(`${account}: transfer ${w.tid} applied twice`);
      at.set(w.tid, i);
      if (i === 0) {
        if (w.tid !== "init" || w.balance !== INITIAL)
          bad.push(`${account}: first write ${w.tid}=${w.balance}`);
        return;
      }
      const t = transfers.get(w.tid);
      if (!t || (t.from !== account && t.to !== account)) {
        bad.push(`${account}: written by ${w.tid}, which is no transfer of this account`);
        return;
      }
      const expected = h[i - 1]!.balance + (t.to === account ? t.amount : -t.amount);
      if (w.balance !== expected)
        bad.push(
          `${account}: ${w.tid} wrote ${w.balance} after ${h[i - 1]!.tid} left ${h[i - 1]!.balance} (expected ${expected}: lost update)`,
        );
    });
  }
  for (const t of transfers.values()) {
    const inFrom = position.get(t.from)!.has(t.tid);
    const inTo = position.get(t.to)!.has(t.tid);
    if (inFrom !== inTo)
      bad.push(
        `transfer ${t.tid} (${t.from} -> ${t.to}, ${t.amount}) half applied: only in ${inFrom ? t.from : t.to}`,
      );
    if (t.outcome === "committed" && !inFrom)
      bad.push(`transfer ${t.tid} was acknowledged but is not applied`);
    if (inFrom && inTo) {
      // One revision for the whole transfer, in every shard: a cut at any revision (what a
      // Range over several shards reads) then holds all of it or none of it.
      const rf = histories.get(t.from)![position.get(t.from)!.get(t.tid)!]!.modRevision;
      const rt = histories.get(t.to)![position.get(t.to)!.get(t.tid)!]!.modRevision;
      if (rf !== rt)
        bad.push(`transfer ${t.tid} written at revision ${rf} in ${t.from} but ${rt} in ${t.to}`);
      if (t.revision !== undefined && t.revision !== rf)
        bad.push(`transfer ${t.tid} was answered with revision ${t.revision} but written at ${rf}`);
    }
    if ((t.outcome === "refused" || t.outcome === "aborted") && (inFrom || inTo))
      bad.push(`transfer ${t.tid} was ${t.outcome} but is applied`);
  }
  const last = ACCOUNTS.map((a) => histories.get(a)!.at(-1)!.balance);
  const sum = last.reduce((s, b) => s + b, 0);
  if (sum !== TOTAL) bad.push(`final balances ${last.join(", ")} sum to ${sum}, not ${TOTAL}`);

  // Each read is a cut of the histories: where it read each account, ...
  for (const r of reads) {
    const pos = ACCOUNTS.map((a, i) => {
      const p = position.get(a)!.get(r.values[i]!.tid);
      if (p === undefined || histories.get(a)![p]!.balance !== r.values[i]!.balance)
        bad.push(
          `read at ${r.completedAt} saw ${a}=${r.values[i]!.balance} (${r.values[i]!.tid}), never written`,
        );
      return p ?? -1;
    });
    const index = new Map(ACCOUNTS.map((a, i) => [a as string, i]));
    ACCOUNTS.forEach((a, i) => {
      // ... consistent: every transfer it saw in one account, it saw in the other ...
      for (const w of histories.get(a)!.slice(1, pos[i]! + 1)) {
        const t = transfers.get(w.tid)!;
        const other = t.from === a ? t.to : t.from;
        const o = index.get(other)!;
        const p = position.get(other)!.get(w.tid);
        if (p === undefined || p > pos[o]!)
          bad.push(`read at ${r.completedAt} saw ${w.tid} in ${a} but not in ${other}: ${describeRead(r)}`);
      }
    });
    // ... and recent: it includes every transfer acknowledged before it began.
    for (const t of transfers.values()) {
      if (t.outcome !== "committed" || t.completedAt >= r.invokedAt) continue;
      for (const a of [t.from, t.to]) {
        const p = position.get(a)!.get(t.tid);
        if (p !== undefined && p > pos[index.get(a)!]!)
          bad.push(
            `read invoked at ${r.invokedAt} misses ${t.tid} on ${a}, acknowledged at ${t.completedAt}: ${describeRead(r)}`,
          );
      }
    }
  }
  // Writes one node answered one after the other got increasing revisions (kv README,
  // "Revisions across shards"), whatever their shards.
  const acked = [...transfers.values()].filter((t) => t.outcome === "committed" && t.revision !== undefined);
  for (const a of acked)
    for (const b of acked)
      if (a.node === b.node && a.completedAt < b.invokedAt && a.revision! >= b.revision!)
        bad.push(
          `through ${a.node}: ${a.tid} answered at ${a.completedAt} with revision ${a.revision}, then ${b.tid} sent at ${b.invokedAt} got ${b.revision}`,
        );
  return bad;
}

/** Each node's view of each shard, and the prepared parts its replicas hold (for a failing seed). */
function clusterState(kv: SimShards): string {
  return IDS.map((id) => {
    const node = kv.cluster.runtime(id);
    const shards = kv.durable.get(id)!.shards.map((d, shard) => {
      const s = node ? node.rafts[shard]!.status() : undefined;
      const raft = s ? `${s.role} t${s.term} leader=${s.leaderId} commit=${s.commitIndex}` : "down";
      const parts = d.store
        .preparedTxns()
        .map((i) => `${i.txId.toString("hex").slice(0, 16)}@${i.preparedRevision}`);
      return `  shard ${shard}: ${raft} applied=${d.store.appliedIndex()} rev=${d.store.revision()} prepared=[${parts.join(" ")}]`;
    });
    return `${id}:\n${shards.join("\n")}`;
  }).join("\n");
}

async function bankScenario(ctx: ScenarioContext): Promise<void> {
  const { sim, seed } = ctx;
  const stats: Stats = {
    committedCross: 0,
    committedSame: 0,
    refused: 0,
    aborted: 0,
    unknown: 0,
    reads: 0,
    readFailures: 0,
    readsAborted: 0,
    readsByEngine: 0,
    stepCrashes: 0,
  };
  const engine = engineOptions(seed);
  const stepPrng = sim.prng.fork("step-crash");
  const stepLog: string[] = [];
  let crashAtSteps = true;
  let kv: SimShards | undefined;
  const onStep = (s: ProtocolStep) => {
    if (!crashAtSteps || !kv || kv.cluster.down().length > 0 || !stepPrng.chance(STEP_CRASH_P)) return;
    const { id } = s.node;
    stepLog.push(`${sim.now()} crash ${id} as ${s.role} ${s.phase} ${s.op} (shard ${s.shard})`);
    stats.stepCrashes++;
    kv.cluster.crash(id);
    const cluster = kv.cluster;
    sim.scheduler.schedule(stepPrng.int(20, 400), () => {
      if (crashAtSteps && !cluster.isUp(id)) cluster.restart(id).catch((e: unknown) => sim.fail(e));
    });
  };
  /**
   * The prepared parts that lock anything: those in the replica of each shard's leader, which
   * applies every prepare and write. (A follower that is behind holds decided parts until it
   * catches up, which Raft bounds, not the engine; the final convergence check covers it.)
   */
  const preparedParts = () =>
    Array.from({ length: SHARDS }, (_, shard) => {
      const leader = kv!.shardLeader(shard);
      if (!leader) return [];
      return kv!.durable
        .get(leader)!
        .shards[shard]!.store.preparedTxns()
        .map((i) => `${leader}/shard ${shard}: ${i.txId.toString("hex")}`);
    }).flat();
  kv = simShards(sim, IDS, {
    shards: SHARDS,
    engine,
    onStep,
    // Snapshots often (prepared parts and records travel in them), as the kv sim tests do.
    raft: () => ({
      snapshotThreshold: 40 + (seed % 40),
      snapshotCatchUpEntries: seed % 3 === 0 ? 0 : 10,
      snapshotChunkBytes: 2048,
      // Not the kv tests' 1 entry per message and 1 in flight: a log that slow (some 20 entries
      // a second with 40 ms trips) is saturated by this workload (aborted attempts add entries,
      // transfers outlast their clients' timeouts), and nothing is acknowledged for seconds.
      core: { maxEntriesPerMessage: 4 + (seed % 8), maxInflight: 2 + (seed % 3) },
    }),
  });
  const transfers = new Map<string, Transfer>();
  const reads: Read[] = [];
  let nemesisLog: readonly string[] = [];
  const context = () =>
    `\nstats ${JSON.stringify(stats)}\nstate at t=${sim.now()}:\n${kv ? clusterState(kv) : ""}\nfaults:\n${[...nemesisLog, ...stepLog].sort((x, y) => Number.parseInt(x, 10) - Number.parseInt(y, 10)).join("\n")}`;
  try {
    await kv.cluster.start();
    await sim.eventually(
      "every shard elects a leader",
      () => [0, 1, 2].every((s) => kv.shardLeader(s) !== undefined),
      5_000,
    );
    // Open the accounts, each through its shard's leader.
    const setup = new Client("setup", ctx, kv, sim.prng.fork("setup"), transfers, reads, stats);
    let opened = 0;
    void (async () => {
      for (const key of ACCOUNTS) {
        const shard = shardOf(key);
        await kv.rpc("client", kv.shardLeader(shard)!, (n) =>
          n.router.put(PutRequest.fromPartial({ key: Buffer.from(key), value: encode(INITIAL, "init") })),
        );
        opened++;
      }
    })().catch((e: unknown) => sim.fail(e));
    await sim.eventually("accounts opened", () => opened === ACCOUNTS.length, 5_000);
    void setup;
    // Faults from here on (a lost or duplicated put above would break the accounts' histories).
    const faults = sim.prng.fork("faults");
    sim.network.setFaults({
      minDelayMs: 1,
      maxDelayMs: faults.int(5, 40),
      dropRate: faults.int(0, 10) / 100,
      duplicateRate: faults.int(0, 10) / 100,
    });

    let stopTransfers = false;
    let stopReads = false;
    const clients = Array.from(
      { length: TRANSFER_CLIENTS + 2 },
      (_, i) =>
        new Client(
          i < TRANSFER_CLIENTS ? `c${i + 1}` : i === TRANSFER_CLIENTS ? "r1" : "e1",
          ctx,
          kv!,
          sim.prng.fork(`client/${i}`),
          transfers,
          reads,
          stats,
        ),
    );
    const running = clients.map((c, i) =>
      c
        .loop(
          () => (i < TRANSFER_CLIENTS ? stopTransfers : stopReads),
          i < TRANSFER_CLIENTS ? "transfer" : "read",
        )
        .catch((e: unknown) => sim.fail(e)),
    );
    const nemesis = kv.cluster.startNemesis({ intervalMs: [50, 300], downMs: [20, 500] });
    nemesisLog = nemesis.log;
    await sim.runUntilTime(sim.now() + SAFETY_MS);

    crashAtSteps = false;
    await kv.cluster.livenessPhase();
    // From the heal on, no prepared part stays longer than the bound in a shard leader's replica
    // (counted from the heal for parts prepared before it): coordinators finish theirs, recovery
    // the rest.
    const bound = lockBoundMs(engine);
    const since = new Map<string, number>();
    let watchLocks = true;
    let longestHold = 0;
    sim.addInvariant("no prepared part outlives the lock bound after healing", () => {
      if (!watchLocks) return undefined;
      const now = sim.now();
      const present = new Set(preparedParts());
      for (const part of present) {
        const from = since.get(part) ?? now;
        since.set(part, from);
        longestHold = Math.max(longestHold, now - from);
        if (now - from > bound)
          return `${part} held ${now - from} ms after the heal or its prepare (bound ${bound} ms)`;
      }
      for (const part of since.keys()) if (!present.has(part)) since.delete(part);
      return undefined;
    });
    const committed = () => stats.committedCross + stats.committedSame;
    const [c0, x0] = [committed(), stats.committedCross];
    await sim.eventually(
      "transfers (3 across shards) go on after healing",
      () => committed() >= c0 + 5 && stats.committedCross >= x0 + 3,
      10_000,
    );
    // The engine's reads of all accounts may starve while transfers run (no-wait locking gives
    // a transaction over every account no priority): reads must go on once transfers stop.
    stopTransfers = true;
    let transfersDone = false;
    void Promise.all(running.slice(0, TRANSFER_CLIENTS)).then(() => (transfersDone = true));
    await sim.eventually("transfer clients stop", () => transfersDone, 2 * CLIENT_DEADLINE_MS);
    const r0 = stats.reads;
    await sim.eventually("reads of all accounts go on after healing", () => stats.reads >= r0 + 2, 10_000);
    stopReads = true;
    let finished = false;
    void Promise.all(running).then(() => (finished = true));
    await sim.eventually("clients stop", () => finished, 2 * CLIENT_DEADLINE_MS);

    // Quiet from here: no client sends anything. Every lock must go within the bound.
    const quietAt = sim.now();
    const held = preparedParts().length;
    const released = await sim.runUntil(() => preparedParts().length === 0, quietAt + bound);
    const releasedAfter = sim.now() - quietAt;
    watchLocks = false;
    if (!released)
      throw new Error(
        `prepared parts still held ${bound} ms after the workload went quiet (healed):\n${preparedParts().join("\n")}${context()}`,
      );

    // The total at the end, read through every node.
    const reader = new Client("final", ctx, kv, sim.prng.fork("final"), transfers, reads, stats);
    let finalReads = 0;
    void (async () => {
      for (const id of IDS) if (await reader.readAll(id)) finalReads++;
    })().catch((e: unknown) => sim.fail(e));
    await sim.eventually("final reads", () => finalReads === IDS.length, 3 * CLIENT_DEADLINE_MS);

    // Every replica of each shard applies the same log and holds the same data.
    for (let shard = 0; shard < SHARDS; shard++) {
      const stores = IDS.map((id) => kv!.durable.get(id)!.shards[shard]!.store);
      await sim.eventually(
        `replicas of shard ${shard} converge`,
        () => stores.every((s) => s.appliedIndex() === stores[0]!.appliedIndex()),
        5_000,
      );
      const dumps = stores.map((s) =>
        JSON.stringify(
          s
            .range(RangeRequest.fromPartial({ key: Buffer.from([0]), rangeEnd: Buffer.from([0]) }))
            .kvs.map((k) => [k.key.toString(), k.value.toString(), `${k.modRevision}`, `${k.version}`]),
        ),
      );
      for (const [i, d] of dumps.entries())
        if (d !== dumps[0])
          throw new Error(`shard ${shard}: ${IDS[i]} holds ${d}, ${IDS[0]} holds ${dumps[0]}`);
      for (const [i, store] of stores.entries())
        if (store.preparedTxns().length > 0)
          throw new Error(
            `shard ${shard}: ${IDS[i]} still holds prepared parts after converging${context()}`,
          );
    }

    const violations = checkHistories(kv, transfers, reads);
    if (violations.length > 0)
      throw new Error(`${violations.length} violations:\n${violations.slice(0, 20).join("\n")}${context()}`);
    if (process.env.QUORUM_DEBUG)
      console.log(
        `seed ${seed}: t=${sim.now()} transfers ${transfers.size}`,
        stats,
        kv.calls,
        `faults ${nemesisLog.length + stepLog.length}`,
        `locks at quiet ${held}, released after ${releasedAfter} ms, longest hold after healing ${longestHold} ms (bound ${bound})`,
      );
  } catch (err) {
    if (err instanceof Error && !err.message.includes("\nstats ")) err.message += context();
    throw err;
  } finally {
    await kv.close();
  }
}

describe("transactions across shards under simulation", () => {
  const name =
    "bank over three shards: totals conserved at every read, no transfer half applied, no lock outlives recovery";
  const seeds = 8;
  it(name, { timeout: 30_000 + 10_000 * seedCount({ seeds }) }, async () => {
    const result = await runSeeds(name, (_seed, ctx) => bankScenario(ctx), { seeds });
    expect(result.seeds.length).toBeGreaterThan(0);
  });
});

/**
 * ShardTxnRecovery's promise (recovery.ts): "a part holds its locks at most about
 * staleAfterMs + intervalMs after its coordinator vanished". Here node R leads shard 2 and
 * holds two orphaned parts there: T1, whose anchor (shard 0) is led by a node R cannot reach
 * (its requests are lost, its leader's heartbeats still arrive, so R keeps calling it), and
 * T2, whose anchor (shard 1) R leads itself. T2 must be finished within the promise; T1's
 * unanswered call must not hold it up (each such call lasts a whole request deadline: 600 ms
 * here, the gRPC forward's `requestTimeoutMs`, 7 s by default, in production).
 */
describe("recovery of orphaned prepared parts", () => {
  it("a part whose anchor answers is finished within staleAfterMs + recoveryIntervalMs while another part's anchor is unreachable", async () => {
    const staleAfterMs = 100;
    const recoveryIntervalMs = 50;
    const sim = new Simulation(7);
    const kv = simShards(sim, IDS, { shards: SHARDS, engine: { staleAfterMs, recoveryIntervalMs } });
    const wait = async <T>(p: Promise<T>, what: string): Promise<T> => {
      let out: { v: T } | undefined;
      p.then(
        (v) => (out = { v }),
        (e: unknown) => sim.fail(e),
      );
      await sim.eventually(what, () => out !== undefined, 5_000);
      return out!.v;
    };
    try {
      await kv.cluster.start();
      await sim.eventually("leaders", () => [0, 1, 2].every((s) => kv.shardLeader(s) !== undefined), 5_000);
      // Shard 0 led by n1 (P); shards 1 and 2 by n2 (R).
      const lead = async (shard: number, id: string) => {
        while (kv.shardLeader(shard) !== id) {
          const from = kv.cluster.runtime(kv.shardLeader(shard)!)!;
          await wait(
            from.rafts[shard]!.transferLeadership(id).catch(() => {}),
            `shard ${shard} to ${id}`,
          );
          await sim.runFor(50);
        }
      };
      await lead(0, "n1");
      await lead(1, "n2");
      await lead(2, "n2");
      const r = kv.cluster.runtime("n2")!;
      const part = (name: string, anchor: number) => ({
        txId: Buffer.from(name.padEnd(16, "-")),
        anchor,
        startTs: 0n,
        shards: [anchor, 2],
        attemptMs: BigInt(Math.floor(sim.now())),
        txn: TxnRequest.fromPartial({
          success: [{ requestPut: { key: Buffer.from("kz"), value: Buffer.from(name) } }],
        }),
        // Never prepared in the anchor: recovery aborts it without needing the request.
        request: undefined,
        minRevision: 0n,
      });
      // Two coordinators that prepared in shard 2 and vanished (T2 locks another key).
      await wait(r.router.services[2]!.prepareTxnPart(part("T1", 0)), "T1 prepared");
      const t2 = part("T2", 1);
      t2.txn.success[0]!.requestPut!.key = Buffer.from("ky");
      sim.network.blockLink("n2", "n1");
      await wait(r.router.services[2]!.prepareTxnPart(t2), "T2 prepared");
      const preparedAt = sim.now();
      const store = kv.durable.get("n2")!.shards[2]!.store;
      const t2Held = () => store.preparedTxns().some((i) => i.txId.equals(t2.txId));
      // Promised bound, with slack for two local proposals (fences in shards 1 and 2, then the aborts).
      const bound = staleAfterMs + recoveryIntervalMs + 100;
      await sim.runUntil(() => !t2Held(), preparedAt + 5_000);
      const heldFor = sim.now() - preparedAt;
      expect(t2Held(), "T2 was never finished").toBe(false);
      expect(
        heldFor,
        `T2's part stayed prepared ${heldFor} ms (bound ${bound} ms): recovery waited on T1's anchor first`,
      ).toBeLessThanOrEqual(bound);
    } finally {
      await kv.close();
    }
  });
});
