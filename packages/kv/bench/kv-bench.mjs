#!/usr/bin/env node
// Quorum's etcd-compatible store over Raft and over Paxos against a real etcd, same machine,
// same load, one run.
//
// Starts a three-node Quorum cluster over Raft and one over Paxos (`quorum node --consensus
// raft|paxos` processes; the consensus log fsyncs every append, the store is made durable at snapshots) and, when `etcd` is on PATH (Debian
// etcd-server), a three-member etcd (which fsyncs its WAL by default), all on 127.0.0.1 with
// data in temp dirs. Then, per scenario, runs short rounds alternating the systems (round r
// starts with the r-th system, so with three systems and three rounds each one goes first,
// second and third once) and quotes medians:
//   put-1, put-16, put-64: Put of a 256-byte value to one of 1,000 keys, N requests in flight
//   range-64:              linearizable Range of one key, 64 in flight
// The load generator is the same grpc-js code for both (etcd's proto is the same): raw
// pre-encoded requests, responses not decoded, clients spread over up to 8 connections to the
// leader. Prints a table and one JSON line with Quorum-Raft/etcd ratios (`ratios`, `goal`) and
// Quorum-Paxos/Quorum-Raft ratios (`paxosVsRaft`, `paxosGoal`: Paxos throughput at least 0.8x
// Raft's and p99 no worse than Raft's, per scenario). `results.quorum` is the same object as
// `results["quorum-raft"]` (the name older readers know). Stops by itself, kills every process
// it started, removes its temp dirs.
//
// All systems get the same rounds and seconds. With the defaults (3 systems x 4 scenarios x
// 3 rounds x (3 s + 0.5 s warm-up)) a run takes about 2-2.5 minutes; for a quicker look use
// e.g. BENCH_ROUNDS=1 BENCH_SECONDS=1, or fewer systems.
//
// Options (env): BENCH_ROUNDS (3), BENCH_SECONDS (3), BENCH_WARMUP_SECONDS (0.5),
// BENCH_SYSTEMS ("raft,paxos,etcd": any of raft (alias quorum, quorum-raft), paxos (alias
// quorum-paxos) and etcd; etcd is skipped when not on PATH), BENCH_SCENARIOS
// ("put-1,put-16,put-64,range-64"), BENCH_PROFILE_DIR (run the Quorum nodes with --cpu-prof
// into that dir, Raft nodes as n1.cpuprofile..., Paxos nodes as paxos-n1.cpuprofile...;
// profiles are written when they stop on SIGTERM at the end), BENCH_ENDPOINT_MODE ("leader" or
// "spread": clients spread over every member, followers forward).
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import grpc from "@grpc/grpc-js";
import hdr from "hdr-histogram-js";
import { PutRequest, RangeRequest, StatusResponse } from "../dist/gen/etcdserverpb/rpc.js";

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
};
const SYSTEMS = (process.env.BENCH_SYSTEMS ?? "raft,paxos,etcd")
  .split(",")
  .map((s) => s.trim())
  .filter(Boolean)
  .map((s) => {
    const system = SYSTEM_ALIASES[s];
    if (!system) {
      process.stderr.write(`kv-bench: BENCH_SYSTEMS: unknown system "${s}" (raft, paxos, etcd)\n`);
      process.exit(2);
    }
    return system;
  });
const PAXOS_THROUGHPUT_GOAL = 0.8; // Paxos ops/s at least this share of Raft's
const PAXOS_P99_GOAL = 1; // Paxos p99 at most this multiple of Raft's
const SCENARIOS = (process.env.BENCH_SCENARIOS ?? "put-1,put-16,put-64,range-64").split(",");
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

