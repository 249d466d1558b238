/**
 * The coordinator's task table (Dean and Ghemawat, 3.2 "Master Data Structures"): for each
 * map and reduce task its state (idle, in-progress, completed) and the worker running it, and
 * for each completed map task the worker whose disk holds its output.
 *
 * This is a pure core: time comes in as `now` (milliseconds on any monotonic clock), nothing
 * here reads a clock, sets a timer, touches the disk or the network, or awaits. Decisions come
 * out as return values; changed rows collect until the host takes them with `takeChanges()`
 * and persists them before it answers the worker (persist before send).
 */

export type TaskKind = "map" | "reduce";
export type TaskState = "idle" | "in-progress" | "completed";
export type Phase = "map" | "reduce" | "done" | "failed";

/** One map task's input: a byte range of a file that starts and ends at line boundaries. */
export interface MapSplit {
  /** Absolute path the worker reads. */
  path: string;
  /** The name passed to the job's map function (the file as the user named it). */
  fileName: string;
  offset: number;
  length: number;
}

export interface Attempt {
  id: number;
  workerId: string;
  startedAt: number;
  /** Past the task timeout: the task was handed out again, but this attempt may still win. */
  expired: boolean;
}

export interface TaskRecord {
  kind: TaskKind;
  index: number;
  state: TaskState;
  /** Attempts that may still report; emptied when the task completes. */
  attempts: Attempt[];
  /** Attempts ever started, including backups and re-runs. */
  runs: number;
  /** Attempts whose job code threw. */
  failures: number;
  /** Workers on which the job code threw, so a retry goes elsewhere when it can. */
  failedOn: string[];
  lastError: string;
  /** The worker whose attempt won (for a map task: whose disk holds the output). */
  completedBy: string;
  completedAddress: string;
}

export interface WorkerRecord {
  id: string;
  /** host:port of the worker's shuffle service. */
  address: string;
  alive: boolean;
  /** Not persisted: a restarted coordinator treats every known worker as just seen. */
  lastSeen: number;
}

export interface TaskTableConfig {
  splits: readonly MapSplit[];
  reduces: number;
  /** An attempt not finished after this long is handed to another worker (paper 3.3). */
  taskTimeoutMs: number;
  /** A worker not heard from for this long is presumed dead. */
  workerTimeoutMs: number;
  /**
   * When a phase has no idle task left, an idle worker gets a backup copy of an in-progress
   * task that has run at least this long (paper 3.6). Infinity disables backups.
   */
  backupAfterMs: number;
  /** A task whose job code throws this many times fails the job. */
  maxTaskFailures: number;
}

export interface MapLocation {
  mapIndex: number;
  workerId: string;
  address: string;
}

export type Assignment =
  | { type: "map"; index: number; attemptId: number; split: MapSplit; backup: boolean }
  | { type: "reduce"; index: number; attemptId: number; locations: MapLocation[]; backup: boolean }
  | { type: "wait" }
  | { type: "exit"; phase: "done" | "failed" };

export interface JobFailure {
  kind: TaskKind;
  index: number;
  /** What the task read: a file range for a map task, a partition for a reduce task. */
  input: string;
  error: string;
  attempts: number;
}

export type ReportResult =
  | { type: "accepted" }
  | { type: "duplicate"; reason: string }
  | { type: "rejected"; reason: string };

export interface TableEvent {
  type:
    | "assigned"
    | "completed"
    | "duplicate"
    | "task-timeout"
    | "worker-dead"
    | "map-rerun"
    | "job-error"
    | "fetch-failed"
    | "job-failed"
    | "job-done";
  kind?: TaskKind;
  index?: number;
  workerId?: string;
  attemptId?: number;
  detail?: string;
}

export interface Meta {
  nextAttemptId: number;
  failure: JobFailure | null;
}

export interface TableChanges {
  tasks: TaskRecord[];
  workers: WorkerRecord[];
  meta: Meta | null;
}

export interface TableSnapshot {
  tasks: TaskRecord[];
  workers: WorkerRecord[];
  meta: Meta;
}

