import Database from "better-sqlite3";
import type { AcceptorState, AcceptorUpdate, SlotEntry, Value } from "../core/types.js";
import { ZERO_BALLOT } from "../core/types.js";
import { decodeValue, encodeValue } from "../wire.js";
import { type AcceptorStore, StorageError } from "./acceptor-store.js";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS promised (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  round INTEGER NOT NULL,
  node TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS accepted (
  slot INTEGER PRIMARY KEY,
  round INTEGER NOT NULL,
  node TEXT NOT NULL,
  value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS chosen (
  slot INTEGER PRIMARY KEY,
  value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS compacted (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  slot INTEGER NOT NULL,
  log_index INTEGER NOT NULL
);
`;

/**
 * Acceptor state in SQLite: WAL with synchronous=FULL, so a save with a promise, accepted
 * values or a compaction is fsynced before it returns, and one transaction per save (group
 * commit of a whole Ready). A save of chosen values only is not fsynced (see `save`).
 */
export class SqliteAcceptorStore implements AcceptorStore {
  private readonly db: Database.Database;
  private readonly putPromised: Database.Statement;
  private readonly putAccepted: Database.Statement;
  private readonly putChosen: Database.Statement;
  private readonly compactTx: (slot: number, index: number) => void;
  private readonly saveTx: (update: AcceptorUpdate) => void;
  private closed = false;

  constructor(readonly path: string) {
    try {
      this.db = new Database(path);
    } catch (e) {
      throw new StorageError(
        `cannot open acceptor store ${path}: ${e instanceof Error ? e.message : String(e)}`,
      );
    }
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = FULL");
    this.db.exec(SCHEMA);
    this.putPromised = this.db.prepare(
      "INSERT INTO promised (id, round, node) VALUES (1, ?, ?) ON CONFLICT(id) DO UPDATE SET round = excluded.round, node = excluded.node",
    );
    this.putAccepted = this.db.prepare(
      "INSERT OR REPLACE INTO accepted (slot, round, node, value) VALUES (?, ?, ?, ?)",
    );
    this.putChosen = this.db.prepare("INSERT OR IGNORE INTO chosen (slot, value) VALUES (?, ?)");
    const dropAccepted = this.db.prepare("DELETE FROM accepted WHERE slot <= ?");
    const dropChosen = this.db.prepare("DELETE FROM chosen WHERE slot <= ?");
    const putCompacted = this.db.prepare(
      "INSERT INTO compacted (id, slot, log_index) VALUES (1, ?, ?) ON CONFLICT(id) DO UPDATE SET slot = excluded.slot, log_index = excluded.log_index WHERE excluded.slot > compacted.slot",
    );
    this.compactTx = (slot, index) => {
      dropAccepted.run(slot);
      dropChosen.run(slot);
      putCompacted.run(slot, index);
    };
    this.saveTx = this.db.transaction((update: AcceptorUpdate) => {
      if (update.promised) this.putPromised.run(update.promised.round, update.promised.node);
      for (const e of update.accepted) {
        this.putAccepted.run(e.slot, e.ballot.round, e.ballot.node, encodeValue(e.value));
      }
      for (const c of update.chosen) this.putChosen.run(c.slot, encodeValue(c.value));
      if (update.compact) this.compactTx(update.compact.slot, update.compact.index);
    });
  }

  load(): AcceptorState {
    this.checkOpen();
    const p = this.db.prepare("SELECT round, node FROM promised WHERE id = 1").get() as
      | { round: number; node: string }
      | undefined;
    const accepted = new Map<number, SlotEntry>();
    for (const row of this.db.prepare("SELECT slot, round, node, value FROM accepted").iterate() as Iterable<{
      slot: number;
      round: number;
      node: string;
      value: Uint8Array;
    }>) {
      accepted.set(row.slot, {
        slot: row.slot,
        ballot: { round: row.round, node: row.node },
        value: decodeValue(row.value),
      });
    }
    const chosen = new Map<number, Value>();
    for (const row of this.db.prepare("SELECT slot, value FROM chosen").iterate() as Iterable<{
      slot: number;
      value: Uint8Array;
    }>) {
      chosen.set(row.slot, decodeValue(row.value));
    }
    const k = this.db.prepare("SELECT slot, log_index FROM compacted WHERE id = 1").get() as
      | { slot: number; log_index: number }
      | undefined;
    return {
      promised: p ? { round: p.round, node: p.node } : ZERO_BALLOT,
      accepted,
      chosen,
      compacted: k ? { slot: k.slot, index: k.log_index } : undefined,
    };
  }

  save(update: AcceptorUpdate): void {
    this.checkOpen();
    // Only a promise, accepted values or a compaction must be on disk before the messages
    // that depend on them leave (etcd's MustSync, as SqliteLogStore does). Chosen values
    // alone are facts every replica can learn again: written without their own fsync (the
    // next synced commit flushes them with the WAL), they are lost only on a power loss, and
    // then relearned from the leader. This takes an fsync off the leader's commit path.
    const mustSync =
      update.promised !== undefined || update.accepted.length > 0 || update.compact !== undefined;
    if (!mustSync) this.db.pragma("synchronous = NORMAL");
    try {
      this.saveTx(update);
    } finally {
      if (!mustSync) this.db.pragma("synchronous = FULL");
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }

  private checkOpen(): void {
    if (this.closed) throw new StorageError(`acceptor store ${this.path} is closed`);
  }
}
