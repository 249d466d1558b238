import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { credentials, type ServiceError } from "@grpc/grpc-js";
import { KVClient, MaintenanceClient, type StatusResponse } from "../../src/gen/etcdserverpb/rpc.js";

/** The `quorum` CLI of apps/demo (built by `pnpm build`; `pnpm test` builds first). */
export const cliPath = fileURLToPath(new URL("../../../../apps/demo/dist/cli.js", import.meta.url));

export type KvClient = InstanceType<typeof KVClient>;
export type MaintClient = InstanceType<typeof MaintenanceClient>;

/** Free TCP ports on 127.0.0.1 (bound, then released: another process could take one meanwhile). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<import("node:net").Server>((resolve, reject) => {
          const s = createServer();
          s.once("error", reject);
          s.listen(0, "127.0.0.1", () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/** Calls a unary method of a generated grpc-js client as a promise. */
export function unary<Res>(client: object, method: string, req: unknown, timeoutMs = 5_000): Promise<Res> {
  return new Promise((resolve, reject) => {
    // biome-ignore lint/suspicious/noExplicitAny: the method is chosen by name
    (client as any)[method](
      req,
      { deadline: Date.now() + timeoutMs },
      (err: ServiceError | null, res: Res) => (err ? reject(err) : resolve(res)),
    );
  });
}

export interface ProcessNode {
  readonly name: string;
  readonly client: string;
  readonly peer: string;
  readonly dataDir: string;
  /** `--listen-metrics` address (serves /status with per-shard roles), when the cluster has one. */
  readonly metrics: string | undefined;
  process: ChildProcess | undefined;
  /** Set once the process said it serves clients. */
  ready: Promise<void>;
  /** Output of every incarnation, for failure reports. */
  output: string;
  starts: number;
}

