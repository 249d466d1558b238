import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";

/**
 * Checkpoints a store's WAL from a worker thread, so that the event loop never waits for it.
 *
 * SQLite checkpoints automatically in the connection that commits once the WAL passes 1,000
 * pages: it copies the WAL into the database file and fsyncs both, on the main thread, about
 * every 150 puts. In `pnpm bench:kv` (put-64) that was a tenth of a follower's event loop, and
 * turning it off gave 11–19% more puts/s. So the store's own connection runs with
 * `wal_autocheckpoint = 0` and this worker, on a second connection to the same file, runs a
 * PASSIVE checkpoint every `intervalMs`: it copies what the WAL holds without taking the
 * writer's lock, so applies go on meanwhile. SQLite starts the WAL over at the first commit
 * after a checkpoint that caught up; should commits keep it from ever catching up, a RESTART
 * checkpoint (which holds the writer's lock while it copies) bounds the WAL at `maxWalPages`.
 *
 * Durability is unchanged: applies commit with synchronous=NORMAL either way, and a checkpoint
 * fsyncs the WAL before it copies and the database after (see KvStore.openDb).
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.driver);
function closed() {
  Atomics.store(workerData.closed, 0, 1);
  Atomics.notify(workerData.closed, 0);
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
    if (r && r.log > workerData.maxWalPages) db.pragma("wal_checkpoint(RESTART)");
  } catch {
    // Busy (a checkpoint of the store's own, at a snapshot) or an I/O error: the next tick
    // tries again, and the store's own checkpoint at its next snapshot still runs.
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
  /** The WAL size (pages) past which a checkpoint blocks writers until it has caught up. Default 16,384 (64 MiB). */
  readonly maxWalPages?: number;
}

export class WalCheckpointer {
  private readonly worker: Worker;
  /** Set to 1 by the worker once its connection is closed (see `close`). */
  private readonly closedFlag = new Int32Array(new SharedArrayBuffer(4));
  private closed = false;

  constructor(path: string, options: CheckpointerOptions = {}) {
    const driver = createRequire(import.meta.url).resolve("better-sqlite3");
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: {
        path,
        driver,
        closed: this.closedFlag,
        intervalMs: options.intervalMs ?? 100,
        maxWalPages: options.maxWalPages ?? 16_384,
      },
    });
    // A failed worker only means checkpoints stop: the store's snapshot checkpoints still run.
    this.worker.on("error", () => {});
    this.worker.unref();
  }

  /**
   * Stops checkpointing and closes the worker's connection, blocking (at most `waitMs`) until
   * it is closed: the store may then remove or replace the file's WAL.
   */
  close(waitMs = 10_000): void {
    if (this.closed) return;
    this.closed = true;
    this.worker.postMessage("close");
    Atomics.wait(this.closedFlag, 0, 0, waitMs);
  }
}
