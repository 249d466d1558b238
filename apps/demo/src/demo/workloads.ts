import type { Etcd3 } from "etcd3";
import { LatencyWindow, sleep } from "./stats.js";

export interface KvWorkloadStats {
  puts: number;
  reads: number;
  errors: number;
  /** Linearizable reads that did not return this writer's last acknowledged value: must stay 0. */
  staleReads: number;
  lastError: string | undefined;
}

/**
 * Puts and linearizable reads through the etcd API. Each writer owns its keys and reads a
 * key right after its put was acknowledged, so the read must return that value: a
 * different one is a stale read (a linearizability violation), counted and shown.
 */
export class KvWorkload {
  readonly latency = new LatencyWindow();
  readonly stats: KvWorkloadStats = { puts: 0, reads: 0, errors: 0, staleReads: 0, lastError: undefined };
  private running = false;
  private loops: Promise<void>[] = [];

  constructor(
    private readonly client: Etcd3,
    private readonly writers = 2,
    private readonly pauseMs = 10,
  ) {}

  start(): void {
    this.running = true;
    this.loops = Array.from({ length: this.writers }, (_, w) => this.loop(w));
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  private async loop(writer: number): Promise<void> {
    for (let i = 0; this.running; i++) {
      const key = `demo/writer-${writer}/key-${i % 32}`;
      const value = `${Date.now()}-${i}`;
      try {
        let t0 = performance.now();
        await this.client.put(key).value(value);
        this.latency.record(performance.now() - t0);
        this.stats.puts++;
        t0 = performance.now();
        const read = await this.client.get(key).string();
        this.latency.record(performance.now() - t0);
        this.stats.reads++;
        if (read !== value) this.stats.staleReads++;
      } catch (err) {
        this.stats.errors++;
        this.stats.lastError = oneLine(err);
        await sleep(200);
      }
      await sleep(this.pauseMs);
    }
  }
}

export interface BankStats {
  committed: number;
  /** The Txn's compare failed (another transfer touched an account first): nothing written. */
  aborted: number;
  /** The request failed or timed out: committed or not, but never half applied. */
  unknown: number;
  lastError: string | undefined;
  /** The sum of all balances read in one linearizable range, and when. */
  total: number | undefined;
  expectedTotal: number;
  balances: Record<string, number>;
  totalReadAt: number | undefined;
}

const bankPrefix = "bank/account-";

/**
 * Bank transfers with etcd Txn: read two balances with their mod revisions, then one Txn that
 * writes both only if neither changed since (optimistic concurrency, as etcd's STM does).
 * All accounts live in one replicated group, so each Txn is atomic; the sum of the balances
 * must never change, whatever is killed or partitioned.
 */
export class BankWorkload {
  readonly latency = new LatencyWindow();
  readonly stats: BankStats;
  private running = false;
  private loops: Promise<void>[] = [];
  private readonly names: string[];

  constructor(
    private readonly client: Etcd3,
    accounts = 8,
    private readonly initialBalance = 1000,
    private readonly tellers = 3,
    private readonly pauseMs = 20,
  ) {
    this.names = Array.from({ length: accounts }, (_, i) => `${bankPrefix}${String(i).padStart(2, "0")}`);
    this.stats = {
      committed: 0,
      aborted: 0,
      unknown: 0,
      lastError: undefined,
      total: undefined,
      expectedTotal: accounts * initialBalance,
      balances: {},
      totalReadAt: undefined,
    };
  }

  /** Opens the accounts that do not exist yet (a restarted demo keeps its balances). */
  async open(): Promise<void> {
    for (const name of this.names) {
      await this.client
        .if(name, "Create", "==", 0)
        .then(this.client.put(name).value(String(this.initialBalance)))
        .commit();
    }
  }

  start(): void {
    this.running = true;
    this.loops = [...Array.from({ length: this.tellers }, () => this.loop()), this.auditLoop()];
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  /** Reads every balance at one revision and sums them. */
  async audit(): Promise<number> {
    const res = await this.client.getAll().prefix(bankPrefix).exec();
    const balances: Record<string, number> = {};
    for (const kv of res.kvs)
      balances[kv.key.toString().slice(bankPrefix.length)] = Number(kv.value.toString());
    const total = Object.values(balances).reduce((a, b) => a + b, 0);
    this.stats.balances = balances;
    this.stats.total = total;
    this.stats.totalReadAt = Date.now();
    return total;
  }

  private async auditLoop(): Promise<void> {
    while (this.running) {
      try {
        await this.audit();
      } catch {
        // The next audit will tell; the teller loops count the errors.
      }
      await sleep(400);
    }
  }

  private async loop(): Promise<void> {
    while (this.running) {
      const from = this.names[Math.floor(Math.random() * this.names.length)]!;
      let to = this.names[Math.floor(Math.random() * (this.names.length - 1))]!;
      if (to === from) to = this.names.at(-1)!;
      const t0 = performance.now();
      try {
        const [a, b] = await Promise.all([this.client.get(from).exec(), this.client.get(to).exec()]);
        const ka = a.kvs[0];
        const kb = b.kvs[0];
        if (!ka || !kb) throw new Error("an account is missing");
        const balanceA = Number(ka.value.toString());
        const balanceB = Number(kb.value.toString());
        const amount = Math.min(balanceA, 1 + Math.floor(Math.random() * 50));
        const res = await this.client
          .if(from, "Mod", "==", Number(ka.mod_revision))
          .and(to, "Mod", "==", Number(kb.mod_revision))
          .then(
            this.client.put(from).value(String(balanceA - amount)),
            this.client.put(to).value(String(balanceB + amount)),
          )
          .commit();
        this.latency.record(performance.now() - t0);
        if (res.succeeded) this.stats.committed++;
        else this.stats.aborted++;
      } catch (err) {
        this.stats.unknown++;
        this.stats.lastError = oneLine(err);
        await sleep(200);
      }
      await sleep(this.pauseMs);
    }
  }
}

export function oneLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split("\n")[0]!.slice(0, 200);
}
