#!/usr/bin/env node
// Quorum's etcd-compatible store over Raft and over Paxos against a real etcd, same machine,
// same load, one run; and Quorum over Raft with the key space split into shards.
//
// Starts a three-node Quorum cluster over Raft, one over Paxos and one over Raft with
// `--shards 3` (`quorum node` processes; the consensus logs fsync every append, the stores
// are made durable at snapshots) and, when `etcd` is on PATH (Debian etcd-server), a
// three-member etcd (which fsyncs its WAL by default), all on 127.0.0.1 with data in temp
// dirs. Then, per scenario, runs short rounds alternating the systems (round r starts with the
// r-th system, so each one goes first once) and quotes medians:
//   put-1, put-16, put-64: Put of a 256-byte value to one of 1,000 keys, N requests in flight
//   range-64:              linearizable Range of one key, 64 in flight
//   watch-64:              one Watch on the prefix "watch/" (opened first) while 64 clients
//                          Put to 1,000 keys under it: puts/s acknowledged, events/s
//                          delivered to the watcher, and the time from a put's acknowledgement
//                          to its event's receipt (p50/p99); after the window the writers stop
//                          and every acknowledged put's event must arrive within 5 s
//                          (`missing` counts those that did not); for Quorum also how often
//                          the watcher fell behind its stream's bounded queue and caught up
//                          from history (`unsynced`, from the member's /metrics)
//   watchall-64:           the same with one Watch over every put key (all shards: on the
//                          sharded cluster a merged multi-shard watch) and the put keys
// The 1,000 put/range keys start with one byte per shard range ("/", "@", "_" for 3 shards:
// see src/shard/split.ts), round-robin, so every shard gets a third of the load; the 1-shard
// systems and etcd get the same keys. Clients send each key to its shard's leader (found via
// the nodes' /status), or with one shard to the leader.
//
// The load generator is the same grpc-js code for every system (etcd's proto is the same):
// raw pre-encoded requests, responses not decoded (except the put revision in the watch
// scenarios),
// clients spread over up to 8 connections per target node. Prints a table and one JSON line
// with Quorum-Raft/etcd ratios (`ratios`, `goal`), Quorum-Paxos/Quorum-Raft ratios
// (`paxosVsRaft`, `paxosGoal`: Paxos throughput at least 0.8x Raft's and p99 no worse than
// Raft's, per scenario), sharded/1-shard ratios (`shardsVsOne`, `shardGoal`: put throughput
// with 3 shards at least 1.5x one shard's, on put-64) and the watch numbers (`watch`,
// `watchGoal`: events delivered at least 0.95x the put rate, none missing). `results.quorum`
// is the same object as `results["quorum-raft"]` (the name older readers know). Stops by
// itself, kills every process it started, removes its temp dirs.
//
// All systems get the same rounds and seconds. With the defaults (4 systems; 3 rounds of
// 3 s + 0.5 s warm-up; 5 scenarios for raft, paxos and etcd, 3 for the sharded cluster and
// quorum-raft) a run takes about 4 minutes; for a quicker look use e.g. BENCH_ROUNDS=1 BENCH_SECONDS=1, or
// fewer systems or scenarios.
//
// Options (env): BENCH_ROUNDS (3), BENCH_SECONDS (3), BENCH_WARMUP_SECONDS (0.5),
// BENCH_SYSTEMS ("raft,paxos,etcd,shards": any of raft (alias quorum, quorum-raft), paxos
// (alias quorum-paxos), etcd and shards (alias quorum-shards: Raft with BENCH_SHARDS shards);
// etcd is skipped when not on PATH), BENCH_SCENARIOS ("put-1,put-16,put-64,range-64,watch-64",
// for every system but the sharded one), BENCH_SHARD_SCENARIOS ("put-16,put-64,watchall-64", the sharded
// cluster's; they are also run on quorum-raft for the ratio), BENCH_SHARDS (3),
// BENCH_SHARD_LEADERS ("any", or "spread": restart the sharded cluster until its shard leaders
// are spread over the nodes, to measure what spreading them would give),
// BENCH_PROFILE_DIR (run the Quorum nodes with --cpu-prof into that dir, Raft nodes as
// n1.cpuprofile..., Paxos nodes as paxos-n1.cpuprofile..., sharded as shards-n1.cpuprofile...;
// profiles are written when they stop on SIGTERM at the end), BENCH_ENDPOINT_MODE ("leader"
// or "spread": clients spread over every member, followers forward).
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import grpc from "@grpc/grpc-js";
import hdr from "hdr-histogram-js";
import { PutRequest, PutResponse, RangeRequest, StatusResponse } from "../dist/gen/etcdserverpb/rpc.js";
import { defaultSplitPoints, ShardMap } from "../dist/index.js";
import { fromKey, openWatcher, prefixRange } from "./watch-load.mjs";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const WARMUP_SECONDS = Number(process.env.BENCH_WARMUP_SECONDS ?? 0.5);
const SYSTEM_ALIASES = {
  raft: "quorum-raft",
  quorum: "quorum-raft",
  "quorum-raft": "quorum-raft",
  paxos: "quorum-paxos",
  "quorum-paxos": "quorum-paxos",
  etcd: "etcd",
  shards: "quorum-shards",
  "quorum-shards": "quorum-shards",
};
const SYSTEMS = (process.env.BENCH_SYSTEMS ?? "raft,paxos,etcd,shards")
  .split(",")
  .map((s) => s.trim())
  .filter(Boolean)
  .map((s) => {
    const system = SYSTEM_ALIASES[s];
    if (!system) {
      process.stderr.write(`kv-bench: BENCH_SYSTEMS: unknown system "${s}" (raft, paxos, etcd, shards)\n`);
      process.exit(2);
    }
    return system;
  });