export interface PhaseProgress {
  total: number;
  idle: number;
  inProgress: number;
  completed: number;
}

function newTask(kind: TaskKind, index: number): TaskRecord {
  return {
    kind,
    index,
    state: "idle",
    attempts: [],
    runs: 0,
    failures: 0,
    failedOn: [],
    lastError: "",
    completedBy: "",
    completedAddress: "",
  };
}

function key(kind: TaskKind, index: number): string {
  return `${kind}:${index}`;
}

export function validateConfig(config: TaskTableConfig): void {
  if (!Number.isInteger(config.reduces) || config.reduces < 1) {
    throw new RangeError(`reduces must be an integer >= 1, got ${config.reduces}`);
  }
  if (config.splits.length < 1) throw new RangeError("a job needs at least one input split");
  for (const name of ["taskTimeoutMs", "workerTimeoutMs", "backupAfterMs"] as const) {
    if (!(config[name] > 0)) throw new RangeError(`${name} must be > 0, got ${config[name]}`);
  }
  if (!Number.isInteger(config.maxTaskFailures) || config.maxTaskFailures < 1) {
    throw new RangeError(`maxTaskFailures must be an integer >= 1, got ${config.maxTaskFailures}`);
  }
}

export class TaskTable {
  private readonly maps: TaskRecord[];
  private readonly reduces: TaskRecord[];
  private readonly workers = new Map<string, WorkerRecord>();
  private meta: Meta = { nextAttemptId: 1, failure: null };
  private readonly dirtyTasks = new Set<TaskRecord>();
  private readonly dirtyWorkers = new Set<WorkerRecord>();
  private metaDirty = false;
  private readonly events: TableEvent[] = [];

  constructor(
    readonly config: TaskTableConfig,
    snapshot?: TableSnapshot,
    now = 0,
  ) {
    validateConfig(config);
    this.maps = config.splits.map((_, i) => newTask("map", i));
    this.reduces = Array.from({ length: config.reduces }, (_, i) => newTask("reduce", i));
    if (snapshot === undefined) {
      this.dirtyAll();
      return;
    }
    for (const saved of snapshot.tasks) {
      const list = saved.kind === "map" ? this.maps : this.reduces;
      const task = list[saved.index];
      if (task === undefined)
        throw new RangeError(`snapshot has unknown task ${key(saved.kind, saved.index)}`);
      // Attempt start times are of the previous coordinator's clock: restart them now.
      Object.assign(task, saved, {
        attempts: saved.attempts.map((a) => ({ ...a, startedAt: now })),
        failedOn: [...saved.failedOn],
      });
    }
    for (const w of snapshot.workers) this.workers.set(w.id, { ...w, lastSeen: now });
    this.meta = { ...snapshot.meta };
  }

  // --- queries ---

  phase(): Phase {
    if (this.meta.failure !== null) return "failed";
    if (this.maps.some((t) => t.state !== "completed")) return "map";
    if (this.reduces.some((t) => t.state !== "completed")) return "reduce";
    return "done";
  }

  failure(): JobFailure | null {
    return this.meta.failure;
  }

  progress(): { map: PhaseProgress; reduce: PhaseProgress } {
    const count = (tasks: TaskRecord[]): PhaseProgress => ({
      total: tasks.length,
      idle: tasks.filter((t) => t.state === "idle").length,
      inProgress: tasks.filter((t) => t.state === "in-progress").length,
      completed: tasks.filter((t) => t.state === "completed").length,
    });
    return { map: count(this.maps), reduce: count(this.reduces) };
  }

  task(kind: TaskKind, index: number): Readonly<TaskRecord> | undefined {
    return (kind === "map" ? this.maps : this.reduces)[index];
  }

  tasks(): readonly Readonly<TaskRecord>[] {
    return [...this.maps, ...this.reduces];
  }

  worker(id: string): Readonly<WorkerRecord> | undefined {
    return this.workers.get(id);
  }

  liveWorkers(): string[] {
    return [...this.workers.values()].filter((w) => w.alive).map((w) => w.id);
  }

