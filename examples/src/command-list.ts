// The state machine the Raft and Paxos examples replicate: it keeps the list of commands it
// applied. Both protocols drive the same `StateMachine` interface from @quorum/consensus.

import {
  bytesSnapshot,
  type LogEntry,
  readSnapshot,
  type Snapshot,
  type StateMachine,
} from "@quorum/consensus";

export class CommandList implements StateMachine<number> {
  readonly commands: string[] = [];
  private applied = 0;

  /** The index of the last log entry reflected in the state. */
  appliedIndex(): number {
    return this.applied;
  }

  // Called with committed entries, in log order (the protocol's own entries, such as a new
  // leader's no-op, are skipped). The value returned for an entry is what `propose`
  // resolves with on the node that proposed it: here, the list's new length.
  apply(entries: readonly LogEntry[]): number[] {
    return entries.map((entry) => {
      this.commands.push(new TextDecoder().decode(entry.command));
      this.applied = entry.index;
      return this.commands.length;
    });
  }

  // Snapshots let a protocol compact its log and catch up a replica that fell far behind;
  // a real store would stream its file. With the default thresholds (10,000 entries) the
  // examples never take one.
  async snapshot(): Promise<Snapshot> {
    return bytesSnapshot(this.applied, new TextEncoder().encode(JSON.stringify(this.commands)));
  }

  async restore(snapshot: Snapshot): Promise<void> {
    const image = JSON.parse(new TextDecoder().decode(await readSnapshot(snapshot))) as string[];
    this.commands.splice(0, this.commands.length, ...image);
    this.applied = snapshot.index;
  }
}
