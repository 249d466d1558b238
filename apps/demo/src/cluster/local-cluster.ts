import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export interface ClusterMember {
  name: string;
  client: string;
  peer: string;
  metrics: string;
}

export interface LayoutOptions {
  nodes: number;
  basePort: number;
  host: string;
}

/** The ports of a local cluster: node i listens on base+10i (clients), +1 (peers), +2 (metrics). */
export function clusterLayout({ nodes, basePort, host }: LayoutOptions): ClusterMember[] {
  if (basePort + 10 * (nodes - 1) + 2 > 65535) {
    throw new Error(`--base-port ${basePort} leaves no room for ${nodes} nodes`);
  }
  return Array.from({ length: nodes }, (_, i) => ({
    name: `n${i + 1}`,
    client: `${host}:${basePort + 10 * i}`,
    peer: `${host}:${basePort + 10 * i + 1}`,
    metrics: `${host}:${basePort + 10 * i + 2}`,
  }));
}

/** The addresses among `addresses` (host:port) that something already listens on. */
export async function portsInUse(addresses: readonly string[]): Promise<string[]> {
  const busy = await Promise.all(
    addresses.map(
      (address) =>
        new Promise<boolean>((done) => {
          const colon = address.lastIndexOf(":");
          const server = createServer();
          server.once("error", () => done(true));
          server.listen(Number(address.slice(colon + 1)), address.slice(0, colon), () =>
            server.close(() => done(false)),
          );
        }),
    ),
  );
  return addresses.filter((_, i) => busy[i]);
}

export interface LocalClusterOptions extends LayoutOptions {
  /** Parent folder of the nodes' data dirs (node nX keeps its files in <dataDir>/nX). */
  dataDir: string;
  logLevel: string;
  consensus: string;
  /** Key-space shards per node (default 1). */
  shards?: number;
  /** Pass --enable-fault-injection to every node (the demo's partition and heal buttons). */
  faultInjection?: boolean;
  /**
   * Where node output goes: "inherit" shares this terminal; "files" appends each node's
   * output to <dataDir>/<name>.log so that a dashboard's terminal stays readable.
   */
  output: "inherit" | "files";
  /** Called when a node process ends without having been asked to (crash, SIGKILL from outside). */
  onExit?: (name: string, code: number | null, signal: NodeJS.Signals | null, expected: boolean) => void;
}

export type ProcessState = "running" | "killed" | "exited" | "stopped";

interface NodeProcess {
  member: ClusterMember;
  child: ChildProcess | undefined;
  state: ProcessState;
  exited: Promise<void>;
  /** Set when this process was killed or stopped on purpose. */
  expected: boolean;
  starts: number;
}

/**
 * A local cluster of `quorum node` processes on one machine: starts them, kills and restarts
 * single nodes (as the demo's buttons do), and stops them all. The nodes are children of this
 * process, in its process group, so a Ctrl-C in the terminal reaches them too.
 */
export class LocalCluster {
  readonly members: ClusterMember[];
  private readonly processes = new Map<string, NodeProcess>();
  private readonly cli = fileURLToPath(new URL("../cli.js", import.meta.url));
  private readonly initialCluster: string;

  constructor(private readonly options: LocalClusterOptions) {
    this.members = clusterLayout(options);
    this.initialCluster = this.members.map((m) => `${m.name}=${m.peer}`).join(",");
  }

  get dataDir(): string {
    return resolve(this.options.dataDir);
  }

  /** Fails with one clear line when one of the cluster's ports is taken. */
  async checkPorts(): Promise<void> {
    const all = this.members.flatMap((m) => [m.client, m.peer, m.metrics]);
    const busy = await portsInUse(all);
    if (busy.length > 0) {
      throw new Error(
        `port${busy.length > 1 ? "s" : ""} ${busy.join(", ")} already in use (another cluster running?); pick other ports with --base-port`,
      );
    }
  }