const PAXOS_THROUGHPUT_GOAL = 0.8; // Paxos ops/s at least this share of Raft's
const PAXOS_P99_GOAL = 1; // Paxos p99 at most this multiple of Raft's
const SHARD_THROUGHPUT_GOAL = 1.5; // put-64 ops/s with BENCH_SHARDS shards at least this multiple of one shard's
const WATCH_DELIVERY_GOAL = 0.95; // events/s delivered at least this share of puts/s
const list = (s) =>
  s
    .split(",")
    .map((x) => x.trim())
    .filter(Boolean);
const SCENARIOS = list(process.env.BENCH_SCENARIOS ?? "put-1,put-16,put-64,range-64,watch-64");
const SHARD_SCENARIOS = list(process.env.BENCH_SHARD_SCENARIOS ?? "put-16,put-64,watchall-64");
const SHARD_LEADERS = process.env.BENCH_SHARD_LEADERS ?? "any";
if (!["any", "spread"].includes(SHARD_LEADERS)) {
  process.stderr.write(`kv-bench: BENCH_SHARD_LEADERS must be "any" or "spread", got "${SHARD_LEADERS}"\n`);
  process.exit(2);
}
const SHARDS = Number(process.env.BENCH_SHARDS ?? 3);
if (!Number.isInteger(SHARDS) || SHARDS < 2 || SHARDS > 94) {
  process.stderr.write(
    `kv-bench: BENCH_SHARDS must be an integer from 2 to 94, got "${process.env.BENCH_SHARDS}"\n`,
  );
  process.exit(2);
}
const PROFILE_DIR = process.env.BENCH_PROFILE_DIR;
const ENDPOINT_MODE = process.env.BENCH_ENDPOINT_MODE ?? "leader";
const VALUE_BYTES = 256;
const KEYS = 1_000;
const MAX_CONNECTIONS = 8;
const WATCHDOG_MS = 15 * 60_000;

const cli = fileURLToPath(new URL("../../../apps/demo/dist/cli.js", import.meta.url));
const children = new Set();
const tempDirs = [];
let cleaned = false;

function cleanup() {
  if (cleaned) return;
  cleaned = true;
  for (const child of children) {
    try {
      child.kill("SIGKILL");
    } catch {}
  }
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
}
process.on("exit", cleanup);
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    cleanup();
    process.exit(130);
  });
}
const watchdog = setTimeout(() => {
  process.stderr.write(`kv-bench: still running after ${WATCHDOG_MS / 60_000} min, giving up\n`);
  cleanup();
  process.exit(1);
}, WATCHDOG_MS);
watchdog.unref();

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (msg) => process.stderr.write(`[kv-bench] ${msg}\n`);

function onPath(name) {
  return (process.env.PATH ?? "").split(":").some((dir) => dir && existsSync(join(dir, name)));
}

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

