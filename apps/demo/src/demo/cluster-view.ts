import type { LocalCluster, ProcessState } from "../cluster/local-cluster.js";

/** One shard's consensus group as a node sees it (an entry of /status `shards`). */
export interface ShardStatus {
  shard: number;
  role: string;
  /** Raft's term or Paxos's ballot round. */
  term: number;
  leaderId: string | undefined;
  commitIndex: number;
  appliedIndex: number;
  kvRevision: number;
}

/** What a node's /status returns (see start-node.ts); fields the dashboard reads. */
export interface NodeStatus {
  name: string;
  pid: number;
  consensus: string;
  /** Shard 0's log status, also at the top level for older readers. */
  role: string;
  term: number;
  leaderId: string | undefined;
  commitIndex: number;
  appliedIndex: number;
  members: { id: string }[];
  kvRevision: number;
  /** Absent on nodes built before sharding: then shard 0 (the top level) is the only one. */
  shards?: ShardStatus[];
  transport: { sent: number; received: number; droppedQueueFull: number; droppedDisconnected: number };
  peers: { id: string; connected: boolean; state: string; queueLength: number; reconnects: number }[];
  links: Record<string, { sent: number; received: number }>;
  faults?: { cut: number; cutOff: string[] };
}

export interface NodeView {
  name: string;
  client: string;
  metrics: string;
  process: ProcessState;
  pid: number | undefined;
  starts: number;
  /** Undefined while the process is down or does not answer. */
  status: NodeStatus | undefined;
  /** Per shard, from `status` (empty while there is none). */
  shards: ShardStatus[];
  /** The shards this node leads. */
  leads: number[];
  error: string | undefined;
  /** Messages per second this node sent to each peer, over the last tick. */
  sentPerSec: Record<string, number>;
  /** Peers this node is cut off from by the partition button. */
  cutOff: string[];
}

/** Who leads one shard: the node that says it leads with the highest term. */
export interface ShardLeader {
  shard: number;
  leader: string | undefined;
  /** The highest term (ballot) any node reports for this shard. */
  term: number;
}

export interface LeaderChange {
  at: number;
  shard: number;
  leader: string | undefined;
  term: number;
}

/**
 * Outcomes of Txns over several shards, as counted by the nodes' two-phase commit engines
 * (`quorum_txn_cross_shard_total{outcome}` on /metrics), summed over nodes and restarts.
 */
export interface CrossShardCounts {
  /** Committed (including the bank audit's read-only Txns). */
  committed: number;
  /** Attempts that met a lock and were retried after a backoff. */
  conflict: number;
  /** Gave up after every attempt met a lock (the client got ABORTED). */
  aborted: number;
  /** Failed with an error (timeout, no leader): the client got it. */
  failed: number;
}

const outcomes = ["committed", "conflict", "aborted", "failed"] as const;

/**
 * Polls every node's /status, keeps the previous counters to turn them into rates, and
 * tracks who leads each shard: the leader is the node that says it leads with the highest
 * term (a partitioned old leader may still believe it leads, in an older term). Every
 * `metricsEvery` polls it also reads the nodes' cross-shard transaction counters.
 */
export class ClusterView {
  nodes: NodeView[] = [];
  shards: ShardLeader[];
  readonly leaderChanges: LeaderChange[] = [];
  readonly crossShard: CrossShardCounts = { committed: 0, conflict: 0, aborted: 0, failed: 0 };
  private previous = new Map<string, { at: number; links: Record<string, { sent: number }>; pid: number }>();
  /** Last counter values per node process (a restarted process counts from 0 again). */
  private counters = new Map<string, { pid: number; values: CrossShardCounts }>();
  private polls = 0;

  constructor(
    private readonly cluster: LocalCluster,
    private readonly shardCount: number,
    private readonly onEvent: (text: string) => void,
    /** What the protocol calls its leadership epoch in the event log: "term" (Raft), "ballot" (Paxos). */
    private readonly termName = "term",
    private readonly metricsEvery = 4,
  ) {
    this.shards = Array.from({ length: shardCount }, (_, shard) => ({ shard, leader: undefined, term: 0 }));
  }

  /** True once every shard has a leader. */
  get allLed(): boolean {
    return this.shards.every((s) => s.leader !== undefined);
  }

  /** The shards `node` leads now. */
  ledBy(node: string): number[] {
    return this.shards.filter((s) => s.leader === node).map((s) => s.shard);
  }

