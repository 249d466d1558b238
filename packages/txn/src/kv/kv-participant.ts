import type { Clock, Timer } from "@quorum/transport";
import { LockTable } from "../core/lock-table.js";
import type { InDoubt } from "../core/participant.js";
import type { Decision, TxId, Vote } from "../core/types.js";
import { isOlder } from "../core/types.js";
import { TxnError } from "../errors.js";
import type { Participant, ParticipantTxStatus, PrepareRequest } from "../participant.js";
import { decodeKvOps, encodeKvReads, type KvOp, type KvReads } from "./ops.js";
import type { KvStorage, PreparedRecord } from "./storage.js";

export interface KvParticipantOptions {
  /** For bounded lock waits. */
  readonly clock: Clock;
  /** An older transaction waits at most this long for younger lock holders, then votes no. */
  readonly lockWaitMs?: number;
  /** Called after a prepared transaction's outcome is durable (for tests and metrics). */
  readonly onOutcome?: (txId: TxId, decision: Decision) => void;
}

interface Waiter {
  readonly request: PrepareRequest;
  readonly ops: KvOp[];
  readonly keys: string[];
  readonly resolve: (v: Vote) => void;
  /** Repeated prepares of the same transaction while it waits get the same vote. */
  readonly also: ((v: Vote) => void)[];
  timer: Timer | undefined;
}

const no = (reason: string, retryable: boolean): Vote => ({ yes: false, reason, retryable });

/**
 * A key-value store that takes part in two-phase commit, on any `KvStorage` (in memory or
 * SQLite). Exclusive per-key locks are taken at prepare with the wait-die rule and kept,
 * through restarts, until the outcome is known.
 */
export class KvParticipant implements Participant {
  private readonly data: Map<string, string>;
  private readonly prepared = new Map<TxId, PreparedRecord>();
  private readonly finished: Map<TxId, Decision>;
  private readonly locks = new LockTable();
  private readonly waiters: Waiter[] = [];
  private readonly lockWaitMs: number;

  constructor(
    private readonly storage: KvStorage,
    private readonly options: KvParticipantOptions,
  ) {
    this.lockWaitMs = options.lockWaitMs ?? 100;
    const loaded = storage.load();
    this.data = loaded.data;
    this.finished = loaded.finished;
    for (const rec of loaded.prepared) {
      this.prepared.set(rec.txId, rec);
      // Every prepared transaction was granted its locks together, so they cannot conflict.
      this.locks.acquire({ txId: rec.txId, startTs: rec.startTs, keys: rec.keys });
    }
  }

  async prepare(request: PrepareRequest): Promise<Vote> {
    const vote = await this.tryPrepare(request);
    // A no is final: the coordinator aborts on it, so a retried prepare of the same
    // transaction must not turn it into a yes (remembered in memory; see README gaps).
    if (!vote.yes && !this.prepared.has(request.txId)) this.finished.set(request.txId, "abort");
    return vote;
  }

  private async tryPrepare(request: PrepareRequest): Promise<Vote> {
    const { txId } = request;
    const done = this.finished.get(txId);
    if (done === "commit") return { yes: true, result: new Uint8Array(0) };
    if (done === "abort") return no(`transaction ${txId} was already aborted here`, false);
    const rec = this.prepared.get(txId);
    if (rec !== undefined) return { yes: true, result: rec.result };
    const waiting = this.waiters.find((w) => w.request.txId === txId);
    if (waiting !== undefined) return new Promise((resolve) => waiting.also.push(resolve));
    let ops: KvOp[];
    try {
      ops = decodeKvOps(request.ops);
    } catch (e) {
      return no(e instanceof Error ? e.message : String(e), false);
    }
    const keys = [...new Set(ops.map((o) => o.key))].sort();
    const answer = this.locks.acquire({ txId, startTs: request.startTs, keys });
    if (answer.kind === "granted") return this.evaluate(request, ops);
    if (answer.kind === "die") return this.dieVote(txId, answer.key, answer.holder);
    return new Promise<Vote>((settle) => {
      const also: ((v: Vote) => void)[] = [];
      const resolve = (v: Vote) => {
        settle(v);
        for (const a of also) a(v);
      };
      const w: Waiter = { request, ops, keys, resolve, also, timer: undefined };
      w.timer = this.options.clock.schedule(this.lockWaitMs, () => {
        const i = this.waiters.indexOf(w);
        if (i < 0) return;
        this.waiters.splice(i, 1);
        resolve(no(`CONFLICT: waited ${this.lockWaitMs}ms for locks on ${keys.join(", ")}; retry`, true));
      });
      this.waiters.push(w);
    });
  }

  async commit(txId: TxId): Promise<void> {
    this.finish(txId, "commit");
  }

  async abort(txId: TxId): Promise<void> {
    this.finish(txId, "abort");
  }

  async status(txId: TxId): Promise<ParticipantTxStatus> {
    const done = this.finished.get(txId);
    if (done !== undefined) return done === "commit" ? "committed" : "aborted";
    return this.prepared.has(txId) ? "prepared" : "unknown";
  }

