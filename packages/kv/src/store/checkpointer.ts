import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";
import type Database from "better-sqlite3";

/**
 * Checkpoints a store's WAL from a worker thread, so that the event loop never waits for it.
 *
 * SQLite checkpoints automatically in the connection that commits once the WAL passes 1,000
 * pages: it copies the WAL into the database file and fsyncs both, on the main thread, about
 * every 150 puts. In `pnpm bench:kv` (put-64) that was a tenth of a follower's event loop, and
 * turning it off gave 11–19% more puts/s. So the store's own connection runs with
 * `wal_autocheckpoint = 0` and this worker, on a second connection to the same file, runs a
 * PASSIVE checkpoint every `intervalMs`: it copies what the WAL holds without taking the
 * writer's lock, so applies go on meanwhile, and SQLite starts the WAL over at the first
 * commit after a checkpoint that caught up.
 *
 * A writer that never pauses (a replay of many entries in one turn) keeps the worker from ever
 * catching up; then `checkpointIfBehind`, called by the store after its commits, checkpoints
 * on the store's own connection once the WAL passes `maxWalPages`, as SQLite's own
 * auto-checkpoint would. (A blocking checkpoint on the worker's side could deadlock: it waits
 * for the store's read lock to go while the store waits for the writer lock it holds.)
 *
 * Durability is unchanged: applies commit with synchronous=NORMAL either way, and a checkpoint
 * fsyncs the WAL before it copies and the database after (see KvStore.openDb).
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.driver);
function closed() {
  Atomics.store(workerData.shared, 0, 1);
  Atomics.notify(workerData.shared, 0);
}
let db;
try {
  db = new Database(workerData.path);
  db.pragma("synchronous = NORMAL");
} catch (err) {
  closed(); // nothing to close: \`close\` must not wait for it
  throw err;
}
const timer = setInterval(() => {
  try {
    const [r] = db.pragma("wal_checkpoint(PASSIVE)");
    if (r) Atomics.store(workerData.shared, 1, r.log);
  } catch {
    // Busy (a checkpoint of the store's own) or an I/O error: the next tick tries again.
  }
}, workerData.intervalMs);
parentPort.on("message", () => {
  clearInterval(timer);
  db.close();
  closed();
  parentPort.close();
});
`;

export interface CheckpointerOptions {
  /** How often to checkpoint. Default 100 ms. */
  readonly intervalMs?: number;
  /** The WAL size (pages) past which the store checkpoints itself (`checkpointIfBehind`). Default 16,384 (64 MiB). */
  readonly maxWalPages?: number;
}

export class WalCheckpointer {
  private readonly worker: Worker;
  /**
   * [0]: set to 1 by the worker once its connection is closed (see `close`); [1]: the WAL's
   * size in pages at the worker's last checkpoint.
   */
  private readonly shared = new Int32Array(new SharedArrayBuffer(8));
  private readonly maxWalPages: number;
  private closed = false;

  constructor(path: string, options: CheckpointerOptions = {}) {
    const driver = createRequire(import.meta.url).resolve("better-sqlite3");
    this.maxWalPages = options.maxWalPages ?? 16_384;
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: {
        path,
        driver,
        shared: this.shared,
        intervalMs: options.intervalMs ?? 100,
      },
    });
    // A failed worker only means checkpoints stop: the store's snapshot checkpoints still run.
    this.worker.on("error", () => {});
    this.worker.unref();
  }

  /**
   * Checkpoints on `db` (the store's connection, between transactions: it holds no lock that
   * the worker could wait for) if the worker found the WAL past `maxWalPages`.
   */
  checkpointIfBehind(db: Database.Database): void {
    if (Atomics.load(this.shared, 1) <= this.maxWalPages) return;
    try {
      // RESTART waits for a checkpoint of the worker's to finish, then has the next commit
      // start the WAL over (PASSIVE could lose that race to the worker's next checkpoint).
      const [r] = db.pragma("wal_checkpoint(RESTART)") as { busy: number }[];
      if (r?.busy === 0) Atomics.store(this.shared, 1, 0);
    } catch {
      // An I/O error: the next commit tries again.
    }
  }

  /**
   * Stops checkpointing and closes the worker's connection, blocking (at most `waitMs`) until
   * it is closed: the store may then remove or replace the file's WAL. Returns whether the
   * worker said so (false: it did not answer within `waitMs`).
   */
  close(waitMs = 10_000): boolean {
    if (!this.closed) {
      this.closed = true;
      this.worker.postMessage("close");
    }
    return Atomics.wait(this.shared, 0, 0, waitMs) !== "timed-out";
  }
}
