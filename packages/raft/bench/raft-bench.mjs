#!/usr/bin/env node
// `pnpm bench:raft`: three RaftNode processes (raft-process.mjs) on 127.0.0.1 over gRPC, each
// with a SqliteLogStore (WAL, synchronous=FULL: every Ready that must be durable is fsynced)
// and a SQLite state machine (count mode: count + rolling digest + applied index per batch).
//   1. Throughput: 64 concurrent proposers calling RaftNode.propose() in the leader's process,
//      256-byte commands, for BENCH_DURATION_MS (default 15 s) after a 2 s warm-up:
//      commits/s, p50/p99 commit latency (propose() call → resolved with the applied result).
//   2. RSS of every node after the load.
//   3. Failover, BENCH_TRIALS (default 5) trials: every surviving node runs a loop proposing
//      every 2 ms; the leader is SIGKILLed; failover = first successful propose() on a
//      survivor − the kill. The killed node is restarted from its files between trials.
//      The followers see the killed leader's streams end (its OS resets its connections) and
//      campaign at once (RaftNode's electOnLeaderDisconnect).
//   4. Failover of a frozen leader, BENCH_TRIALS trials: the same with SIGSTOP, which leaves
//      its connections open, so only the election timeout detects it (as after a power loss
//      or a partition); then it is SIGKILLed and restarted.
// Default Raft timeouts (tickMs 50, electionTicks 10: election timeout 500–1000 ms,
// heartbeatTicks 1). Prints a table and one JSON line. Bounded by a watchdog; always kills
// its children and removes its temp dir.
// BENCH_PROFILE=1: run the throughput phase with --cpu-prof on every node (profiles in
// ./raft-bench-profiles), skip failover.
import { mkdirSync } from "node:fs";
import { resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { distBuilt, ProcessCluster } from "./process-cluster.mjs";

const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 15_000);
const WARMUP_MS = 2_000;
const TRIALS = Number(process.env.BENCH_TRIALS ?? 5);
const CONCURRENCY = 64;
const BYTES = 256;
const PROFILE = process.env.BENCH_PROFILE === "1";
const TARGETS = { commitsPerSec: 20_000, failoverMedianMs: 600, rssMb: 200 };
const FAILOVER_MODES = ["kill", "freeze"];

if (!distBuilt()) {
  console.error("packages/raft/dist is missing: run `pnpm exec turbo run build --filter=@quorum/raft` first");
  process.exit(1);
}

const profileDir = resolve("raft-bench-profiles");
if (PROFILE) mkdirSync(profileDir, { recursive: true });
const execArgv = PROFILE
  ? Object.fromEntries(
      ["n1", "n2", "n3"].map((id) => [
        id,
        ["--cpu-prof", `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${id}.cpuprofile`],
      ]),
    )
  : {};
const cluster = new ProcessCluster({ size: 3, mode: "count", stdio: "inherit", execArgv });

let cleaning;
const cleanup = () => (cleaning ??= cluster.destroy());
const watchdog = setTimeout(
  () => {
    console.error("benchmark watchdog expired; stopping");
    void cleanup().finally(() => process.exit(1));
  },
  WARMUP_MS + DURATION_MS + FAILOVER_MODES.length * TRIALS * 15_000 + 30_000,
);
for (const sig of ["SIGINT", "SIGTERM"])
  process.on(sig, () => void cleanup().finally(() => process.exit(130)));

const now = () => performance.timeOrigin + performance.now();
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const mb = (bytes) => Math.round((bytes / 2 ** 20) * 10) / 10;

