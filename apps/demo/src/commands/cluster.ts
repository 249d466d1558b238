import { LocalCluster } from "../cluster/local-cluster.js";

export interface ClusterOptions {
  nodes: number;
  dataDir: string;
  basePort: number;
  host: string;
  logLevel: string;
  consensus: string;
  shards: number;
}

/**
 * `quorum cluster`: starts a local cluster as separate `quorum node` processes, prints the
 * client endpoints, and stops them all on SIGINT/SIGTERM. A node that dies is reported; the
 * others keep running.
 */
export async function runCluster(options: ClusterOptions): Promise<void> {
  const cluster = new LocalCluster({
    ...options,
    output: "inherit",
    // A killed node is part of the demo (fault injection): report it, keep the rest running.
    onExit: (name, code, signal, expected) => {
      if (!expected) process.stderr.write(`${name} exited (${signal ?? `code ${code}`})\n`);
    },
  });
  const members = cluster.members;
  cluster.start();
  process.stdout.write(
    `cluster of ${members.length} nodes, data in ${cluster.dataDir}\n` +
      members
        .map((m) => `  ${m.name}  client ${m.client}  peer ${m.peer}  metrics http://${m.metrics}/metrics\n`)
        .join("") +
      `endpoints: ${members.map((m) => m.client).join(",")}\n`,
  );
  const stop = () => void cluster.stop();
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  await cluster.allExited();
}