/** What a node's `/status` says (the fields these tests read). */
export interface NodeStatus {
  readonly name: string;
  readonly role: string;
  readonly term: number;
  readonly shards?: readonly {
    shard: number;
    role: string;
    term: number;
    leaderId?: string;
    kvRevision: number;
  }[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Three (or more) `quorum node` processes on 127.0.0.1 with SQLite files in a temp dir. The
 * caller must `close()` it (in afterAll): that SIGKILLs every process and removes the dir.
 */
export class ProcessCluster {
  readonly nodes: ProcessNode[] = [];
  private readonly kvClients = new Map<string, KvClient>();
  private readonly maintClients = new Map<string, MaintClient>();
  private closed = false;

  private constructor(
    readonly dir: string,
    /** `--shards N` of every node (1: the flag is not passed). */
    readonly shards: number,
  ) {}

  /**
   * `shards`: passed as `--shards N` to every node (default 1). `metrics`: give every node a
   * `--listen-metrics` address, so `shardLeaders()` can read each shard's role from /status
   * (default: on when `shards` > 1).
   */
  static async start(
    options: { nodes?: number; prefix?: string; shards?: number; metrics?: boolean } = {},
  ): Promise<ProcessCluster> {
    if (!existsSync(cliPath)) {
      throw new Error(`${cliPath} is missing: run \`pnpm build\` (pnpm test builds first)`);
    }
    const n = options.nodes ?? 3;
    const shards = options.shards ?? 1;
    const withMetrics = options.metrics ?? shards > 1;
    const cluster = new ProcessCluster(mkdtempSync(join(tmpdir(), options.prefix ?? "quorum-kv-")), shards);
    try {
      const ports = await freePorts(3 * n);
      for (let i = 0; i < n; i++) {
        const name = `n${i + 1}`;
        cluster.nodes.push({
          name,
          client: `127.0.0.1:${ports[3 * i]}`,
          peer: `127.0.0.1:${ports[3 * i + 1]}`,
          metrics: withMetrics ? `127.0.0.1:${ports[3 * i + 2]}` : undefined,
          dataDir: join(cluster.dir, name),
          process: undefined,
          ready: Promise.resolve(),
          output: "",
          starts: 0,
        });
      }
      for (const node of cluster.nodes) cluster.spawn(node.name);
      await Promise.all(cluster.nodes.map((node) => node.ready));
      await cluster.waitForLeader();
      if (withMetrics && shards > 1) await cluster.waitForShardLeaders();
    } catch (err) {
      await cluster.close();
      throw err;
    }
    return cluster;
  }

  node(name: string): ProcessNode {
    const n = this.nodes.find((x) => x.name === name);
    if (!n) throw new RangeError(`no node ${name}`);
    return n;
  }

  get endpoints(): string[] {
    return this.nodes.map((n) => n.client);
  }

  isUp(name: string): boolean {
    const p = this.node(name).process;
    return p !== undefined && p.exitCode === null && p.signalCode === null;
  }

  /** Starts (or restarts) one node's process with the same flags and data dir. */
  spawn(name: string): ProcessNode {
    if (this.closed) throw new Error("cluster is closed");
    const node = this.node(name);
    if (this.isUp(name)) throw new Error(`${name} is already running`);
    const initialCluster = this.nodes.map((n) => `${n.name}=${n.peer}`).join(",");
    const child = spawn(
      process.execPath,
      [
        cliPath,
        "node",
        "--name",
        node.name,
        "--data-dir",
        node.dataDir,
        "--listen-client",
        node.client,
        "--listen-peer",
        node.peer,
        "--initial-cluster",
        initialCluster,
        "--log-level",
        "warn",
        ...(this.shards > 1 ? ["--shards", String(this.shards)] : []),
        ...(node.metrics ? ["--listen-metrics", node.metrics] : []),
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    node.process = child;
    node.starts++;
    const incarnation = node.starts;
    node.output += `--- ${name} start #${incarnation}\n`;
    node.ready = new Promise<void>((resolve, reject) => {
      let out = "";
      child.stdout!.on("data", (d: Buffer) => {
        node.output += d.toString();
        out += d.toString();
        if (out.includes("serving etcd clients")) resolve();
      });
      child.stderr!.on("data", (d: Buffer) => {
        node.output += d.toString();
      });
      child.once("exit", (code, signal) => {
        node.output += `--- ${name} #${incarnation} exited (${signal ?? code})\n`;
        reject(new Error(`${name} exited (${signal ?? code}) before serving:\n${node.output.slice(-2000)}`));
      });
      child.once("error", reject);
    });
    node.ready.catch(() => {});
    return node;
  }

  /** SIGKILLs one node and waits until the process is gone. */
  async kill(name: string): Promise<void> {
    const child = this.node(name).process;
    if (!child || !this.isUp(name)) return;
    const gone = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await gone;
  }

  async killAll(): Promise<void> {
    await Promise.all(this.nodes.map((n) => this.kill(n.name)));
  }

  kv(name: string): KvClient {
    const node = this.node(name);
    let c = this.kvClients.get(name);
    if (!c) {
      c = new KVClient(node.client, credentials.createInsecure(), {
        // Reconnect quickly after a kill.
        "grpc.initial_reconnect_backoff_ms": 100,
        "grpc.max_reconnect_backoff_ms": 500,
      });
      this.kvClients.set(name, c);
    }
    return c;
  }

  maintenance(name: string): MaintClient {
    const node = this.node(name);
    let c = this.maintClients.get(name);
    if (!c) {
      c = new MaintenanceClient(node.client, credentials.createInsecure(), {
        "grpc.initial_reconnect_backoff_ms": 100,
        "grpc.max_reconnect_backoff_ms": 500,
      });
      this.maintClients.set(name, c);
    }
    return c;
  }

  async status(name: string, timeoutMs = 1_000): Promise<StatusResponse | undefined> {
    if (!this.isUp(name)) return undefined;
    try {
      return await unary<StatusResponse>(this.maintenance(name), "status", {}, timeoutMs);
    } catch {
      return undefined;
    }
  }

  /** The node that Maintenance.Status on the live nodes names as leader, if they agree on one. */
  async leader(): Promise<string | undefined> {
    const statuses = await Promise.all(
      this.nodes.map(async (n) => [n.name, await this.status(n.name)] as const),
    );
    const byMemberId = new Map<bigint, string>();
    for (const [name, s] of statuses) if (s?.header) byMemberId.set(s.header.memberId, name);
    const leaders = new Set<string>();
    for (const [, s] of statuses) {
      if (s && s.leader !== 0n) {
        const name = byMemberId.get(s.leader);
        if (name) leaders.add(name);
      }
    }
    // The one leader that also says of itself that it leads.
    for (const name of leaders) {
      const s = statuses.find(([n]) => n === name)?.[1];
      if (s?.header && s.leader === s.header.memberId) return name;
    }
    return undefined;
  }

  async waitForLeader(timeoutMs = 15_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const l = await this.leader();
      if (l) return l;
      if (Date.now() > deadline) throw new Error(`no leader after ${timeoutMs} ms\n${this.tail()}`);
      await sleep(100);
    }
  }

  /** A node's /status JSON (needs `metrics`), or undefined when it is down or does not answer. */
  async nodeStatus(name: string, timeoutMs = 1_000): Promise<NodeStatus | undefined> {
    const node = this.node(name);
    if (!node.metrics) throw new Error("the cluster was started without metrics: pass { metrics: true }");
    if (!this.isUp(name)) return undefined;
    try {
      const res = await fetch(`http://${node.metrics}/status`, { signal: AbortSignal.timeout(timeoutMs) });
      return (await res.json()) as NodeStatus;
    } catch {
      return undefined;
    }
  }

  /**
   * Per shard, the live node that says it leads that shard in the highest term (undefined if
   * none does). Needs `metrics`.
   */
  async shardLeaders(): Promise<(string | undefined)[]> {
    const statuses = await Promise.all(
      this.nodes.map(async (n) => [n.name, await this.nodeStatus(n.name)] as const),
    );
    const leaders: (string | undefined)[] = [];
    for (let shard = 0; shard < this.shards; shard++) {
      let best: [string, number] | undefined;
      for (const [name, st] of statuses) {
        const s = st?.shards?.[shard];
        if (s?.role === "leader" && (!best || s.term > best[1])) best = [name, s.term];
      }
      leaders.push(best?.[0]);
    }
    return leaders;
  }

  /** Waits until every shard has a leader (by /status; needs `metrics`). */
  async waitForShardLeaders(timeoutMs = 15_000): Promise<(string | undefined)[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const l = await this.shardLeaders();
      if (l.every((x) => x !== undefined)) return l;
      if (Date.now() > deadline)
        throw new Error(`shard leaders after ${timeoutMs} ms: ${JSON.stringify(l)}\n${this.tail()}`);
      await sleep(100);
    }
  }

  /**
   * Waits until every node is up and knows a leader for every shard (by /status; needs
   * `metrics`). A restarted node may not hear from a leader for a few seconds: the leader's
   * transport redials it with a backoff of up to 5 s.
   */
  async waitUntilAllKnowLeaders(timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const statuses = await Promise.all(this.nodes.map((n) => this.nodeStatus(n.name)));
      const ok = statuses.every(
        (st) => st?.shards?.length === this.shards && st.shards.every((s) => s.leaderId !== undefined),
      );
      if (ok) return;
      if (Date.now() > deadline)
        throw new Error(
          `not every node knows every shard's leader after ${timeoutMs} ms: ${JSON.stringify(statuses.map((st) => st?.shards?.map((s) => s.leaderId ?? null)))}\n${this.tail()}`,
        );
      await sleep(100);
    }
  }

  /** The last lines of every node's output (for failure messages). */
  tail(chars = 1500): string {
    return this.nodes.map((n) => `== ${n.name}\n${n.output.slice(-chars)}`).join("\n");
  }

  /** SIGKILLs every process, closes clients, removes the data dir. Safe to call twice. */
  async close(): Promise<void> {
    this.closed = true;
    for (const c of this.kvClients.values()) c.close();
    for (const c of this.maintClients.values()) c.close();
    this.kvClients.clear();
    this.maintClients.clear();
    await this.killAll();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