function start(name, file, args) {
  const child = spawn(file, args, { stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  let output = "";
  const keep = (d) => {
    output = (output + d.toString()).slice(-8_000);
  };
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  child.on("exit", (code, signal) => {
    children.delete(child);
    if (!cleaned && !child.stopping) log(`${name} exited (${signal ?? code}):\n${output}`);
  });
  child.output = () => output;
  return child;
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

async function status(endpoint) {
  const c = channel(endpoint, -1);
  try {
    const res = await call(c, "/etcdserverpb.Maintenance/Status", Buffer.alloc(0), 1_000);
    return StatusResponse.decode(res);
  } finally {
    c.close();
  }
}

/** The leader's client endpoint, once every member agrees on one. */
async function waitForLeader(endpoints, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const statuses = await Promise.all(endpoints.map((e) => status(e).catch(() => undefined)));
    const leaders = new Set(statuses.map((s) => s?.leader ?? 0n));
    if (statuses.every(Boolean) && leaders.size === 1 && !leaders.has(0n)) {
      const i = statuses.findIndex((s) => s.header.memberId === [...leaders][0]);
      if (i >= 0) return endpoints[i];
    }
    await sleep(200);
  }
  throw new Error(`no leader among ${endpoints.join(", ")} after ${timeoutMs} ms`);
}

// ---- clusters ---------------------------------------------------------------------------

/** What every member's /status says each shard's leader is, as client endpoints, once they all agree. */
async function waitForShardLeaders(nodes, shards, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const statuses = await Promise.all(
      nodes.map((n) =>
        fetch(`http://${n.metrics}/status`, { signal: AbortSignal.timeout(1_000) })
          .then((r) => r.json())
          .catch(() => undefined),
      ),
    );
    const leaders = Array.from({ length: shards }, (_, i) => {
      const ids = new Set(statuses.map((s) => s?.shards?.[i]?.leaderId));
      const [id] = ids;
      return ids.size === 1 ? nodes.find((n) => n.name === id)?.client : undefined;
    });
    if (leaders.every(Boolean)) return leaders;
    await sleep(200);
  }
  throw new Error(`not every shard has a leader all members agree on after ${timeoutMs} ms`);
}

async function startQuorum(consensus, shards = 1) {
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run \`pnpm build\` first`);
  const name = shards > 1 ? "quorum-shards" : `quorum-${consensus}`;
  const dir = mkdtempSync(join(tmpdir(), `kv-bench-${name}-`));
  tempDirs.push(dir);
  const ports = await freePorts(9);
  const nodes = [0, 1, 2].map((i) => ({
    name: `n${i + 1}`,
    client: `127.0.0.1:${ports[3 * i]}`,
    peer: `127.0.0.1:${ports[3 * i + 1]}`,
    metrics: `127.0.0.1:${ports[3 * i + 2]}`,
  }));
  const initial = nodes.map((n) => `${n.name}=${n.peer}`).join(",");
  const procs = nodes.map((n) => {
    const prefix = shards > 1 ? "shards-" : consensus === "raft" ? "" : `${consensus}-`;
    const profileName = `${prefix}${n.name}.cpuprofile`;
    const flags = PROFILE_DIR
      ? ["--cpu-prof", `--cpu-prof-dir=${PROFILE_DIR}`, `--cpu-prof-name=${profileName}`]
      : [];
    if (PROFILE_DIR) mkdirSync(PROFILE_DIR, { recursive: true });
    return start(`${name} ${n.name}`, process.execPath, [
      ...flags,
      cli,
      "node",
      "--name",
      n.name,
      "--data-dir",
      join(dir, n.name),
      "--listen-client",
      n.client,
      "--listen-peer",
      n.peer,
      "--initial-cluster",
      initial,
      "--initial-cluster-token",
      `kv-bench-${name}-${process.pid}`,
      "--consensus",
      consensus,
      "--listen-metrics",
      n.metrics,
      ...(shards > 1 ? ["--shards", String(shards)] : []),
      "--log-level",
      "warn",
    ]);
  });
  const endpoints = nodes.map((n) => n.client);
  const leader = await waitForLeader(endpoints);
  return {
    name,
    endpoints,
    leader,
    procs,
    shards,
    // Each shard's leader (its client endpoint), refreshed before every measurement.
    shardLeaders: shards > 1 ? () => waitForShardLeaders(nodes, shards) : undefined,
    // Each member's /metrics address, by client endpoint.
    metricsOf: new Map(nodes.map((n) => [n.client, n.metrics])),
    version: JSON.parse(readFileSync(new URL("../package.json", import.meta.url))).version,
  };
}

async function startEtcd() {
  const dir = mkdtempSync(join(tmpdir(), "kv-bench-etcd-"));
  tempDirs.push(dir);
  const ports = await freePorts(6);
  const members = [0, 1, 2].map((i) => ({
    name: `e${i + 1}`,
    client: `127.0.0.1:${ports[2 * i]}`,
    peer: `127.0.0.1:${ports[2 * i + 1]}`,
  }));
  const initial = members.map((m) => `${m.name}=http://${m.peer}`).join(",");
  const procs = members.map((m) =>
    start(`etcd ${m.name}`, "etcd", [
      "--name",
      m.name,
      "--data-dir",
      join(dir, m.name),
      "--listen-client-urls",
      `http://${m.client}`,
      "--advertise-client-urls",
      `http://${m.client}`,
      "--listen-peer-urls",
      `http://${m.peer}`,
      "--initial-advertise-peer-urls",
      `http://${m.peer}`,
      "--initial-cluster",
      initial,
      "--initial-cluster-state",
      "new",
      "--initial-cluster-token",
      `kv-bench-${process.pid}`,
      "--logger",
      "zap",
      "--log-level",
      "error",
    ]),
  );
  const endpoints = members.map((m) => m.client);
  const leader = await waitForLeader(endpoints);
  const version = spawnSync("etcd", ["--version"], { encoding: "utf8" })
    .stdout.split("\n")[0]
    .replace("etcd Version: ", "");
  return { name: "etcd", endpoints, leader, procs, version };
}

