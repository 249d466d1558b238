import { type NodeContext, runSeeds, SimCluster, type Simulation, seedCount } from "@quorum/sim";
import {
  CoordinatorNode,
  type Decision,
  decodeKvReads,
  encodeKvOps,
  type KvOp,
  KvParticipant,
  ParticipantNode,
  type TxPart,
  type TxResult,
} from "@quorum/txn";
import { describe, expect, it } from "vitest";
import { SimDiskDecisionLog, SimDiskKvStorage } from "./sim-storage.js";

const COORDINATOR = "c1";
const PARTICIPANTS = ["p1", "p2", "p3"] as const;
const ACCOUNTS_PER_PARTICIPANT = 4;
const INITIAL_BALANCE = 100;
const TOTAL = PARTICIPANTS.length * ACCOUNTS_PER_PARTICIPANT * INITIAL_BALANCE;
const SAFETY_PHASE_MS = 6_000;
/** After the liveness phase begins, every lock must be gone within this much virtual time. */
const LOCK_RELEASE_BOUND_MS = 3_000;

const coordinatorConfig = { voteTimeoutMs: 300, retryIntervalMs: 50 };
const participantConfig = { outcomeQueryIntervalMs: 200 };

type Runtime =
  | { readonly kind: "coordinator"; readonly node: CoordinatorNode }
  | { readonly kind: "participant"; readonly node: ParticipantNode; readonly kv: KvParticipant };

interface Account {
  readonly participant: string;
  readonly key: string;
}

const accounts: Account[] = PARTICIPANTS.flatMap((p, i) =>
  Array.from({ length: ACCOUNTS_PER_PARTICIPANT }, (_, j) => ({
    participant: p,
    key: `acct-${i * ACCOUNTS_PER_PARTICIPANT + j}`,
  })),
);

/** Groups ops by participant, one part each. */
function parts(ops: { participant: string; op: KvOp }[]): TxPart[] {
  const by = new Map<string, KvOp[]>();
  for (const { participant, op } of ops) by.set(participant, [...(by.get(participant) ?? []), op]);
  return [...by].map(([participant, o]) => ({ participant, ops: encodeKvOps(o) }));
}

interface Started {
  readonly participants: readonly string[];
  result: TxResult | undefined;
}

class Bank {
  readonly started = new Map<string, Started>();
  /** The first durable outcome any participant applied, per transaction. */
  readonly applied = new Map<string, Decision>();
  readonly violations: string[] = [];
  readonly stats = { transfers: 0, committed: 0, aborted: 0, reads: 0, consistentReads: 0 };
  private nextId = 0;
  private stopped = false;
  readonly cluster: SimCluster<Runtime>;

  constructor(readonly sim: Simulation) {
    this.cluster = new SimCluster<Runtime>(sim, [COORDINATOR, ...PARTICIPANTS], (ctx) => this.build(ctx));
  }

  private async build(ctx: NodeContext): Promise<Runtime> {
    for (const p of ctx.peers) ctx.transport.addPeer({ id: p, address: "" });
    if (ctx.id === COORDINATOR) {
      const fsyncPrng = ctx.prng.fork("fsync");
      const node = await CoordinatorNode.start({
        transport: ctx.transport,
        clock: ctx.clock,
        log: new SimDiskDecisionLog(ctx.disk.file("decisions"), (done) => {
          ctx.clock.schedule(fsyncPrng.int(0, 5), done);
        }),
        config: coordinatorConfig,
        tickMs: 10,
      });
      return { kind: "coordinator", node };
    }
    const initial: [string, string][] = accounts
      .filter((a) => a.participant === ctx.id)
      .map((a) => [a.key, String(INITIAL_BALANCE)]);
    const kv = new KvParticipant(new SimDiskKvStorage(ctx.disk.file("kv"), initial), {
      clock: ctx.clock,
      lockWaitMs: 50,
      onOutcome: (txId, decision) => this.onApplied(ctx.id, txId, decision),
    });
    const node = await ParticipantNode.start({
      transport: ctx.transport,
      clock: ctx.clock,
      participant: kv,
      config: participantConfig,
      tickMs: 10,
    });
    return { kind: "participant", node, kv };
  }

  private onApplied(participant: string, txId: string, decision: Decision): void {
    const first = this.applied.get(txId);
    if (first === undefined) this.applied.set(txId, decision);
    else if (first !== decision) {
      this.violations.push(`${txId} was applied as ${first} somewhere and as ${decision} on ${participant}`);
    }
  }

  coordinator(): CoordinatorNode | undefined {
    const r = this.cluster.runtime(COORDINATOR);
    return r?.kind === "coordinator" ? r.node : undefined;
  }

