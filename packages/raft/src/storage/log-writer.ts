import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";

/**
 * The SQLite writes of a SqliteLogStore on a worker thread, so that the event loop keeps
 * receiving acknowledgements and proposals while the disk syncs (an fsync here costs
 * 0.5–1.5 ms, a quarter of a busy node's time when it blocks the loop). The worker owns
 * its own connection to the log's file (WAL: the main thread's connection keeps reading)
 * and runs each request as one transaction, in the order posted.
 *
 * The worker's source is JavaScript kept here as text (an `eval` worker), so the same code
 * runs from `src` under the test runner and from `dist`.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.driver);
const db = new Database(workerData.path);
db.pragma("journal_mode = WAL");
db.pragma("synchronous = FULL");
const stmt = {
  insert: db.prepare("INSERT INTO raft_entries (idx, term, type, data) VALUES (?, ?, ?, ?)"),
  deleteFrom: db.prepare("DELETE FROM raft_entries WHERE idx >= ?"),
  deleteThrough: db.prepare("DELETE FROM raft_entries WHERE idx <= ?"),
  deleteAll: db.prepare("DELETE FROM raft_entries"),
  putMeta: db.prepare(
    "INSERT INTO raft_meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
  ),
};
const save = db.transaction((u) => {
  if (u.snapshot) {
    stmt.deleteAll.run();
    stmt.putMeta.run("snapshot", u.snapshot);
  }
  if (u.entries.length > 0) {
    stmt.deleteFrom.run(u.entries[0][0]);
    for (const [idx, term, type, offset, length] of u.entries)
      stmt.insert.run(idx, term, type, Buffer.from(u.data.buffer, u.data.byteOffset + offset, length));
  }
  if (u.hardState) stmt.putMeta.run("hardState", u.hardState);
});
const compact = db.transaction((index, snapshot) => {
  stmt.deleteThrough.run(index);
  stmt.putMeta.run("snapshot", snapshot);
});
parentPort.on("message", (m) => {
  try {
    if (m.op === "save") {
      // etcd's MustSync (see SqliteLogStore.save): a commit-index-only update skips its fsync.
      if (!m.mustSync) db.pragma("synchronous = NORMAL");
      try {
        save(m.update);
      } finally {
        if (!m.mustSync) db.pragma("synchronous = FULL");
      }
    } else if (m.op === "compact") {
      compact(m.index, m.snapshot);
    } else if (m.op === "close") {
      db.close();
      Atomics.store(workerData.closed, 0, 1);
      Atomics.notify(workerData.closed, 0);
      parentPort.close();
      return;
    }
    parentPort.postMessage({ seq: m.seq, ok: true });
  } catch (err) {
    parentPort.postMessage({ seq: m.seq, ok: false, error: String((err && err.stack) || err) });
  }
});
`;

/**
 * One save as posted to the worker: JSON metadata, and [idx, term, type, offset, length]
 * rows whose data lie at `offset` in `data`. The entries' data are packed into one buffer,
 * which is transferred, not copied: posting an entry's own bytes would clone the whole
 * buffer each is a view of (a gRPC message, Node's 8 KiB pool), which cost more than the
 * write itself.
 */
export interface WriterUpdate {
  readonly snapshot?: string | undefined;
  readonly hardState?: string | undefined;
  readonly entries: readonly (readonly [number, number, number, number, number])[];
  readonly data: Uint8Array;
}

type Request =
  | { readonly op: "save"; readonly update: WriterUpdate; readonly mustSync: boolean }
  | { readonly op: "compact"; readonly index: number; readonly snapshot: string }
  | { readonly op: "close" }
  | { readonly op: "flush" };

export class LogWriter {
  private readonly worker: Worker;
  private seq = 0;
  private readonly waiting = new Map<number, { resolve: () => void; reject: (err: Error) => void }>();
  /** The first failure: every later request fails with it (the log on disk stopped there). */
  private failure: Error | undefined;

  /** Set to 1 by the worker once its connection is closed (see `close`). */
  private readonly closedFlag = new Int32Array(new SharedArrayBuffer(4));
  private closing = false;

  constructor(path: string) {
    const driver = createRequire(import.meta.url).resolve("better-sqlite3");
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { path, driver, closed: this.closedFlag },
    });
    this.worker.on("message", (m: { seq: number; ok: boolean; error?: string }) => {
      const w = this.waiting.get(m.seq);
      this.waiting.delete(m.seq);
      if (this.waiting.size === 0) this.worker.unref();
      if (m.ok) w?.resolve();
      else this.fail(new Error(`log writer: ${m.error}`));
    });
    this.worker.on("error", (err) => this.fail(err));
    this.worker.on("exit", () => this.fail(new Error("log writer thread exited")));
    // Only an idle writer lets the process exit (see `post`).
    this.worker.unref();
  }

  /**
   * Resolves once the request's transaction is committed (and, for a save that must, synced).
   * A save's `data` buffer is transferred to the worker: the caller must not use it again.
   */
  post(request: Request): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    const seq = ++this.seq;
    return new Promise<void>((resolve, reject) => {
      if (this.waiting.size === 0) this.worker.ref(); // a write in flight keeps the process up
      this.waiting.set(seq, { resolve, reject });
      const transfer = request.op === "save" ? [request.update.data.buffer as ArrayBuffer] : [];
      this.worker.postMessage({ ...request, seq }, transfer);
    });
  }

  /** Resolves once every request posted before it is done. */
  flushed(): Promise<void> {
    return this.post({ op: "flush" });
  }

  /**
   * Finishes the requests already posted, closes the worker's connection and returns once it
   * is closed (blocking, at most `waitMs`), so the file can be opened again at once.
   */
  close(waitMs = 10_000): void {
    if (this.closing) return;
    this.closing = true;
    if (this.failure) {
      void this.worker.terminate();
      return;
    }
    this.worker.postMessage({ op: "close", seq: ++this.seq });
    Atomics.wait(this.closedFlag, 0, 0, waitMs);
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const w of this.waiting.values()) w.reject(this.failure);
    this.waiting.clear();
  }
}
