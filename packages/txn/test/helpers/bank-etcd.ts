import { Etcd3, type IOptions } from "etcd3";

/**
 * The bank workload's client side over the etcd API (the etcd3 npm client): accounts in
 * every shard, transfers as Txns that compare both accounts' mod_revision and write both
 * balances, reads of every account (one range over all of them, or a read-only Txn with
 * one range per shard), and the history checks run at the end.
 *
 * Every value is JSON `{ b, t, d }`: the balance, the id of the transfer that wrote it
 * ("init" for the first write) and the amount it added (negative on the paying side). A
 * key's versions, walked back through revisions, therefore tell exactly which transfers
 * were applied to it and in which order.
 */

/** First characters of the accounts, one per shard of the default 3-shard split ("0": shard 0, upper case: 1, lower case: 2). */
export const SHARD_PREFIXES = ["0", "M", "m"] as const;
/** [start, end) of a range that holds every account (and other keys, which reads skip). */
export const ALL_ACCOUNTS = { start: "0acct-", end: "macct." } as const;

const ACCOUNT = /^[0Mm]acct-\d+$/;

export const accountsOf = (perShard: number): string[] =>
  SHARD_PREFIXES.flatMap((p) => Array.from({ length: perShard }, (_, i) => `${p}acct-${i}`));

export interface Balance {
  readonly b: number;
  /** The transfer that wrote this version ("init" for the first). */
  readonly t: string;
  /** What that transfer added to this account. */
  readonly d: number;
}

export interface AccountVersion extends Balance {
  readonly key: string;
  readonly mod: bigint;
}

export function encodeBalance(v: Balance): string {
  return JSON.stringify(v);
}

export function decodeBalance(key: string, raw: Buffer | string, mod: string | bigint): AccountVersion {
  const text = raw.toString();
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new Error(`account ${key} holds "${text}", not a balance`);
  }
  const { b, t, d } = v as Partial<Balance>;
  if (typeof b !== "number" || typeof t !== "string" || typeof d !== "number")
    throw new Error(`account ${key} holds "${text}", not a balance`);
  return { key, b, t, d, mod: BigInt(mod) };
}

/** Passes every call straight through: the workload sees each error and decides itself. */
const passThrough = { execute: <T>(fn: () => Promise<T>) => fn() } as unknown as NonNullable<
  NonNullable<IOptions["faultHandling"]>["global"]
>;

/**
 * An etcd3 client bound to one node, with its retries and circuit breaker off (a breaker
 * would refuse calls for 5 s after a kill; a silent retry would hide outcomes) and a
 * deadline on every call.
 */
export function etcdClient(endpoint: string, callTimeoutMs: number): Etcd3 {
  return new Etcd3({
    hosts: endpoint,
    faultHandling: { global: passThrough, host: () => passThrough },
    defaultCallOptions: () => ({ deadline: Date.now() + callTimeoutMs }),
    grpcOptions: {
      // Reconnect quickly after a node is restarted.
      "grpc.initial_reconnect_backoff_ms": 100,
      "grpc.max_reconnect_backoff_ms": 500,
    },
  });
}

export interface Snapshot {
  readonly accounts: ReadonlyMap<string, AccountVersion>;
  /** The response's header revision. */
  readonly revision: bigint;
}

/**
 * Every account in one read that spans all shards: either one Range over all of them
 * ("range") or a read-only Txn with one Range per shard ("txn").
 */
export async function readAll(client: Etcd3, how: "range" | "txn"): Promise<Snapshot> {
  const accounts = new Map<string, AccountVersion>();
  const add = (kvs: readonly { key: Buffer; value: Buffer; mod_revision: string }[]) => {
    for (const kv of kvs) {
      const key = kv.key.toString();
      // The range over all accounts also spans other keys (every upper-case key, say).
      if (!ACCOUNT.test(key)) continue;
      accounts.set(key, decodeBalance(key, kv.value, kv.mod_revision));
    }
  };
  if (how === "range") {
    const res = await client.getAll().inRange(ALL_ACCOUNTS).exec();
    add(res.kvs);
    return { accounts, revision: BigInt(res.header.revision) };
  }
  const prefixEnd = (p: string) => Buffer.from(`${p}acct.`);
  const res = await client.kv.txn({
    compare: [],
    success: SHARD_PREFIXES.map((p) => ({
      request_range: { key: Buffer.from(`${p}acct-`), range_end: prefixEnd(p) },
    })),
    failure: [],
  });
  for (const r of res.responses) add(r.response_range.kvs);
  return { accounts, revision: BigInt(res.header.revision) };
}

/** One account's current version (a linearizable single-key read), or undefined if it does not exist. */
export async function readAccount(client: Etcd3, key: string): Promise<AccountVersion | undefined> {
  const res = await client.get(key).exec();
  const kv = res.kvs[0];
  return kv ? decodeBalance(key, kv.value, kv.mod_revision) : undefined;
}

export interface TransferPlan {
  readonly id: string;
  readonly from: AccountVersion;
  readonly to: AccountVersion;
  readonly amount: number;
}

/**
 * The transfer as one Txn: both accounts unchanged since they were read (mod_revision),
 * then both new balances. Resolves with whether the compares held and the revision.
 */
