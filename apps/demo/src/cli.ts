#!/usr/bin/env node
import { readFileSync } from "node:fs";
import { Command, CommanderError, InvalidArgumentError } from "commander";
import { runCluster } from "./commands/cluster.js";
import { runDemo } from "./commands/demo.js";
import { runJob, runJobCoordinator, runJobWorker } from "./commands/mapreduce.js";
import { runNode } from "./commands/node.js";
import { runTransportDemo } from "./commands/transport-demo.js";
import { ConfigError } from "./node/config.js";

const { version } = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
  version: string;
};

/** Exit codes: 0 ok, 1 runtime failure, 2 bad usage (unknown command, bad flag). */
export const EXIT_USAGE = 2;

function positiveInt(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer`);
    return n;
  };
}

function port(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1 || n > 65535)
      throw new InvalidArgumentError(`${name} must be a port (1-65535)`);
    return n;
  };
}

function buildProgram(): Command {
  const program = new Command("quorum")
    .description(
      "Quorum: a sharded, replicated, etcd-compatible store, its consensus protocols and a MapReduce runner",
    )
    .version(version, "-v, --version")
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({
      // One line, no stack trace: commander's own messages already read well.
      outputError: (text, write) => write(text.split("\n")[0] + "\n"),
    });

  const demo = program
    .command("demo")
    .description(
      "run the demo: a local cluster, workloads through the etcd API, a MapReduce job and a live dashboard",
    )
    .option("--port <port>", "the dashboard's HTTP port", port("--port"), 8080)
    .option("--host <host>", "address the dashboard and the nodes listen on", "127.0.0.1")
    .option("--data-dir <dir>", "parent folder of the nodes' data dirs and logs", "./data")
    .option("--consensus <protocol>", "raft or paxos", "raft")
    .option("--nodes <n>", "how many nodes", positiveInt("--nodes"), 3)
    .option(
      "--shards <n>",
      "key-space shards, each its own consensus group; bank transfers between shards use two-phase commit",
      positiveInt("--shards"),
      3,
    )
    .option(
      "--base-port <port>",
      "node i listens on base+10i (etcd clients), +1 (peers), +2 (status and metrics)",
      port("--base-port"),
      2379,
    )
    .option("--log-level <level>", "the nodes' log level (their logs go to <data-dir>/<name>.log)", "info")
    .option("--tick-ms <ms>", "how often the dashboard refreshes", positiveInt("--tick-ms"), 500)
    .action(runDemo);
  demo
    .command("transport")
    .description("three gRPC transports exchanging numbered messages: checks order and prints throughput")
    .option("--nodes <n>", "how many nodes", positiveInt("--nodes"), 3)
    .option("--messages <n>", "messages each node sends to each peer", positiveInt("--messages"), 1000)
    .action(async (opts: { nodes: number; messages: number }) => {
      await runTransportDemo(opts);
    });

  program
    .command("node")
    .description("run one node of a cluster in the foreground (flags follow etcd's)")
    .requiredOption("--name <name>", "this node's name, as in --initial-cluster")
    .option("--data-dir <dir>", "where the node keeps its SQLite files (default: <name>.quorum)")
    .option("--listen-client <host:port>", "address for etcd clients", "127.0.0.1:2379")
    .option(
      "--advertise-client-urls <host:port>",
      "where other nodes and clients reach this node's client port (default: --listen-client)",
    )
    .option("--listen-peer <host:port>", "address for node-to-node traffic", "127.0.0.1:2380")
    .option("--initial-cluster <list>", "every voter of a new cluster: n1=host:port,n2=host:port,...")
    .option(
      "--initial-cluster-token <token>",
      "nodes of different clusters refuse each other",
      "quorum-cluster",
    )
    .option("--consensus <protocol>", "raft or paxos", "raft")
    .option(
      "--shards <n>",
      "key-space shards, each its own consensus group (all nodes must agree)",
      positiveInt("--shards"),
      1,
    )
    .option(
      "--cert-file <file>",
      "TLS certificate for etcd clients (mutual TLS, as etcd's --client-cert-auth)",
    )
    .option("--key-file <file>", "its private key")
    .option("--trusted-ca-file <file>", "CA that client certificates must be signed by")
    .option("--peer-cert-file <file>", "TLS certificate for node-to-node traffic (mutual TLS)")
    .option("--peer-key-file <file>", "its private key")
    .option("--peer-trusted-ca-file <file>", "CA that peer certificates must be signed by")
    .option("--listen-metrics <host:port>", "serve http://host:port/metrics (Prometheus) and /health")
    .option("--log-level <level>", "fatal, error, warn, info, debug or trace", "info")
    .option(
      "--enable-fault-injection",
      "serve POST /admin/partition and /admin/heal beside /metrics (for the demo; never in production)",
    )
    .action(runNode);

  program
    .command("cluster")
    .description("start a local cluster as separate node processes and print its endpoints")
    .option("--nodes <n>", "how many nodes", positiveInt("--nodes"), 3)
    .option("--data-dir <dir>", "parent folder of the nodes' data dirs", "./data")
    .option(
      "--base-port <port>",
      "node i listens on base+10i (clients), +1 (peers), +2 (metrics)",
      positiveInt("--base-port"),
      2379,
    )
    .option("--host <host>", "address to listen on", "127.0.0.1")
    .option("--log-level <level>", "fatal, error, warn, info, debug or trace", "warn")
    .option("--consensus <protocol>", "raft or paxos", "raft")
    .option("--shards <n>", "key-space shards, each its own consensus group", positiveInt("--shards"), 1)
    .action(runCluster);

  const mapreduce = program.command("mapreduce").description("run MapReduce jobs");
  const jobFlags = (command: Command) =>
    command
      .requiredOption("--job <job>", "wordcount, indexer, grep, or the path of a job module")
      .requiredOption("--input <glob...>", "input files (globs allowed)")
      .option("--reduces <r>", "number of reduce tasks (output files)", positiveInt("--reduces"), 4)
      .option("--out <dir>", "where mr-out-* files go", "./mr-out")
      .option("--pattern <regex>", "the pattern, for --job grep")
      .option(
        "--split-mb <mb>",
        "split inputs larger than this at line boundaries",
        positiveInt("--split-mb"),
      )
      .option(
        "--task-timeout <s>",
        "give a task to another worker after this long",
        positiveInt("--task-timeout"),
        10,
      )
      .option(
        "--listen-metrics <host:port>",
        "serve Prometheus metrics at http://host:port/metrics while the job runs",
      );
  jobFlags(mapreduce.command("run").description("run a job with a local coordinator and worker processes"))
    .option("--workers <w>", "worker processes", positiveInt("--workers"), 2)
    .action(runJob);
  jobFlags(mapreduce.command("coordinator").description("run a job's coordinator; workers dial in"))
    .option("--listen <host:port>", "address for workers", "127.0.0.1:7070")
    .option("--state <file>", "durable task table (a restarted coordinator resumes from it)")
    .action(runJobCoordinator);
  mapreduce
    .command("worker")
    .description("run tasks for a coordinator until its job is done")
    .requiredOption("--coordinator <host:port>", "the coordinator's address")
    .option("--listen <host:port>", "address of this worker's shuffle service", "127.0.0.1:0")
    .option("--advertise <host:port>", "address other workers dial to fetch map output")
    .action(runJobWorker);

  return program;
}

async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  if (argv.length <= 2) {
    program.outputHelp();
    return 0;
  }
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      const benign = ["commander.helpDisplayed", "commander.version", "commander.help"];
      return benign.includes(err.code) ? 0 : EXIT_USAGE;
    }
    process.stderr.write(`quorum: ${err instanceof Error ? err.message : String(err)}\n`);
    return err instanceof ConfigError ? EXIT_USAGE : 1;
  }
}

process.exitCode = await main(process.argv);
