#!/usr/bin/env node
// Transactions within one shard versus transactions across shards, same cluster, same run.
//
// Starts three `quorum node --shards 3` processes on 127.0.0.1 (Raft; every log append is
// fsynced; data in a temp dir) and runs bank transfers through the etcd API: each transfer is
// one Txn that compares both accounts' mod_revision and puts both new balances, as a client
// of etcd would write it.
//   single-N: N clients, each transferring between two accounts of ONE shard (the one-round
//             fast path: one entry in that shard's log)
//   cross-N:  N clients, each transferring between accounts in TWO shards (the cross-shard
//             engine: prepare in both shards' logs, answered once both are prepared, the
//             decisions in the background)
// at N = 16 and 64 (BENCH_CLIENTS). Every client owns its own pair of accounts, so no two
// transfers ever touch the same key: the benchmark measures the protocol, not contention (a
// compare that fails or a lock conflict is counted and reported; both should be 0). Client w's
// pairs are spread over the shards (single: shard w mod 3; cross: shards w mod 3 and
// (w+1) mod 3), and each request goes to the leader of its anchor shard (the lowest shard
// the Txn touches; found via /status), as kv-bench sends each key to its shard's leader.
// Where the shards' leaders are matters: a cross pair whose two shards are led from different
// nodes costs a forwarded prepare and decide (gRPC between nodes); the log lines and the JSON
// (`splitPairs`) say what share of the cross pairs was split so, and the cross p50 is also
// given by placement (`colocatedP50Ms`, `splitP50Ms`: the same measurements, side by side).
// Leaders are wherever the elections put them, so compare runs with the same placement.
//
// Per client count, rounds alternate the kinds (round r starts with single when r is even), and
// medians are quoted. Prints a table, the cross/single ratios against the issue's goal
// (cross-shard p50 at most 2x single-shard, throughput at least half) and one JSON line. The
// table also gives the cluster's CPU during each measurement and the engine's retried
// attempts (quorum_txn_cross_shard_total{outcome="conflict"}, all nodes: lock conflicts and
// transient errors; 0 when the pairs are really conflict-free).
//
// Options (env): BENCH_ROUNDS (3), BENCH_SECONDS (3), BENCH_WARMUP_SECONDS (0.5),
// BENCH_CLIENTS ("16,64"), BENCH_KINDS ("single,cross"; one kind alone, e.g. to profile it,
// prints no ratios), BENCH_PROFILE_DIR (run the nodes with --cpu-prof into that dir,
// written when they stop at the end), BENCH_ENDPOINT_MODE ("leader": the anchor shard's
// leader; "spread": clients spread over every node, which forwards or coordinates).
// A run with the defaults takes about a minute. Stops by itself, kills every process it
// started, removes its temp dir.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import grpc from "@grpc/grpc-js";
import { defaultSplitPoints, ShardMap } from "@quorum/kv";
import hdr from "hdr-histogram-js";
import {
  Compare_CompareResult,
  Compare_CompareTarget,
  PutRequest,
  PutResponse,
  TxnRequest,
  TxnResponse,
} from "../../kv/dist/gen/etcdserverpb/rpc.js";