export async function transfer(
  client: Etcd3,
  t: TransferPlan,
): Promise<{ succeeded: boolean; revision: bigint }> {
  const res = await client
    .if(t.from.key, "Mod", "==", t.from.mod.toString())
    .and(t.to.key, "Mod", "==", t.to.mod.toString())
    .then(
      client.put(t.from.key).value(encodeBalance({ b: t.from.b - t.amount, t: t.id, d: -t.amount })),
      client.put(t.to.key).value(encodeBalance({ b: t.to.b + t.amount, t: t.id, d: t.amount })),
    )
    .commit();
  return { succeeded: res.succeeded, revision: BigInt(res.header.revision) };
}

/**
 * Every version of `key`, oldest first, by reading it at the revision just below each
 * version's mod_revision (nothing is compacted in these tests).
 */
export async function keyHistory(client: Etcd3, key: string): Promise<AccountVersion[]> {
  const versions: AccountVersion[] = [];
  let res = await client.get(key).exec();
  for (let kv = res.kvs[0]; kv; kv = res.kvs[0]) {
    const v = decodeBalance(key, kv.value, kv.mod_revision);
    versions.push(v);
    if (v.mod <= 1n) break;
    res = await client
      .get(key)
      .revision((v.mod - 1n).toString())
      .exec();
  }
  return versions.reverse();
}

export type Outcome =
  | { readonly kind: "committed"; readonly revision: bigint }
  | { readonly kind: "rejected" }
  /** gRPC ABORTED: the engine says the transaction had no effect. */
  | { readonly kind: "aborted" }
  | { readonly kind: "unknown"; readonly error: string };

export interface TransferRecord {
  readonly id: string;
  readonly from: string;
  readonly to: string;
  readonly amount: number;
  readonly outcome: Outcome;
}

export interface HistoryCheck {
  /** Everything wrong, one line each (empty: all good). */
  readonly problems: string[];
  /** Transfers found applied (in both accounts). */
  readonly applied: number;
  /** Of the transfers whose outcome the client never learnt: how many were applied. */
  readonly unknownApplied: number;
  readonly unknownNotApplied: number;
}

/**
 * Checks the accounts' full histories against what the clients did:
 * - each version's balance is the previous one plus what its transfer added (so every
 *   transfer was applied on top of exactly the version it compared);
 * - each transfer appears in exactly its two accounts, at one mod_revision, with opposite
 *   amounts (never half applied);
 * - each transfer a client saw committed is there at the revision it was told; each one a
 *   client saw rejected (compare failed) is not; unknown ones may be either.
 */
export function checkHistories(
  histories: ReadonlyMap<string, readonly AccountVersion[]>,
  transfers: readonly TransferRecord[],
  initial: number,
): HistoryCheck {
  const problems: string[] = [];
  const seen = new Map<string, AccountVersion[]>();
  for (const [key, versions] of histories) {
    if (versions.length === 0) {
      problems.push(`${key}: no versions`);
      continue;
    }
    const first = versions[0]!;
    if (first.t !== "init" || first.b !== initial)
      problems.push(`${key}: first version is ${JSON.stringify({ ...first, mod: String(first.mod) })}`);
    for (let i = 1; i < versions.length; i++) {
      const prev = versions[i - 1]!;
      const v = versions[i]!;
      if (v.b !== prev.b + v.d)
        problems.push(
          `${key}@${v.mod}: balance ${v.b} by ${v.t} (${v.d}) is not the previous ${prev.b}@${prev.mod} plus ${v.d}`,
        );
      if (v.t === "init") problems.push(`${key}@${v.mod}: a second init`);
      else {
        const list = seen.get(v.t) ?? [];
        list.push(v);
        seen.set(v.t, list);
      }
    }
  }
  const byId = new Map(transfers.map((t) => [t.id, t]));
  for (const [id, parts] of seen) {
    const t = byId.get(id);
    const show = parts.map((p) => `${p.key}@${p.mod} ${p.d}`).join(", ");
    if (!t) {
      problems.push(`transfer ${id} applied (${show}) but never sent`);
      continue;
    }
    const keys = parts.map((p) => p.key).sort();
    const want = [t.from, t.to].sort();
    if (parts.length !== 2 || keys[0] !== want[0] || keys[1] !== want[1])
      problems.push(`transfer ${id} ${t.from}->${t.to} is half applied or duplicated: ${show}`);
    else if (parts[0]!.mod !== parts[1]!.mod)
      problems.push(`transfer ${id} applied at two revisions: ${show}`);
    else if (parts.some((p) => p.d !== (p.key === t.from ? -t.amount : t.amount)))
      problems.push(`transfer ${id} applied with the wrong amounts: ${show}`);
    if (t.outcome.kind === "rejected" || t.outcome.kind === "aborted")
      problems.push(`transfer ${id} was ${t.outcome.kind} but applied: ${show}`);
    const o = t.outcome;
    if (o.kind === "committed" && parts.some((p) => p.mod !== o.revision))
      problems.push(`transfer ${id} committed at ${o.revision} but applied at ${show}`);
  }
  let unknownApplied = 0;
  let unknownNotApplied = 0;
  for (const t of transfers) {
    const applied = seen.has(t.id);
    if (t.outcome.kind === "committed" && !applied)
      problems.push(
        `transfer ${t.id} ${t.from}->${t.to} was committed at ${t.outcome.revision} but is missing`,
      );
    if (t.outcome.kind === "unknown") applied ? unknownApplied++ : unknownNotApplied++;
  }
  return { problems, applied: seen.size, unknownApplied, unknownNotApplied };
}

/** A small seeded PRNG (mulberry32), so the workload's choices replay from QUORUM_SEED. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
