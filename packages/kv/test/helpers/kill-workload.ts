import type { ServiceError } from "@grpc/grpc-js";
import { History, type KvInput, type KvOutput, type Operation } from "@quorum/sim";
import {
  Compare_CompareResult,
  Compare_CompareTarget,
  PutRequest,
  type PutResponse,
  RangeRequest,
  type RangeResponse,
  TxnRequest,
  type TxnResponse,
} from "../../src/gen/etcdserverpb/rpc.js";
import { type ProcessCluster, unary } from "./process-cluster.js";

/**
 * The workload of the SIGKILL tests (kill.test.ts's, parametrized by keys, clients, duration
 * and how the nemesis picks its victim): clients doing reads, writes and compare-and-set on
 * a few keys through random nodes over real gRPC, while a nemesis SIGKILLs and restarts a
 * node every few seconds; then final reads through every node, and (separately) a check
 * that every acknowledged write is still there at its revision.
 */

export interface Acked {
  readonly key: string;
  readonly value: string;
  readonly revision: bigint;
}

export interface KillWorkloadOptions {
  readonly keys: readonly string[];
  readonly clients?: number;
  readonly workloadMs: number;
  readonly callTimeoutMs?: number;
  /** Keys outside `keys` that `nudge` writes (one per shard, so every shard applies a normal entry). */
  readonly nudgeKeys: readonly string[];
  /** The nemesis' `n`th victim (from 0) and how to describe it (e.g. "n2 (leader of shard 1)"). */
  readonly pickVictim: (c: ProcessCluster, n: number) => Promise<{ victim: string; label: string }>;
  /**
   * Kills the test counts on: the workload runs past `workloadMs` (up to twice as long) until
   * there were this many, since on a loaded machine restarts take longer and fewer fit.
   */
  readonly minKills?: number;
  /** Pause between kills (ms, inclusive range); default [2000, 3500]. */
  readonly killEveryMs?: readonly [number, number];
  readonly tag?: string;
}

export interface KillWorkloadResult {
  /** The history without the operations that provably never reached a log. */
  readonly ops: Operation[];
  readonly completed: number;
  readonly acked: Acked[];
  readonly kills: string[];
  readonly errors: Map<string, number>;
  /** One line for failure messages. */
  readonly summary: string;
  /** Final reads (key, node) that failed 5 times, with the nodes' statuses. */
  readonly finalReadFailures: string[];
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const rand = (lo: number, hi: number) => lo + Math.floor(Math.random() * (hi - lo + 1));

export function debugLog(tag: string): (msg: string) => void {
  return (msg) => {
    if (process.env.QUORUM_DEBUG)
      process.stderr.write(`[${tag}] ${(performance.now() / 1000).toFixed(1)}s ${msg}\n`);
  };
}

/** One etcd request for one history operation; resolves with the output and the write's revision. */
export async function perform(
  cluster: ProcessCluster,
  node: string,
  key: string,
  input: KvInput,
  timeoutMs: number,
): Promise<{ output: KvOutput; revision?: bigint }> {
  const kv = cluster.kv(node);
  const k = Buffer.from(key);
  switch (input.type) {
    case "read": {
      const res = await unary<RangeResponse>(kv, "range", RangeRequest.fromPartial({ key: k }), timeoutMs);
      const found = res.kvs[0];
      return { output: { type: "read", value: found ? found.value.toString() : undefined } };
    }
    case "write": {
      const res = await unary<PutResponse>(
        kv,
        "put",
        PutRequest.fromPartial({ key: k, value: Buffer.from(String(input.value)) }),
        timeoutMs,
      );
      return { output: { type: "write" }, revision: res.header!.revision };
    }
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
              value: Buffer.from(String(input.expected)),
            };
      const res = await unary<TxnResponse>(
        kv,
        "txn",
        TxnRequest.fromPartial({
          compare: [compare],
          success: [{ requestPut: { key: k, value: Buffer.from(String(input.value)) } }],
        }),
        timeoutMs,
      );
      return { output: { type: "cas", ok: res.succeeded }, revision: res.header!.revision };
    }
  }
}

/** `etcdserver: no leader` is answered before anything is proposed; every other failure may have taken effect. */
export function neverProposed(err: unknown): boolean {
  return (err as ServiceError).details === "etcdserver: no leader";
}

/** One acknowledged write to each nudge key (outside the checked keys), through any node. */
export async function nudge(c: ProcessCluster, keys: readonly string[]): Promise<void> {
  for (const key of keys) {
    let done = false;
    for (let attempt = 0; attempt < 50 && !done; attempt++) {
      for (const node of c.nodes) {
        try {
          await unary<PutResponse>(
            c.kv(node.name),
            "put",
            PutRequest.fromPartial({ key: Buffer.from(key), value: Buffer.from(String(attempt)) }),
          );
          done = true;
          break;
        } catch {
          await sleep(100);
        }
      }
    }
    if (!done) throw new Error(`no write of ${key} succeeded\n${c.tail()}`);
  }
}

