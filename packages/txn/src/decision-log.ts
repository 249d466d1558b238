import Database from "better-sqlite3";
import type { DecisionRecord } from "./core/coordinator.js";
import type { TxId } from "./core/types.js";
import { TxnError } from "./errors.js";

/**
 * Where a coordinator keeps its decisions. `decide` is the commit point of a transaction:
 * when its promise resolves, the record survives any crash.
 *
 * `decide` is first-writer-wins: if a record for the transaction exists, it is kept and
 * returned. One coordinator only ever writes commit, but a log shared with recovery agents
 * (a decision record kept in a replicated shard, as CockroachDB and Spanner keep their
 * transaction records) lets another node write abort for a transaction whose coordinator
 * vanished; the coordinator then learns it lost the race from the returned record.
 */
export interface DecisionLog {
  /** Every record not forgotten, for recovery. */
  load(): Promise<DecisionRecord[]>;
  /** Makes `record` durable unless a record for its transaction exists; returns the one kept. */
  decide(record: DecisionRecord): Promise<DecisionRecord>;
  get(txId: TxId): Promise<DecisionRecord | undefined>;
  /** Every participant acknowledged: the records may go (need not be durable at once). */
  forget(txIds: readonly TxId[]): Promise<void>;
  close(): Promise<void>;
}

/** Not durable across process restarts: for tests and single-process examples. */
export class MemoryDecisionLog implements DecisionLog {
  private readonly records = new Map<TxId, DecisionRecord>();

  async load(): Promise<DecisionRecord[]> {
    return [...this.records.values()];
  }

  async decide(record: DecisionRecord): Promise<DecisionRecord> {
    const held = this.records.get(record.txId);
    if (held !== undefined) return held;
    const copy = { ...record, participants: [...record.participants] };
    this.records.set(record.txId, copy);
    return copy;
  }

  async get(txId: TxId): Promise<DecisionRecord | undefined> {
    return this.records.get(txId);
  }

  async forget(txIds: readonly TxId[]): Promise<void> {
    for (const id of txIds) this.records.delete(id);
  }

  async close(): Promise<void> {}
}

interface Row {
  tx_id: string;
  decision: string;
  participants: string;
}

function toRecord(row: Row): DecisionRecord {
  if (row.decision !== "commit" && row.decision !== "abort") {
    throw new TxnError(
      "UNAVAILABLE",
      `decision log: transaction ${row.tx_id} has a bad decision "${row.decision}"`,
    );
  }
  return { txId: row.tx_id, decision: row.decision, participants: JSON.parse(row.participants) as string[] };
}

/**
 * Decisions in a SQLite file: WAL and `synchronous=FULL`, so a resolved `decide` is fsynced.
 * Decisions made in the same turn of the event loop share one transaction and one fsync
 * (group commit).
 */
export class SqliteDecisionLog implements DecisionLog {
  private readonly db: Database.Database;
  private pending: {
    record: DecisionRecord;
    resolve: (r: DecisionRecord) => void;
    reject: (e: unknown) => void;
  }[] = [];
  private closed = false;
  private readonly insert: Database.Statement;
  private readonly select: Database.Statement;
  private readonly remove: Database.Statement;

  constructor(readonly path: string) {
    this.db = new Database(path);
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = FULL");
    this.db.exec(`CREATE TABLE IF NOT EXISTS decisions (
      tx_id TEXT PRIMARY KEY,
      decision TEXT NOT NULL,
      participants TEXT NOT NULL
    ) WITHOUT ROWID`);
    this.insert = this.db.prepare(
      "INSERT OR IGNORE INTO decisions (tx_id, decision, participants) VALUES (?, ?, ?)",
    );
    this.select = this.db.prepare("SELECT tx_id, decision, participants FROM decisions WHERE tx_id = ?");
    this.remove = this.db.prepare("DELETE FROM decisions WHERE tx_id = ?");
  }

  async load(): Promise<DecisionRecord[]> {
    this.checkOpen();
    return (this.db.prepare("SELECT tx_id, decision, participants FROM decisions").all() as Row[]).map(
      toRecord,
    );
  }

  decide(record: DecisionRecord): Promise<DecisionRecord> {
    this.checkOpen();
    return new Promise((resolve, reject) => {
      this.pending.push({ record, resolve, reject });
      if (this.pending.length === 1) queueMicrotask(() => this.flush());
    });
  }

  async get(txId: TxId): Promise<DecisionRecord | undefined> {
    this.checkOpen();
    const row = this.select.get(txId) as Row | undefined;
    return row === undefined ? undefined : toRecord(row);
  }

  async forget(txIds: readonly TxId[]): Promise<void> {
    this.checkOpen();
    this.db.transaction(() => {
      for (const id of txIds) this.remove.run(id);
    })();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    this.db.close();
  }

  private flush(): void {
    const batch = this.pending;
    this.pending = [];
    if (batch.length === 0) return;
    try {
      const held = this.db.transaction(() =>
        batch.map(({ record }) => {
          this.insert.run(record.txId, record.decision, JSON.stringify(record.participants));
          return toRecord(this.select.get(record.txId) as Row);
        }),
      )();
      for (const [i, b] of batch.entries()) b.resolve(held[i] as DecisionRecord);
    } catch (e) {
      for (const b of batch) b.reject(e);
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new TxnError("UNAVAILABLE", `decision log ${this.path} is closed`);
  }
}