  /**
   * Fails with one clear line when a node's data dir was made with another consensus
   * protocol or shard count (each node would refuse it, see node/data-dir.ts, and exit):
   * a demo run earlier with other flags leaves such a dir behind.
   */
  checkDataDirs(): void {
    const wanted = { consensus: this.options.consensus, shards: this.options.shards ?? 1 };
    for (const m of this.members) {
      const path = join(this.dataDir, m.name, "quorum.json");
      if (!existsSync(path)) continue;
      let found: { consensus?: unknown; shards?: unknown };
      try {
        found = JSON.parse(readFileSync(path, "utf8")) as typeof found;
      } catch {
        continue; // The node itself says what is wrong with the file.
      }
      if (found.consensus !== wanted.consensus || found.shards !== wanted.shards) {
        throw new Error(
          `${join(this.dataDir, m.name)} holds a cluster made with --consensus ${String(found.consensus)} --shards ${String(found.shards)}, ` +
            `not --consensus ${wanted.consensus} --shards ${wanted.shards}: pass those flags, another --data-dir, or delete ${this.dataDir}`,
        );
      }
    }
  }

  start(): void {
    mkdirSync(this.dataDir, { recursive: true });
    for (const member of this.members) this.spawnNode(member);
  }

  member(name: string): ClusterMember {
    const member = this.members.find((m) => m.name === name);
    if (!member) throw new Error(`no node named ${name}`);
    return member;
  }

  state(name: string): ProcessState {
    return this.processes.get(name)?.state ?? "stopped";
  }

  pid(name: string): number | undefined {
    const p = this.processes.get(name);
    return p?.state === "running" ? p.child?.pid : undefined;
  }

  starts(name: string): number {
    return this.processes.get(name)?.starts ?? 0;
  }

  /** SIGKILLs one node: no chance to flush or say goodbye, as a power cut. */
  kill(name: string): boolean {
    const p = this.processes.get(name);
    if (p?.state !== "running" || !p.child) return false;
    p.expected = true;
    p.state = "killed";
    p.child.kill("SIGKILL");
    return true;
  }

  /** Starts a node again on the same data dir; waits for the old process to be gone first. */
  async restart(name: string): Promise<boolean> {
    const p = this.processes.get(name);
    if (p?.state === "running") return false;
    if (p) await p.exited;
    this.spawnNode(this.member(name));
    return true;
  }

  /** SIGTERM to every node, SIGKILL to those still running after `graceMs`. */
  async stop(graceMs = 5000): Promise<void> {
    const running = [...this.processes.values()].filter((p) => p.state === "running");
    for (const p of running) {
      p.expected = true;
      p.state = "stopped";
      p.child?.kill("SIGTERM");
    }
    const all = Promise.all(running.map((p) => p.exited));
    const timer = setTimeout(() => {
      for (const p of running) p.child?.kill("SIGKILL");
    }, graceMs);
    await all;
    clearTimeout(timer);
  }

  /** Resolves when every node process has ended (however it ended). */
  async allExited(): Promise<void> {
    // A restarted node replaces its entry; loop until no entry is running.
    for (;;) {
      const running = [...this.processes.values()].filter((p) => p.state === "running");
      if (running.length === 0) return;
      await Promise.race(running.map((p) => p.exited));
    }
  }

  private spawnNode(member: ClusterMember): void {
    const o = this.options;
    const args = [
      this.cli,
      "node",
      "--name",
      member.name,
      "--data-dir",
      join(this.dataDir, member.name),
      "--listen-client",
      member.client,
      "--listen-peer",
      member.peer,
      "--listen-metrics",
      member.metrics,
      "--initial-cluster",
      this.initialCluster,
      "--log-level",
      o.logLevel,
      "--consensus",
      o.consensus,
      "--shards",
      String(o.shards ?? 1),
      ...(o.faultInjection ? ["--enable-fault-injection"] : []),
    ];
    let stdio: ("ignore" | "inherit" | number)[] = ["ignore", "inherit", "inherit"];
    let logFd: number | undefined;
    if (o.output === "files") {
      logFd = openSync(join(this.dataDir, `${member.name}.log`), "a");
      stdio = ["ignore", logFd, logFd];
    }
    const child = spawn(process.execPath, args, { stdio });
    if (logFd !== undefined) closeSync(logFd);
    const previous = this.processes.get(member.name);
    const entry: NodeProcess = {
      member,
      child,
      state: "running",
      expected: false,
      starts: (previous?.starts ?? 0) + 1,
      exited: new Promise<void>((done) => {
        child.once("exit", (code, signal) => {
          if (entry.state === "running") entry.state = "exited";
          o.onExit?.(member.name, code, signal, entry.expected);
          done();
        });
        child.once("error", () => {
          if (entry.state === "running") entry.state = "exited";
          done();
        });
      }),
    };
    this.processes.set(member.name, entry);
  }
}