  kv(id: string): KvParticipant | undefined {
    const r = this.cluster.runtime(id);
    return r?.kind === "participant" ? r.kv : undefined;
  }

  /** Starts one transaction on the current coordinator, if it is up. */
  run(opsList: { participant: string; op: KvOp }[], startTs?: number): Promise<TxResult> | undefined {
    const c = this.coordinator();
    if (c === undefined) return undefined;
    const txId = `t${this.nextId++}`;
    const p = parts(opsList);
    const entry: Started = { participants: p.map((x) => x.participant), result: undefined };
    this.started.set(txId, entry);
    const promise = c.transact(p, startTs === undefined ? { txId } : { txId, startTs });
    return promise.then((r) => {
      entry.result = r;
      if (r.status === "committed") this.stats.committed++;
      else this.stats.aborted++;
      return r;
    });
  }

  transferOps(from: Account, to: Account, amount: number): { participant: string; op: KvOp }[] {
    return [
      { participant: from.participant, op: { op: "add", key: from.key, delta: -amount, min: 0 } },
      { participant: to.participant, op: { op: "add", key: to.key, delta: amount } },
    ];
  }

  readAllOps(): { participant: string; op: KvOp }[] {
    return accounts.map((a) => ({ participant: a.participant, op: { op: "get", key: a.key } }));
  }

  /** Every committed read of all accounts must see the whole total, and no overdraft. */
  checkRead(r: TxResult): void {
    if (r.status !== "committed") return;
    this.stats.consistentReads++;
    let sum = 0;
    let seen = 0;
    for (const bytes of r.results.values()) {
      for (const [key, v] of Object.entries(decodeKvReads(bytes))) {
        seen++;
        const n = Number(v);
        if (!(n >= 0)) this.violations.push(`${r.txId} read ${key}=${v}`);
        sum += n;
      }
    }
    if (seen !== accounts.length)
      this.violations.push(`${r.txId} read ${seen} of ${accounts.length} accounts`);
    else if (sum !== TOTAL) this.violations.push(`${r.txId} read a total of ${sum}, expected ${TOTAL}`);
  }

  /** The safety-phase workload: random transfers and periodic reads of every account. */
  startWorkload(): void {
    const prng = this.sim.prng.fork("workload");
    const transferLoop = () => {
      if (this.stopped) return;
      const from = prng.pick(accounts);
      let to = prng.pick(accounts);
      while (to.key === from.key) to = prng.pick(accounts);
      this.stats.transfers++;
      void this.run(this.transferOps(from, to, prng.int(1, 30)));
      this.sim.clock.schedule(prng.int(5, 40), transferLoop);
    };
    const readLoop = () => {
      if (this.stopped) return;
      this.stats.reads++;
      // An older age than the transfers in flight, so under wait-die the read waits for
      // them rather than dying, and more reads commit (each one is checked).
      const age = Math.max(0, Math.floor(this.sim.now()) - 1_000);
      void this.run(this.readAllOps(), age)?.then((r) => this.checkRead(r));
      this.sim.clock.schedule(prng.int(100, 300), readLoop);
    };
    this.sim.clock.schedule(0, transferLoop);
    this.sim.clock.schedule(50, readLoop);
  }

  stopWorkload(): void {
    this.stopped = true;
  }

  /** Locks held, prepared transactions, and lock waiters across the participants that are up. */
  lockState(): { lockedKeys: number; prepared: number; waiting: number } {
    const sum = { lockedKeys: 0, prepared: 0, waiting: 0 };
    for (const id of PARTICIPANTS) {
      const s = this.kv(id)?.lockStats();
      if (s === undefined) continue;
      sum.lockedKeys += s.lockedKeys;
      sum.prepared += s.prepared;
      sum.waiting += s.waiting;
    }
    return sum;
  }

  /** At a quiescent point: money is conserved and every transaction is all-or-nothing. */
  checkQuiescent(): void {
    let sum = 0;
    for (const id of PARTICIPANTS) {
      const kv = this.kv(id);
      if (kv === undefined) throw new Error(`${id} is down at a quiescent point`);
      for (const [key, v] of kv.entries()) {
        const n = Number(v);
        if (!(n >= 0)) this.violations.push(`${id}: ${key}=${v}`);
        sum += n;
      }
    }
    if (sum !== TOTAL) this.violations.push(`quiescent total is ${sum}, expected ${TOTAL}`);
    for (const [txId, s] of this.started) {
      const outcomes = s.participants.map((p) => this.kv(p)?.outcomeOf(txId));
      const committed = outcomes.filter((o) => o === "commit").length;
      if (committed > 0 && committed < outcomes.length) {
        this.violations.push(
          `${txId} is half applied: ${s.participants.map((p, i) => `${p}=${outcomes[i] ?? "none"}`).join(" ")}`,
        );
      }
      if (s.result?.status === "committed" && committed < outcomes.length) {
        this.violations.push(
          `${txId} was reported committed but is applied on ${committed}/${outcomes.length}`,
        );
      }
      if (s.result?.status === "aborted" && committed > 0) {
        this.violations.push(`${txId} was reported aborted but is committed on ${committed} participants`);
      }
    }
  }

