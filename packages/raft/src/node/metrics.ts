import { Counter, Gauge, Registry } from "prom-client";

const ROLE_CODES = { follower: 0, preCandidate: 1, candidate: 2, leader: 3, learner: 4, stopped: 5 } as const;

/** Prometheus metrics of one Raft node, on an injectable registry (one per node in tests). */
export class RaftMetrics {
  readonly registry: Registry;
  readonly term: Gauge<"node">;
  readonly role: Gauge<"node">;
  readonly commitIndex: Gauge<"node">;
  readonly appliedIndex: Gauge<"node">;
  readonly proposals: Counter<"node" | "outcome">;
  readonly elections: Counter<"node">;
  readonly leaderChanges: Counter<"node">;
  readonly droppedMessages: Counter<"node" | "reason">;
  readonly snapshotsSent: Counter<"node" | "outcome">;
  readonly snapshotsInstalled: Counter<"node">;

  constructor(
    readonly nodeId: string,
    registry?: Registry,
  ) {
    this.registry = registry ?? new Registry();
    const registers = [this.registry];
    const get = <T>(name: string, make: () => T): T =>
      (this.registry.getSingleMetric(name) as T | undefined) ?? make();
    this.term = get(
      "raft_term",
      () => new Gauge({ name: "raft_term", help: "Current Raft term", labelNames: ["node"], registers }),
    );
    this.role = get(
      "raft_role",
      () =>
        new Gauge({
          name: "raft_role",
          help: "Role: 0 follower, 1 pre-candidate, 2 candidate, 3 leader, 4 learner, 5 stopped",
          labelNames: ["node"],
          registers,
        }),
    );
    this.commitIndex = get(
      "raft_commit_index",
      () =>
        new Gauge({
          name: "raft_commit_index",
          help: "Highest log index known committed",
          labelNames: ["node"],
          registers,
        }),
    );
    this.appliedIndex = get(
      "raft_applied_index",
      () =>
        new Gauge({
          name: "raft_applied_index",
          help: "Highest log index applied",
          labelNames: ["node"],
          registers,
        }),
    );
    this.proposals = get(
      "raft_proposals_total",
      () =>
        new Counter({
          name: "raft_proposals_total",
          help: "Proposals by outcome (committed, dropped, timeout, rejected, shutdown)",
          labelNames: ["node", "outcome"],
          registers,
        }),
    );
    this.elections = get(
      "raft_elections_total",
      () =>
        new Counter({
          name: "raft_elections_total",
          help: "Elections started by this node",
          labelNames: ["node"],
          registers,
        }),
    );
    this.leaderChanges = get(
      "raft_leader_changes_total",
      () =>
        new Counter({
          name: "raft_leader_changes_total",
          help: "Leader changes seen by this node",
          labelNames: ["node"],
          registers,
        }),
    );
    this.droppedMessages = get(
      "raft_dropped_messages_total",
      () =>
        new Counter({
          name: "raft_dropped_messages_total",
          help: "Peer messages dropped (malformed, misaddressed, send failures)",
          labelNames: ["node", "reason"],
          registers,
        }),
    );
    this.snapshotsSent = get(
      "raft_snapshots_sent_total",
      () =>
        new Counter({
          name: "raft_snapshots_sent_total",
          help: "Snapshot transfers to followers by outcome",
          labelNames: ["node", "outcome"],
          registers,
        }),
    );
    this.snapshotsInstalled = get(
      "raft_snapshots_installed_total",
      () =>
        new Counter({
          name: "raft_snapshots_installed_total",
          help: "Snapshots received from a leader and installed",
          labelNames: ["node"],
          registers,
        }),
    );
  }

  setRole(role: keyof typeof ROLE_CODES): void {
    this.role.set({ node: this.nodeId }, ROLE_CODES[role]);
  }
}
