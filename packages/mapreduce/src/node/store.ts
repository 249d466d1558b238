import Database from "better-sqlite3";
import type {
  MapSplit,
  Meta,
  TableChanges,
  TableSnapshot,
  TaskRecord,
  WorkerRecord,
} from "../core/task-table.js";

/** What identifies a job; a restarted coordinator resumes only the same job. */
export interface JobRecord {
  job: string;
  options: Record<string, string>;
  inputs: string[];
  reduces: number;
  outDir: string;
  splits: MapSplit[];
}

/**
 * The coordinator's task table on disk: SQLite in WAL mode with synchronous=FULL, one
 * transaction per batch of changed rows, written before the coordinator answers the worker
 * whose request caused them (DESIGN rule 4).
 */
export class TaskStore {
  private readonly db: Database.Database;
  private readonly putTask: Database.Statement;
  private readonly putWorker: Database.Statement;
  private readonly putMeta: Database.Statement;

  constructor(readonly path: string) {
    this.db = new Database(path);
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = FULL");
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS tasks (kind TEXT NOT NULL, idx INTEGER NOT NULL, row TEXT NOT NULL,
        PRIMARY KEY (kind, idx));
      CREATE TABLE IF NOT EXISTS workers (id TEXT PRIMARY KEY, row TEXT NOT NULL);
    `);
    this.putTask = this.db.prepare("INSERT OR REPLACE INTO tasks (kind, idx, row) VALUES (?, ?, ?)");
    this.putWorker = this.db.prepare("INSERT OR REPLACE INTO workers (id, row) VALUES (?, ?)");
    this.putMeta = this.db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)");
  }

  loadJob(): JobRecord | null {
    const row = this.db.prepare("SELECT value FROM meta WHERE key = 'job'").get() as
      | { value: string }
      | undefined;
    return row ? (JSON.parse(row.value) as JobRecord) : null;
  }

  loadSnapshot(): TableSnapshot | null {
    const meta = this.db.prepare("SELECT value FROM meta WHERE key = 'table'").get() as
      | { value: string }
      | undefined;
    if (!meta) return null;
    const tasks = (this.db.prepare("SELECT row FROM tasks").all() as { row: string }[]).map(
      (r) => JSON.parse(r.row) as TaskRecord,
    );
    const workers = (this.db.prepare("SELECT row FROM workers").all() as { row: string }[]).map(
      (r) => JSON.parse(r.row) as WorkerRecord,
    );
    return { tasks, workers, meta: JSON.parse(meta.value) as Meta };
  }

  /** Writes the job and the initial table in one transaction. */
  create(job: JobRecord, changes: TableChanges): void {
    this.db.transaction(() => {
      this.db.exec("DELETE FROM tasks; DELETE FROM workers; DELETE FROM meta;");
      this.putMeta.run("job", JSON.stringify(job));
      this.writeChanges(changes);
    })();
  }

  save(changes: TableChanges): void {
    if (changes.tasks.length === 0 && changes.workers.length === 0 && changes.meta === null) return;
    this.db.transaction(() => this.writeChanges(changes))();
  }

  private writeChanges(changes: TableChanges): void {
    for (const t of changes.tasks) this.putTask.run(t.kind, t.index, JSON.stringify(t));
    for (const w of changes.workers) {
      const { lastSeen: _, ...row } = w;
      this.putWorker.run(w.id, JSON.stringify({ ...row, lastSeen: 0 }));
    }
    if (changes.meta) this.putMeta.run("table", JSON.stringify(changes.meta));
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