  snapshot(): TableSnapshot {
    return {
      tasks: this.tasks().map((t) => structuredClone(t) as TaskRecord),
      workers: [...this.workers.values()].map((w) => ({ ...w })),
      meta: structuredClone(this.meta),
    };
  }

  /** Rows changed since the last call; the host persists them before it replies. */
  takeChanges(): TableChanges {
    const changes: TableChanges = {
      tasks: [...this.dirtyTasks].map((t) => structuredClone(t) as TaskRecord),
      workers: [...this.dirtyWorkers].map((w) => ({ ...w })),
      meta: this.metaDirty ? structuredClone(this.meta) : null,
    };
    this.dirtyTasks.clear();
    this.dirtyWorkers.clear();
    this.metaDirty = false;
    return changes;
  }

  /** Events since the last call, for logs and progress. */
  takeEvents(): TableEvent[] {
    return this.events.splice(0, this.events.length);
  }

  // --- inputs ---

  /** A worker asks for work (paper 3.1 step 3: "the master picks idle workers"). */
  requestTask(workerId: string, address: string, now: number): Assignment {
    this.touchWorker(workerId, address, now);
    this.tick(now);
    const phase = this.phase();
    if (phase === "done" || phase === "failed") return { type: "exit", phase };
    const list = phase === "map" ? this.maps : this.reduces;

    const idle = list.filter((t) => t.state === "idle");
    const task =
      idle.find((t) => !this.shouldAvoid(t, workerId)) ?? this.backupCandidate(list, workerId, now);
    if (task === undefined) return { type: "wait" };
    return this.assign(task, workerId, now, task.state === "in-progress");
  }

  /** A worker's attempt finished (`error` set when the job code threw). */
  reportDone(workerId: string, kind: TaskKind, index: number, attemptId: number, now: number): ReportResult {
    const task = this.lookup(kind, index);
    if (task === undefined) return { type: "rejected", reason: `no ${kind} task ${index}` };
    const worker = this.workers.get(workerId);
    if (worker?.alive) worker.lastSeen = now;
    if (task.state === "completed") {
      this.events.push({ type: "duplicate", kind, index, workerId, attemptId });
      return { type: "duplicate", reason: "task already completed" };
    }
    const attempt = task.attempts.find((a) => a.id === attemptId && a.workerId === workerId);
    if (attempt === undefined) {
      // The attempt was dropped (its worker was declared dead): its output may be unreachable.
      this.events.push({ type: "duplicate", kind, index, workerId, attemptId, detail: "unknown attempt" });
      return { type: "duplicate", reason: "unknown or cancelled attempt" };
    }
    if (worker === undefined || !worker.alive) {
      return { type: "duplicate", reason: "worker was declared dead" };
    }
    task.state = "completed";
    task.attempts = [];
    task.completedBy = workerId;
    task.completedAddress = worker.address;
    this.dirtyTasks.add(task);
    this.events.push({ type: "completed", kind, index, workerId, attemptId });
    if (this.phase() === "done") this.events.push({ type: "job-done" });
    return { type: "accepted" };
  }

  /** The job code threw in an attempt: retry elsewhere, or fail the job at the limit. */
  reportJobError(
    workerId: string,
    kind: TaskKind,
    index: number,
    attemptId: number,
    error: string,
    now: number,
  ): ReportResult {
    const task = this.lookup(kind, index);
    if (task === undefined) return { type: "rejected", reason: `no ${kind} task ${index}` };
    const worker = this.workers.get(workerId);
    if (worker?.alive) worker.lastSeen = now;
    if (task.state === "completed") return { type: "duplicate", reason: "task already completed" };
    if (!this.dropAttempt(task, attemptId, workerId)) {
      return { type: "duplicate", reason: "unknown or cancelled attempt" };
    }
    task.failures += 1;
    task.lastError = error;
    if (!task.failedOn.includes(workerId)) task.failedOn.push(workerId);
    this.dirtyTasks.add(task);
    this.events.push({ type: "job-error", kind, index, workerId, attemptId, detail: error });
    if (task.failures >= this.config.maxTaskFailures && this.meta.failure === null) {
      this.meta.failure = {
        kind,
        index,
        input: this.describeInput(task),
        error,
        attempts: task.failures,
      };
      this.metaDirty = true;
      this.events.push({ type: "job-failed", kind, index, detail: error });
    }
    return { type: "accepted" };
  }