  /** Runs `opsList` until it commits, retrying retryable aborts (keeping its age). */
  async runToCommit(opsList: { participant: string; op: KvOp }[], withinMs: number): Promise<TxResult> {
    const deadline = this.sim.now() + withinMs;
    const startTs = Math.floor(this.sim.now());
    let last: TxResult | undefined;
    while (this.sim.now() < deadline) {
      const p = this.run(opsList, startTs);
      if (p === undefined) throw new Error("coordinator is down in the liveness phase");
      let done = false;
      void p.then((r) => {
        last = r;
        done = true;
      });
      await this.sim.runUntil(() => done, deadline);
      if (last?.status === "committed") return last;
      if (last?.status === "aborted" && !last.retryable) return last;
    }
    throw new Error(`no commit within ${withinMs}ms (last: ${JSON.stringify(last)})`);
  }
}

const scenario = "bank transfers over 3 participants stay atomic and conserve money under crashes and faults";

describe("txn simulation", () => {
  it(scenario, { timeout: 10_000 + seedCount({ seeds: 12 }) * 5_000 }, async () => {
    const stats = { committed: 0, aborted: 0, consistentReads: 0, crashes: 0 };
    const result = await runSeeds(
      scenario,
      async (_seed, { sim }) => {
        sim.network.setFaults({
          minDelayMs: 1,
          maxDelayMs: 15,
          dropRate: 0.05,
          duplicateRate: 0.03,
          ordering: "random",
        });
        const bank = new Bank(sim);
        sim.addInvariant("bank: all-or-nothing outcomes, conserved total in every committed read", () =>
          bank.violations.length > 0 ? bank.violations.join("; ") : undefined,
        );
        await bank.cluster.start();
        const nemesis = bank.cluster.startNemesis({ intervalMs: [50, 400], downMs: [0, 800] });
        bank.startWorkload();
        await sim.runUntilTime(SAFETY_PHASE_MS);
        bank.stopWorkload();

        // Liveness phase: heal, stop faults, restart everyone. Recovery must finish every
        // transaction and free every lock within a bounded time.
        await bank.cluster.livenessPhase();
        await sim.eventually(
          "every lock is released and nothing is left prepared",
          () => {
            const s = bank.lockState();
            return (
              PARTICIPANTS.every((p) => bank.cluster.isUp(p)) &&
              s.lockedKeys === 0 &&
              s.prepared === 0 &&
              s.waiting === 0
            );
          },
          LOCK_RELEASE_BOUND_MS,
        );
        bank.checkQuiescent();
        sim.checkInvariants();

        // Progress: with the faults gone, transfers and a full read commit.
        for (let i = 0; i < 3; i++) {
          const balance = (a: Account) => Number(bank.kv(a.participant)?.get(a.key) ?? 0);
          const from = accounts.reduce((best, a) => (balance(a) > balance(best) ? a : best));
          const to = accounts.find((a) => a.participant !== from.participant) as Account;
          const r = await bank.runToCommit(bank.transferOps(from, to, 1), 3_000);
          if (r.status !== "committed") throw new Error(`liveness transfer aborted: ${r.reason}`);
        }
        const read = await bank.runToCommit(bank.readAllOps(), 3_000);
        expect(read.status).toBe("committed");
        bank.checkRead(read);
        await sim.runFor(500);
        bank.checkQuiescent();
        sim.checkInvariants();

        stats.committed += bank.stats.committed;
        stats.aborted += bank.stats.aborted;
        stats.consistentReads += bank.stats.consistentReads;
        stats.crashes += nemesis.log.filter((l) => l.includes(" crash ")).length;
      },
      { seeds: 12 },
    );
    process.stderr.write(
      `[txn sim] ${result.seeds.length} seeds in ${(result.elapsedMs / 1000).toFixed(1)}s: ` +
        `${stats.committed} committed, ${stats.aborted} aborted, ${stats.consistentReads} consistent reads, ` +
        `${stats.crashes} crashes\n`,
    );
    // The workload must actually exercise commits, reads and crashes, or the test proves little.
    expect(stats.committed).toBeGreaterThan(result.seeds.length * 10);
    expect(stats.consistentReads).toBeGreaterThan(result.seeds.length);
    expect(stats.crashes).toBeGreaterThan(0);
  });
});
