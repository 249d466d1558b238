import { type ChildProcess, spawn } from "node:child_process";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export interface ClusterOptions {
  nodes: number;
  dataDir: string;
  basePort: number;
  host: string;
  logLevel: string;
  consensus: string;
}

export interface ClusterMember {
  name: string;
  client: string;
  peer: string;
  metrics: string;
}

/** The ports of a local cluster: node i listens on base+10i (clients), +1 (peers), +2 (metrics). */
export function clusterLayout({
  nodes,
  basePort,
  host,
}: Pick<ClusterOptions, "nodes" | "basePort" | "host">): ClusterMember[] {
  return Array.from({ length: nodes }, (_, i) => ({
    name: `n${i + 1}`,
    client: `${host}:${basePort + 10 * i}`,
    peer: `${host}:${basePort + 10 * i + 1}`,
    metrics: `${host}:${basePort + 10 * i + 2}`,
  }));
}

/**
 * `quorum cluster`: starts a local cluster as separate `quorum node` processes, prints the
 * client endpoints, and stops them all on SIGINT/SIGTERM. A node that dies is reported; the
 * others keep running.
 */
export async function runCluster(options: ClusterOptions): Promise<void> {
  const members = clusterLayout(options);
  if (members.at(-1)!.metrics.endsWith(":65535") || options.basePort + 10 * options.nodes > 65535) {
    throw new Error(`--base-port ${options.basePort} leaves no room for ${options.nodes} nodes`);
  }
  const cli = fileURLToPath(new URL("../cli.js", import.meta.url));
  const initialCluster = members.map((m) => `${m.name}=${m.peer}`).join(",");
  const children: ChildProcess[] = members.map((m) =>
    spawn(
      process.execPath,
      [
        cli,
        "node",
        "--name",
        m.name,
        "--data-dir",
        join(resolve(options.dataDir), m.name),
        "--listen-client",
        m.client,
        "--listen-peer",
        m.peer,
        "--listen-metrics",
        m.metrics,
        "--initial-cluster",
        initialCluster,
        "--log-level",
        options.logLevel,
        "--consensus",
        options.consensus,
      ],
      { stdio: ["ignore", "inherit", "inherit"] },
    ),
  );
  process.stdout.write(
    `cluster of ${members.length} nodes, data in ${resolve(options.dataDir)}\n` +
      members
        .map((m) => `  ${m.name}  client ${m.client}  peer ${m.peer}  metrics http://${m.metrics}/metrics\n`)
        .join("") +
      `endpoints: ${members.map((m) => m.client).join(",")}\n`,
  );

  await new Promise<void>((done) => {
    let stopping = false;
    let alive = children.length;
    const stopAll = () => {
      if (stopping) return;
      stopping = true;
      for (const child of children) child.kill("SIGTERM");
    };
    for (const [i, child] of children.entries()) {
      child.once("exit", (code, signal) => {
        // A killed node is part of the demo (fault injection): report it, keep the rest running.
        if (!stopping) process.stderr.write(`${members[i]!.name} exited (${signal ?? `code ${code}`})\n`);
        if (--alive === 0) done();
      });
    }
    process.once("SIGINT", stopAll);
    process.once("SIGTERM", stopAll);
  });
}
