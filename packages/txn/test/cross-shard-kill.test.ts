import { ShardMap } from "@quorum/kv";
import type { Etcd3 } from "etcd3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { debugLog, nudge } from "../../kv/test/helpers/kill-workload.js";
import { ProcessCluster } from "../../kv/test/helpers/process-cluster.js";
import {
  type AccountVersion,
  accountsOf,
  checkHistories,
  encodeBalance,
  etcdClient,
  keyHistory,
  readAccount,
  readAll,
  type Snapshot,
  seededRandom,
  type TransferRecord,
  transfer,
} from "./helpers/bank-etcd.js";

/**
 * Issue 7, "Tests", real processes: the bank workload through the etcd API (etcd3 client)
 * against three `quorum node --shards 3` processes while nodes, mostly shard leaders, are
 * SIGKILLed and restarted. Twelve accounts, four in each shard; several clients transfer
 * between two accounts (mostly in different shards) with a Txn that compares both
 * mod_revisions and writes both balances, through random nodes; an auditor reads every
 * account in one read spanning all shards (a Range, or a read-only Txn), and every such read
 * must show the exact total. Errors (UNAVAILABLE, DEADLINE_EXCEEDED, a dead connection) leave
 * a transfer's outcome unknown: the client reads again and goes on. ABORTED is the engine's
 * "it had no effect", which is checked. At the end every process is SIGKILLed at once and
 * restarted; then the total, each account's full history (no transfer half applied, each one
 * on top of the version it compared, every committed one there at its revision) and a new
 * transfer are checked.
 *
 * The workload's choices come from QUORUM_SEED (printed on failure); process timing does not
 * replay.
 */

const SHARDS = 3;
const PER_SHARD = 4;
const INITIAL = 100;
const ACCOUNTS = accountsOf(PER_SHARD);
const TOTAL = INITIAL * ACCOUNTS.length;
const CLIENTS = 6;
const WORKLOAD_MS = 25_000;
const CALL_TIMEOUT_MS = 4_000;
// A read of all accounts waits for every prepared transaction on them, and one whose
// coordinator was killed holds its locks until recovery finishes it (the engine's
// staleAfterMs, 5 s, plus up to 1 s): the auditor waits longer than that.
const READ_TIMEOUT_MS = 10_000;
const NUDGE = ["0nudge", "Nudge", "nudge"];
const seed = Number(process.env.QUORUM_SEED ?? Math.floor(Math.random() * 2 ** 31));
const debug = debugLog("txn-kill");

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const errorLabel = (err: unknown) => {
  const e = err as { code?: number; details?: string; message?: string; name?: string };
  return `${e.name ?? "Error"} ${e.code ?? ""} ${e.details ?? e.message ?? ""}`.slice(0, 90);
};
const isAborted = (err: unknown) => (err as { code?: number }).code === 10;

