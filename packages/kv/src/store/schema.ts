import type Database from "better-sqlite3";

export const schemaVersion = 1;

/**
 * The MVCC layout. `history` holds every version of every key (etcd's "key" bucket, keyed by
 * key and revision here rather than by revision, so that "the newest version at or below R"
 * is one index seek); deletes are tombstone rows. `kv` points at each live key's newest
 * version (etcd's in-memory keyIndex, made durable), so reads at the newest revision never
 * scan history. `meta` holds the applied index and revisions, written in the same SQLite
 * transaction as the data they describe.
 */
export function createSchema(db: Database.Database): void {
  db.exec(`
    CREATE TABLE IF NOT EXISTS meta (
      id INTEGER PRIMARY KEY CHECK (id = 0),
      schema_version INTEGER NOT NULL,
      applied_index INTEGER NOT NULL,
      revision INTEGER NOT NULL,
      compact_revision INTEGER NOT NULL
    );
    INSERT OR IGNORE INTO meta (id, schema_version, applied_index, revision, compact_revision)
      VALUES (0, ${schemaVersion}, 0, 1, -1);

    CREATE TABLE IF NOT EXISTS history (
      key BLOB NOT NULL,
      mod_revision INTEGER NOT NULL,
      sub INTEGER NOT NULL,
      tombstone INTEGER NOT NULL,
      value BLOB NOT NULL,
      create_revision INTEGER NOT NULL,
      version INTEGER NOT NULL,
      lease INTEGER NOT NULL,
      PRIMARY KEY (key, mod_revision)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS history_by_revision ON history (mod_revision, sub);

    CREATE TABLE IF NOT EXISTS kv (
      key BLOB PRIMARY KEY,
      mod_revision INTEGER NOT NULL,
      lease INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS kv_by_lease ON kv (lease) WHERE lease != 0;

    -- Leases (Lease service, next issue): granted and revoked through the log.
    CREATE TABLE IF NOT EXISTS lease (
      id INTEGER PRIMARY KEY,
      ttl INTEGER NOT NULL,
      remaining_ttl INTEGER NOT NULL
    );

    -- Cross-shard transactions: the prepared parts this shard holds locks for (a TxnPrepared
    -- message each), and the decision applied here for every transaction it took part in
    -- (a TxnDecision each, or the abort a fence recorded).
    CREATE TABLE IF NOT EXISTS txn_intent (
      tx_id BLOB PRIMARY KEY,
      prepared BLOB NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS txn_record (
      tx_id BLOB PRIMARY KEY,
      decision BLOB NOT NULL
    ) WITHOUT ROWID;
    -- The highest below_revision of the TxnForget commands applied: records of transactions
    -- forgotten below it are deleted, and parts whose min_revision is at or below it refused.
    CREATE TABLE IF NOT EXISTS txn_forgotten (
      id INTEGER PRIMARY KEY CHECK (id = 0),
      below_revision INTEGER NOT NULL
    );
    INSERT OR IGNORE INTO txn_forgotten (id, below_revision) VALUES (0, 0);
  `);
}