async function stopCluster(cluster, graceful) {
  await Promise.all(
    cluster.procs.map(
      (p) =>
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

/** CPU seconds (user + system) a process has used so far, from /proc. */
function cpuSeconds(pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

// ---- load -------------------------------------------------------------------------------

const value = Buffer.alloc(VALUE_BYTES, "v");
// One first byte per shard range (shard 0 from "/", shard i from its split point), so that
// key i lands in shard i mod SHARDS; checked against the store's own map.
const shardMap = new ShardMap(defaultSplitPoints(SHARDS));
const shardPrefixes = Array.from({ length: SHARDS }, (_, s) =>
  s === 0 ? "/" : defaultSplitPoints(SHARDS)[s - 1].toString("latin1"),
);
const keyOf = (i) => Buffer.from(`${shardPrefixes[i % SHARDS]}bench/key-${String(i).padStart(4, "0")}`);
const benchKeys = Array.from({ length: KEYS }, (_, i) => keyOf(i));
for (const [i, k] of benchKeys.entries()) {
  if (shardMap.shardOf(k) !== i % SHARDS) throw new Error(`key ${k} is not in shard ${i % SHARDS}`);
}
const WATCH_PREFIX = "watch/";
const watchKeys = Array.from({ length: KEYS }, (_, i) =>
  Buffer.from(`${WATCH_PREFIX}key-${String(i).padStart(4, "0")}`),
);
const putsOf = (keys) =>
  keys.map((key) => Buffer.from(PutRequest.encode(PutRequest.fromPartial({ key, value })).finish()));
const putRequests = putsOf(benchKeys);
const watchPutRequests = putsOf(watchKeys);
const rangeRequests = benchKeys.map((key) =>
  Buffer.from(RangeRequest.encode(RangeRequest.fromPartial({ key })).finish()),
);

function parseScenario(name) {
  const [kind, n] = name.split("-");
  if (!["put", "range", "watch", "watchall"].includes(kind) || !(Number(n) > 0))
    throw new Error(`unknown scenario ${name}`);
  return { name, kind, clients: Number(n) };
}

/** The endpoint each key index goes to: its shard's leader, the leader, or (spread) undefined. */
async function routes(cluster, keys) {
  if (ENDPOINT_MODE === "spread") return undefined;
  if (!cluster.shardLeaders) return keys.map(() => cluster.leader);
  const leaders = await cluster.shardLeaders();
  cluster.placement = leaders.map((e) => `n${cluster.endpoints.indexOf(e) + 1}`).join(",");
  return keys.map((k) => leaders[shardMap.shardOf(k)]);
}

/** quorum_kv_watch_unsynced_total of the member at `endpoint` (undefined for etcd or on error). */
async function unsyncedCount(cluster, endpoint) {
  const metrics = cluster.metricsOf?.get(endpoint);
  if (!metrics) return undefined;
  try {
    const text = await (
      await fetch(`http://${metrics}/metrics`, { signal: AbortSignal.timeout(2_000) })
    ).text();
    const m = /^quorum_kv_watch_unsynced_total (\d+)/m.exec(text);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

async function runLoad(cluster, scenario) {
  const keys = scenario.kind === "watch" ? watchKeys : benchKeys;
  const route = await routes(cluster, keys);
  const targets = route ? [...new Set(route)] : cluster.endpoints;
  const perTarget = Math.min(scenario.clients, MAX_CONNECTIONS);
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
  const path = scenario.kind === "range" ? "/etcdserverpb.KV/Range" : "/etcdserverpb.KV/Put";
  const requests =
    scenario.kind === "range" ? rangeRequests : scenario.kind === "watch" ? watchPutRequests : putRequests;
  // The watcher goes where the writers go (the leader of the prefix's shard), before any write.
  const watchAt = route ? route[0] : cluster.leader;
  // watch: a prefix inside one shard; watchall: every bench key, so over every shard (merged).
  const watcher =
    scenario.kind === "watch"
      ? await openWatcher(watchAt, prefixRange(WATCH_PREFIX))
      : scenario.kind === "watchall"
        ? await openWatcher(watchAt, fromKey(shardPrefixes[0]))
        : undefined;
  // Quorum counts watchers that fell behind (their stream's queue filled) and caught up from history.
  const unsyncedBefore = watcher ? await unsyncedCount(cluster, watchAt) : undefined;
  const histogram = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 120_000_000,
    numberOfSignificantValueDigits: 3,
  });
  let measuring = false;
  let done = false;
  let count = 0;
  let errors = 0;
  let firstError;
  const worker = async (w) => {
    for (let n = w * 131; !done; n++) {
      const k = n % KEYS;
      const c = channels.get(route ? route[k] : targets[w % targets.length])[w % perTarget];
      const t0 = performance.now();
      try {
        const res = await call(c, path, requests[k]);
        if (watcher) watcher.acked(keys[k], Number(PutResponse.decode(res).header?.revision ?? 0n));
        if (measuring) {
          histogram.recordValue(Math.max(1, Math.round((performance.now() - t0) * 1000)));
          count++;
        }
      } catch (err) {
        if (measuring) errors++;
        firstError ??= err;
        await sleep(10);
      }
    }
  };
  const workers = Array.from({ length: scenario.clients }, (_, w) => worker(w));
  await sleep(WARMUP_SECONDS * 1000);
  const pids = cluster.procs.map((p) => p.pid);
  const cpuBefore = pids.map(cpuSeconds);
  const selfBefore = process.cpuUsage();
  measuring = true;
  if (watcher) watcher.measuring = true;
  const began = performance.now();
  await sleep(SECONDS * 1000);
  measuring = false;
  if (watcher) watcher.measuring = false;
  const elapsed = (performance.now() - began) / 1000;
  const cpuAfter = pids.map(cpuSeconds);
  const self = process.cpuUsage(selfBefore);
  done = true;
  await Promise.all(workers);
  for (const c of [...channels.values()].flat()) c.close();
  histogram.destroy?.();
  const leaderIndex = cluster.endpoints.indexOf(cluster.leader);
  const result = {
    opsPerSec: count / elapsed,
    p50Ms: histogram.getValueAtPercentile(50) / 1000,
    p99Ms: histogram.getValueAtPercentile(99) / 1000,
    errors,
    // Share of one core used during the measurement.
    leaderCpu: (cpuAfter[leaderIndex] - cpuBefore[leaderIndex]) / elapsed,
    clusterCpu: cpuAfter.reduce((s, v, i) => s + v - cpuBefore[i], 0) / elapsed,
    clientCpu: (self.user + self.system) / 1e6 / elapsed,
  };
  if (watcher) {
    // Every acknowledged put must reach the watcher; give the tail a few seconds.
    const missing = await watcher.drain(5_000);
    const w = watcher.result(elapsed);
    watcher.close();
    const unsyncedAfter = await unsyncedCount(cluster, watchAt);
    Object.assign(result, {
      eventsPerSec: w.eventsPerSec,
      delivery: count > 0 ? w.eventsPerSec / result.opsPerSec : 0,
      eventP50Ms: w.eventP50Ms,
      eventP99Ms: w.eventP99Ms,
      beforeAck: w.beforeAck,
      missing,
      ...(unsyncedBefore !== undefined && unsyncedAfter !== undefined
        ? { unsynced: unsyncedAfter - unsyncedBefore }
        : {}),
    });
    if (w.failure) log(`${cluster.name} ${scenario.name}: watch failed: ${w.failure}`);
  }
  if (errors > 0) log(`${cluster.name} ${scenario.name}: ${errors} errors, first: ${firstError?.message}`);
  return result;
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

// ---- main -------------------------------------------------------------------------------

async function main() {
  const sharded = SYSTEMS.includes("quorum-shards");
  const scenarios = [...new Set([...SCENARIOS, ...(sharded ? SHARD_SCENARIOS : [])])].map(parseScenario);
  // The sharded cluster runs SHARD_SCENARIOS; quorum-raft runs them too, for the ratio.
  const takesPart = (cluster, scenario) =>
    cluster.name === "quorum-shards"
      ? SHARD_SCENARIOS.includes(scenario.name)
      : SCENARIOS.includes(scenario.name) ||
        (cluster.name === "quorum-raft" && sharded && SHARD_SCENARIOS.includes(scenario.name));
  const clusters = [];
  // Other work on the machine skews every number here: note the load before and after.
  const loadBefore = loadavg()[0];
  if (loadBefore > availableParallelism())
    log(
      `1-min load average ${loadBefore.toFixed(1)} on ${availableParallelism()} cores: the machine is busy, numbers will be noisy`,
    );
  try {
    for (const consensus of ["raft", "paxos"]) {
      if (!SYSTEMS.includes(`quorum-${consensus}`)) continue;
      clusters.push(await startQuorum(consensus));
      log(`quorum-${consensus}: 3 nodes, leader ${clusters.at(-1).leader}`);
    }
    if (sharded) {
      // Elections place shard leaders at random (nothing spreads them yet); with
      // BENCH_SHARD_LEADERS=spread the cluster is started again (up to 8 times) until no node
      // leads two shards more than another, to measure what spreading would give.
      for (let attempt = 1; ; attempt++) {
        const cluster = await startQuorum("raft", SHARDS);
        const leaders = await cluster.shardLeaders();
        const perNode = cluster.endpoints.map((e) => leaders.filter((l) => l === e).length);
        const spread = Math.max(...perNode) - Math.min(...perNode) <= 1;
        log(
          `quorum-shards: 3 nodes, ${SHARDS} Raft groups, shard leaders ${leaders.join(", ")}${spread ? "" : " (not spread)"}`,
        );
        if (SHARD_LEADERS === "any" || spread || attempt === 8) {
          clusters.push(cluster);
          break;
        }
        await stopCluster(cluster, false);
      }
    }
    if (SYSTEMS.includes("etcd")) {
      if (onPath("etcd")) {
        clusters.push(await startEtcd());
        log(`etcd ${clusters.at(-1).version}: 3 members, leader ${clusters.at(-1).leader}`);
      } else {
        log("etcd is not on PATH (Debian: apt-get install etcd-server): measuring Quorum only");
      }
    }
    // The order systems were asked for (the table and the rotation follow it).
    clusters.sort((a, b) => SYSTEMS.indexOf(a.name) - SYSTEMS.indexOf(b.name));
    // Every key exists before anything is measured (ranges read real values).
    for (const cluster of clusters) {
      const c = channel(cluster.leader, 99);
      for (let i = 0; i < KEYS; i += 50) {
        await Promise.all(putRequests.slice(i, i + 50).map((r) => call(c, "/etcdserverpb.KV/Put", r)));
      }
      c.close();
    }

    const results = {};
    for (const scenario of scenarios) {
      const these = clusters.filter((c) => takesPart(c, scenario));
      if (these.length === 0) continue;
      for (let round = 0; round < ROUNDS; round++) {
        // Rotate the order each round (with two systems this is the old A,B then B,A).
        const shift = round % these.length;
        const order = [...these.slice(shift), ...these.slice(0, shift)];
        for (const cluster of order) {
          // A leader may have moved (it should not, but the numbers must be about the leader).
          cluster.leader = await waitForLeader(cluster.endpoints);
          const r = await runLoad(cluster, scenario);
          ((results[cluster.name] ??= {})[scenario.name] ??= []).push(r);
          log(
            `${scenario.name} round ${round + 1}/${ROUNDS} ${cluster.name}: ${r.opsPerSec.toFixed(0)} ops/s, p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms, leader cpu ${(r.leaderCpu * 100).toFixed(0)}%, cluster cpu ${(r.clusterCpu * 100).toFixed(0)}%, client cpu ${(r.clientCpu * 100).toFixed(0)}%${cluster.placement ? `, shard leaders on ${cluster.placement}` : ""}${r.eventsPerSec !== undefined ? `; watch ${r.eventsPerSec.toFixed(0)} events/s, p50 ${r.eventP50Ms.toFixed(2)} ms, p99 ${r.eventP99Ms.toFixed(2)} ms, ${r.missing} missing` : ""}`,
          );
        }
      }
    }

    const summary = {};
    for (const [system, byScenario] of Object.entries(results)) {
      for (const [scenario, runs] of Object.entries(byScenario)) {
        (summary[system] ??= {})[scenario] = {
          opsPerSec: Math.round(median(runs.map((r) => r.opsPerSec))),
          p50Ms: Number(median(runs.map((r) => r.p50Ms)).toFixed(2)),
          p99Ms: Number(median(runs.map((r) => r.p99Ms)).toFixed(2)),
          leaderCpu: Number(median(runs.map((r) => r.leaderCpu)).toFixed(2)),
          clusterCpu: Number(median(runs.map((r) => r.clusterCpu)).toFixed(2)),
          clientCpu: Number(median(runs.map((r) => r.clientCpu)).toFixed(2)),
          errors: runs.reduce((s, r) => s + r.errors, 0),
          ...(runs[0].eventsPerSec !== undefined
            ? {
                eventsPerSec: Math.round(median(runs.map((r) => r.eventsPerSec))),
                delivery: Number(median(runs.map((r) => r.delivery)).toFixed(3)),
                eventP50Ms: Number(median(runs.map((r) => r.eventP50Ms)).toFixed(2)),
                eventP99Ms: Number(median(runs.map((r) => r.eventP99Ms)).toFixed(2)),
                beforeAck: runs.reduce((s, r) => s + r.beforeAck, 0),
                missing: runs.reduce((s, r) => s + r.missing, 0),
                ...(runs[0].unsynced !== undefined
                  ? { unsynced: runs.reduce((s, r) => s + (r.unsynced ?? 0), 0) }
                  : {}),
              }
            : {}),
        };
      }
    }

    const pad = (s, n) => String(s).padStart(n);
    const header = `${"scenario".padEnd(11)} ${"system".padEnd(13)} ${pad("ops/s", 8)} ${pad("p50 ms", 8)} ${pad("p99 ms", 8)} ${pad("leader cpu", 10)} ${pad("cluster cpu", 11)} ${pad("client cpu", 10)} ${pad("errors", 6)}`;
    const lines = [header, "-".repeat(header.length)];
    for (const scenario of scenarios) {
      for (const cluster of clusters) {
        const s = summary[cluster.name]?.[scenario.name];
        if (!s) continue;
        const pct = (x) => `${Math.round(x * 100)}%`;
        lines.push(
          `${scenario.name.padEnd(11)} ${cluster.name.padEnd(13)} ${pad(s.opsPerSec, 8)} ${pad(s.p50Ms.toFixed(2), 8)} ${pad(s.p99Ms.toFixed(2), 8)} ${pad(pct(s.leaderCpu), 10)} ${pad(pct(s.clusterCpu), 11)} ${pad(pct(s.clientCpu), 10)} ${pad(s.errors, 6)}`,
        );
      }
    }
    // The watch scenario: the writers' numbers are in the table above (ops/s = puts/s).
    const watchHeader = `${"scenario".padEnd(11)} ${"system".padEnd(13)} ${pad("puts/s", 8)} ${pad("events/s", 8)} ${pad("delivered", 9)} ${pad("ack->event p50 ms", 17)} ${pad("p99 ms", 8)} ${pad("missing", 7)} ${pad("before ack", 10)} ${pad("unsynced", 8)}`;
    const watchLines = [];
    const watch = {};
    for (const scenario of scenarios.filter((x) => x.kind.startsWith("watch"))) {
      for (const cluster of clusters) {
        const s = summary[cluster.name]?.[scenario.name];
        if (!s) continue;
        (watch[cluster.name] ??= {})[scenario.name] = {
          putsPerSec: s.opsPerSec,
          eventsPerSec: s.eventsPerSec,
          delivery: s.delivery,
          eventP50Ms: s.eventP50Ms,
          eventP99Ms: s.eventP99Ms,
          missing: s.missing,
          ...(s.unsynced !== undefined ? { unsynced: s.unsynced } : {}),
        };
        watchLines.push(
          `${scenario.name.padEnd(11)} ${cluster.name.padEnd(13)} ${pad(s.opsPerSec, 8)} ${pad(s.eventsPerSec, 8)} ${pad(`${(s.delivery * 100).toFixed(1)}%`, 9)} ${pad(s.eventP50Ms.toFixed(2), 17)} ${pad(s.eventP99Ms.toFixed(2), 8)} ${pad(s.missing, 7)} ${pad(s.beforeAck, 10)} ${pad(s.unsynced ?? "-", 8)}`,
        );
      }
    }
    const watchGoalSystems = {};
    for (const [system, byScenario] of Object.entries(watch)) {
      for (const [name, w] of Object.entries(byScenario)) {
        (watchGoalSystems[system] ??= {})[name] = {
          deliveryAtLeast0_95xPuts: w.delivery >= WATCH_DELIVERY_GOAL,
          noneMissing: w.missing === 0,
        };
      }
    }
    const watchGoal =
      Object.keys(watchGoalSystems).length > 0
        ? {
            met: Object.entries(watchGoalSystems)
              .filter(([system]) => system.startsWith("quorum-"))
              .every(([, byScenario]) =>
                Object.values(byScenario).every((g) => g.deliveryAtLeast0_95xPuts && g.noneMissing),
              ),
            systems: watchGoalSystems,
          }
        : undefined;
    const watchVsEtcd = {};
    if (watch["quorum-raft"] && watch.etcd) {
      for (const [name, x] of Object.entries(watch["quorum-raft"])) {
        const y = watch.etcd[name];
        if (!y) continue;
        // A latency of 0 (most events beat their put's response) has no ratio: null.
        const ratio = (a, b) => (b > 0 ? Number((a / b).toFixed(3)) : null);
        watchVsEtcd[name] = {
          events: ratio(x.eventsPerSec, y.eventsPerSec),
          eventP50: ratio(x.eventP50Ms, y.eventP50Ms),
          eventP99: ratio(x.eventP99Ms, y.eventP99Ms),
        };
      }
    }
    const loadAfter = loadavg()[0];
    const ratiosOf = (a, b) => {
      const out = {};
      if (!summary[a] || !summary[b]) return out;
      for (const scenario of scenarios) {
        const x = summary[a][scenario.name];
        const y = summary[b][scenario.name];
        if (!x || !y) continue;
        out[scenario.name] = {
          throughput: Number((x.opsPerSec / y.opsPerSec).toFixed(3)),
          p50: Number((x.p50Ms / y.p50Ms).toFixed(3)),
          p99: Number((x.p99Ms / y.p99Ms).toFixed(3)),
        };
      }
      return out;
    };
    const ratios = ratiosOf("quorum-raft", "etcd");
    const paxosVsRaft = ratiosOf("quorum-paxos", "quorum-raft");
    const shardsVsOne = ratiosOf("quorum-shards", "quorum-raft");
    const shardGoal = shardsVsOne["put-64"]
      ? {
          met: shardsVsOne["put-64"].throughput >= SHARD_THROUGHPUT_GOAL,
          shards: SHARDS,
          put64Throughput: shardsVsOne["put-64"].throughput,
          goal: SHARD_THROUGHPUT_GOAL,
        }
      : undefined;
    const paxosGoalScenarios = Object.fromEntries(
      Object.entries(paxosVsRaft).map(([name, r]) => [
        name,
        {
          throughputAtLeast0_8xRaft: r.throughput >= PAXOS_THROUGHPUT_GOAL,
          p99NoWorseThanRaft: r.p99 <= PAXOS_P99_GOAL,
        },
      ]),
    );
    const paxosGoal =
      Object.keys(paxosGoalScenarios).length > 0
        ? {
            met: Object.values(paxosGoalScenarios).every(
              (g) => g.throughputAtLeast0_8xRaft && g.p99NoWorseThanRaft,
            ),
            scenarios: paxosGoalScenarios,
          }
        : undefined;
    const ratioLines = [];
    const fmt = (x) => (x === null || !Number.isFinite(x) ? "n/a" : `${x.toFixed(2)}x`);
    for (const [title, rs] of [
      ["quorum-raft / etcd", ratios],
      ["quorum-paxos / quorum-raft", paxosVsRaft],
      [`quorum-shards (${SHARDS}) / quorum-raft`, shardsVsOne],
    ]) {
      if (Object.keys(rs).length === 0) continue;
      ratioLines.push(`${title.padEnd(32)} ${"ops/s".padStart(8)} ${"p50".padStart(8)} ${"p99".padStart(8)}`);
      for (const [name, r] of Object.entries(rs)) {
        const g = title.startsWith("quorum-paxos") ? paxosGoalScenarios[name] : undefined;
        const shardVerdict =
          title.startsWith("quorum-shards") && name === "put-64"
            ? `   goal (>= ${SHARD_THROUGHPUT_GOAL}x ops/s): ${r.throughput >= SHARD_THROUGHPUT_GOAL ? "met" : "missed"}`
            : "";
        const verdict = g
          ? `   goal (>= ${PAXOS_THROUGHPUT_GOAL}x ops/s, p99 <= ${PAXOS_P99_GOAL}x): ${g.throughputAtLeast0_8xRaft && g.p99NoWorseThanRaft ? "met" : `missed (${[g.throughputAtLeast0_8xRaft ? "" : "ops/s", g.p99NoWorseThanRaft ? "" : "p99"].filter(Boolean).join(", ")})`}`
          : shardVerdict;
        ratioLines.push(
          `  ${name.padEnd(30)} ${fmt(r.throughput).padStart(8)} ${fmt(r.p50).padStart(8)} ${fmt(r.p99).padStart(8)}${verdict}`,
        );
      }
    }
    for (const [name, r] of Object.entries(watchVsEtcd)) {
      if (!ratioLines.some((l) => l.startsWith("quorum-raft / etcd, watch")))
        ratioLines.push(
          `${"quorum-raft / etcd, watch".padEnd(32)} ${"events/s".padStart(8)} ${"p50".padStart(8)} ${"p99".padStart(8)}`,
        );
      ratioLines.push(
        `  ${name.padEnd(30)} ${fmt(r.events).padStart(8)} ${fmt(r.eventP50).padStart(8)} ${fmt(r.eventP99).padStart(8)}`,
      );
    }
    const shardCluster = clusters.find((c) => c.name === "quorum-shards");
    const watchTable = watchLines.length
      ? `${watchHeader}\n${"-".repeat(watchHeader.length)}\n${watchLines.join("\n")}\n\n`
      : "";
    process.stdout.write(
      `\nkv-bench: 3 nodes each${shardCluster ? ` (quorum-shards: ${SHARDS} Raft groups, last shard leaders on ${shardCluster.placement})` : ""}, ${VALUE_BYTES}-byte values, ${KEYS} keys, medians of ${ROUNDS} rounds of ${SECONDS}s, clients -> ${ENDPOINT_MODE}, 1-min load ${loadBefore.toFixed(1)} -> ${loadAfter.toFixed(1)} on ${availableParallelism()} cores\n${lines.join("\n")}\n\n${watchTable}${ratioLines.length ? `${ratioLines.join("\n")}\n\n` : ""}`,
    );
    const goal =
      ratios["put-64"] && ratios["range-64"]
        ? {
            put64ThroughputAtLeastEtcd: ratios["put-64"].throughput >= 1,
            range64ThroughputAtLeastEtcd: ratios["range-64"].throughput >= 1,
            put64P99AtMost1_5xEtcd: ratios["put-64"].p99 <= 1.5,
            range64P99AtMost1_5xEtcd: ratios["range-64"].p99 <= 1.5,
          }
        : undefined;
    process.stdout.write(
      `${JSON.stringify({
        bench: "kv",
        valueBytes: VALUE_BYTES,
        rounds: ROUNDS,
        seconds: SECONDS,
        endpointMode: ENDPOINT_MODE,
        cores: availableParallelism(),
        loadAverage: { before: Number(loadBefore.toFixed(2)), after: Number(loadAfter.toFixed(2)) },
        versions: Object.fromEntries(
          clusters.flatMap((c) =>
            c.name === "quorum-raft"
              ? [
                  ["quorum", c.version],
                  [c.name, c.version],
                ]
              : [[c.name, c.version]],
          ),
        ),
        systems: clusters.map((c) => c.name),
        results: summary["quorum-raft"] ? { quorum: summary["quorum-raft"], ...summary } : summary,
        ratios,
        goal,
        paxosVsRaft,
        paxosGoal,
        shards: shardCluster
          ? { count: SHARDS, leaders: shardCluster.placement, leaderMode: SHARD_LEADERS }
          : undefined,
        shardsVsOne,
        shardGoal,
        watch,
        watchVsEtcd,
        watchGoal,
      })}\n`,
    );
  } finally {
    // Graceful stop only when profiling (Node writes --cpu-prof output at a clean exit).
    for (const cluster of clusters)
      await stopCluster(cluster, Boolean(PROFILE_DIR) && cluster.name.startsWith("quorum-"));
    cleanup();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`kv-bench: ${err?.stack ?? err}\n`);
    cleanup();
    process.exit(1);
  },
);
