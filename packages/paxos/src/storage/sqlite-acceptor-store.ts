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
`;

/**
 * Acceptor state in SQLite: WAL with synchronous=FULL, so a save is fsynced before it
 * returns, and one transaction per save (group commit of a whole Ready).
 */
export class SqliteAcceptorStore implements AcceptorStore {
  private readonly db: Database.Database;
  private readonly putPromised: Database.Statement;
  private readonly putAccepted: Database.Statement;
  private readonly putChosen: Database.Statement;
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
    this.saveTx = this.db.transaction((update: AcceptorUpdate) => {
      if (update.promised) this.putPromised.run(update.promised.round, update.promised.node);
      for (const e of update.accepted) {
        this.putAccepted.run(e.slot, e.ballot.round, e.ballot.node, encodeValue(e.value));
      }
      for (const c of update.chosen) this.putChosen.run(c.slot, encodeValue(c.value));
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
    return { promised: p ? { round: p.round, node: p.node } : ZERO_BALLOT, accepted, chosen };
  }

  save(update: AcceptorUpdate): void {
    this.checkOpen();
    this.saveTx(update);
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