  /**
   * A reduce attempt could not fetch map task `mapIndex`'s output from `mapWorkerId`. The map
   * worker is presumed dead, so its completed map tasks run again (paper 3.3); the reduce task
   * goes back to idle without counting as a failure of the job code.
   */
  reportFetchFailed(
    workerId: string,
    reduceIndex: number,
    attemptId: number,
    mapIndex: number,
    mapWorkerId: string,
    now: number,
  ): ReportResult {
    const task = this.lookup("reduce", reduceIndex);
    if (task === undefined) return { type: "rejected", reason: `no reduce task ${reduceIndex}` };
    const worker = this.workers.get(workerId);
    if (worker?.alive) worker.lastSeen = now;
    this.events.push({
      type: "fetch-failed",
      kind: "reduce",
      index: reduceIndex,
      workerId,
      attemptId,
      detail: `map ${mapIndex} on ${mapWorkerId}`,
    });
    const map = this.maps[mapIndex];
    if (map !== undefined && map.state === "completed" && map.completedBy === mapWorkerId) {
      this.workerDead(mapWorkerId, now);
    }
    if (task.state === "completed") return { type: "duplicate", reason: "task already completed" };
    if (!this.dropAttempt(task, attemptId, workerId)) {
      return { type: "duplicate", reason: "unknown or cancelled attempt" };
    }
    return { type: "accepted" };
  }

  /** A worker is alive; answers whether it should exit. */
  heartbeat(workerId: string, address: string, now: number): { exit: boolean } {
    this.touchWorker(workerId, address, now);
    this.tick(now);
    const phase = this.phase();
    return { exit: phase === "done" || phase === "failed" };
  }

  /**
   * A worker is gone (its process exited, or it went silent). Its running attempts are
   * cancelled, and its completed map tasks go back to idle while any reduce task still needs
   * their output, since that output lived on its disk (paper 3.3).
   */
  workerDead(workerId: string, now: number): void {
    const worker = this.workers.get(workerId);
    if (worker === undefined || !worker.alive) return;
    worker.alive = false;
    worker.lastSeen = now;
    this.dirtyWorkers.add(worker);
    this.events.push({ type: "worker-dead", workerId });
    for (const task of [...this.maps, ...this.reduces]) {
      if (task.attempts.some((a) => a.workerId === workerId)) {
        task.attempts = task.attempts.filter((a) => a.workerId !== workerId);
        this.settleState(task);
        this.dirtyTasks.add(task);
      }
    }
    const outputNeeded = this.reduces.some((t) => t.state !== "completed");
    if (!outputNeeded || this.meta.failure !== null) return;
    for (const task of this.maps) {
      if (task.state === "completed" && task.completedBy === workerId) {
        task.state = "idle";
        task.completedBy = "";
        task.completedAddress = "";
        this.dirtyTasks.add(task);
        this.events.push({ type: "map-rerun", kind: "map", index: task.index, workerId });
      }
    }
  }

  /** Time passes: expire slow attempts and silent workers. */
  tick(now: number): void {
    if (this.meta.failure !== null) return;
    for (const worker of this.workers.values()) {
      if (worker.alive && now - worker.lastSeen >= this.config.workerTimeoutMs)
        this.workerDead(worker.id, now);
    }
    for (const task of [...this.maps, ...this.reduces]) {
      if (task.state !== "in-progress") continue;
      let changed = false;
      for (const attempt of task.attempts) {
        if (!attempt.expired && now - attempt.startedAt >= this.config.taskTimeoutMs) {
          attempt.expired = true;
          changed = true;
          this.events.push({
            type: "task-timeout",
            kind: task.kind,
            index: task.index,
            workerId: attempt.workerId,
            attemptId: attempt.id,
          });
        }
      }
      if (changed) {
        this.settleState(task);
        this.dirtyTasks.add(task);
      }
    }
  }