describe("bank transfers across shards, three quorum node --shards 3 processes under SIGKILL", () => {
  let cluster: ProcessCluster | undefined;
  const clients = new Map<string, Etcd3>();
  const clientOf = (node: string, timeoutMs = CALL_TIMEOUT_MS) => {
    let c = clients.get(`${node}/${timeoutMs}`);
    if (!c) {
      c = etcdClient(cluster!.node(node).client, timeoutMs);
      clients.set(`${node}/${timeoutMs}`, c);
    }
    return c;
  };

  beforeAll(async () => {
    cluster = await ProcessCluster.start({ prefix: "quorum-txn-kill-", shards: SHARDS });
    await cluster.waitUntilAllKnowLeaders();
  }, 30_000);
  afterAll(async () => {
    for (const c of clients.values()) c.close();
    await cluster?.close();
  });

  it("puts four accounts in each shard", () => {
    const map = ShardMap.ofCount(SHARDS);
    const perShard = [0, 0, 0];
    for (const a of ACCOUNTS) perShard[map.shardOf(Buffer.from(a))]!++;
    expect(perShard).toEqual([PER_SHARD, PER_SHARD, PER_SHARD]);
  });

  it("conserves the total at every read of all accounts, applies no transfer in half, loses no committed one", {
    timeout: 120_000,
  }, async () => {
    const c = cluster!;
    const names = c.nodes.map((n) => n.name);
    const rnd = seededRandom(seed);
    const pick = <T>(xs: readonly T[], r = rnd) => xs[Math.floor(r() * xs.length)]!;
    const context = () => `seed ${seed} (QUORUM_SEED=${seed} replays the workload's choices)`;

    // Every account exists before the faults start.
    // (A put is idempotent here, so a slow first one is simply sent again.)
    const init = clientOf(names[0]!);
    for (const a of ACCOUNTS) {
      for (let attempt = 1; ; attempt++) {
        try {
          await init.put(a).value(encodeBalance({ b: INITIAL, t: "init", d: 0 }));
          break;
        } catch (err) {
          if (attempt >= 20) throw new Error(`could not create ${a}: ${errorLabel(err)}\n${c.tail()}`);
          await sleep(200);
        }
      }
    }

    const transfers: TransferRecord[] = [];
    const errors = new Map<string, number>();
    const countError = (err: unknown, what = "transfer") => {
      const label = `${what}: ${errorLabel(err)}`;
      errors.set(label, (errors.get(label) ?? 0) + 1);
    };
    const audits: { how: string; revision: bigint; sum: number; count: number; ms: number }[] = [];
    const badAudits: string[] = [];
    const kills: string[] = [];
    let stop = false;

    const liveNode = (r: () => number) => {
      const up = names.filter((n) => c.isUp(n));
      return up.length ? pick(up, r) : undefined;
    };

    const client = async (name: string, r: () => number) => {
      let n = 0;
      while (!stop) {
        const node = liveNode(r);
        if (!node) {
          await sleep(20);
          continue;
        }
        const etcd = clientOf(node);
        // Mostly accounts in two different shards; a fifth of the transfers stay in one shard.
        const a = Math.floor(r() * ACCOUNTS.length);
        const sameShard = r() < 0.2;
        const shardOfA = Math.floor(a / PER_SHARD);
        const shardOfB = sameShard ? shardOfA : (shardOfA + 1 + Math.floor(r() * (SHARDS - 1))) % SHARDS;
        let b = shardOfB * PER_SHARD + Math.floor(r() * PER_SHARD);
        if (b === a) b = shardOfA * PER_SHARD + ((a - shardOfA * PER_SHARD + 1) % PER_SHARD);
        let from: AccountVersion | undefined;
        let to: AccountVersion | undefined;
        try {
          [from, to] = await Promise.all([readAccount(etcd, ACCOUNTS[a]!), readAccount(etcd, ACCOUNTS[b]!)]);
        } catch (err) {
          countError(err);
          await sleep(20 + r() * 80);
          continue;
        }
        if (!from || !to) throw new Error(`account ${from ? ACCOUNTS[b] : ACCOUNTS[a]} vanished`);
        const amount = Math.min(from.b, 1 + Math.floor(r() * 10));
        if (amount === 0) continue;
        const id = `${name}.${++n}`;
        const base = { id, from: from.key, to: to.key, amount };
        try {
          const res = await transfer(etcd, { id, from, to, amount });
          transfers.push({
            ...base,
            outcome: res.succeeded ? { kind: "committed", revision: res.revision } : { kind: "rejected" },
          });
        } catch (err) {
          countError(err);
          // ABORTED is the engine's "it had no effect, retry it"; anything else may have taken effect.
          transfers.push({
            ...base,
            outcome: isAborted(err) ? { kind: "aborted" } : { kind: "unknown", error: errorLabel(err) },
          });
          await sleep(20 + r() * 80);
        }
      }
    };

    const checkSnapshot = (how: string, s: Snapshot, ms = 0) => {
      let sum = 0;
      for (const v of s.accounts.values()) sum += v.b;
      audits.push({ how, revision: s.revision, sum, count: s.accounts.size, ms });
      if (sum !== TOTAL || s.accounts.size !== ACCOUNTS.length) {
        const show = [...s.accounts.values()].map((v) => `${v.key}=${v.b}@${v.mod} (${v.t})`).join(" ");
        badAudits.push(`${how} read at ${s.revision}: ${s.accounts.size} accounts, total ${sum}: ${show}`);
      }
    };

    const auditor = async (r: () => number) => {
      for (let i = 0; !stop; i++) {
        const node = liveNode(r);
        if (!node) {
          await sleep(20);
          continue;
        }
        const how = i % 2 === 0 ? "range" : "txn";
        const t0 = performance.now();
        try {
          const snapshot = await readAll(clientOf(node, READ_TIMEOUT_MS), how);
          checkSnapshot(how, snapshot, performance.now() - t0);
          debug(`read(${how}) via ${node} ok in ${(performance.now() - t0).toFixed(0)} ms`);
        } catch (err) {
          countError(err, `read(${how})`);
          debug(
            `read(${how}) via ${node} failed in ${(performance.now() - t0).toFixed(0)} ms: ${errorLabel(err)}`,
          );
        }
        await sleep(50 + r() * 100);
      }
    };

    const nemesis = async (r: () => number) => {
      while (!stop) {
        await sleep(1_800 + r() * 1_200);
        if (stop) break;
        const leaders = await c.shardLeaders();
        const shard = Math.floor(r() * SHARDS);
        const leader = leaders[shard];
        const victim = leader && r() < 0.75 ? leader : pick(names, r);
        const led = leaders.flatMap((l, i) => (l === victim ? [i] : []));
        const label = led.length ? `${victim} (leader of shard ${led.join("+")})` : victim;
        kills.push(label);
        debug(`kill ${label}; ${transfers.length} transfers so far`);
        await c.kill(victim);
        await sleep(300 + r() * 1_200);
        c.spawn(victim);
        await c.node(victim).ready;
      }
    };

    const running = [
      ...Array.from({ length: CLIENTS }, (_, i) => client(`c${i + 1}`, seededRandom(seed + 1 + i))),
      auditor(seededRandom(seed + 100)),
      nemesis(seededRandom(seed + 200)),
    ];
    await sleep(WORKLOAD_MS);
    stop = true;
    await Promise.all(running);

    const count = (kind: string) => transfers.filter((t) => t.outcome.kind === kind).length;
    const reads = (how: string) => audits.filter((a) => a.how === how).length;
    const summary = () =>
      `${context()}; ${transfers.length} transfers (${count("committed")} committed, ${count("rejected")} rejected, ${count("aborted")} aborted, ${count("unknown")} unknown), reads of all accounts: ${reads("range")} by Range, ${reads("txn")} by read-only Txn (slowest ${Math.round(Math.max(0, ...audits.map((a) => a.ms)))} ms), kills: ${kills.join(", ")}, errors: ${JSON.stringify([...errors])}`;
    debug(summary());

    // Every process dies at once (decisions still on their way to other shards die with
    // them); after the restart recovery must finish or abort every prepared part.
    await c.killAll();
    for (const name of names) c.spawn(name);
    await Promise.all(c.nodes.map((n) => n.ready));
    await c.waitUntilAllKnowLeaders(20_000);
    await nudge(c, NUDGE);

    // A linearizable read of all accounts waits for every intent on them: it returns once
    // recovery has resolved them all.
    let last: Snapshot | undefined;
    let lastErr = "";
    const readDeadline = Date.now() + 30_000;
    while (!last && Date.now() < readDeadline) {
      try {
        last = await readAll(clientOf(pick(names), READ_TIMEOUT_MS), "range");
      } catch (err) {
        lastErr = errorLabel(err);
        await sleep(200);
      }
    }
    if (!last)
      throw new Error(`no read of all accounts after the restart: ${lastErr}\n${summary()}\n${c.tail()}`);
    checkSnapshot("final", last);

    const histories = new Map<string, AccountVersion[]>();
    for (const key of ACCOUNTS) {
      for (let attempt = 0; !histories.has(key); attempt++) {
        try {
          histories.set(key, await keyHistory(clientOf(names[attempt % names.length]!), key));
        } catch (err) {
          if (attempt >= 20) throw new Error(`no history of ${key}: ${errorLabel(err)}\n${summary()}`);
          await sleep(200);
        }
      }
    }
    const check = checkHistories(histories, transfers, INITIAL);
    for (const key of ACCOUNTS) {
      const now = last.accounts.get(key);
      const newest = histories.get(key)!.at(-1);
      if (now?.mod !== newest?.mod)
        check.problems.push(`${key}: final read @${now?.mod}, history ends @${newest?.mod}`);
    }
    debug(
      `${check.applied} transfers applied; unknown outcomes: ${check.unknownApplied} applied, ${check.unknownNotApplied} not`,
    );

    expect(badAudits, summary()).toEqual([]);
    expect(check.problems, summary()).toEqual([]);

    // The run did what it claims: faults hit shard leaders, transfers crossed shards and
    // committed, and reads of all accounts (both kinds) succeeded during it.
    const map = ShardMap.ofCount(SHARDS);
    const crossCommitted = transfers.filter(
      (t) =>
        t.outcome.kind === "committed" && map.shardOf(Buffer.from(t.from)) !== map.shardOf(Buffer.from(t.to)),
    ).length;
    expect(kills.length, summary()).toBeGreaterThanOrEqual(3);
    expect(
      kills.some((k) => k.includes("(leader")),
      summary(),
    ).toBe(true);
    expect(crossCommitted, summary()).toBeGreaterThan(30);
    expect(reads("range"), summary()).toBeGreaterThanOrEqual(2);
    expect(reads("txn"), summary()).toBeGreaterThanOrEqual(2);

    // And the system still works: a new transfer across shards commits.
    const etcd = clientOf(names[0]!);
    let committed = false;
    for (let attempt = 0; attempt < 20 && !committed; attempt++) {
      try {
        const from = await readAccount(etcd, ACCOUNTS[0]!);
        const to = await readAccount(etcd, ACCOUNTS[ACCOUNTS.length - 1]!);
        const amount = Math.min(1, from!.b);
        committed = (await transfer(etcd, { id: "final", from: from!, to: to!, amount })).succeeded;
      } catch (err) {
        countError(err);
        await sleep(200);
      }
    }
    expect(committed, summary()).toBe(true);
    const after = await readAll(etcd, "txn");
    checkSnapshot("after", after);
    expect(badAudits, summary()).toEqual([]);
  });
});