export async function runKillWorkload(
  c: ProcessCluster,
  o: KillWorkloadOptions,
): Promise<KillWorkloadResult> {
  const debug = debugLog(o.tag ?? "kill");
  const callTimeoutMs = o.callTimeoutMs ?? 3_000;
  const names = c.nodes.map((n) => n.name);
  const history = new History({ now: () => performance.now() });
  const notProposed = new Set<number>();
  const acked: Acked[] = [];
  const errors = new Map<string, number>();
  let stop = false;

  const runOp = async (client: string, node: string, key: string, input: KvInput): Promise<boolean> => {
    const id = history.invoke(client, key, input);
    try {
      const { output, revision } = await perform(c, node, key, input, callTimeoutMs);
      history.complete(id, output);
      if (revision !== undefined && (output.type === "write" || (output.type === "cas" && output.ok))) {
        acked.push({ key, value: String((input as { value: string }).value), revision });
      }
      return true;
    } catch (err) {
      history.unknown(id);
      if (neverProposed(err)) notProposed.add(id);
      const e = err as ServiceError;
      const label = `${e.code} ${e.details}`.slice(0, 80);
      if (client === "final") debug(`final read of ${key} through ${node}: ${label}`);
      errors.set(label, (errors.get(label) ?? 0) + 1);
      return false;
    }
  };

  const client = async (name: string) => {
    const seen = new Map<string, string | undefined>();
    let n = 0;
    while (!stop) {
      const key = o.keys[rand(0, o.keys.length - 1)]!;
      const node = names[rand(0, names.length - 1)]!;
      if (!c.isUp(node)) {
        await sleep(5);
        continue;
      }
      const r = Math.random();
      const value = `${name}.${++n}`;
      const input: KvInput =
        r < 0.4
          ? { type: "read" }
          : r < 0.7
            ? { type: "write", value }
            : { type: "cas", expected: Math.random() < 0.8 ? seen.get(key) : undefined, value };
      const ok = await runOp(name, node, key, input);
      if (ok && input.type !== "read") seen.set(key, value);
      if (!ok) await sleep(rand(20, 100));
      else await sleep(rand(0, 5));
    }
  };

  const kills: string[] = [];
  const [lo, hi] = o.killEveryMs ?? [2_000, 3_500];
  const nemesis = async () => {
    while (!stop) {
      await sleep(rand(lo, hi));
      if (stop) break;
      const { victim, label } = await o.pickVictim(c, kills.length);
      kills.push(label);
      debug(`kill ${label}; ${history.size()} ops so far`);
      await c.kill(victim);
      await sleep(rand(300, 1_500));
      c.spawn(victim);
      await c.node(victim).ready;
    }
  };

  const running = [...Array.from({ length: o.clients ?? 8 }, (_, i) => client(`c${i + 1}`)), nemesis()];
  await sleep(o.workloadMs);
  const overtime = Date.now() + o.workloadMs;
  while (kills.length < (o.minKills ?? 0) && Date.now() < overtime) await sleep(100);
  stop = true;
  await Promise.all(running);
  debug("workload stopped");

  // Every node up, one leader, then final reads through every node.
  for (const name of names) if (!c.isUp(name)) c.spawn(name);
  await Promise.all(c.nodes.map((n) => n.ready));
  await c.waitForLeader();
  if (c.nodes[0]!.metrics) await c.waitUntilAllKnowLeaders();
  await nudge(c, o.nudgeKeys);
  const finalReadFailures: string[] = [];
  for (const name of names) {
    for (const key of o.keys) {
      let ok = false;
      for (let attempt = 0; attempt < 5 && !ok; attempt++) {
        ok = await runOp("final", name, key, { type: "read" });
        if (!ok) await sleep(200);
      }
      if (!ok) {
        const statuses = await Promise.all(names.map(async (n) => [n, await c.status(n)] as const));
        const show = statuses.map(([n, st]) =>
          st
            ? `${n}: member ${st.header?.memberId.toString(16)} leader ${st.leader.toString(16)} term ${st.raftTerm} index ${st.raftIndex} applied ${st.raftAppliedIndex} revision ${st.header?.revision} errors ${st.errors}`
            : `${n}: no status`,
        );
        finalReadFailures.push(`final read of ${key} through ${name} failed 5 times\n${show.join("\n")}`);
      }
    }
  }

  const ops = history.operations().filter((op) => !notProposed.has(op.id));
  const completed = ops.filter((op) => op.output !== undefined).length;
  const summary = `${ops.length} operations (${completed} completed), kills: ${kills.join(", ")}, errors: ${JSON.stringify([...errors])}`;
  return { ops, completed, acked, kills, errors, summary, finalReadFailures };
}

/**
 * Reads every acknowledged write at its revision (32 readers through random nodes); returns
 * one line per write that is missing or different.
 */
export async function missingWrites(c: ProcessCluster, acked: readonly Acked[]): Promise<string[]> {
  const names = c.nodes.map((n) => n.name);
  const missing: string[] = [];
  const queue = [...acked];
  const check = async () => {
    for (let a = queue.pop(); a; a = queue.pop()) {
      const node = names[rand(0, names.length - 1)]!;
      let res: RangeResponse | undefined;
      let lastErr = "";
      for (let attempt = 0; attempt < 20 && !res; attempt++) {
        try {
          res = await unary<RangeResponse>(
            c.kv(node),
            "range",
            RangeRequest.fromPartial({ key: Buffer.from(a.key), revision: a.revision }),
          );
        } catch (err) {
          lastErr = `${(err as ServiceError).code} ${(err as ServiceError).details}`;
          await sleep(100);
        }
      }
      const kv = res?.kvs[0];
      if (!kv || kv.value.toString() !== a.value || kv.modRevision !== a.revision) {
        missing.push(
          `${a.key}=${a.value}@${a.revision} via ${node}: found ${kv ? `${kv.value}@${kv.modRevision}` : res ? "nothing" : `no answer (${lastErr})`}`,
        );
      }
    }
  };
  await Promise.all(Array.from({ length: 32 }, check));
  return missing;
}
