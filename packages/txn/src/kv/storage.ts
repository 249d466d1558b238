import Database from "better-sqlite3";
import type { Decision, NodeName, TxId } from "../core/types.js";

/** A durable prepare record: what commit will write, which keys stay locked, who decides. */
export interface PreparedRecord {
  readonly txId: TxId;
  readonly coordinator: NodeName;
  readonly startTs: number;
  readonly keys: readonly string[];
  /** Key and new value (null deletes), computed at prepare under the locks. */
  readonly writes: readonly (readonly [string, string | null])[];
  /** The yes vote's result, so a repeated prepare answers the same. */
  readonly result: Uint8Array;
}

export interface KvLoaded {
  readonly data: Map<string, string>;
  readonly prepared: PreparedRecord[];
  readonly finished: Map<TxId, Decision>;
}

/**
 * Durable state of a key-value participant. Each write method is durable when it returns,
 * and `saveOutcome` is atomic: the writes, the removal of the prepare record and the
 * tombstone of the outcome land together or not at all.
 */
export interface KvStorage {
  load(): KvLoaded;
  savePrepare(record: PreparedRecord): void;
  saveOutcome(txId: TxId, decision: Decision, writes: PreparedRecord["writes"]): void;
  close(): void;
}

/** Keeps everything in memory; "durable" across a participant restart that reuses it. */
export class MemoryKvStorage implements KvStorage {
  private readonly data = new Map<string, string>();
  private readonly prepared = new Map<TxId, PreparedRecord>();
  private readonly finished = new Map<TxId, Decision>();

  constructor(initial: Iterable<readonly [string, string]> = []) {
    for (const [k, v] of initial) this.data.set(k, v);
  }

  load(): KvLoaded {
    return {
      data: new Map(this.data),
      prepared: [...this.prepared.values()],
      finished: new Map(this.finished),
    };
  }

  savePrepare(record: PreparedRecord): void {
    this.prepared.set(record.txId, record);
  }

  saveOutcome(txId: TxId, decision: Decision, writes: PreparedRecord["writes"]): void {
    if (decision === "commit") {
      for (const [k, v] of writes) {
        if (v === null) this.data.delete(k);
        else this.data.set(k, v);
      }
    }
    this.prepared.delete(txId);
    this.finished.set(txId, decision);
  }

  close(): void {}
}

interface PreparedRow {
  tx_id: string;
  coordinator: string;
  start_ts: number;
  keys: string;
  writes: string;
  result: Buffer;
}

/** A participant's data, prepare records and outcomes in one SQLite file (WAL, synchronous=FULL). */
export class SqliteKvStorage implements KvStorage {
  private readonly db: Database.Database;

  constructor(
    readonly path: string,
    initial: Iterable<readonly [string, string]> = [],
  ) {
    this.db = new Database(path);
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = FULL");
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS prepared (
        tx_id TEXT PRIMARY KEY, coordinator TEXT NOT NULL, start_ts INTEGER NOT NULL,
        keys TEXT NOT NULL, writes TEXT NOT NULL, result BLOB NOT NULL
      ) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS finished (tx_id TEXT PRIMARY KEY, decision TEXT NOT NULL) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    `);
    const seeded = this.db.prepare("SELECT value FROM meta WHERE name = 'seeded'").get();
    if (seeded === undefined) {
      const put = this.db.prepare("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)");
      this.db.transaction(() => {
        for (const [k, v] of initial) put.run(k, v);
        this.db.prepare("INSERT INTO meta (name, value) VALUES ('seeded', '1')").run();
      })();
    }
  }

  load(): KvLoaded {
    const data = new Map<string, string>();
    for (const r of this.db.prepare("SELECT key, value FROM kv").all() as { key: string; value: string }[]) {
      data.set(r.key, r.value);
    }
    const prepared = (this.db.prepare("SELECT * FROM prepared").all() as PreparedRow[]).map(
      (r): PreparedRecord => ({
        txId: r.tx_id,
        coordinator: r.coordinator,
        startTs: r.start_ts,
        keys: JSON.parse(r.keys) as string[],
        writes: JSON.parse(r.writes) as [string, string | null][],
        result: new Uint8Array(r.result),
      }),
    );
    const finished = new Map<TxId, Decision>();
    for (const r of this.db.prepare("SELECT tx_id, decision FROM finished").all() as {
      tx_id: string;
      decision: Decision;
    }[]) {
      finished.set(r.tx_id, r.decision);
    }
    return { data, prepared, finished };
  }

  savePrepare(record: PreparedRecord): void {
    this.db
      .prepare(
        "INSERT OR REPLACE INTO prepared (tx_id, coordinator, start_ts, keys, writes, result) VALUES (?, ?, ?, ?, ?, ?)",
      )
      .run(
        record.txId,
        record.coordinator,
        record.startTs,
        JSON.stringify(record.keys),
        JSON.stringify(record.writes),
        Buffer.from(record.result),
      );
  }

  saveOutcome(txId: TxId, decision: Decision, writes: PreparedRecord["writes"]): void {
    const put = this.db.prepare("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)");
    const del = this.db.prepare("DELETE FROM kv WHERE key = ?");
    this.db.transaction(() => {
      if (decision === "commit") {
        for (const [k, v] of writes) {
          if (v === null) del.run(k);
          else put.run(k, v);
        }
      }
      this.db.prepare("DELETE FROM prepared WHERE tx_id = ?").run(txId);
      this.db.prepare("INSERT OR REPLACE INTO finished (tx_id, decision) VALUES (?, ?)").run(txId, decision);
    })();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