// The checks above are only as good as checkHistories: it must catch each kind of anomaly.
describe("the bank history check", () => {
  const v = (key: string, b: number, t: string, d: number, mod: number): AccountVersion => ({
    key,
    b,
    t,
    d,
    mod: BigInt(mod),
  });
  const committed = (id: string, from: string, to: string, amount: number, revision: number) =>
    ({ id, from, to, amount, outcome: { kind: "committed", revision: BigInt(revision) } }) as const;
  const good = () =>
    new Map([
      ["0acct-0", [v("0acct-0", 100, "init", 0, 2), v("0acct-0", 95, "c1.1", -5, 10)]],
      ["macct-0", [v("macct-0", 100, "init", 0, 3), v("macct-0", 105, "c1.1", 5, 10)]],
    ]);

  it("accepts a transfer applied in both accounts at its revision", () => {
    const r = checkHistories(good(), [committed("c1.1", "0acct-0", "macct-0", 5, 10)], 100);
    expect(r.problems).toEqual([]);
    expect(r.applied).toBe(1);
  });

  it("finds a half-applied transfer", () => {
    const h = good();
    h.set("macct-0", [v("macct-0", 100, "init", 0, 3)]);
    const r = checkHistories(h, [{ ...committed("c1.1", "0acct-0", "macct-0", 5, 10) }], 100);
    expect(r.problems.join("\n")).toMatch(/c1\.1 .*half applied/);
  });

  it("finds a committed transfer that is missing, and a rejected or aborted one that was applied", () => {
    const h = new Map([
      ["0acct-0", [v("0acct-0", 100, "init", 0, 2)]],
      ["macct-0", [v("macct-0", 100, "init", 0, 3)]],
    ]);
    expect(checkHistories(h, [committed("c1.1", "0acct-0", "macct-0", 5, 10)], 100).problems).toHaveLength(1);
    for (const kind of ["rejected", "aborted"] as const) {
      const r = checkHistories(
        good(),
        [{ id: "c1.1", from: "0acct-0", to: "macct-0", amount: 5, outcome: { kind } }],
        100,
      );
      expect(r.problems.join("\n")).toContain(`was ${kind} but applied`);
    }
  });

  it("finds a transfer applied at two revisions, at another revision than acknowledged, or on a stale balance", () => {
    const split = good();
    split.set("macct-0", [v("macct-0", 100, "init", 0, 3), v("macct-0", 105, "c1.1", 5, 11)]);
    expect(
      checkHistories(split, [committed("c1.1", "0acct-0", "macct-0", 5, 10)], 100).problems.join("\n"),
    ).toContain("two revisions");
    expect(
      checkHistories(good(), [committed("c1.1", "0acct-0", "macct-0", 5, 9)], 100).problems.join("\n"),
    ).toContain("committed at 9");
    const stale = good();
    stale.set("0acct-0", [v("0acct-0", 100, "init", 0, 2), v("0acct-0", 90, "c1.1", -5, 10)]);
    expect(
      checkHistories(stale, [committed("c1.1", "0acct-0", "macct-0", 5, 10)], 100).problems.join("\n"),
    ).toContain("is not the previous");
  });
});