  // --- helpers ---

  private lookup(kind: TaskKind, index: number): TaskRecord | undefined {
    if (!Number.isInteger(index) || index < 0) return undefined;
    if (kind === "map") return this.maps[index];
    if (kind === "reduce") return this.reduces[index];
    return undefined;
  }

  private touchWorker(workerId: string, address: string, now: number): void {
    const existing = this.workers.get(workerId);
    if (existing === undefined) {
      const worker: WorkerRecord = { id: workerId, address, alive: true, lastSeen: now };
      this.workers.set(workerId, worker);
      this.dirtyWorkers.add(worker);
      return;
    }
    existing.lastSeen = now;
    if (!existing.alive || existing.address !== address) {
      // A worker presumed dead that speaks again is taken back, but the attempts it had and
      // the map outputs it held were already given up.
      existing.alive = true;
      existing.address = address;
      this.dirtyWorkers.add(existing);
    }
  }

  /** Avoid giving a task back to a worker its job code already failed on, if another can run it. */
  private shouldAvoid(task: TaskRecord, workerId: string): boolean {
    if (!task.failedOn.includes(workerId)) return false;
    return this.liveWorkers().some((w) => w !== workerId && !task.failedOn.includes(w));
  }

  private backupCandidate(list: TaskRecord[], workerId: string, now: number): TaskRecord | undefined {
    let best: TaskRecord | undefined;
    let bestStart = Number.POSITIVE_INFINITY;
    for (const task of list) {
      if (task.state !== "in-progress") continue;
      const live = task.attempts.filter((a) => !a.expired);
      if (live.length !== 1 || live[0]!.workerId === workerId) continue;
      const startedAt = live[0]!.startedAt;
      if (now - startedAt < this.config.backupAfterMs) continue;
      if (startedAt < bestStart) {
        best = task;
        bestStart = startedAt;
      }
    }
    return best;
  }

  private assign(task: TaskRecord, workerId: string, now: number, backup: boolean): Assignment {
    const attemptId = this.meta.nextAttemptId++;
    this.metaDirty = true;
    task.attempts.push({ id: attemptId, workerId, startedAt: now, expired: false });
    task.state = "in-progress";
    task.runs += 1;
    this.dirtyTasks.add(task);
    this.events.push({
      type: "assigned",
      kind: task.kind,
      index: task.index,
      workerId,
      attemptId,
      ...(backup ? { detail: "backup" } : {}),
    });
    if (task.kind === "map") {
      return { type: "map", index: task.index, attemptId, split: this.config.splits[task.index]!, backup };
    }
    const locations = this.maps.map((m) => ({
      mapIndex: m.index,
      workerId: m.completedBy,
      address: m.completedAddress,
    }));
    return { type: "reduce", index: task.index, attemptId, locations, backup };
  }

  private dropAttempt(task: TaskRecord, attemptId: number, workerId: string): boolean {
    const before = task.attempts.length;
    task.attempts = task.attempts.filter((a) => !(a.id === attemptId && a.workerId === workerId));
    if (task.attempts.length === before) return false;
    this.settleState(task);
    this.dirtyTasks.add(task);
    return true;
  }

  private settleState(task: TaskRecord): void {
    if (task.state === "completed") return;
    task.state = task.attempts.some((a) => !a.expired) ? "in-progress" : "idle";
  }

  private describeInput(task: TaskRecord): string {
    if (task.kind === "map") {
      const s = this.config.splits[task.index]!;
      return `${s.fileName} bytes ${s.offset}..${s.offset + s.length}`;
    }
    return `partition ${task.index} of ${this.config.reduces}`;
  }

  private dirtyAll(): void {
    for (const t of [...this.maps, ...this.reduces]) this.dirtyTasks.add(t);
    this.metaDirty = true;
  }
}
