import type { LocalCluster, ProcessState } from "../cluster/local-cluster.js";

/** What a node's /status returns (see start-node.ts); fields the dashboard reads. */
export interface NodeStatus {
  name: string;
  pid: number;
  consensus: string;
  role: string;
  term: number;
  leaderId: string | undefined;
  commitIndex: number;
  appliedIndex: number;
  members: { id: string }[];
  kvRevision: number;
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
  error: string | undefined;
  /** Messages per second this node sent to each peer, over the last tick. */
  sentPerSec: Record<string, number>;
  /** Peers this node is cut off from by the partition button. */
  cutOff: string[];
}

export interface LeaderChange {
  at: number;
  leader: string | undefined;
  term: number;
}

/**
 * Polls every node's /status, keeps the previous counters to turn them into rates, and
 * tracks who leads: the leader is the node that says it leads with the highest term (a
 * partitioned old leader may still believe it leads, in an older term).
 */
export class ClusterView {
  nodes: NodeView[] = [];
  leader: string | undefined;
  term = 0;
  readonly leaderChanges: LeaderChange[] = [];
  private previous = new Map<string, { at: number; links: Record<string, { sent: number }>; pid: number }>();

  constructor(
    private readonly cluster: LocalCluster,
    private readonly onEvent: (text: string) => void,
  ) {}

  async poll(): Promise<void> {
    const now = Date.now();
    this.nodes = await Promise.all(
      this.cluster.members.map(async (m): Promise<NodeView> => {
        const view: NodeView = {
          name: m.name,
          client: m.client,
          metrics: m.metrics,
          process: this.cluster.state(m.name),
          pid: this.cluster.pid(m.name),
          starts: this.cluster.starts(m.name),
          status: undefined,
          error: undefined,
          sentPerSec: {},
          cutOff: [],
        };
        if (view.process !== "running") return view;
        try {
          const res = await fetch(`http://${m.metrics}/status`, { signal: AbortSignal.timeout(400) });
          view.status = (await res.json()) as NodeStatus;
        } catch (err) {
          view.error = (err as Error).name === "TimeoutError" ? "not answering" : "starting";
          return view;
        }
        const prev = this.previous.get(m.name);
        const links = view.status.links;
        if (prev && prev.pid === view.status.pid) {
          const seconds = Math.max((now - prev.at) / 1000, 1e-3);
          for (const [peer, c] of Object.entries(links)) {
            view.sentPerSec[peer] = Math.max(0, (c.sent - (prev.links[peer]?.sent ?? 0)) / seconds);
          }
        }
        this.previous.set(m.name, { at: now, links, pid: view.status.pid });
        view.cutOff = view.status.faults?.cutOff ?? [];
        return view;
      }),
    );
    let leader: NodeView | undefined;
    for (const n of this.nodes) {
      if (n.status?.role === "leader" && (!leader || n.status.term > leader.status!.term)) leader = n;
    }
    const term = Math.max(0, ...this.nodes.map((n) => n.status?.term ?? 0));
    if (leader?.name !== this.leader) {
      const change: LeaderChange = { at: now, leader: leader?.name, term: leader?.status?.term ?? term };
      this.leaderChanges.push(change);
      if (this.leaderChanges.length > 50) this.leaderChanges.shift();
      this.onEvent(
        leader
          ? `${leader.name} is the leader (term ${change.term})`
          : `no leader${this.leader ? ` (${this.leader} lost it)` : ""}: election in progress`,
      );
    }
    this.leader = leader?.name;
    this.term = term;
  }
}