  async inDoubt(): Promise<InDoubt[]> {
    return [...this.prepared.values()].map((r) => ({
      txId: r.txId,
      coordinator: r.coordinator,
      result: r.result,
    }));
  }

  /** The committed value of `key` (prepared writes are invisible until commit). */
  get(key: string): string | undefined {
    return this.data.get(key);
  }

  /** Committed data, for tests and examples. */
  entries(): [string, string][] {
    return [...this.data.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }

  /** How many keys are locked and how many transactions are prepared here. */
  lockStats(): { lockedKeys: number; prepared: number; waiting: number } {
    return { lockedKeys: this.locks.size(), prepared: this.prepared.size, waiting: this.waiters.length };
  }

  /** The recorded outcome of a transaction this participant finished. */
  outcomeOf(txId: TxId): Decision | undefined {
    return this.finished.get(txId);
  }

  close(): void {
    for (const w of this.waiters.splice(0)) {
      w.timer?.cancel();
      w.resolve(no("participant closed", true));
    }
    this.storage.close();
  }

  private dieVote(txId: TxId, key: string, holder: TxId): Vote {
    return no(
      `CONFLICT: key "${key}" is locked by older transaction ${holder}; ${txId} dies (wait-die); retry`,
      true,
    );
  }

  /** Runs the ops under the locks just granted and writes the prepare record. */
  private evaluate(request: PrepareRequest, ops: KvOp[]): Vote {
    const { txId } = request;
    const view = new Map<string, string | null>();
    const read = (k: string) => (view.has(k) ? (view.get(k) ?? null) : (this.data.get(k) ?? null));
    const reads: KvReads = {};
    for (const op of ops) {
      switch (op.op) {
        case "get":
          reads[op.key] = read(op.key);
          break;
        case "put":
          view.set(op.key, op.value);
          break;
        case "delete":
          view.set(op.key, null);
          break;
        case "add": {
          const cur = read(op.key);
          const n = cur === null ? 0 : Number(cur);
          if (!Number.isSafeInteger(n)) {
            this.releaseAndWake(txId);
            return no(`FAILED_PRECONDITION: "${op.key}" does not hold an integer`, false);
          }
          const next = n + op.delta;
          if (op.min !== undefined && next < op.min) {
            this.releaseAndWake(txId);
            return no(`FAILED_PRECONDITION: "${op.key}" would be ${next}, below ${op.min}`, false);
          }
          view.set(op.key, String(next));
          break;
        }
      }
    }
    const rec: PreparedRecord = {
      txId,
      coordinator: request.coordinator,
      startTs: request.startTs,
      keys: this.locks.lockedBy(txId),
      writes: [...view.entries()],
      result: encodeKvReads(reads),
    };
    try {
      this.storage.savePrepare(rec);
    } catch (e) {
      this.releaseAndWake(txId);
      throw new TxnError("UNAVAILABLE", `cannot write prepare record: ${e instanceof Error ? e.message : e}`);
    }
    this.prepared.set(txId, rec);
    return { yes: true, result: rec.result };
  }

  private finish(txId: TxId, decision: Decision): void {
    const done = this.finished.get(txId);
    // Already finished: a repeat is a no-op, and so is the presumed-abort answer to a stale
    // duplicate prepare of a committed transaction: the first outcome stands.
    if (done !== undefined) return;
    const rec = this.prepared.get(txId);
    if (rec === undefined) {
      // Never prepared here (the prepare was lost or voted no). Remember an abort so a late
      // prepare of the same transaction votes no; a commit cannot reach an unprepared one.
      if (decision === "abort") this.finished.set(txId, "abort");
      return;
    }
    this.storage.saveOutcome(txId, decision, decision === "commit" ? rec.writes : []);
    if (decision === "commit") {
      for (const [k, v] of rec.writes) {
        if (v === null) this.data.delete(k);
        else this.data.set(k, v);
      }
    }
    this.prepared.delete(txId);
    this.finished.set(txId, decision);
    this.options.onOutcome?.(txId, decision);
    this.releaseAndWake(txId);
  }

  /** Releases `txId`'s locks and lets waiters (oldest first) try again. */
  private releaseAndWake(txId: TxId): void {
    if (this.locks.release(txId).length === 0) return;
    this.waiters.sort((a, b) => (isOlder(a.request, b.request) ? -1 : 1));
    for (const w of [...this.waiters]) {
      if (!this.waiters.includes(w)) continue; // settled by a nested wake-up
      const answer = this.locks.acquire({ txId: w.request.txId, startTs: w.request.startTs, keys: w.keys });
      if (answer.kind === "wait") continue;
      this.waiters.splice(this.waiters.indexOf(w), 1);
      w.timer?.cancel();
      if (answer.kind === "die") w.resolve(this.dieVote(w.request.txId, answer.key, answer.holder));
      else {
        try {
          w.resolve(this.evaluate(w.request, w.ops));
        } catch (e) {
          w.resolve(no(e instanceof Error ? e.message : String(e), true));
        }
      }
    }
  }
}