const num = (name, fallback) => {
  const raw = process.env[name];
  const v = Number(raw ?? fallback);
  if (!Number.isFinite(v) || v <= 0) {
    process.stderr.write(`txn-bench: ${name} must be a positive number, got "${raw}"\n`);
    process.exit(2);
  }
  return v;
};
const ROUNDS = num("BENCH_ROUNDS", 3);
const SECONDS = num("BENCH_SECONDS", 3);
const WARMUP_SECONDS = Number(process.env.BENCH_WARMUP_SECONDS ?? 0.5);
const CLIENT_COUNTS = (process.env.BENCH_CLIENTS ?? "16,64").split(",").map((s) => {
  const n = Number(s.trim());
  if (!Number.isInteger(n) || n < 1 || n > 1024) {
    process.stderr.write(`txn-bench: BENCH_CLIENTS must list integers from 1 to 1024, got "${s}"\n`);
    process.exit(2);
  }
  return n;
});
const ENDPOINT_MODE = process.env.BENCH_ENDPOINT_MODE ?? "leader";
if (!["leader", "spread"].includes(ENDPOINT_MODE)) {
  process.stderr.write(`txn-bench: BENCH_ENDPOINT_MODE must be leader or spread, got "${ENDPOINT_MODE}"\n`);
  process.exit(2);
}
const PROFILE_DIR = process.env.BENCH_PROFILE_DIR;
const SHARDS = 3;
const KINDS = (process.env.BENCH_KINDS ?? "single,cross").split(",").map((k) => k.trim());
if (KINDS.length === 0 || KINDS.some((k) => k !== "single" && k !== "cross")) {
  process.stderr.write(
    `txn-bench: BENCH_KINDS must list single and/or cross, got "${process.env.BENCH_KINDS}"\n`,
  );
  process.exit(2);
}
const P50_GOAL = 2; // cross-shard p50 at most this multiple of single-shard's
const THROUGHPUT_GOAL = 0.5; // cross-shard transfers/s at least this share of single-shard's
const MAX_CONNECTIONS = 8;
const INITIAL_BALANCE = 1_000_000;
const WATCHDOG_MS = 10 * 60_000;

const cli = fileURLToPath(new URL("../../../apps/demo/dist/cli.js", import.meta.url));
const children = new Set();
let tempDir;
let cleaned = false;

function cleanup() {
  if (cleaned) return;
  cleaned = true;
  for (const child of children) {
    try {
      child.kill("SIGKILL");
    } catch {}
  }
  if (tempDir) rmSync(tempDir, { recursive: true, force: true });
}
process.on("exit", cleanup);
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    cleanup();
    process.exit(130);
  });
}
const watchdog = setTimeout(() => {
  process.stderr.write(`txn-bench: still running after ${WATCHDOG_MS / 60_000} min, giving up\n`);
  cleanup();
  process.exit(1);
}, WATCHDOG_MS);
watchdog.unref();

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (msg) => process.stderr.write(`[txn-bench] ${msg}\n`);