async function startQuorum(consensus) {
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run \`pnpm build\` first`);
  const dir = mkdtempSync(join(tmpdir(), `kv-bench-quorum-${consensus}-`));
  tempDirs.push(dir);
  const ports = await freePorts(6);
  const nodes = [0, 1, 2].map((i) => ({
    name: `n${i + 1}`,
    client: `127.0.0.1:${ports[2 * i]}`,
    peer: `127.0.0.1:${ports[2 * i + 1]}`,
  }));
  const initial = nodes.map((n) => `${n.name}=${n.peer}`).join(",");
  const procs = nodes.map((n) => {
    const profileName = `${consensus === "raft" ? "" : `${consensus}-`}${n.name}.cpuprofile`;
    const flags = PROFILE_DIR
      ? ["--cpu-prof", `--cpu-prof-dir=${PROFILE_DIR}`, `--cpu-prof-name=${profileName}`]
      : [];
    if (PROFILE_DIR) mkdirSync(PROFILE_DIR, { recursive: true });
    return start(`quorum-${consensus} ${n.name}`, process.execPath, [
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
      `kv-bench-${consensus}-${process.pid}`,
      "--consensus",
      consensus,
      "--log-level",
      "warn",
    ]);
  });
  const endpoints = nodes.map((n) => n.client);
  const leader = await waitForLeader(endpoints);
  return {
    name: `quorum-${consensus}`,
    endpoints,
    leader,
    procs,
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
const keyOf = (i) => Buffer.from(`bench/key-${String(i).padStart(4, "0")}`);
const putRequests = Array.from({ length: KEYS }, (_, i) =>
  Buffer.from(PutRequest.encode(PutRequest.fromPartial({ key: keyOf(i), value })).finish()),
);
const rangeRequests = Array.from({ length: KEYS }, (_, i) =>
  Buffer.from(RangeRequest.encode(RangeRequest.fromPartial({ key: keyOf(i) })).finish()),
);

function parseScenario(name) {
  const [kind, n] = name.split("-");
  if ((kind !== "put" && kind !== "range") || !(Number(n) > 0)) throw new Error(`unknown scenario ${name}`);
  return { name, kind, clients: Number(n) };
}

async function runLoad(cluster, scenario) {
  const targets = ENDPOINT_MODE === "spread" ? cluster.endpoints : [cluster.leader];
  const connections = Math.min(scenario.clients, MAX_CONNECTIONS);
  const channels = Array.from({ length: connections }, (_, i) => channel(targets[i % targets.length], i));
  await Promise.all(
    channels.map(
      (c) =>
        new Promise((resolve, reject) =>
          c.waitForReady(Date.now() + 5_000, (e) => (e ? reject(e) : resolve())),
        ),
    ),
  );
  const path = scenario.kind === "put" ? "/etcdserverpb.KV/Put" : "/etcdserverpb.KV/Range";
  const requests = scenario.kind === "put" ? putRequests : rangeRequests;
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
    const c = channels[w % connections];
    for (let n = w * 131; !done; n++) {
      const t0 = performance.now();
      try {
        await call(c, path, requests[n % KEYS]);
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
  const began = performance.now();
  await sleep(SECONDS * 1000);
  measuring = false;
  const elapsed = (performance.now() - began) / 1000;
  const cpuAfter = pids.map(cpuSeconds);
  const self = process.cpuUsage(selfBefore);
  done = true;
  await Promise.all(workers);
  for (const c of channels) c.close();
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
  const scenarios = SCENARIOS.map(parseScenario);
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
      for (let round = 0; round < ROUNDS; round++) {
        // Rotate the order each round (with two systems this is the old A,B then B,A).
        const shift = round % clusters.length;
        const order = [...clusters.slice(shift), ...clusters.slice(0, shift)];
        for (const cluster of order) {
          // A leader may have moved (it should not, but the numbers must be about the leader).
          cluster.leader = await waitForLeader(cluster.endpoints);
          const r = await runLoad(cluster, scenario);
          ((results[cluster.name] ??= {})[scenario.name] ??= []).push(r);
          log(
            `${scenario.name} round ${round + 1}/${ROUNDS} ${cluster.name}: ${r.opsPerSec.toFixed(0)} ops/s, p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms, leader cpu ${(r.leaderCpu * 100).toFixed(0)}%, cluster cpu ${(r.clusterCpu * 100).toFixed(0)}%, client cpu ${(r.clientCpu * 100).toFixed(0)}%`,
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
        };
      }
    }

    const pad = (s, n) => String(s).padStart(n);
    const header = `${"scenario".padEnd(10)} ${"system".padEnd(12)} ${pad("ops/s", 8)} ${pad("p50 ms", 8)} ${pad("p99 ms", 8)} ${pad("leader cpu", 10)} ${pad("cluster cpu", 11)} ${pad("client cpu", 10)} ${pad("errors", 6)}`;
    const lines = [header, "-".repeat(header.length)];
    for (const scenario of scenarios) {
      for (const cluster of clusters) {
        const s = summary[cluster.name]?.[scenario.name];
        if (!s) continue;
        const pct = (x) => `${Math.round(x * 100)}%`;
        lines.push(
          `${scenario.name.padEnd(10)} ${cluster.name.padEnd(12)} ${pad(s.opsPerSec, 8)} ${pad(s.p50Ms.toFixed(2), 8)} ${pad(s.p99Ms.toFixed(2), 8)} ${pad(pct(s.leaderCpu), 10)} ${pad(pct(s.clusterCpu), 11)} ${pad(pct(s.clientCpu), 10)} ${pad(s.errors, 6)}`,
        );
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
    const fmt = (x) => `${x.toFixed(2)}x`;
    for (const [title, rs] of [
      ["quorum-raft / etcd", ratios],
      ["quorum-paxos / quorum-raft", paxosVsRaft],
    ]) {
      if (Object.keys(rs).length === 0) continue;
      ratioLines.push(`${title.padEnd(26)} ${"ops/s".padStart(8)} ${"p50".padStart(8)} ${"p99".padStart(8)}`);
      for (const [name, r] of Object.entries(rs)) {
        const g = title.startsWith("quorum-paxos") ? paxosGoalScenarios[name] : undefined;
        const verdict = g
          ? `   goal (>= ${PAXOS_THROUGHPUT_GOAL}x ops/s, p99 <= ${PAXOS_P99_GOAL}x): ${g.throughputAtLeast0_8xRaft && g.p99NoWorseThanRaft ? "met" : `missed (${[g.throughputAtLeast0_8xRaft ? "" : "ops/s", g.p99NoWorseThanRaft ? "" : "p99"].filter(Boolean).join(", ")})`}`
          : "";
        ratioLines.push(
          `  ${name.padEnd(24)} ${fmt(r.throughput).padStart(8)} ${fmt(r.p50).padStart(8)} ${fmt(r.p99).padStart(8)}${verdict}`,
        );
      }
    }
    process.stdout.write(
      `\nkv-bench: 3 nodes each, ${VALUE_BYTES}-byte values, ${KEYS} keys, medians of ${ROUNDS} rounds of ${SECONDS}s, clients -> ${ENDPOINT_MODE}, 1-min load ${loadBefore.toFixed(1)} -> ${loadAfter.toFixed(1)} on ${availableParallelism()} cores\n${lines.join("\n")}\n\n${ratioLines.length ? `${ratioLines.join("\n")}\n\n` : ""}`,
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
