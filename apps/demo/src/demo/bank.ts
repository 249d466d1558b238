import { prefixEnd } from "@quorum/kv";
import { type Etcd3, GRPCAbortedError } from "etcd3";
import { shardPrefixes } from "./shard-keys.js";
import { LatencyWindow, sleep } from "./stats.js";
import { oneLine } from "./workloads.js";

export interface BankAccount {
  key: string;
  shard: number;
}

export interface BankStats {
  shards: number;
  accounts: BankAccount[];
  /** Transfers whose Txn committed... */
  committed: number;
  /** ...of which between accounts of two shards: a two-phase commit over both shards' logs. */
  crossShard: number;
  /** The Txn's compare failed (an account changed since it was read): nothing written; the teller reads again. */
  compareFailed: number;
  /**
   * gRPC ABORTED: the two-phase commit gave up (it met locks on every attempt, or a shard's
   * leader was unreachable on every attempt, as during a failover); nothing written.
   */
  conflicts: number;
  /** Any other error (UNAVAILABLE, deadline): committed or not is unknown, but never half applied. */
  unknown: number;
  lastError: string | undefined;
  /** The sum of all balances, read in one consistent Range over every shard, and when. */
  total: number | undefined;
  expectedTotal: number;
  /** Balance per account key, and the sum per shard, from the last audit. */
  balances: Record<string, number>;
  shardTotals: number[];
  totalReadAt: number | undefined;
  audits: number;
  /** Audits whose total was not the expected one: must stay 0. */
  badAudits: number;
  auditErrors: number;
}

/**
 * Bank transfers with etcd Txn, with accounts in every shard: read two balances with their
 * mod revisions, then one Txn that writes both only if neither changed since (optimistic
 * concurrency, as etcd's STM does). Accounts of different shards live in different
 * consensus groups, so such a Txn is a two-phase commit run by the node that receives it
 * (@quorum/txn's ShardTxnEngine): both writes happen, at one revision, or neither. The sum of
 * the balances, read in one consistent Range over all shards, must never change, whatever
 * is killed or partitioned.
 */
export class BankWorkload {
  readonly latency = new LatencyWindow();
  readonly stats: BankStats;
  private running = false;
  private loops: Promise<void>[] = [];
  private readonly prefixes: string[];

  constructor(
    private readonly client: Etcd3,
    shards: number,
    /** At least this many accounts, spread evenly over the shards (9: 3 per shard of 3). */
    accounts = 9,
    private readonly initialBalance = 1000,
    private readonly tellers = 3,
    private readonly pauseMs = 20,
  ) {
    this.prefixes = shardPrefixes(shards, "bank");
    const accountsPerShard = Math.ceil(accounts / shards);
    // Numbered across shards ("/bank/01", "Bank/04", "bank/07"), so that a number names one account.
    const opened = this.prefixes.flatMap((prefix, shard) =>
      Array.from({ length: accountsPerShard }, (_, i) => ({
        key: `${prefix}${String(shard * accountsPerShard + i + 1).padStart(2, "0")}`,
        shard,
      })),
    );
    this.stats = {
      shards,
      accounts: opened,
      committed: 0,
      crossShard: 0,
      compareFailed: 0,
      conflicts: 0,
      unknown: 0,
      lastError: undefined,
      total: undefined,
      expectedTotal: opened.length * initialBalance,
      balances: {},
      shardTotals: [],
      totalReadAt: undefined,
      audits: 0,
      badAudits: 0,
      auditErrors: 0,
    };
  }

  /** The account key prefixes, one per shard (for etcdctl get --prefix). */
  get keyPrefixes(): readonly string[] {
    return this.prefixes;
  }

  /** Opens the accounts that do not exist yet (a restarted demo keeps its balances). */
  async open(): Promise<void> {
    for (const { key } of this.stats.accounts) {
      await this.client
        .if(key, "Create", "==", 0)
        .then(this.client.put(key).value(String(this.initialBalance)))
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

  /**
   * Reads every balance in one Range from the first shard's accounts to the last's. Over
   * several shards the node reads every shard at one revision, after waiting for the
   * two-phase commits prepared in the range (@quorum/kv's consistent cut): no transfer is
   * seen half done. Unlike a read-only Txn it takes no locks, so it waits for transfers
   * rather than conflicting with them. Other keys in between are skipped.
   */
  async audit(): Promise<number> {
    const res = await this.client.kv.range({
      key: Buffer.from(this.prefixes[0]!),
      range_end: prefixEnd(Buffer.from(this.prefixes.at(-1)!)),
    });
    const accounts = new Set(this.stats.accounts.map((a) => a.key));
    const balances: Record<string, number> = {};
    for (const kv of res.kvs) {
      const key = kv.key.toString();
      if (accounts.has(key)) balances[key] = Number(kv.value.toString());
    }
    const shardTotals = this.prefixes.map(() => 0);
    let total = 0;
    for (const { key, shard } of this.stats.accounts) {
      // A missing account counts as 0, so it shows as a wrong total.
      const balance = balances[key] ?? 0;
      shardTotals[shard]! += balance;
      total += balance;
    }
    Object.assign(this.stats, { balances, shardTotals, total, totalReadAt: Date.now() });
    this.stats.audits++;
    if (total !== this.stats.expectedTotal) this.stats.badAudits++;
    return total;
  }

  private async auditLoop(): Promise<void> {
    while (this.running) {
      try {
        await this.audit();
      } catch (err) {
        this.stats.auditErrors++;
        this.stats.lastError = `audit: ${oneLine(err)}`;
      }
      await sleep(400);
    }
  }

  private async loop(): Promise<void> {
    const accounts = this.stats.accounts;
    while (this.running) {
      const from = accounts[Math.floor(Math.random() * accounts.length)]!;
      let to = accounts[Math.floor(Math.random() * (accounts.length - 1))]!;
      if (to === from) to = accounts.at(-1)!;
      const t0 = performance.now();
      try {
        const [a, b] = await Promise.all([this.client.get(from.key).exec(), this.client.get(to.key).exec()]);
        const ka = a.kvs[0];
        const kb = b.kvs[0];
        if (!ka || !kb) throw new Error("an account is missing");
        const balanceA = Number(ka.value.toString());
        const balanceB = Number(kb.value.toString());
        const amount = Math.min(balanceA, 1 + Math.floor(Math.random() * 50));
        const res = await this.client
          .if(from.key, "Mod", "==", Number(ka.mod_revision))
          .and(to.key, "Mod", "==", Number(kb.mod_revision))
          .then(
            this.client.put(from.key).value(String(balanceA - amount)),
            this.client.put(to.key).value(String(balanceB + amount)),
          )
          .commit();
        this.latency.record(performance.now() - t0);
        if (res.succeeded) {
          this.stats.committed++;
          if (from.shard !== to.shard) this.stats.crossShard++;
        } else this.stats.compareFailed++;
      } catch (err) {
        if (err instanceof GRPCAbortedError) this.stats.conflicts++;
        else {
          this.stats.unknown++;
          await sleep(200);
        }
        this.stats.lastError = oneLine(err);
      }
      await sleep(this.pauseMs);
    }
  }
}