async function freePorts(n) {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise((resolve, reject) => {
          const s = createServer();
          s.once("error", reject);
          s.listen(0, "127.0.0.1", () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => s.address().port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

// ---- raw gRPC ---------------------------------------------------------------------------

const identity = (b) => b;

function channel(endpoint, index) {
  // A distinct option per connection: grpc-js would otherwise share one subchannel.
  return new grpc.Client(endpoint, grpc.credentials.createInsecure(), { "bench.connection": index });
}

function call(client, path, request, timeoutMs = 10_000) {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      path,
      identity,
      identity,
      request,
      { deadline: Date.now() + timeoutMs },
      (err, res) => (err ? reject(err) : resolve(res)),
    );
  });
}

// ---- the cluster ------------------------------------------------------------------------

async function startCluster() {
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run \`pnpm build\` first`);
  tempDir = mkdtempSync(join(tmpdir(), "txn-bench-"));
  const ports = await freePorts(9);
  const nodes = [0, 1, 2].map((i) => ({
    name: `n${i + 1}`,
    client: `127.0.0.1:${ports[3 * i]}`,
    peer: `127.0.0.1:${ports[3 * i + 1]}`,
    metrics: `127.0.0.1:${ports[3 * i + 2]}`,
  }));
  const initial = nodes.map((n) => `${n.name}=${n.peer}`).join(",");
  if (PROFILE_DIR) mkdirSync(PROFILE_DIR, { recursive: true });
  for (const n of nodes) {
    const flags = PROFILE_DIR
      ? ["--cpu-prof", `--cpu-prof-dir=${PROFILE_DIR}`, `--cpu-prof-name=txn-${n.name}.cpuprofile`]
      : [];
    const child = spawn(
      process.execPath,
      [
        ...flags,
        cli,
        "node",
        "--name",
        n.name,
        "--data-dir",
        join(tempDir, n.name),
        "--listen-client",
        n.client,
        "--listen-peer",
        n.peer,
        "--initial-cluster",
        initial,
        "--initial-cluster-token",
        `txn-bench-${process.pid}`,
        "--listen-metrics",
        n.metrics,
        "--shards",
        String(SHARDS),
        "--log-level",
        "warn",
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    children.add(child);
    let output = "";
    const keep = (d) => {
      output = (output + d.toString()).slice(-8_000);
    };
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    child.on("exit", (code, signal) => {
      children.delete(child);
      if (!cleaned && !child.stopping) log(`${n.name} exited (${signal ?? code}):\n${output}`);
    });
    n.process = child;
  }
  return { nodes, version: JSON.parse(readFileSync(new URL("../package.json", import.meta.url))).version };
}

async function stopCluster(cluster, graceful) {
  await Promise.all(
    cluster.nodes.map(
      ({ process: p }) =>
        new Promise((resolve) => {
          if (p.exitCode !== null || p.signalCode !== null) return resolve();
          p.stopping = true;
          p.once("exit", resolve);
          p.kill(graceful ? "SIGTERM" : "SIGKILL");
          if (graceful) setTimeout(() => p.kill("SIGKILL"), 15_000).unref();
        }),
    ),
  );
}

const nodeStatus = (n) =>
  fetch(`http://${n.metrics}/status`, { signal: AbortSignal.timeout(1_000) })
    .then((r) => r.json())
    .catch(() => undefined);

/** Each shard's leader (client endpoint), once every node agrees on it. */
async function shardLeaders(cluster, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const statuses = await Promise.all(cluster.nodes.map(nodeStatus));
    const leaders = Array.from({ length: SHARDS }, (_, i) => {
      const ids = new Set(statuses.map((s) => s?.shards?.[i]?.leaderId));
      const [id] = ids;
      return ids.size === 1 ? cluster.nodes.find((n) => n.name === id)?.client : undefined;
    });
    if (leaders.every(Boolean)) return leaders;
    await sleep(200);
  }
  throw new Error(`not every shard has a leader all nodes agree on after ${timeoutMs} ms`);
}

/** Attempts of cross-shard Txns the engines retried so far, over every node. */
async function engineRetries(cluster) {
  const texts = await Promise.all(
    cluster.nodes.map((n) =>
      fetch(`http://${n.metrics}/metrics`, { signal: AbortSignal.timeout(2_000) })
        .then((r) => r.text())
        .catch(() => ""),
    ),
  );
  let sum = 0;
  for (const text of texts) {
    const line = text
      .split("\n")
      .find((l) => l.startsWith('quorum_txn_cross_shard_total{outcome="conflict"}'));
    if (line) sum += Number(line.split(" ")[1]) || 0;
  }
  return sum;
}

/** CPU seconds (user + system) a process has used so far, from /proc. */
function cpuSeconds(pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

// ---- accounts and transfers -------------------------------------------------------------

// One first byte per shard range ("/" for shard 0, then each split point), checked against the
// store's own map, so a key's shard never depends on a guess.
const shardMap = new ShardMap(defaultSplitPoints(SHARDS));
const prefixes = Array.from({ length: SHARDS }, (_, s) =>
  s === 0 ? "/" : defaultSplitPoints(SHARDS)[s - 1].toString("latin1"),
);
const maxClients = Math.max(...CLIENT_COUNTS);

/** Client w's two accounts for each kind, with their shards. */
function pairOf(kind, w) {
  const s1 = w % SHARDS;
  const s2 = kind === "single" ? s1 : (w + 1) % SHARDS;
  const a = Buffer.from(`${prefixes[s1]}bench/${kind}-${w}-a`);
  const b = Buffer.from(`${prefixes[s2]}bench/${kind}-${w}-b`);
  if (shardMap.shardOf(a) !== s1 || shardMap.shardOf(b) !== s2)
    throw new Error(`accounts ${a} / ${b} are not in shards ${s1} / ${s2}`);
  return { a, b, shards: [s1, s2], anchor: Math.min(s1, s2) };
}

/** Every account, with its balance and mod_revision as its only writer last saw them. */
const accounts = new Map();
const accountOf = (key) => accounts.get(key.toString("latin1"));

const encodePut = (key, balance) =>
  Buffer.from(
    PutRequest.encode(PutRequest.fromPartial({ key, value: Buffer.from(String(balance)) })).finish(),
  );

function transferRequest(from, to, amount) {
  const compare = (acct) => ({
    key: acct.key,
    target: Compare_CompareTarget.MOD,
    result: Compare_CompareResult.EQUAL,
    modRevision: acct.mod,
  });
  const put = (acct, balance) => ({ requestPut: { key: acct.key, value: Buffer.from(String(balance)) } });
  return Buffer.from(
    TxnRequest.encode(
      TxnRequest.fromPartial({
        compare: [compare(from), compare(to)],
        success: [put(from, from.balance - amount), put(to, to.balance + amount)],
      }),
    ).finish(),
  );
}

async function createAccounts(leaders) {
  const keys = KINDS.flatMap((kind) =>
    Array.from({ length: maxClients }, (_, w) => pairOf(kind, w)).flatMap((p) => [p.a, p.b]),
  );
  const channels = leaders.map((l, i) => channel(l, 1_000 + i));
  for (let i = 0; i < keys.length; i += 32) {
    await Promise.all(
      keys.slice(i, i + 32).map(async (key) => {
        const res = PutResponse.decode(
          await call(
            channels[shardMap.shardOf(key)],
            "/etcdserverpb.KV/Put",
            encodePut(key, INITIAL_BALANCE),
          ),
        );
        accounts.set(key.toString("latin1"), { key, balance: INITIAL_BALANCE, mod: res.header.revision });
      }),
    );
  }
  for (const c of channels) c.close();
}

// ---- one measurement --------------------------------------------------------------------

async function runLoad(cluster, kind, clients) {
  const leaders = await shardLeaders(cluster);
  cluster.placement = leaders.map((e) => cluster.nodes.find((n) => n.client === e).name).join(",");
  const pairs = Array.from({ length: clients }, (_, w) => pairOf(kind, w));
  // Pairs whose two shards are led from different nodes: their prepare (and decide) on the
  // other shard is forwarded over the ShardTxn gRPC service, one more hop.
  const isSplit = pairs.map((p) => leaders[p.shards[0]] !== leaders[p.shards[1]]);
  const split = isSplit.filter(Boolean).length / clients;
  const endpoints = cluster.nodes.map((n) => n.client);
  const targetOf = (w) =>
    ENDPOINT_MODE === "leader" ? leaders[pairs[w].anchor] : endpoints[w % endpoints.length];
  const targets = [...new Set(pairs.map((_, w) => targetOf(w)))];
  const perTarget = Math.min(clients, MAX_CONNECTIONS);
  const channels = new Map(
    targets.map((t, ti) => [
      t,
      Array.from({ length: perTarget }, (_, i) => channel(t, ti * MAX_CONNECTIONS + i)),
    ]),
  );
  await Promise.all(
    [...channels.values()]
      .flat()
      .map(
        (c) =>
          new Promise((resolve, reject) =>
            c.waitForReady(Date.now() + 5_000, (e) => (e ? reject(e) : resolve())),
          ),
      ),
  );
  const newHistogram = () =>
    hdr.build({
      lowestDiscernibleValue: 1,
      highestTrackableValue: 120_000_000,
      numberOfSignificantValueDigits: 3,
    });
  const histogram = newHistogram();
  // The same latencies again by the pair's placement: both shards led from one node, or split.
  const byPlacement = { colocated: newHistogram(), split: newHistogram() };
  let measuring = false;
  let done = false;
  let count = 0;
  let errors = 0;
  let compareFailed = 0;
  let firstError;
  const worker = async (w) => {
    const c = channels.get(targetOf(w))[w % perTarget];
    const { a, b } = pairs[w];
    for (let n = 0; !done; n++) {
      // Back and forth between the pair, so balances stay positive.
      const [from, to] = n % 2 === 0 ? [accountOf(a), accountOf(b)] : [accountOf(b), accountOf(a)];
      const amount = 1 + (n % 7);
      const t0 = performance.now();
      try {
        const res = TxnResponse.decode(
          await call(c, "/etcdserverpb.KV/Txn", transferRequest(from, to, amount)),
        );
        if (!res.succeeded) {
          // Only this client writes these keys, so this means a lost update somewhere: count it.
          compareFailed++;
          throw new Error(`a transfer between ${from.key} and ${to.key} found them changed`);
        }
        from.balance -= amount;
        to.balance += amount;
        from.mod = to.mod = res.header.revision;
        if (measuring) {
          const us = Math.max(1, Math.round((performance.now() - t0) * 1000));
          histogram.recordValue(us);
          byPlacement[isSplit[w] ? "split" : "colocated"].recordValue(us);
          count++;
        }
      } catch (err) {
        if (measuring) errors++;
        firstError ??= err;
        // The outcome is unknown (or the revisions stale): learn both accounts again.
        await refresh(c, [from, to]).catch(() => sleep(50));
      }
    }
  };
  const workers = Array.from({ length: clients }, (_, w) => worker(w));
  await sleep(WARMUP_SECONDS * 1000);
  const pids = cluster.nodes.map((n) => n.process.pid);
  const cpuBefore = pids.map(cpuSeconds);
  const retriesBefore = await engineRetries(cluster);
  measuring = true;
  const began = performance.now();
  await sleep(SECONDS * 1000);
  measuring = false;
  const elapsed = (performance.now() - began) / 1000;
  const cpuAfter = pids.map(cpuSeconds);
  const retriesAfter = await engineRetries(cluster);
  done = true;
  await Promise.all(workers);
  for (const c of [...channels.values()].flat()) c.close();
  histogram.destroy?.();
  const result = {
    txnPerSec: count / elapsed,
    p50Ms: histogram.getValueAtPercentile(50) / 1000,
    p99Ms: histogram.getValueAtPercentile(99) / 1000,
    errors,
    compareFailed,
    // Share of one core used by all three nodes during the measurement.
    clusterCpu: cpuAfter.reduce((s, v, i) => s + v - cpuBefore[i], 0) / elapsed,
    // Attempts of cross-shard Txns the engine retried (lock conflicts or transient errors).
    engineRetries: retriesAfter - retriesBefore,
    splitPairs: split,
    ...(kind === "cross" ? placementP50s(byPlacement) : {}),
  };
  if (errors > 0) log(`${kind}-${clients}: ${errors} errors, first: ${firstError?.message}`);
  return result;
}

/** p50 of the cross transfers by placement of their pair's leaders (undefined: no such pair). */
function placementP50s(byPlacement) {
  const p50 = (h) => (h.totalCount > 0 ? h.getValueAtPercentile(50) / 1000 : undefined);
  return { colocatedP50Ms: p50(byPlacement.colocated), splitP50Ms: p50(byPlacement.split) };
}

/** Reads the accounts' balances and revisions again (after an error whose outcome is unknown). */
async function refresh(c, accts) {
  const req = Buffer.from(
    TxnRequest.encode(
      TxnRequest.fromPartial({ success: accts.map((acct) => ({ requestRange: { key: acct.key } })) }),
    ).finish(),
  );
  const res = TxnResponse.decode(await call(c, "/etcdserverpb.KV/Txn", req));
  res.responses.forEach((r, i) => {
    const kv = r.responseRange.kvs[0];
    accts[i].balance = Number(kv.value.toString());
    accts[i].mod = kv.modRevision;
  });
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/** Medians over the rounds of the cross p50s by placement, where a round had such pairs. */
function placementSummary(runs) {
  const out = {};
  for (const k of ["colocatedP50Ms", "splitP50Ms"]) {
    const xs = runs.map((r) => r[k]).filter((x) => x !== undefined);
    if (xs.length > 0) out[k] = Number(median(xs).toFixed(2));
  }
  return out;
}

// ---- main -------------------------------------------------------------------------------

async function main() {
  const loadBefore = loadavg()[0];
  if (loadBefore > availableParallelism())
    log(
      `1-min load average ${loadBefore.toFixed(1)} on ${availableParallelism()} cores: the machine is busy, numbers will be noisy`,
    );
  const cluster = await startCluster();
  try {
    const leaders = await shardLeaders(cluster);
    log(`3 nodes, ${SHARDS} Raft groups, shard leaders ${leaders.join(", ")}`);
    await createAccounts(leaders);
    log(`${accounts.size} accounts, ${maxClients} pairs per kind, one pair per client`);

    const results = {};
    for (const clients of CLIENT_COUNTS) {
      for (let round = 0; round < ROUNDS; round++) {
        const order = round % 2 === 0 ? KINDS : [...KINDS].reverse();
        for (const kind of order) {
          const r = await runLoad(cluster, kind, clients);
          (results[`${kind}-${clients}`] ??= { kind, clients, runs: [] }).runs.push(r);
          log(
            `${kind}-${clients} round ${round + 1}/${ROUNDS}: ${r.txnPerSec.toFixed(0)} txn/s, p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms, cluster cpu ${(r.clusterCpu * 100).toFixed(0)}%, ${r.engineRetries} engine retries, shard leaders on ${cluster.placement}${kind === "cross" ? ` (${Math.round(r.splitPairs * 100)}% of pairs led from two nodes)` : ""}`,
          );
        }
      }
    }

    const summary = {};
    for (const [name, { kind, clients, runs }] of Object.entries(results)) {
      const med = (f, digits) => Number(median(runs.map(f)).toFixed(digits));
      summary[name] = {
        kind,
        clients,
        txnPerSec: Math.round(median(runs.map((r) => r.txnPerSec))),
        p50Ms: med((r) => r.p50Ms, 2),
        p99Ms: med((r) => r.p99Ms, 2),
        clusterCpu: med((r) => r.clusterCpu, 2),
        errors: runs.reduce((s, r) => s + r.errors, 0),
        compareFailed: runs.reduce((s, r) => s + r.compareFailed, 0),
        engineRetries: runs.reduce((s, r) => s + r.engineRetries, 0),
        splitPairs: med((r) => r.splitPairs, 2),
        ...(kind === "cross" ? placementSummary(runs) : {}),
      };
    }
    const ratios = {};
    for (const clients of CLIENT_COUNTS) {
      const s = summary[`single-${clients}`];
      const x = summary[`cross-${clients}`];
      if (!s || !x) continue;
      ratios[clients] = {
        throughput: Number((x.txnPerSec / s.txnPerSec).toFixed(3)),
        p50: Number((x.p50Ms / s.p50Ms).toFixed(3)),
        p99: Number((x.p99Ms / s.p99Ms).toFixed(3)),
      };
    }
    const goalByClients = Object.fromEntries(
      Object.entries(ratios).map(([clients, r]) => [
        clients,
        { p50AtMost2x: r.p50 <= P50_GOAL, throughputAtLeastHalf: r.throughput >= THROUGHPUT_GOAL },
      ]),
    );
    const goal = {
      met:
        Object.keys(goalByClients).length > 0 &&
        Object.values(goalByClients).every((g) => g.p50AtMost2x && g.throughputAtLeastHalf),
      clients: goalByClients,
    };
    const loadAfter = loadavg()[0];

    const pad = (s, n) => String(s).padStart(n);
    const header = `${"scenario".padEnd(10)} ${pad("txn/s", 7)} ${pad("p50 ms", 8)} ${pad("p99 ms", 8)} ${pad("cluster cpu", 11)} ${pad("errors", 6)} ${pad("cmp failed", 10)} ${pad("retries", 7)}`;
    const lines = [header, "-".repeat(header.length)];
    for (const clients of CLIENT_COUNTS) {
      for (const kind of KINDS) {
        const s = summary[`${kind}-${clients}`];
        lines.push(
          `${`${kind}-${clients}`.padEnd(10)} ${pad(s.txnPerSec, 7)} ${pad(s.p50Ms.toFixed(2), 8)} ${pad(s.p99Ms.toFixed(2), 8)} ${pad(`${Math.round(s.clusterCpu * 100)}%`, 11)} ${pad(s.errors, 6)} ${pad(s.compareFailed, 10)} ${pad(s.engineRetries, 7)}`,
        );
      }
    }
    const fmt = (x) => `${x.toFixed(2)}x`;
    const ratioLines = [
      `${"cross / single".padEnd(16)} ${pad("txn/s", 8)} ${pad("p50", 8)} ${pad("p99", 8)}`,
    ];
    for (const [clients, r] of Object.entries(ratios)) {
      const g = goalByClients[clients];
      const verdict = `   goal (p50 <= ${P50_GOAL}x, txn/s >= ${THROUGHPUT_GOAL}x): ${g.p50AtMost2x && g.throughputAtLeastHalf ? "met" : `missed (${[g.p50AtMost2x ? "" : "p50", g.throughputAtLeastHalf ? "" : "txn/s"].filter(Boolean).join(", ")})`}`;
      ratioLines.push(
        `  ${`${clients} clients`.padEnd(14)} ${pad(fmt(r.throughput), 8)} ${pad(fmt(r.p50), 8)} ${pad(fmt(r.p99), 8)}${verdict}`,
      );
    }
    // The same cross measurements split by where the pair's two shards are led.
    for (const clients of CLIENT_COUNTS) {
      const x = summary[`cross-${clients}`];
      if (!x || (x.colocatedP50Ms === undefined && x.splitP50Ms === undefined)) continue;
      const ms = (v) => (v === undefined ? "n/a" : `${v.toFixed(2)} ms`);
      ratioLines.push(
        `  cross-${clients} p50 by placement: both shards led from one node ${ms(x.colocatedP50Ms)}, from two nodes ${ms(x.splitP50Ms)} (${Math.round(x.splitPairs * 100)}% of pairs)`,
      );
    }
    process.stdout.write(
      `\ntxn-bench: 3 nodes, ${SHARDS} Raft groups (last shard leaders on ${cluster.placement}), fsync on, transfers = Txn(2 mod_revision compares, 2 puts), one conflict-free account pair per client, medians of ${ROUNDS} rounds of ${SECONDS}s, clients -> ${ENDPOINT_MODE === "leader" ? "anchor shard's leader" : "spread"}, 1-min load ${loadBefore.toFixed(1)} -> ${loadAfter.toFixed(1)} on ${availableParallelism()} cores\n${lines.join("\n")}\n\n${ratioLines.join("\n")}\n\n`,
    );
    process.stdout.write(
      `${JSON.stringify({
        bench: "txn",
        version: cluster.version,
        shards: SHARDS,
        rounds: ROUNDS,
        seconds: SECONDS,
        endpointMode: ENDPOINT_MODE,
        conflictFree: true,
        cores: availableParallelism(),
        loadAverage: { before: Number(loadBefore.toFixed(2)), after: Number(loadAfter.toFixed(2)) },
        shardLeaders: cluster.placement,
        results: summary,
        ratios,
        goal,
      })}\n`,
    );
  } finally {
    // Graceful stop only when profiling (Node writes --cpu-prof output at a clean exit).
    await stopCluster(cluster, Boolean(PROFILE_DIR));
    cleanup();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`txn-bench: ${err?.stack ?? err}\n`);
    cleanup();
    process.exit(1);
  },
);
