import { bytesSnapshot, readSnapshot } from "../snapshot.js";
import type { LogEntry, Snapshot, StateMachine } from "../state-machine.js";

/** What `RecordingStateMachine.apply` returns for each entry. */
export interface RecordedResult {
  readonly index: number;
  /** How many commands this machine had applied, this one included. */
  readonly count: number;
}

/**
 * A test double: remembers every command it applied, in order. Two replicas agree (state
 * machine safety) exactly when their `commands` lists are equal.
 */
export class RecordingStateMachine implements StateMachine<RecordedResult> {
  private applied = 0;
  private log: { index: number; command: string }[] = [];

  appliedIndex(): number {
    return this.applied;
  }

  /** The applied commands, decoded as UTF-8, in apply order. */
  get commands(): string[] {
    return this.log.map((e) => e.command);
  }

  apply(entries: readonly LogEntry[]): RecordedResult[] {
    return entries.map((entry) => {
      if (entry.index <= this.applied) {
        throw new Error(`entry ${entry.index} applied twice (applied index is ${this.applied})`);
      }
      this.applied = entry.index;
      this.log.push({ index: entry.index, command: Buffer.from(entry.command).toString("utf8") });
      return { index: entry.index, count: this.log.length };
    });
  }

  async snapshot(): Promise<Snapshot> {
    const image = Buffer.from(JSON.stringify({ applied: this.applied, log: this.log }));
    return bytesSnapshot(this.applied, image, 64);
  }

  async restore(snapshot: Snapshot): Promise<void> {
    const image = JSON.parse(Buffer.from(await readSnapshot(snapshot)).toString("utf8")) as {
      applied: number;
      log: { index: number; command: string }[];
    };
    if (image.applied !== snapshot.index) {
      throw new Error(`snapshot says index ${snapshot.index} but its image holds ${image.applied}`);
    }
    this.applied = image.applied;
    this.log = image.log;
  }
}