try {
  const t0 = Date.now();
  await cluster.start();
  let leader = await cluster.waitForLeader();
  console.error(`cluster up, leader ${leader} (${Date.now() - t0} ms)`);

  await cluster.call(leader, "propose", { durationMs: WARMUP_MS, concurrency: CONCURRENCY, bytes: BYTES });
  const load = await cluster.call(leader, "propose", {
    durationMs: DURATION_MS,
    concurrency: CONCURRENCY,
    bytes: BYTES,
  });
  const commitsPerSec = Math.round((load.committed / load.elapsedMs) * 1000);
  console.error(
    `throughput: ${load.committed} commits in ${Math.round(load.elapsedMs)} ms, failed ${load.failed}`,
  );
  const leaderStatus = await cluster.call(leader, "status");
  await cluster.waitApplied(leaderStatus.applied, 20_000);
  const rss = {};
  for (const id of cluster.ids) rss[id] = mb((await cluster.call(id, "rss")).rss);
  const statuses = await cluster.statuses();
  const digests = new Set(Object.values(statuses).map((s) => `${s.count}/${s.digest}`));
  if (digests.size !== 1) throw new Error(`state machines disagree: ${JSON.stringify(statuses)}`);

  const failovers = { kill: [], freeze: [] };
  if (PROFILE) {
    await Promise.all(cluster.ids.map((id) => cluster.call(id, "close").catch(() => {})));
    await new Promise((r) => setTimeout(r, 1_000));
    console.error(`profiles in ${profileDir}`);
  } else {
    for (const mode of FAILOVER_MODES) {
      for (let trial = 0; trial < TRIALS; trial++) {
        leader = await cluster.waitForLeader(15_000);
        const survivors = cluster.ids.filter((id) => id !== leader);
        const probes = survivors.map((id) =>
          cluster.call(id, "probe", { intervalMs: 2, timeoutMs: 1_000 }).then(
            (r) => ({ ...r, node: id }),
            () => ({ node: id, at: undefined }),
          ),
        );
        await new Promise((r) => setTimeout(r, 100 + Math.random() * 50)); // probes running; random heartbeat phase
        const failedAt = now();
        if (mode === "kill") await cluster.kill(leader);
        else cluster.freeze(leader);
        const first = await Promise.race(
          probes
            .map((p) => p.then((r) => (r.at === undefined ? new Promise(() => {}) : r)))
            .concat(new Promise((r) => setTimeout(() => r({ at: undefined }), 10_000))),
        );
        await Promise.all(survivors.map((id) => cluster.call(id, "stopProbe").catch(() => {})));
        await Promise.all(probes);
        if (mode === "freeze") await cluster.kill(leader);
        if (first.at === undefined)
          throw new Error(`${mode} trial ${trial}: no commit within 10 s of stopping ${leader}`);
        const ms = Math.round(first.at - failedAt);
        failovers[mode].push(ms);
        console.error(
          `failover (${mode}) trial ${trial + 1}: ${leader} stopped, ${first.node} committed after ${ms} ms (term ${first.term})`,
        );
        await cluster.spawn(leader); // back from its files, catches up before the next trial
        const s = await cluster.call(first.node, "status");
        await cluster.waitApplied(s.commit, 15_000);
      }
    }
  }

  const result = {
    bench: "raft",
    nodes: 3,
    transport: "grpc-loopback",
    fsync: true,
    concurrency: CONCURRENCY,
    payloadBytes: BYTES,
    durationMs: Math.round(load.elapsedMs),
    commits: load.committed,
    failed: load.failed,
    commitsPerSec,
    p50Ms: load.p50us / 1000,
    p99Ms: load.p99us / 1000,
    maxMs: load.maxUs / 1000,
    rssMb: rss,
    failoverMs: failovers.kill,
    failoverMedianMs: failovers.kill.length ? median(failovers.kill) : null,
    frozenFailoverMs: failovers.freeze,
    frozenFailoverMedianMs: failovers.freeze.length ? median(failovers.freeze) : null,
    targets: TARGETS,
  };
  const maxRss = Math.max(...Object.values(rss));
  const ok = (pass) => (pass ? "ok" : "MISSED");
  const rows = [
    [
      "commits/s",
      String(commitsPerSec),
      `>= ${TARGETS.commitsPerSec}`,
      ok(commitsPerSec >= TARGETS.commitsPerSec),
    ],
    ["p50 commit latency", `${result.p50Ms.toFixed(2)} ms`, "", ""],
    ["p99 commit latency", `${result.p99Ms.toFixed(2)} ms`, "", ""],
    ...Object.entries(rss).map(([id, v]) => [
      `RSS ${id}`,
      `${v} MB`,
      `< ${TARGETS.rssMb} MB`,
      ok(v < TARGETS.rssMb),
    ]),
    ...(failovers.kill.length
      ? [
          [
            `failover median, SIGKILL (${failovers.kill.length})`,
            `${result.failoverMedianMs} ms`,
            `< ${TARGETS.failoverMedianMs} ms`,
            ok(result.failoverMedianMs < TARGETS.failoverMedianMs),
          ],
          ["failover trials, SIGKILL", failovers.kill.join(", ") + " ms", "", ""],
          [
            `failover median, SIGSTOP (${failovers.freeze.length})`,
            `${result.frozenFailoverMedianMs} ms`,
            "timer only",
            "",
          ],
          ["failover trials, SIGSTOP", failovers.freeze.join(", ") + " ms", "", ""],
        ]
      : []),
  ];
  const w = [0, 1, 2].map((i) => Math.max(...rows.map((r) => r[i].length), 8));
  console.log(
    `Raft: 3 processes, gRPC on 127.0.0.1, SQLite synchronous=FULL, ${CONCURRENCY} proposers x ${BYTES} B`,
  );
  for (const r of rows)
    console.log(`  ${r[0].padEnd(w[0])}  ${r[1].padStart(w[1])}  ${r[2].padEnd(w[2])}  ${r[3]}`);
  void maxRss;
  console.log(JSON.stringify(result));
} catch (err) {
  console.error(err);
  process.exitCode = 1;
} finally {
  clearTimeout(watchdog);
  await cleanup();
}
