import { join } from "node:path";
import { LocalCluster } from "../cluster/local-cluster.js";
import { BankWorkload } from "../demo/bank.js";
import { ClusterView } from "../demo/cluster-view.js";
import { ActionError, DashboardServer } from "../demo/dashboard-server.js";
import { demoClient } from "../demo/etcd-client.js";
import { WordCountJobs } from "../demo/mapreduce-job.js";
import { sleep } from "../demo/stats.js";
import { KvWorkload, oneLine } from "../demo/workloads.js";
import { ConfigError } from "../node/config.js";

export interface DemoOptions {
  port: number;
  host: string;
  dataDir: string;
  consensus: string;
  nodes: number;
  /** Key-space shards, each its own consensus group on every node. */
  shards: number;
  basePort: number;
  logLevel: string;
  /** Dashboard refresh period. */
  tickMs: number;
}

interface DemoEvent {
  at: number;
  text: string;
}

/**
 * `quorum demo`: a local cluster of node processes with several shards, workloads through the
 * etcd API (puts and linearizable reads, bank transfers between shards by two-phase commit),
 * a word count MapReduce job, and a dashboard that shows it all live and has buttons to
 * kill, restart and partition nodes.
 */
export async function runDemo(options: DemoOptions): Promise<void> {
  if (options.consensus !== "raft" && options.consensus !== "paxos") {
    throw new ConfigError(`--consensus: "${options.consensus}" is not one of raft, paxos`);
  }
  if (!Number.isInteger(options.shards) || options.shards < 1 || options.shards > 94) {
    throw new ConfigError(`--shards: ${options.shards} is not a whole number from 1 to 94`);
  }
  const events: DemoEvent[] = [];
  const log = (text: string) => {
    const event = { at: Date.now(), text };
    events.push(event);
    if (events.length > 200) events.shift();
    process.stdout.write(`${new Date(event.at).toISOString().slice(11, 19)}  ${text}\n`);
  };

  let stopping = false;
  const cluster = new LocalCluster({
    nodes: options.nodes,
    basePort: options.basePort,
    host: options.host,
    dataDir: options.dataDir,
    logLevel: options.logLevel,
    consensus: options.consensus,
    shards: options.shards,
    faultInjection: true,
    output: "files",
    onExit: (name, code, signal, expected) => {
      if (!stopping && !expected)
        log(`${name} exited on its own (${signal ?? `code ${code}`}); see ${name}.log`);
    },
  });
  // A data dir made with another layout would make every node refuse to start: say so now.
  cluster.checkDataDirs();
  const view = new ClusterView(
    cluster,
    options.shards,
    log,
    options.consensus === "paxos" ? "ballot" : "term",
  );
  const mapreduce = new WordCountJobs(join(cluster.dataDir, "mapreduce"), log);

  const partitioned = new Set<string>();
  const post = async (address: string, path: string, body?: unknown) => {
    const res = await fetch(`http://${address}${path}`, {
      method: "POST",
      body: JSON.stringify(body ?? {}),
      signal: AbortSignal.timeout(1000),
    });
    if (!res.ok) throw new Error(`${address}${path}: HTTP ${res.status}`);
  };
  const known = (node: string) => {
    if (!cluster.members.some((m) => m.name === node)) throw new ActionError(404, `no node named ${node}`);
  };
  const server = new DashboardServer({
    async kill(node) {
      known(node);
      if (!cluster.kill(node)) throw new ActionError(409, `${node} is not running`);
      const led = view.ledBy(node);
      const note =
        led.length === 0
          ? ""
          : options.shards === 1
            ? " (it was the leader)"
            : ` (it led shard${led.length > 1 ? "s" : ""} ${led.join(", ")})`;
      log(`${node} killed with SIGKILL${note}`);
      return `${node} killed`;
    },
    async restart(node) {
      known(node);
      if (!(await cluster.restart(node))) throw new ActionError(409, `${node} is already running`);
      log(`${node} restarted on its data dir`);
      return `${node} restarted`;
    },
    async partition(node) {
      known(node);
      const others = cluster.members.map((m) => m.name).filter((n) => n !== node);
      // Every node drops the cut links, so the traffic counters show the cut on both sides.
      const results = await Promise.allSettled(
        cluster.members.map((m) =>
          post(m.metrics, "/admin/partition", { peers: m.name === node ? others : [node] }),
        ),
      );
      if (results[cluster.members.findIndex((m) => m.name === node)]?.status === "rejected") {
        throw new ActionError(409, `${node} did not answer; is it running?`);
      }
      partitioned.add(node);
      log(`${node} partitioned from ${others.join(", ")}`);
      return `${node} partitioned`;
    },
    async heal() {
      await Promise.allSettled(cluster.members.map((m) => post(m.metrics, "/admin/heal")));
      partitioned.clear();
      log("network healed");
      return "healed";
    },
    async startMapReduce() {
      if (!mapreduce.start()) throw new ActionError(409, "a MapReduce job is already running");
      return "started";
    },
  });

  await server.listen(options.host, options.port);
  try {
    await cluster.checkPorts();
  } catch (err) {
    await server.close();
    throw err;
  }
  cluster.start();
  const url = `http://${options.host}:${options.port}`;

  const client = demoClient(cluster.members.map((m) => m.client));
  const kv = new KvWorkload(client, options.shards);
  const bank = new BankWorkload(client, options.shards);
  const endpoints = cluster.members.map((m) => m.client).join(",");
  const shardNote =
    options.shards === 1
      ? "1 shard"
      : `${options.shards} shards, each its own ${options.consensus} group on every node; transfers between shards use two-phase commit`;
  process.stdout.write(
    `quorum demo: ${cluster.members.length} nodes (${options.consensus}), ${shardNote}\n` +
      `  data and node logs in ${cluster.dataDir}\n` +
      cluster.members
        .map(
          (m) =>
            `  ${m.name}  etcd ${m.client}  peer ${m.peer}  http://${m.metrics}/status /metrics /health\n`,
        )
        .join("") +
      `  bank accounts by shard: ${bank.keyPrefixes.map((p, i) => `${p}* (shard ${i})`).join(", ")}\n` +
      `  etcdctl --endpoints ${endpoints} get --prefix ${bank.keyPrefixes.at(-1)}\n` +
      `dashboard: ${url}   (Ctrl-C stops everything)\n`,
  );

  const snapshot = () => ({
    at: Date.now(),
    consensus: options.consensus,
    dashboard: url,
    dataDir: cluster.dataDir,
    shards: view.shards,
    leaderChanges: view.leaderChanges.slice(-10),
    nodes: view.nodes.map((n) => ({ ...n, partitioned: partitioned.has(n.name) })),
    kv: { ...kv.stats, total: kv.latency.total, ...kv.latency.take() },
    bank: { ...bank.stats, ...bank.latency.take() },
    crossShard: view.crossShard,
    mapreduce: mapreduce.view,
    events: events.slice(-40),
  });
  let ticking = true;
  const ticker = (async () => {
    // Once stopping, the nodes get the signal too (same process group): their exits are no news.
    while (ticking && !stopping) {
      const started = Date.now();
      await view.poll().catch(() => {});
      server.publish(snapshot());
      await sleep(Math.max(50, options.tickMs - (Date.now() - started)));
    }
  })();

  const stopped = new Promise<string>((resolve) => {
    process.once("SIGINT", () => resolve("SIGINT"));
    process.once("SIGTERM", () => resolve("SIGTERM"));
  });

  const startWorkloads = (async () => {
    const deadline = Date.now() + 30_000;
    while (!view.allLed && Date.now() < deadline && !stopping) await sleep(100);
    if (stopping) return;
    if (!view.allLed) log("a shard has no leader after 30 s; the workloads start anyway and will retry");
    for (;;) {
      try {
        await bank.open();
        break;
      } catch (err) {
        if (stopping) return;
        log(`opening the bank accounts failed (${oneLine(err)}); retrying`);
        await sleep(1000);
      }
    }
    if (stopping) return;
    kv.start();
    bank.start();
    mapreduce.start();
    log(
      `workloads running: puts and linearizable reads, bank transfers${options.shards > 1 ? " across shards" : ""}, word count`,
    );
  })();

  const signal = await stopped;
  stopping = true;
  process.stdout.write(`\n${signal}: stopping the workloads and the ${cluster.members.length} nodes\n`);
  await startWorkloads;
  await Promise.all([kv.stop(), bank.stop(), mapreduce.stop()]);
  client.close();
  ticking = false;
  await ticker;
  await server.close();
  await cluster.stop();
  process.stdout.write("stopped\n");
}
