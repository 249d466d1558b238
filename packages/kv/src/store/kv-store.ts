import { randomBytes } from "node:crypto";
import { closeSync, existsSync, fsyncSync, openSync, renameSync, rmSync, statSync, writeSync } from "node:fs";
import { open as openFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { LogEntry, Snapshot, StateMachine } from "@quorum/consensus";
import { bytesSnapshot } from "@quorum/consensus";
import type { Logger } from "@quorum/transport";
import { silentLogger } from "@quorum/transport";
import Database from "better-sqlite3";
import { EtcdError, etcdErrors } from "../errors.js";
import {
  type CompactionRequest,
  type CompactionResponse,
  type DeleteRangeRequest,
  type DeleteRangeResponse,
  type LeaseGrantRequest,
  type LeaseGrantResponse,
  type LeaseRevokeRequest,
  type LeaseRevokeResponse,
  type PutRequest,
  type PutResponse,
  type RangeRequest,
  RangeRequest_SortOrder,
  RangeRequest_SortTarget,
  type RangeResponse,
  type RequestOp,
  type ResponseHeader,
  type ResponseOp,
  type TxnRequest,
  type TxnResponse,
} from "../gen/etcdserverpb/rpc.js";
import { type Event, Event_EventType, type KeyValue } from "../gen/mvccpb/kv.js";
import {
  type BranchResult,
  Command,
  type TxnDecision,
  TxnDecision as TxnDecisionCodec,
  type TxnForget,
  type TxnPart,
  TxnPrepared,
  type TxnState,
  type TxnVote,
  TxnVote_CompareResult,
  TxnVote_Outcome,
} from "../gen/quorum/kv/v1/command.js";
import { WalCheckpointer } from "./checkpointer.js";
import { evaluateCompare } from "./compare.js";
import { type Intent, IntentTable, type Lock, lockRange, txnLocks } from "./intents.js";
import { type KeyRange, keyRange } from "./keys.js";
import { createSchema } from "./schema.js";
import { sorter } from "./sort.js";

/** Whether a Txn (either branch, nested ones too) puts a key with lease `id`. */
function putsWithLease(txn: TxnRequest, id: bigint): boolean {
  return [...txn.success, ...txn.failure].some(
    (op) => op.requestPut?.lease === id || (op.requestTxn !== undefined && putsWithLease(op.requestTxn, id)),
  );
}

/** What `apply` returns for one log entry: etcd's response, or the error etcd would return. */
export type ApplyResult =
  | { readonly type: "put"; readonly response: PutResponse }
  | { readonly type: "deleteRange"; readonly response: DeleteRangeResponse }
  | { readonly type: "txn"; readonly response: TxnResponse }
  | { readonly type: "compaction"; readonly response: CompactionResponse }
  | { readonly type: "leaseGrant"; readonly response: LeaseGrantResponse }
  | { readonly type: "leaseRevoke"; readonly response: LeaseRevokeResponse }
  /** A floor-only command (sharding): the revision was raised to at least the floor. */
  | { readonly type: "bump"; readonly revision: number }
  /** A cross-shard transaction's part was prepared here (or refused): see `TxnVote`. */
  | { readonly type: "txnVote"; readonly vote: TxnVote }
  /** A cross-shard transaction's decision as this shard recorded it (the first one applied wins). */
  | { readonly type: "txnDecided"; readonly decision: TxnDecision }
  /** What this shard knows of a transaction, after a fence (its part, or its decision). */
  | { readonly type: "txnState"; readonly state: TxnState }
  /** Decided transactions' records were deleted (see `TxnForget`). */
  | { readonly type: "txnForgotten" }
  /**
   * The command touches keys a prepared cross-shard transaction has locked, and was not
   * applied: the proposer waits for that transaction to finish (`whenUnlocked`) and retries.
   */
  | { readonly type: "locked"; readonly holder: Buffer }
  /** A batch entry (`Command.batch`): each command's own result, in order. */
  | { readonly type: "batch"; readonly results: readonly ApplyResult[] }
  | { readonly type: "error"; readonly error: EtcdError };

/**
 * The changes one applied entry made, all at one revision, in the order they were made
 * (etcd's event order within a txn). `prevKv` is always filled when a previous version
 * existed; a watcher that did not ask for it strips it.
 */
export interface RevisionChanges {
  readonly revision: number;
  readonly events: readonly Event[];
  /**
   * The store's revision before this entry. Without sharding it is `revision - 1`; a shard's
   * revisions may jump (a `floor` raised them), and a floor-only entry moves the revision
   * with no events, so watchers learn that nothing happened in between.
   */
  readonly previous?: number;
}

/** A lease as the log granted it; when it expires is the leader's business (see Lessor). */
export interface LeaseRecord {
  readonly id: bigint;
  /** Granted TTL in seconds. */
  readonly ttl: number;
}

/** Options of a history read (`changesBetween`). */
export interface ChangesOptions {
  /** Only changes of keys in this range. */
  readonly range?: KeyRange;
  /** Fill `prevKv` (one extra lookup per event); default true. */
  readonly prevKv?: boolean;
}

export interface KvStoreOptions {
  /** SQLite file, or ":memory:" (tests, simulation: snapshots then use serialize()). */
  readonly path: string;
  readonly logger?: Logger;
}

interface Row {
  key: Buffer;
  create_revision: bigint;
  mod_revision: bigint;
  version: bigint;
  value: Buffer;
  lease: bigint;
}

/** A write in progress: every change of one entry shares `beginRev + 1`. */
interface WriteTxn {
  readonly beginRev: number;
  changes: number;
  readonly events: Event[] | undefined;
  /**
   * First `sub` of this write's rows. A cross-shard commit may land at a revision this shard
   * already used for other keys (see `commitIntent`); its rows then sort after theirs.
   */
  readonly subBase?: number;
}

/** The queries for one key's version (see KvStore.rows): newest, or newest at or below a revision. */
const oneKeySql = (() => {
  const cols = (value: string) => `h.key, h.create_revision, h.mod_revision, h.version, ${value}, h.lease`;
  const latest = (value: string) =>
    `SELECT ${cols(value)} FROM kv k CROSS JOIN history h ON h.key = k.key AND h.mod_revision = k.mod_revision WHERE k.key = ?`;
  const atRev = (value: string) =>
    `SELECT ${cols(value)} FROM history h WHERE h.key = ? AND h.mod_revision = (SELECT MAX(mod_revision) FROM history WHERE key = ? AND mod_revision <= ?) AND h.tombstone = 0`;
  return {
    latest: { withValue: latest("h.value"), keysOnly: latest("x'' AS value") },
    atRev: { withValue: atRev("h.value"), keysOnly: atRev("x'' AS value") },
  };
})();

/** `sub` base of a cross-shard commit written at a revision the shard had already reached. */
const pastSubBase = 1 << 20;

const emptyTxn: TxnRequest = { compare: [], success: [], failure: [] };

function refusal(outcome: TxnVote_Outcome, holder?: Intent): TxnVote {
  return {
    outcome,
    compares: [],
    success: undefined,
    failure: undefined,
    provisionalRevision: 0n,
    holderTxId: holder ? holder.txId : Buffer.alloc(0),
    holderStartTs: holder?.part.startTs ?? 0n,
  };
}

/** Nested txns whose compares were evaluated up front, as etcd's compareToPath does. */
interface TxnPath {
  readonly succeeded: boolean;
  /** One per nested txn of the taken branch, in order. */
  readonly nested: TxnPath[];
}

const noLimit = -1;

/** Applies commit without fsync; the Raft log is the durable record (see KvStore.openDb). */
const applySynchronous = "NORMAL";

function toKeyValue(row: Row): KeyValue {
  return {
    key: row.key,
    createRevision: row.create_revision,
    modRevision: row.mod_revision,
    version: row.version,
    value: row.value,
    lease: row.lease,
  };
}

/** A response header with only the revision; the service fills in cluster, member and term. */
export function revisionHeader(revision: number | bigint): ResponseHeader {
  return { clusterId: 0n, memberId: 0n, revision: BigInt(revision), raftTerm: 0n };
}
const header = revisionHeader;

function isTxnReadOnly(txn: TxnRequest): boolean {
  const ro = (ops: readonly RequestOp[]) =>
    ops.every((op) =>
      op.requestPut || op.requestDeleteRange ? false : op.requestTxn ? isTxnReadOnly(op.requestTxn) : true,
    );
  return ro(txn.success) && ro(txn.failure);
}

export { isTxnReadOnly };

/**
 * The kv state machine: etcd's MVCC store on SQLite. Every replica applies the same entries
 * in the same order; `apply` commits a whole batch, its revisions and the applied index in
 * one SQLite transaction (group commit), so a restart resumes exactly after the last entry
 * it made durable.
 */
export class KvStore implements StateMachine<ApplyResult> {
  private db: Database.Database;
  /** Checkpoints a file's WAL off the event loop (none in memory). */
  private checkpointer: WalCheckpointer | undefined;
  private readonly path: string;
  private readonly logger: Logger;
  private readonly statements = new Map<string, Database.Statement>();
  private applied = 0;
  private rev = 1;
  private compactRev = -1;
  private readonly listeners = new Set<(changes: readonly RevisionChanges[]) => void>();
  private readonly intents = new IntentTable();
  private readonly intentListeners = new Set<() => void>();
  private readonly appliedListeners = new Set<() => void>();
  private intentsChanged = false;
  /** Set by a cross-shard commit written below the current revision: its changes' revision. */
  private pastWrite: number | undefined;
  /** Changes above `visibleRevision()`, held back from listeners until no pending transaction can write below them. */
  private held: RevisionChanges[] = [];
  /** The revision of the last change given to listeners. */
  private emitted = 1;
  private readonly snapshotFiles: string[] = [];
  private closed = false;

  private constructor(options: KvStoreOptions) {
    this.path = options.path;
    this.logger = options.logger ?? silentLogger;
    this.db = this.openDb(options.path);
    this.checkpointer = this.inMemory ? undefined : new WalCheckpointer(this.path);
    this.loadMeta();
  }

  static open(options: KvStoreOptions): KvStore {
    return new KvStore(options);
  }

  private get inMemory(): boolean {
    return this.path === ":memory:";
  }

  private openDb(source: string | Buffer): Database.Database {
    const db = typeof source === "string" ? new Database(source) : new Database(source);
    if (!this.inMemory) {
      db.pragma("journal_mode = WAL");
      // Applies commit with synchronous=NORMAL: a commit reaches the WAL but is not fsynced,
      // so a power loss (not a process crash) may lose the newest applied batches. That is
      // safe because the store is not the durable record: the Raft log is. Every entry is
      // fsynced on a quorum before anything is acknowledged, and the applied index sits in
      // the same transaction as the data it produced, so after a power loss the store comes
      // back at some earlier applied index with exactly that index's state, and the log
      // replays every entry after it. The log can replay only what it still has, though: the
      // consensus layer compacts its log up to the snapshot index right after `snapshot()`
      // returns, so `snapshot()` first makes the state durable (`makeDurable()`), and the
      // store's durable applied index is always >= the log's compaction point.
      db.pragma(`synchronous = ${applySynchronous}`);
      // A WalCheckpointer checkpoints, on its own thread: see checkpointer.ts.
      db.pragma("wal_autocheckpoint = 0");
    }
    createSchema(db);
    return db;
  }

  private loadMeta(): void {
    const meta = this.db
      .prepare("SELECT applied_index, revision, compact_revision FROM meta WHERE id = 0")
      .get() as {
      applied_index: number;
      revision: number;
      compact_revision: number;
    };
    this.applied = meta.applied_index;
    this.rev = meta.revision;
    this.compactRev = meta.compact_revision;
    this.statements.clear();
    this.intents.clear();
    const rows = this.db.prepare("SELECT tx_id, prepared FROM txn_intent").all() as {
      tx_id: Buffer;
      prepared: Buffer;
    }[];
    for (const row of rows) this.intents.add(this.intentOf(row.tx_id, TxnPrepared.decode(row.prepared)));
    this.held = [];
    this.emitted = this.visibleRevision();
  }

  private intentOf(txId: Buffer, prepared: TxnPrepared): Intent {
    const part = prepared.part!;
    return {
      txId,
      part,
      preparedRevision: Number(prepared.preparedRevision),
      vote: prepared.vote!,
      locks: txnLocks(part.txn ?? emptyTxn),
    };
  }

  private stmt(sql: string, safeIntegers = false): Database.Statement {
    const cacheKey = safeIntegers ? `S:${sql}` : sql;
    let s = this.statements.get(cacheKey);
    if (!s) {
      s = this.db.prepare(sql);
      if (safeIntegers) s.safeIntegers(true);
      this.statements.set(cacheKey, s);
    }
    return s;
  }

  // ---- state machine ---------------------------------------------------------------------

  appliedIndex(): number {
    return this.applied;
  }

  /** The store's current revision (1 when empty, as in etcd). */
  revision(): number {
    return this.rev;
  }

  /** The last compacted revision (-1 when never compacted). */
  compactRevision(): number {
    return this.compactRev;
  }

  apply(entries: readonly LogEntry[]): ApplyResult[] {
    this.assertOpen();
    if (entries.length === 0) return [];
    const before = { rev: this.rev, compactRev: this.compactRev };
    const results: ApplyResult[] = [];
    const changes: RevisionChanges[] | undefined = this.listeners.size > 0 ? [] : undefined;
    let last = this.applied;
    try {
      this.db.transaction(() => {
        for (const entry of entries) {
          if (entry.index <= last) {
            throw new Error(`kv store: entry ${entry.index} is at or below applied index ${last}`);
          }
          last = entry.index;
          results.push(this.applyTracked(entry, changes));
        }
        this.stmt("UPDATE meta SET applied_index = ?, revision = ?, compact_revision = ? WHERE id = 0").run(
          last,
          this.rev,
          this.compactRev,
        );
      })();
    } catch (err) {
      this.rev = before.rev;
      this.compactRev = before.compactRev;
      if (this.intentsChanged) this.loadMeta();
      throw err;
    }
    this.applied = last;
    this.checkpointer?.checkpointIfBehind(this.db);
    if (changes) this.emit(changes);
    if (this.intentsChanged) {
      this.intentsChanged = false;
      for (const listener of [...this.intentListeners]) listener();
    }
    for (const listener of [...this.appliedListeners]) listener();
    return results;
  }

  /**
   * The highest revision whose changes are final. A prepared cross-shard transaction may
   * still commit at any revision above the revision its part was prepared at (its writes
   * then land below this shard's current revision, see `commitIntent`), so watchers are only
   * given revisions up to the lowest such point.
   */
  visibleRevision(): number {
    const min = this.intents.minPreparedRevision();
    return min === undefined ? this.rev : Math.min(this.rev, min);
  }

  /** Gives listeners a batch's changes, holding back those above `visibleRevision()`. */
  private emit(changes: RevisionChanges[]): void {
    const inOrder = changes.every((c, i) => i === 0 || c.revision > changes[i - 1]!.revision);
    if (
      this.intents.size === 0 &&
      this.held.length === 0 &&
      changes[0]?.previous === this.emitted &&
      inOrder
    ) {
      // No transaction pending, nothing held, revisions ascending (a transaction prepared and
      // committed within this batch can break that): the batch is final as it is.
      this.emitted = changes[changes.length - 1]!.revision;
      for (const listener of this.listeners) listener(changes);
      return;
    }
    this.held.push(...changes);
    this.release();
  }

  /** Gives listeners every held change at or below `visibleRevision()`, in revision order. */
  private release(): void {
    const visible = this.visibleRevision();
    if (visible <= this.emitted && this.held.length === 0) return;
    const ready = this.held.filter((c) => c.revision <= visible).sort((a, b) => a.revision - b.revision);
    this.held = this.held.filter((c) => c.revision > visible);
    const out: RevisionChanges[] = [];
    for (const c of ready) {
      const last = out[out.length - 1];
      if (last && last.revision === c.revision) (last.events as Event[]).push(...c.events);
      else
        out.push({ revision: c.revision, events: [...c.events], previous: last?.revision ?? this.emitted });
    }
    const top = out[out.length - 1]?.revision ?? this.emitted;
    if (visible > top) out.push({ revision: visible, events: [], previous: top });
    if (out.length === 0) return;
    this.emitted = out[out.length - 1]!.revision;
    for (const listener of this.listeners) listener(out);
  }

  /**
   * Applies one command and records its changes for watchers (each command has one
   * revision; a batch entry's commands are recorded one by one).
   */
  private applyTracked(
    entry: LogEntry,
    changes: RevisionChanges[] | undefined,
    inBatch = false,
  ): ApplyResult {
    const events: Event[] | undefined = changes ? [] : undefined;
    const previous = this.rev;
    this.pastWrite = undefined;
    const result = this.applyCommand(entry, events, changes, inBatch);
    if (changes && events && result.type !== "batch" && (events.length > 0 || this.rev !== previous)) {
      changes.push({ revision: this.pastWrite ?? this.rev, events, previous });
    }
    return result;
  }

  private applyCommand(
    entry: LogEntry,
    events: Event[] | undefined,
    changes: RevisionChanges[] | undefined,
    inBatch: boolean,
  ): ApplyResult {
    let command: Command;
    try {
      command = Command.decode(entry.command);
    } catch (err) {
      this.logger.error({ index: entry.index, err: String(err) }, "undecodable kv command");
      return { type: "error", error: etcdErrors.corruptCommand(String(err)) };
    }
    if (command.batch.length > 0) {
      if (inBatch) return { type: "error", error: etcdErrors.corruptCommand("a batch inside a batch") };
      return {
        type: "batch",
        results: command.batch.map((c) =>
          this.applyTracked({ index: entry.index, command: c }, changes, true),
        ),
      };
    }
    // Sharding: raise the revision to the proposer's floor first, so this entry's writes
    // come after every revision the proposer had seen (see README, "Revisions across shards").
    const floor = Number(command.floor);
    if (floor > this.rev) this.rev = floor;
    try {
      if (command.txnPrepare) return this.prepareTxn(command.txnPrepare);
      if (command.txnDecide)
        return { type: "txnDecided", decision: this.decideTxn(command.txnDecide, events) };
      if (command.txnFence) return this.fenceTxn(Buffer.from(command.txnFence.txId));
      if (command.txnForget) return this.forgetTxns(command.txnForget);
      const holder = this.lockedBy(command);
      if (holder) return { type: "locked", holder: holder.txId };
      if (command.put) {
        const w = this.beginWrite(events);
        const response = this.put(w, command.put, true);
        this.endWrite(w);
        return { type: "put", response };
      }
      if (command.deleteRange) {
        const w = this.beginWrite(events);
        const response = this.deleteRange(w, command.deleteRange);
        this.endWrite(w);
        return { type: "deleteRange", response };
      }
      if (command.txn) return { type: "txn", response: this.txnWrite(command.txn, events) };
      if (command.compaction) return { type: "compaction", response: this.compact(command.compaction) };
      if (command.leaseGrant) return { type: "leaseGrant", response: this.leaseGrant(command.leaseGrant) };
      if (command.leaseRevoke) {
        const w = this.beginWrite(events);
        this.leaseRevoke(w, command.leaseRevoke);
        return { type: "leaseRevoke", response: { header: header(this.endWrite(w)) } };
      }
      if (floor > 0) return { type: "bump", revision: this.rev };
      return { type: "error", error: etcdErrors.unimplemented("this command") };
    } catch (err) {
      if (err instanceof EtcdError) return { type: "error", error: err };
      throw err;
    }
  }

  /** The prepared transaction (if any) holding a lock this write command needs. */
  private lockedBy(command: Command): Intent | undefined {
    if (this.intents.size === 0) return undefined;
    let locks: Lock[];
    if (command.put) locks = [lockRange(command.put.key, Buffer.alloc(0), "write")];
    else if (command.deleteRange)
      locks = [lockRange(command.deleteRange.key, command.deleteRange.rangeEnd, "write")];
    else if (command.txn) locks = txnLocks(command.txn);
    else if (command.leaseRevoke) return this.leaseHolder(command.leaseRevoke.ID);
    else return undefined;
    return this.intents.conflict(locks);
  }

  /**
   * A prepared transaction that a revoke of lease `id` must wait for: one that locked a key
   * the revoke would delete, or that would put a key with that lease (its dry run found the
   * lease; committing after the revoke would leave a key attached to no lease).
   */
  private leaseHolder(id: bigint): Intent | undefined {
    const keys = this.leaseKeys(id).map((key) => lockRange(key, Buffer.alloc(0), "write"));
    return (
      (keys.length > 0 ? this.intents.conflict(keys) : undefined) ??
      this.intents.all().find((i) => putsWithLease(i.part.txn ?? emptyTxn, id))
    );
  }

  private beginWrite(events: Event[] | undefined): WriteTxn {
    return { beginRev: this.rev, changes: 0, events };
  }

  private endWrite(w: WriteTxn): number {
    if (w.changes > 0) this.rev = w.beginRev + 1;
    return this.rev;
  }

  // ---- reads -----------------------------------------------------------------------------

  private where(range: KeyRange, column: string): { sql: string; params: Buffer[] } {
    switch (range.kind) {
      case "one":
        return { sql: `${column} = ?`, params: [range.key] };
      case "from":
        return { sql: `${column} >= ?`, params: [range.key] };
      case "between":
        return { sql: `${column} >= ? AND ${column} < ?`, params: [range.key, range.end] };
    }
  }

  /** Key-values in `range` as of `atRev` (`latest` when it is the view's current revision). */
  private rows(range: KeyRange, latest: boolean, atRev: number, limit: number, keysOnly: boolean): Row[] {
    if (range.kind === "one") {
      // One key (every put, delete and compare reads one): one row at most, so no ORDER BY or
      // LIMIT, and `get`; in `pnpm bench:kv` this query was the store's largest cost, and
      // this form of it takes a quarter of the time.
      const sql = oneKeySql[latest ? "latest" : "atRev"][keysOnly ? "keysOnly" : "withValue"];
      const row = (
        latest ? this.stmt(sql, true).get(range.key) : this.stmt(sql, true).get(range.key, range.key, atRev)
      ) as Row | undefined;
      return row ? [row] : [];
    }
    const value = keysOnly ? "x'' AS value" : "h.value";
    const cols = `h.key, h.create_revision, h.mod_revision, h.version, ${value}, h.lease`;
    if (latest) {
      const w = this.where(range, "k.key");
      const sql = `SELECT ${cols} FROM kv k CROSS JOIN history h ON h.key = k.key AND h.mod_revision = k.mod_revision WHERE ${w.sql} ORDER BY k.key LIMIT ?`;
      return this.stmt(sql, true).all(...w.params, limit) as Row[];
    }
    const w = this.where(range, "key");
    const sql = `SELECT ${cols} FROM (SELECT key, MAX(mod_revision) AS m FROM history WHERE ${w.sql} AND mod_revision <= ? GROUP BY key) l CROSS JOIN history h ON h.key = l.key AND h.mod_revision = l.m WHERE h.tombstone = 0 ORDER BY h.key LIMIT ?`;
    return this.stmt(sql, true).all(...w.params, atRev, limit) as Row[];
  }

  private count(range: KeyRange, latest: boolean, atRev: number): number {
    if (latest) {
      const w = this.where(range, "key");
      return (this.stmt(`SELECT count(*) AS n FROM kv WHERE ${w.sql}`).get(...w.params) as { n: number }).n;
    }
    const w = this.where(range, "key");
    const sql = `SELECT count(*) AS n FROM (SELECT key, MAX(mod_revision) AS m FROM history WHERE ${w.sql} AND mod_revision <= ? GROUP BY key) l CROSS JOIN history h ON h.key = l.key AND h.mod_revision = l.m WHERE h.tombstone = 0`;
    return (this.stmt(sql).get(...w.params, atRev) as { n: number }).n;
  }

  private latestOne(key: Buffer): Row | undefined {
    return this.rows({ kind: "one", key }, true, 0, noLimit, false)[0];
  }

  /** etcd's Range against a view whose current revision is `curRev`. */
  private rangeAt(req: RangeRequest, curRev: number): RangeResponse {
    let rev = Number(req.revision);
    if (rev > curRev) throw etcdErrors.futureRevision();
    if (rev <= 0) rev = curRev;
    if (rev < this.compactRev) throw etcdErrors.compacted();
    const range = keyRange(req.key, req.rangeEnd);
    const latest = rev === curRev;
    const response: RangeResponse = { header: header(curRev), kvs: [], more: false, count: 0n };
    if (req.countOnly) {
      response.count = BigInt(this.count(range, latest, rev));
      return response;
    }
    const filtered =
      req.minModRevision !== 0n ||
      req.maxModRevision !== 0n ||
      req.minCreateRevision !== 0n ||
      req.maxCreateRevision !== 0n;
    const limit = Number(req.limit);
    const fetchAll = req.sortOrder !== RangeRequest_SortOrder.NONE || filtered || limit <= 0;
    let kvs = this.rows(range, latest, rev, fetchAll ? noLimit : limit + 1, req.keysOnly).map(toKeyValue);
    const count = fetchAll ? kvs.length : this.count(range, latest, rev);
    if (req.maxModRevision !== 0n) kvs = kvs.filter((kv) => kv.modRevision <= req.maxModRevision);
    if (req.minModRevision !== 0n) kvs = kvs.filter((kv) => kv.modRevision >= req.minModRevision);
    if (req.maxCreateRevision !== 0n) kvs = kvs.filter((kv) => kv.createRevision <= req.maxCreateRevision);
    if (req.minCreateRevision !== 0n) kvs = kvs.filter((kv) => kv.createRevision >= req.minCreateRevision);
    let order = req.sortOrder;
    if (req.sortTarget !== RangeRequest_SortTarget.KEY && order === RangeRequest_SortOrder.NONE) {
      order = RangeRequest_SortOrder.ASCEND;
    }
    if (order === RangeRequest_SortOrder.ASCEND || order === RangeRequest_SortOrder.DESCEND) {
      const by = sorter(req.sortTarget);
      kvs.sort(order === RangeRequest_SortOrder.ASCEND ? by : (a, b) => by(b, a));
    }
    if (limit > 0 && kvs.length > limit) {
      kvs = kvs.slice(0, limit);
      response.more = true;
    }
    response.kvs = kvs;
    response.count = BigInt(count);
    return response;
  }

  /** A Range served from local state (after a read barrier, or serializable). */
  range(req: RangeRequest): RangeResponse {
    this.assertOpen();
    return this.rangeAt(req, this.rev);
  }

  /** A Txn without writes, served from local state like a Range. */
  txnReadOnly(req: TxnRequest): TxnResponse {
    this.assertOpen();
    const curRev = this.rev;
    const path = this.compareToPath(req, curRev);
    this.checkRanges(req, path, curRev);
    const response = this.applyTxnOps(undefined, req, path, curRev);
    response.header = header(curRev);
    return response;
  }

  // ---- writes ----------------------------------------------------------------------------

  private leaseExists(id: bigint): boolean {
    return this.stmt("SELECT 1 FROM lease WHERE id = ?").get(id) !== undefined;
  }

  private put(w: WriteTxn, req: PutRequest, checkLease: boolean): PutResponse {
    let lease = req.lease;
    if (checkLease && lease !== 0n && !this.leaseExists(lease)) throw etcdErrors.leaseNotFound();
    const prev = this.latestOne(req.key);
    if ((req.ignoreValue || req.ignoreLease) && !prev) throw etcdErrors.keyNotFound();
    const value = req.ignoreValue && prev ? prev.value : req.value;
    if (req.ignoreLease && prev) lease = prev.lease;
    const rev = w.beginRev + 1;
    const createRevision = prev ? prev.create_revision : BigInt(rev);
    const version = prev ? prev.version + 1n : 1n;
    this.stmt(
      "INSERT OR REPLACE INTO history (key, mod_revision, sub, tombstone, value, create_revision, version, lease) VALUES (?, ?, ?, 0, ?, ?, ?, ?)",
    ).run(req.key, rev, (w.subBase ?? 0) + w.changes, value, createRevision, version, lease);
    this.stmt(
      "INSERT INTO kv (key, mod_revision, lease) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET mod_revision = excluded.mod_revision, lease = excluded.lease",
    ).run(req.key, rev, lease);
    w.changes++;
    if (w.events) {
      const kv: KeyValue = {
        key: req.key,
        createRevision,
        modRevision: BigInt(rev),
        version,
        value,
        lease,
      };
      w.events.push({ type: Event_EventType.PUT, kv, prevKv: prev ? toKeyValue(prev) : undefined });
    }
    const response: PutResponse = { header: header(rev), prevKv: undefined };
    if (req.prevKv && prev) response.prevKv = toKeyValue(prev);
    return response;
  }

  private deleteRange(w: WriteTxn, req: DeleteRangeRequest): DeleteRangeResponse {
    const range = keyRange(req.key, req.rangeEnd);
    const existing = this.rows(range, true, 0, noLimit, false);
    const rev = w.beginRev + 1;
    const insert = this.stmt(
      "INSERT OR REPLACE INTO history (key, mod_revision, sub, tombstone, value, create_revision, version, lease) VALUES (?, ?, ?, 1, x'', 0, 0, 0)",
    );
    const remove = this.stmt("DELETE FROM kv WHERE key = ?");
    for (const row of existing) {
      insert.run(row.key, rev, (w.subBase ?? 0) + w.changes);
      remove.run(row.key);
      w.changes++;
      if (w.events) {
        const kv: KeyValue = {
          key: row.key,
          createRevision: 0n,
          modRevision: BigInt(rev),
          version: 0n,
          value: Buffer.alloc(0),
          lease: 0n,
        };
        w.events.push({ type: Event_EventType.DELETE, kv, prevKv: toKeyValue(row) });
      }
    }
    const revision = existing.length > 0 || w.changes > 0 ? w.beginRev + 1 : w.beginRev;
    return {
      header: header(revision),
      deleted: BigInt(existing.length),
      prevKvs: req.prevKv ? existing.map(toKeyValue) : [],
    };
  }

  private compareToPath(req: TxnRequest, curRev: number): TxnPath {
    const succeeded = req.compare.every((c) =>
      evaluateCompare(
        c,
        this.rows(keyRange(c.key, c.rangeEnd), true, curRev, noLimit, false).map(toKeyValue),
      ),
    );
    const ops = succeeded ? req.success : req.failure;
    const nested: TxnPath[] = [];
    for (const op of ops) if (op.requestTxn) nested.push(this.compareToPath(op.requestTxn, curRev));
    return { succeeded, nested };
  }

  /** etcd's checkRequests(checkPut): fails the whole txn before it writes anything. */
  private checkPuts(req: TxnRequest, path: TxnPath): void {
    let n = 0;
    for (const op of path.succeeded ? req.success : req.failure) {
      if (op.requestTxn) {
        this.checkPuts(op.requestTxn, path.nested[n++]!);
        continue;
      }
      const put = op.requestPut;
      if (!put) continue;
      if ((put.ignoreValue || put.ignoreLease) && !this.latestOne(put.key)) throw etcdErrors.keyNotFound();
      if (put.lease !== 0n && !this.leaseExists(put.lease)) throw etcdErrors.leaseNotFound();
    }
  }

  /** etcd's checkRequests(checkRange). */
  private checkRanges(req: TxnRequest, path: TxnPath, curRev: number): void {
    let n = 0;
    for (const op of path.succeeded ? req.success : req.failure) {
      if (op.requestTxn) {
        this.checkRanges(op.requestTxn, path.nested[n++]!, curRev);
        continue;
      }
      const range = op.requestRange;
      if (!range || range.revision === 0n) continue;
      if (range.revision > BigInt(curRev)) throw etcdErrors.futureRevision();
      if (range.revision < BigInt(this.compactRev)) throw etcdErrors.compacted();
    }
  }

  private applyTxnOps(w: WriteTxn | undefined, req: TxnRequest, path: TxnPath, readRev: number): TxnResponse {
    const responses: ResponseOp[] = [];
    let n = 0;
    for (const op of path.succeeded ? req.success : req.failure) {
      if (op.requestRange) {
        const viewRev = w ? (w.changes > 0 ? w.beginRev + 1 : w.beginRev) : readRev;
        const r = this.rangeAt(op.requestRange, viewRev);
        responses.push({ responseRange: r });
      } else if (op.requestPut) {
        responses.push({ responsePut: this.put(w!, op.requestPut, false) });
      } else if (op.requestDeleteRange) {
        responses.push({ responseDeleteRange: this.deleteRange(w!, op.requestDeleteRange) });
      } else if (op.requestTxn) {
        const nested = this.applyTxnOps(w, op.requestTxn, path.nested[n++]!, readRev);
        // etcd sends nested txn responses with an empty (all-zero) header.
        nested.header = header(0);
        responses.push({ responseTxn: nested });
      }
    }
    return { header: undefined, succeeded: path.succeeded, responses };
  }

  private txnWrite(req: TxnRequest, events: Event[] | undefined): TxnResponse {
    const beginRev = this.rev;
    const path = this.compareToPath(req, beginRev);
    if (!isTxnReadOnly(req)) this.checkPuts(req, path);
    this.checkRanges(req, path, beginRev);
    const w = this.beginWrite(events ? [] : undefined);
    // A savepoint: an op failing half-way (etcd would panic here) leaves nothing behind.
    const response = this.db.transaction(() => this.applyTxnOps(w, req, path, beginRev))();
    if (events && w.events) events.push(...w.events);
    response.header = header(this.endWrite(w));
    return response;
  }

  private leaseGrant(req: LeaseGrantRequest): LeaseGrantResponse {
    // The server picks the ID and clamps the TTL before proposing, so every replica applies
    // the same values; these checks only guard against a malformed command.
    if (req.ID <= 0n) throw etcdErrors.leaseNotFound();
    if (this.leaseExists(req.ID)) throw etcdErrors.leaseExists();
    this.stmt("INSERT INTO lease (id, ttl, remaining_ttl) VALUES (?, ?, ?)").run(req.ID, req.TTL, req.TTL);
    return { header: header(this.rev), ID: req.ID, TTL: req.TTL, error: "" };
  }

  /** Deletes the lease and every key attached to it, all at one revision (etcd's lessor.Revoke). */
  private leaseRevoke(w: WriteTxn, req: LeaseRevokeRequest): void {
    if (!this.leaseExists(req.ID)) throw etcdErrors.leaseNotFound();
    for (const key of this.leaseKeys(req.ID)) {
      this.deleteRange(w, { key, rangeEnd: Buffer.alloc(0), prevKv: false });
    }
    this.stmt("DELETE FROM lease WHERE id = ?").run(req.ID);
  }

  /** Every granted lease, by ID. */
  leases(): LeaseRecord[] {
    this.assertOpen();
    const rows = this.stmt("SELECT id, ttl FROM lease ORDER BY id", true).all() as {
      id: bigint;
      ttl: bigint;
    }[];
    return rows.map((r) => ({ id: r.id, ttl: Number(r.ttl) }));
  }

  lease(id: bigint): LeaseRecord | undefined {
    this.assertOpen();
    const row = this.stmt("SELECT id, ttl FROM lease WHERE id = ?", true).get(id) as
      | { id: bigint; ttl: bigint }
      | undefined;
    return row ? { id: row.id, ttl: Number(row.ttl) } : undefined;
  }

  /** The live keys attached to a lease, in key order. */
  leaseKeys(id: bigint): Buffer[] {
    this.assertOpen();
    return (this.stmt("SELECT key FROM kv WHERE lease = ? ORDER BY key").all(id) as { key: Buffer }[]).map(
      (r) => r.key,
    );
  }

  private compact(req: CompactionRequest): CompactionResponse {
    const rev = Number(req.revision);
    if (rev <= this.compactRev) throw etcdErrors.compacted();
    if (rev > this.rev) throw etcdErrors.futureRevision();
    this.compactRev = rev;
    // Keep, per key, the newest version at or below `rev` unless it is a tombstone.
    this.stmt(
      `DELETE FROM history WHERE mod_revision <= @c AND (tombstone = 1 OR EXISTS (
         SELECT 1 FROM history n WHERE n.key = history.key AND n.mod_revision > history.mod_revision AND n.mod_revision <= @c))`,
    ).run({ c: rev });
    return { header: header(this.rev) };
  }

  // ---- cross-shard transactions (a shard's side of two-phase commit) --------------------

  /**
   * Prepares this shard's part of a cross-shard Txn: refuses it if a decision is already
   * recorded or another prepared transaction holds a conflicting lock; otherwise evaluates
   * the compares, dry-runs both branches (so the coordinator can answer the client without
   * another round) and keeps the part, with its locks, until the decision is applied.
   * Applying the same part twice answers the first vote.
   */
  private prepareTxn(part: TxnPart): ApplyResult {
    const txId = Buffer.from(part.txId);
    const existing = this.intents.get(txId);
    if (existing) return { type: "txnVote", vote: existing.vote };
    // Perhaps a late duplicate of a transaction whose record is forgotten (see TxnForget).
    const floor = this.forgottenBelow();
    if (floor > 0 && part.minRevision <= BigInt(floor))
      return { type: "txnVote", vote: refusal(TxnVote_Outcome.ABORTED) };
    if (this.txnRecord(txId)) return { type: "txnVote", vote: refusal(TxnVote_Outcome.ABORTED) };
    const txn = part.txn ?? emptyTxn;
    const locks = txnLocks(txn);
    const holder = this.intents.conflict(locks, txId);
    if (holder) return { type: "txnVote", vote: refusal(TxnVote_Outcome.CONFLICT, holder) };
    const compares = txn.compare.map((c) => {
      const kvs = this.rows(keyRange(c.key, c.rangeEnd), true, this.rev, noLimit, false).map(toKeyValue);
      // A range with no key here says nothing: other shards' keys decide (see TxnVote).
      if (kvs.length === 0 && c.rangeEnd.length > 0) return TxnVote_CompareResult.NO_KEYS;
      return evaluateCompare(c, kvs) ? TxnVote_CompareResult.HOLDS : TxnVote_CompareResult.FAILS;
    });
    const vote: TxnVote = {
      outcome: TxnVote_Outcome.PREPARED,
      compares,
      success: this.branchResult(txn, true),
      failure: this.branchResult(txn, false),
      provisionalRevision: BigInt(this.rev + 1),
      holderTxId: Buffer.alloc(0),
      holderStartTs: 0n,
    };
    const prepared: TxnPrepared = { part, preparedRevision: BigInt(this.rev), vote };
    this.stmt("INSERT INTO txn_intent (tx_id, prepared) VALUES (?, ?)").run(
      txId,
      TxnPrepared.encode(prepared).finish(),
    );
    this.intents.add(this.intentOf(txId, prepared));
    this.intentsChanged = true;
    return { type: "txnVote", vote };
  }

  /**
   * A branch's responses (or its error) as they will be when it commits. A branch of plain
   * puts (no lease, no prev_kv, no ignore_*) can neither fail nor say anything but "done",
   * and most transfers are just that, so it is not run; any other branch is dry-run.
   */
  private branchResult(txn: TxnRequest, succeeded: boolean): BranchResult {
    const ops = succeeded ? txn.success : txn.failure;
    const plain = ops.every(
      (op) =>
        op.requestPut !== undefined &&
        op.requestPut.lease === 0n &&
        !op.requestPut.prevKv &&
        !op.requestPut.ignoreValue &&
        !op.requestPut.ignoreLease,
    );
    if (!plain) return this.dryRun(txn, succeeded);
    return {
      responses: ops.map(() => ({ responsePut: { header: undefined, prevKv: undefined } })),
      errorCode: 0,
      errorMessage: "",
    };
  }

  /** One branch of a part run inside a savepoint that is then rolled back: its responses or its error. */
  private dryRun(txn: TxnRequest, succeeded: boolean): BranchResult {
    const path = this.compareToPathAs(txn, succeeded, this.rev);
    const rollback = new Error("dry run");
    let result: BranchResult | undefined;
    try {
      this.db.transaction(() => {
        this.checkPuts(txn, path);
        this.checkRanges(txn, path, this.rev);
        const r = this.applyTxnOps(this.beginWrite(undefined), txn, path, this.rev);
        result = { responses: r.responses, errorCode: 0, errorMessage: "" };
        throw rollback;
      })();
    } catch (err) {
      if (err === rollback && result) return result;
      if (err instanceof EtcdError) return { responses: [], errorCode: err.code, errorMessage: err.message };
      throw err;
    }
    throw new Error("unreachable: the dry run always rolls back");
  }

  /**
   * Applies a transaction's decision: the first decision recorded for a tx_id wins (later ones
   * are answered with it), a commit writes the prepared part's chosen branch, and either way
   * the part's locks are released.
   */
  private decideTxn(decision: TxnDecision, events: Event[] | undefined): TxnDecision {
    const txId = Buffer.from(decision.txId);
    // A prepared part means no decision yet (a decision removes it): no record to look up.
    const intent = this.intents.get(txId);
    if (!intent) {
      const recorded = this.txnRecord(txId);
      if (recorded) return recorded;
    }
    this.stmt("INSERT INTO txn_record (tx_id, decision) VALUES (?, ?)").run(
      txId,
      TxnDecisionCodec.encode(decision).finish(),
    );
    if (intent) {
      if (decision.commit) this.commitIntent(intent, Number(decision.revision), decision.succeeded, events);
      this.stmt("DELETE FROM txn_intent WHERE tx_id = ?").run(txId);
      this.intents.remove(txId);
      this.intentsChanged = true;
    }
    return decision;
  }

  /**
   * Writes a committed part at the transaction's revision, which is the same in every shard
   * (the largest provisional revision). When this shard has already passed it (other keys
   * were written since the prepare), the rows still go in at that revision: the part's locks
   * kept every key it touches unchanged since the prepare, so each key's history stays in
   * order, and `visibleRevision()` held watchers below the prepare point meanwhile.
   */
  private commitIntent(
    intent: Intent,
    revision: number,
    succeeded: boolean,
    events: Event[] | undefined,
  ): void {
    const txn = intent.part.txn ?? emptyTxn;
    const past = revision <= this.rev;
    const w: WriteTxn = { beginRev: revision - 1, changes: 0, events, subBase: past ? pastSubBase : 0 };
    this.applyTxnOps(w, txn, this.compareToPathAs(txn, succeeded, revision - 1), revision - 1);
    if (w.changes === 0) return;
    if (past) this.pastWrite = revision;
    else this.rev = revision;
  }

  private compareToPathAs(txn: TxnRequest, succeeded: boolean, rev: number): TxnPath {
    return {
      succeeded,
      nested: (succeeded ? txn.success : txn.failure).flatMap((op) =>
        op.requestTxn ? [this.compareToPath(op.requestTxn, rev)] : [],
      ),
    };
  }

  /**
   * Recovery's fence: the prepared part, or the decision, of a transaction; with neither, an
   * abort is recorded first, so that the part's prepare, should it still arrive, is refused.
   */
  private fenceTxn(txId: Buffer): ApplyResult {
    const intent = this.intents.get(txId);
    if (intent) {
      const prepared = {
        part: intent.part,
        preparedRevision: BigInt(intent.preparedRevision),
        vote: intent.vote,
      };
      return { type: "txnState", state: { prepared } };
    }
    const decided = this.decideTxn({ txId, commit: false, revision: 0n, succeeded: false }, undefined);
    return { type: "txnState", state: { decided } };
  }

  /**
   * Deletes the records of transactions decided in every shard, and refuses from now on the
   * parts at or below `belowRevision` (see TxnForget: their late duplicates among them).
   */
  private forgetTxns(forget: TxnForget): ApplyResult {
    const del = this.stmt("DELETE FROM txn_record WHERE tx_id = ?");
    for (const txId of forget.txIds) del.run(Buffer.from(txId));
    this.stmt("UPDATE txn_forgotten SET below_revision = MAX(below_revision, ?) WHERE id = 0").run(
      forget.belowRevision,
    );
    return { type: "txnForgotten" };
  }

  /** Parts whose min_revision is at or below this are refused (0: none). */
  private forgottenBelow(): number {
    return (
      this.stmt("SELECT below_revision FROM txn_forgotten WHERE id = 0").get() as { below_revision: number }
    ).below_revision;
  }

  /** How many transaction records this shard keeps (decided, not yet forgotten). */
  txnRecordCount(): number {
    return (this.stmt("SELECT count(*) AS n FROM txn_record").get() as { n: number }).n;
  }

  /** The decision this shard applied for a transaction, if any. */
  txnRecord(txId: Uint8Array): TxnDecision | undefined {
    const row = this.stmt("SELECT decision FROM txn_record WHERE tx_id = ?").get(Buffer.from(txId)) as
      | { decision: Buffer }
      | undefined;
    return row ? TxnDecisionCodec.decode(row.decision) : undefined;
  }

  /** The prepared, undecided transaction parts on this shard (for recovery). */
  preparedTxns(): readonly Intent[] {
    return this.intents.all();
  }

  /**
   * A prepared transaction that a read of [key, rangeEnd) at `atRevision` must wait for: one
   * that writes in the range and may still commit at or below that revision (any, for a
   * read at the current revision).
   */
  pendingWriter(key: Buffer, rangeEnd: Buffer, atRevision?: number): Intent | undefined {
    if (this.intents.size === 0) return undefined;
    const read = [lockRange(key, rangeEnd, "read")];
    return this.intents.conflictWhere(
      read,
      atRevision === undefined ? undefined : (i) => i.preparedRevision < atRevision,
    );
  }

  /** The prepared transaction (if any) whose locks conflict with `locks`. */
  lockHolder(locks: readonly Lock[]): Intent | undefined {
    return this.intents.conflict(locks);
  }

  /** Calls `listener` after each applied batch. */
  onApplied(listener: () => void): () => void {
    this.appliedListeners.add(listener);
    return () => this.appliedListeners.delete(listener);
  }

  /** Calls `listener` after each applied batch that prepared or finished a cross-shard transaction. */
  onIntentsChanged(listener: () => void): () => void {
    this.intentListeners.add(listener);
    return () => this.intentListeners.delete(listener);
  }

  // ---- watch support ---------------------------------------------------------------------

  /** Called after each applied batch commits, with the changes it made, in revision order. */
  onChanges(listener: (changes: readonly RevisionChanges[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Historical changes with revision in [fromRev, toRev] (for watch replay), from the MVCC
   * history; fails with the compacted error when fromRev is below the compaction (as etcd's
   * watchable store: a watch from exactly the compacted revision is served).
   */
  changesBetween(fromRev: number, toRev: number, options: ChangesOptions = {}): RevisionChanges[] {
    this.assertOpen();
    if (fromRev < this.compactRev) throw etcdErrors.compacted();
    const w = options.range ? this.where(options.range, "key") : { sql: "1", params: [] };
    const rows = this.stmt(
      `SELECT key, create_revision, mod_revision, version, value, lease, tombstone FROM history WHERE mod_revision >= ? AND mod_revision <= ? AND ${w.sql} ORDER BY mod_revision, sub`,
      true,
    ).all(fromRev, toRev, ...w.params) as (Row & { tombstone: bigint })[];
    const withPrev = options.prevKv ?? true;
    const out: { revision: number; events: Event[] }[] = [];
    for (const row of rows) {
      const revision = Number(row.mod_revision);
      let last = out[out.length - 1];
      if (!last || last.revision !== revision) {
        last = { revision, events: [] };
        out.push(last);
      }
      const prev = withPrev
        ? this.rows({ kind: "one", key: row.key }, false, revision - 1, noLimit, false)[0]
        : undefined;
      const tombstone = row.tombstone === 1n;
      last.events.push({
        type: tombstone ? Event_EventType.DELETE : Event_EventType.PUT,
        kv: tombstone
          ? {
              key: row.key,
              createRevision: 0n,
              modRevision: row.mod_revision,
              version: 0n,
              value: Buffer.alloc(0),
              lease: 0n,
            }
          : toKeyValue(row),
        prevKv: prev ? toKeyValue(prev) : undefined,
      });
    }
    return out;
  }

  // ---- sizes -----------------------------------------------------------------------------

  dbSize(): number {
    const pages = this.db.pragma("page_count", { simple: true }) as number;
    const pageSize = this.db.pragma("page_size", { simple: true }) as number;
    return pages * pageSize;
  }

  dbSizeInUse(): number {
    const free = this.db.pragma("freelist_count", { simple: true }) as number;
    const pageSize = this.db.pragma("page_size", { simple: true }) as number;
    return this.dbSize() - free * pageSize;
  }

  // ---- snapshots -------------------------------------------------------------------------

  async snapshot(): Promise<Snapshot> {
    this.assertOpen();
    const index = this.applied;
    if (this.inMemory) return bytesSnapshot(index, this.db.serialize());
    // The log is compacted up to `index` once this returns: see openDb.
    this.makeDurable();
    // VACUUM INTO copies one consistent read transaction; it runs synchronously, so no apply
    // can interleave between reading `index` and the copy.
    const file = join(
      dirname(this.path),
      `${basename(this.path)}.snapshot-${index}-${randomBytes(4).toString("hex")}`,
    );
    this.db.prepare("VACUUM INTO ?").run(file);
    this.snapshotFiles.push(file);
    // Keep the two newest images: a follower may still be reading the previous one.
    while (this.snapshotFiles.length > 2) rmSync(this.snapshotFiles.shift()!, { force: true });
    const size = statSync(file).size;
    return {
      index,
      size,
      async *chunks() {
        const handle = await openFile(file, "r");
        try {
          const chunk = 256 * 1024;
          for (let offset = 0; offset < size; offset += chunk) {
            const buf = Buffer.alloc(Math.min(chunk, size - offset));
            const { bytesRead } = await handle.read(buf, 0, buf.length, offset);
            yield buf.subarray(0, bytesRead);
          }
        } finally {
          await handle.close();
        }
      },
    };
  }

  async restore(snapshot: Snapshot): Promise<void> {
    this.assertOpen();
    if (this.inMemory) {
      const parts: Uint8Array[] = [];
      for await (const chunk of snapshot.chunks()) parts.push(chunk);
      const image = Buffer.concat(parts);
      const next = this.openDb(image);
      this.checkImage(next, snapshot.index);
      this.db.close();
      this.db = next;
      this.loadMeta();
      return;
    }
    const temp = `${this.path}.restore-${randomBytes(4).toString("hex")}`;
    const fd = openSync(temp, "w");
    try {
      for await (const chunk of snapshot.chunks()) writeSync(fd, chunk);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      const check = new Database(temp, { readonly: true });
      try {
        this.checkImage(check, snapshot.index);
      } finally {
        check.close();
      }
    } catch (err) {
      rmSync(temp, { force: true });
      throw err;
    }
    // Closing checkpoints and removes the WAL (the checkpointer's connection first, so that
    // the store's is the last); the rename is the atomic switch.
    this.checkpointer?.close();
    this.db.close();
    for (const suffix of ["-wal", "-shm"]) rmSync(`${this.path}${suffix}`, { force: true });
    renameSync(temp, this.path);
    const dirFd = openSync(dirname(this.path), "r");
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
    this.db = this.openDb(this.path);
    this.checkpointer = new WalCheckpointer(this.path);
    this.loadMeta();
  }

  /**
   * Makes every committed apply durable (applies commit with synchronous=NORMAL, see openDb):
   * a FULL checkpoint run with synchronous=FULL fsyncs the WAL, copies it into the database
   * file and fsyncs that. Should the checkpoint not finish (a reader in the way; this
   * connection is the only one), a FULL-synced commit of the meta row fsyncs the WAL, which
   * covers every earlier commit too.
   */
  private makeDurable(): void {
    this.db.pragma("synchronous = FULL");
    try {
      const [r] = this.db.pragma("wal_checkpoint(FULL)") as {
        busy: number;
        log: number;
        checkpointed: number;
      }[];
      if (r?.busy !== 0 || r.checkpointed !== r.log) {
        this.stmt("UPDATE meta SET applied_index = applied_index WHERE id = 0").run();
      }
    } finally {
      this.db.pragma(`synchronous = ${applySynchronous}`);
    }
  }

  private checkImage(db: Database.Database, index: number): void {
    const row = db.prepare("SELECT applied_index FROM meta WHERE id = 0").get() as
      | { applied_index: number }
      | undefined;
    if (!row || row.applied_index !== index) {
      throw new Error(`kv store: snapshot image is at index ${row?.applied_index ?? "?"}, expected ${index}`);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.checkpointer?.close();
    this.db.close();
    for (const file of this.snapshotFiles.splice(0)) rmSync(file, { force: true });
  }

  private assertOpen(): void {
    if (this.closed) throw new Error("kv store is closed");
  }

  /** For tests: whether the database file exists. */
  static exists(path: string): boolean {
    return existsSync(path);
  }
}
