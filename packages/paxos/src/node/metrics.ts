import { Counter, Gauge, Registry } from "prom-client";

const ROLE_CODES = { follower: 0, candidate: 1, leader: 2, stopped: 3 } as const;

/**
 * Prometheus metrics of one Paxos node, on an injectable registry. Several nodes may share a
 * registry (each series carries a `node` label).
 */
export class PaxosMetrics {
  readonly registry: Registry;
  readonly role: Gauge<"node">;
  readonly ballot: Gauge<"node">;
  readonly chosenSlot: Gauge<"node">;
  readonly chosenIndex: Gauge<"node">;
  readonly appliedIndex: Gauge<"node">;
  readonly compactedSlot: Gauge<"node">;
  readonly inflightSlots: Gauge<"node">;
  readonly proposals: Counter<"node" | "outcome">;
  readonly slotsProposed: Counter<"node">;
  readonly elections: Counter<"node">;
  readonly leaderChanges: Counter<"node">;
  readonly droppedMessages: Counter<"node" | "reason">;
  readonly snapshotsSent: Counter<"node" | "outcome">;
  readonly snapshotsInstalled: Counter<"node">;
  readonly compactions: Counter<"node">;

  constructor(
    readonly nodeId: string,
    registry?: Registry,
  ) {
    this.registry = registry ?? new Registry();
    const registers = [this.registry];
    const gauge = (name: string, help: string) =>
      (this.registry.getSingleMetric(name) as Gauge<"node"> | undefined) ??
      new Gauge({ name, help, labelNames: ["node"], registers });
    const counter = <L extends string>(name: string, help: string, labelNames: L[]) =>
      (this.registry.getSingleMetric(name) as Counter<L> | undefined) ??
      new Counter<L>({ name, help, labelNames, registers });
    this.role = gauge("paxos_role", "Role: 0 follower, 1 candidate (phase 1), 2 leader, 3 stopped");
    this.ballot = gauge("paxos_ballot_round", "Round of the highest ballot this acceptor promised");
    this.chosenSlot = gauge("paxos_chosen_slot", "Every slot up to here is chosen and known here");
    this.chosenIndex = gauge("paxos_chosen_index", "Log index of the last entry of the chosen prefix");
    this.appliedIndex = gauge("paxos_applied_index", "Highest log index the state machine applied");
    this.compactedSlot = gauge("paxos_compacted_slot", "Slots up to here are compacted away");
    this.inflightSlots = gauge("paxos_inflight_slots", "Leader only: slots proposed and not yet chosen");
    this.proposals = counter("paxos_proposals_total", "Commands proposed here, by outcome", [
      "node",
      "outcome",
    ]);
    this.slotsProposed = counter("paxos_slots_proposed_total", "Slots (batches of commands) proposed here", [
      "node",
    ]);
    this.elections = counter("paxos_elections_total", "Phase 1 runs started by this node", ["node"]);
    this.leaderChanges = counter("paxos_leader_changes_total", "Changes of the leader this node knows", [
      "node",
    ]);
    this.droppedMessages = counter("paxos_dropped_messages_total", "Peer messages dropped, by reason", [
      "node",
      "reason",
    ]);
    this.snapshotsSent = counter(
      "paxos_snapshots_sent_total",
      "Snapshot transfers to lagging replicas, by outcome",
      ["node", "outcome"],
    );
    this.snapshotsInstalled = counter("paxos_snapshots_installed_total", "Snapshots received and installed", [
      "node",
    ]);
    this.compactions = counter("paxos_compactions_total", "Compactions of the acceptor log", ["node"]);
  }

  setRole(role: keyof typeof ROLE_CODES): void {
    this.role.set({ node: this.nodeId }, ROLE_CODES[role]);
  }
}