  async poll(): Promise<void> {
    const now = Date.now();
    const readMetrics = this.polls++ % this.metricsEvery === 0;
    this.nodes = await Promise.all(this.cluster.members.map((m) => this.pollNode(m, now, readMetrics)));
    for (const current of this.shards) {
      let leader: { name: string; term: number } | undefined;
      let term = 0;
      for (const n of this.nodes) {
        const s = n.shards[current.shard];
        if (!s) continue;
        term = Math.max(term, s.term);
        if (s.role === "leader" && (!leader || s.term > leader.term)) leader = { name: n.name, term: s.term };
      }
      if (leader?.name !== current.leader) this.changed(current.shard, leader, term, current.leader, now);
      current.leader = leader?.name;
      current.term = term;
    }
    for (const n of this.nodes) n.leads = this.ledBy(n.name);
  }

  private changed(
    shard: number,
    leader: { name: string; term: number } | undefined,
    term: number,
    was: string | undefined,
    at: number,
  ): void {
    const change: LeaderChange = { at, shard, leader: leader?.name, term: leader?.term ?? term };
    this.leaderChanges.push(change);
    if (this.leaderChanges.length > 50) this.leaderChanges.shift();
    const where = this.shardCount > 1 ? `shard ${shard}: ` : "";
    this.onEvent(
      leader
        ? `${where}${leader.name} is the leader (${this.termName} ${change.term})`
        : `${where}no leader${was ? ` (${was} lost it)` : ""}: election in progress`,
    );
  }

  private async pollNode(
    m: LocalCluster["members"][number],
    now: number,
    readMetrics: boolean,
  ): Promise<NodeView> {
    const view: NodeView = {
      name: m.name,
      client: m.client,
      metrics: m.metrics,
      process: this.cluster.state(m.name),
      pid: this.cluster.pid(m.name),
      starts: this.cluster.starts(m.name),
      status: undefined,
      shards: [],
      leads: [],
      error: undefined,
      sentPerSec: {},
      cutOff: [],
    };
    if (view.process !== "running") return view;
    try {
      const res = await fetch(`http://${m.metrics}/status`, { signal: AbortSignal.timeout(1000) });
      view.status = (await res.json()) as NodeStatus;
    } catch (err) {
      view.error = (err as Error).name === "TimeoutError" ? "not answering" : "starting";
      return view;
    }
    const s = view.status;
    view.shards = s.shards ?? [{ shard: 0, ...s }];
    const prev = this.previous.get(m.name);
    if (prev && prev.pid === s.pid) {
      const seconds = Math.max((now - prev.at) / 1000, 1e-3);
      for (const [peer, c] of Object.entries(s.links)) {
        view.sentPerSec[peer] = Math.max(0, (c.sent - (prev.links[peer]?.sent ?? 0)) / seconds);
      }
    }
    this.previous.set(m.name, { at: now, links: s.links, pid: s.pid });
    view.cutOff = s.faults?.cutOff ?? [];
    if (readMetrics) await this.readCounters(m.name, m.metrics, s.pid).catch(() => {});
    return view;
  }

  /** Adds what node `name`'s engine counted since the last read to the totals. */
  private async readCounters(name: string, address: string, pid: number): Promise<void> {
    const res = await fetch(`http://${address}/metrics`, { signal: AbortSignal.timeout(1000) });
    const values = parseCrossShard(await res.text());
    const last = this.counters.get(name);
    const base = last?.pid === pid ? last.values : { committed: 0, conflict: 0, aborted: 0, failed: 0 };
    for (const o of outcomes) this.crossShard[o] += Math.max(0, values[o] - base[o]);
    this.counters.set(name, { pid, values });
  }
}

/** The `quorum_txn_cross_shard_total{outcome="..."}` samples of a Prometheus text page. */
export function parseCrossShard(text: string): CrossShardCounts {
  const counts: CrossShardCounts = { committed: 0, conflict: 0, aborted: 0, failed: 0 };
  const sample = /^quorum_txn_cross_shard_total\{[^}]*outcome="(\w+)"[^}]*\}\s+(\S+)/;
  for (const line of text.split("\n")) {
    const m = sample.exec(line);
    if (m && (outcomes as readonly string[]).includes(m[1]!))
      counts[m[1] as keyof CrossShardCounts] = Number(m[2]);
  }
  return counts;
}
