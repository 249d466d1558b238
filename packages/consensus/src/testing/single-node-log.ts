import { ConsensusError } from "../errors.js";
import type {
  LogEvent,
  LogStatus,
  Member,
  MembershipChange,
  Proposed,
  ReplicatedLog,
} from "../replicated-log.js";
import type { StateMachine } from "../state-machine.js";

/**
 * A ReplicatedLog double for one node: every proposal commits at once, in order. For testing
 * code that runs on a log (the kv store) without a consensus protocol underneath.
 */
export class SingleNodeLog<Result> implements ReplicatedLog<Result> {
  private lastIndex = 0;
  private closed = false;
  private readonly listeners = new Set<(event: LogEvent) => void>();
  private members: Member[];

  constructor(
    readonly nodeId: string,
    private readonly machine: StateMachine<Result>,
  ) {
    this.members = [{ id: nodeId, address: "", learner: false }];
  }

  async start(): Promise<void> {
    this.lastIndex = this.machine.appliedIndex();
    this.emit({ type: "leaderChanged", leaderId: this.nodeId, term: 1 });
  }

  async propose(command: Uint8Array): Promise<Proposed<Result>> {
    const [proposed] = await this.proposeBatch([command]);
    return proposed!;
  }

  async proposeBatch(commands: readonly Uint8Array[]): Promise<Proposed<Result>[]> {
    this.assertOpen();
    const entries = commands.map((command) => ({ index: ++this.lastIndex, command }));
    const results = this.machine.apply(entries);
    this.emit({ type: "applied", index: this.lastIndex });
    return entries.map((e, i) => ({ index: e.index, result: results[i]! }));
  }

  async read(): Promise<{ index: number }> {
    this.assertOpen();
    return { index: this.lastIndex };
  }

  status(): LogStatus {
    return {
      nodeId: this.nodeId,
      role: this.closed ? "stopped" : "leader",
      leaderId: this.closed ? undefined : this.nodeId,
      term: 1,
      commitIndex: this.lastIndex,
      appliedIndex: this.machine.appliedIndex(),
      members: this.members,
    };
  }

  async changeMembership(change: MembershipChange): Promise<readonly Member[]> {
    this.assertOpen();
    if (change.type !== "remove" || change.id !== this.nodeId) {
      throw new ConsensusError("INVALID_ARGUMENT", "a single-node log cannot change its membership");
    }
    return this.members;
  }

  subscribe(listener: (event: LogEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private assertOpen(): void {
    if (this.closed) throw new ConsensusError("SHUTTING_DOWN", `node ${this.nodeId} is closed`);
  }

  private emit(event: LogEvent): void {
    for (const listener of this.listeners) listener(event);
  }
}
