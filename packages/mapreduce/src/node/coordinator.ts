import { existsSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import {
  type ServerUnaryCall,
  type ServiceError,
  type sendUnaryData,
  status,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import {
  type Clock,
  type Logger,
  type RunningGrpcServer,
  silentLogger,
  startGrpcServer,
  systemClock,
} from "@quorum/transport";
import {
  type Assignment,
  type JobFailure,
  type PhaseProgress,
  TaskTable,
  type TaskTableConfig,
} from "../core/task-table.js";
import { MapReduceError } from "../errors.js";
import {
  CoordinatorService,
  type HeartbeatRequest,
  type HeartbeatResponse,
  type ReportTaskRequest,
  type ReportTaskResponse,
  type RequestTaskRequest,
  type RequestTaskResponse,
  TaskKind,
  TaskOutcome,
} from "../gen/quorum/mapreduce/v1/mapreduce.js";
import { computeSplits, expandInputs } from "../input.js";
import { type JobOptions, loadJob, resolveJobName } from "../job.js";
import { type JobRecord, TaskStore } from "./store.js";

export interface CoordinatorOptions {
  /** wordcount, indexer, grep, or a path to a job module. */
  job: string;
  jobOptions?: JobOptions;
  /** Files or globs. */
  inputs: string[];
  reduces: number;
  /** Where reduce tasks write mr-out-<r>. */
  outDir: string;
  /** host:port to listen on (default 127.0.0.1:0, a free port). */
  listen?: string;
  /** The durable task table (default <outDir>/.mr-coordinator.sqlite); removed when the job ends. */
  statePath?: string;
  /** Map split size in bytes (default 16 MiB). */
  splitBytes?: number;
  taskTimeoutMs?: number;
  workerTimeoutMs?: number;
  backupAfterMs?: number;
  maxTaskFailures?: number;
  /** After the job ends, how long to wait for workers to hear so (default 3 s). */
  lingerMs?: number;
  /** Keep the state file after the job ends. */
  keepState?: boolean;
  cwd?: string;
  logger?: Logger;
  clock?: Clock;
  onProgress?: (progress: JobProgress) => void;
}

export interface JobProgress {
  phase: "map" | "reduce" | "done" | "failed";
  map: PhaseProgress;
  reduce: PhaseProgress;
  /** Input bytes of accepted map tasks, and of all map tasks. */
  bytesDone: number;
  bytesTotal: number;
  /**
   * Intermediate bytes reduce attempts read (from other workers over gRPC, or from their own
   * disk), as reported by attempts that finished, duplicates and backups included.
   */
  bytesShuffled: number;
  elapsedMs: number;
  liveWorkers: number;
}

/** One finished attempt as its worker reported it (wall-clock ms). */
export interface TaskRun {
  kind: "map" | "reduce";
  index: number;
  attemptId: number;
  workerId: string;
  startedAtMs: number;
  endedAtMs: number;
  outcome: "done" | "job-error" | "fetch-failed";
  accepted: boolean;
}

export interface JobResult {
  outDir: string;
  /** Paths of mr-out-0 .. mr-out-(R-1). */
  outputs: string[];
  maps: number;
  reduces: number;
  bytesIn: number;
  elapsedMs: number;
  /** Attempts started per kind (more than the task count when tasks were re-run or backed up). */
  runs: { map: number; reduce: number };
  resumed: boolean;
  /** Attempts reported to this coordinator process (not those before a restart). */
  taskRuns: TaskRun[];
}

export const coordinatorDefaults = {
  listen: "127.0.0.1:0",
  splitBytes: 16 * 1024 * 1024,
  taskTimeoutMs: 10_000,
  workerTimeoutMs: 10_000,
  backupAfterMs: 3_000,
  maxTaskFailures: 3,
  lingerMs: 3_000,
} as const;

const maxIdLength = 256;

/** How long a RequestTask is held for want of work (well under the worker's 10 s deadline). */
const maxHoldMs = 2_000;

interface ParkedRequest {
  workerId: string;
  address: string;
  timer?: { cancel(): void };
  answered: boolean;
  /** Replies once; removes the request from the parked set. */
  answer(a: Assignment): void;
}

function invalid(message: string): Partial<ServiceError> {
  return { code: status.INVALID_ARGUMENT, details: message, message };
}

/** The coordinator process's runtime: hosts the gRPC service, drives the table, persists it. */
export class Coordinator {
  readonly address: string;
  /** Resolves when the job is done and workers were told; rejects (MapReduceError) when it failed. */
  readonly finished: Promise<JobResult>;
  private readonly toldExit = new Set<string>();
  /** RequestTask calls waiting for work, by worker. */
  private readonly parked = new Map<string, ParkedRequest>();
  private readonly taskRuns: TaskRun[] = [];
  private bytesDone = 0;
  private bytesShuffled = 0;
  private readonly startedAt: number;
  private ticker: { cancel(): void } | undefined;
  private ending = false;
  private stopped = false;
  private settle!: { resolve: (r: JobResult) => void; reject: (e: Error) => void };

  private constructor(
    private readonly table: TaskTable,
    private readonly store: TaskStore,
    private readonly server: RunningGrpcServer,
    private readonly record: JobRecord,
    private readonly options: CoordinatorOptions,
    private readonly clock: Clock,
    private readonly logger: Logger,
    private readonly resumed: boolean,
    private readonly statePath: string,
  ) {
    this.address = server.address;
    this.startedAt = clock.now();
    this.finished = new Promise<JobResult>((resolve, reject) => {
      this.settle = { resolve, reject };
    });
    // A caller that only awaits stop() must not see an unhandled rejection.
    this.finished.catch(() => {});
    this.bytesDone = table
      .tasks()
      .filter((t) => t.kind === "map" && t.state === "completed")
      .reduce((n, t) => n + record.splits[t.index]!.length, 0);
  }

  /** Validates the job, loads or creates the durable table, and starts serving workers. */
  static async start(options: CoordinatorOptions): Promise<Coordinator> {
    const cwd = options.cwd ?? process.cwd();
    const logger = options.logger ?? silentLogger;
    const clock = options.clock ?? systemClock;
    if (!Number.isInteger(options.reduces) || options.reduces < 1) {
      throw new MapReduceError(
        "BAD_REDUCES",
        `the number of reduce tasks must be an integer >= 1, got ${options.reduces}`,
      );
    }
    const job = resolveJobName(options.job, cwd);
    const jobOptions = options.jobOptions ?? {};
    await loadJob(job, jobOptions); // fail now, with one line, rather than in every worker
    const outDir = resolve(cwd, options.outDir);
    mkdirSync(outDir, { recursive: true });
    const statePath = resolve(cwd, options.statePath ?? join(outDir, ".mr-coordinator.sqlite"));
    const wanted = { job, options: jobOptions, inputs: options.inputs, reduces: options.reduces, outDir };

    const config = (splits: JobRecord["splits"]): TaskTableConfig => ({
      splits,
      reduces: options.reduces,
      taskTimeoutMs: options.taskTimeoutMs ?? coordinatorDefaults.taskTimeoutMs,
      workerTimeoutMs: options.workerTimeoutMs ?? coordinatorDefaults.workerTimeoutMs,
      backupAfterMs: options.backupAfterMs ?? coordinatorDefaults.backupAfterMs,
      maxTaskFailures: options.maxTaskFailures ?? coordinatorDefaults.maxTaskFailures,
    });

    const existed = existsSync(statePath);
    const store = new TaskStore(statePath);
    let table: TaskTable;
    let record: JobRecord;
    let resumed = false;
    try {
      const saved = existed ? store.loadJob() : null;
      const snapshot = saved ? store.loadSnapshot() : null;
      if (saved && snapshot) {
        const same =
          JSON.stringify({ ...saved, splits: undefined }) ===
          JSON.stringify({ ...wanted, splits: undefined });
        if (!same) {
          throw new MapReduceError(
            "STATE_MISMATCH",
            `state file ${statePath} holds another unfinished job (${saved.job} on ${saved.inputs.join(" ")}); remove it or pass another state path`,
          );
        }
        record = saved;
        table = new TaskTable(config(saved.splits), snapshot, clock.now());
        resumed = true;
        logger.info({ statePath, progress: table.progress() }, "resuming job from the state file");
      } else {
        const files = expandInputs(options.inputs, cwd);
        const splits = computeSplits(files, options.splitBytes ?? coordinatorDefaults.splitBytes);
        record = { ...wanted, splits };
        table = new TaskTable(config(splits));
        store.create(record, table.takeChanges());
      }
    } catch (error) {
      store.close();
      if (!existed) rmStateFiles(statePath);
      if (error instanceof RangeError) throw new MapReduceError("BAD_OPTION", error.message);
      throw error;
    }

    let coordinator: Coordinator | undefined;
    const implementation = {
      requestTask: (
        call: ServerUnaryCall<RequestTaskRequest, RequestTaskResponse>,
        cb: sendUnaryData<RequestTaskResponse>,
      ) => coordinator!.onRequestTask(call, cb),
      reportTask: (
        call: ServerUnaryCall<ReportTaskRequest, ReportTaskResponse>,
        cb: sendUnaryData<ReportTaskResponse>,
      ) => coordinator!.onReportTask(call.request, cb),
      heartbeat: (
        call: ServerUnaryCall<HeartbeatRequest, HeartbeatResponse>,
        cb: sendUnaryData<HeartbeatResponse>,
      ) => coordinator!.onHeartbeat(call.request, cb),
    };
    let server: RunningGrpcServer;
    try {
      server = await startGrpcServer({
        address: options.listen ?? coordinatorDefaults.listen,
        services: [
          { definition: CoordinatorService, implementation: implementation as UntypedServiceImplementation },
        ],
      });
    } catch (error) {
      store.close();
      throw new MapReduceError("BAD_OPTION", error instanceof Error ? error.message : String(error));
    }
    coordinator = new Coordinator(table, store, server, record, options, clock, logger, resumed, statePath);
    coordinator.scheduleTick();
    coordinator.afterChange();
    return coordinator;
  }

  progress(): JobProgress {
    const p = this.table.progress();
    return {
      phase: this.table.phase(),
      map: p.map,
      reduce: p.reduce,
      bytesDone: this.bytesDone,
      bytesShuffled: this.bytesShuffled,
      bytesTotal: this.record.splits.reduce((n, s) => n + s.length, 0),
      elapsedMs: this.clock.now() - this.startedAt,
      liveWorkers: this.table.liveWorkers().length,
    };
  }

  failure(): JobFailure | null {
    return this.table.failure();
  }

  /** The host saw a worker process exit (faster than waiting for its heartbeat to stop). */
  workerExited(workerId: string): void {
    if (this.stopped) return;
    // Its held request (if the connection's end was not seen yet) must not be offered a task:
    // that would take the worker back as alive and strand the task until it timed out.
    this.parked.get(workerId)?.answer({ type: "wait" });
    this.table.workerDead(workerId, this.clock.now());
    this.afterChange();
  }

  /** Stops serving and closes the state file; the job's state stays on disk unless it ended. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.ticker?.cancel();
    this.answerParked();
    await this.server.shutdown(500);
    this.store.close();
    if (!this.ending)
      this.settle.reject(new MapReduceError("JOB_FAILED", "the coordinator stopped before the job ended"));
  }

  // --- gRPC handlers ---

  /**
   * A worker with nothing to do now is not told to come back later: its request is held
   * (long polling) and answered as soon as a task for it appears, since a fixed retry interval
   * leaves a worker idle at each phase boundary and at the end of the job.
   */
  private onRequestTask(
    call: ServerUnaryCall<RequestTaskRequest, RequestTaskResponse>,
    cb: sendUnaryData<RequestTaskResponse>,
  ): void {
    const req = call.request;
    const bad = this.checkWorker(req.workerId, req.shuffleAddress);
    if (bad) {
      cb(invalid(bad), null);
      return;
    }
    // A worker has one request in flight; an older one it gave up on is answered WAIT.
    this.parked.get(req.workerId)?.answer({ type: "wait" });
    const request: ParkedRequest = {
      workerId: req.workerId,
      address: req.shuffleAddress,
      answered: false,
      answer: (a) => {
        if (request.answered) return;
        request.answered = true;
        if (this.parked.get(req.workerId) === request) this.parked.delete(req.workerId);
        request.timer?.cancel();
        if (a.type === "exit") this.toldExit.add(req.workerId);
        cb(null, this.toResponse(a));
      },
    };
    this.parked.set(req.workerId, request);
    request.timer = this.clock.schedule(maxHoldMs, () => request.answer({ type: "wait" }));
    // A worker that died or gave up while held must not be offered (and so assigned) a task.
    call.once("cancelled", () => request.answer({ type: "wait" }));
    this.afterChange();
  }

  private onReportTask(req: ReportTaskRequest, cb: sendUnaryData<ReportTaskResponse>): void {
    const bad = this.checkWorker(req.workerId, "x");
    if (bad) {
      cb(invalid(bad), null);
      return;
    }
    const kind =
      req.kind === TaskKind.TASK_KIND_MAP ? "map" : req.kind === TaskKind.TASK_KIND_REDUCE ? "reduce" : null;
    if (kind === null) {
      cb(invalid("kind must be MAP or REDUCE"), null);
      return;
    }
    const now = this.clock.now();
    let result: ReturnType<TaskTable["reportDone"]>;
    let outcome: TaskRun["outcome"];
    switch (req.outcome) {
      case TaskOutcome.TASK_OUTCOME_DONE:
        outcome = "done";
        result = this.table.reportDone(req.workerId, kind, req.index, req.attemptId, now);
        if (result.type === "accepted" && kind === "map") {
          this.bytesDone += this.record.splits[req.index]?.length ?? 0;
        }
        if (result.type !== "rejected" && kind === "reduce") this.bytesShuffled += req.bytesIn;
        break;
      case TaskOutcome.TASK_OUTCOME_JOB_ERROR:
        outcome = "job-error";
        result = this.table.reportJobError(
          req.workerId,
          kind,
          req.index,
          req.attemptId,
          req.error.slice(0, 2_000) || "unknown error",
          now,
        );
        break;
      case TaskOutcome.TASK_OUTCOME_FETCH_FAILED:
        if (kind !== "reduce") {
          cb(invalid("FETCH_FAILED is only for reduce tasks"), null);
          return;
        }
        outcome = "fetch-failed";
        result = this.table.reportFetchFailed(
          req.workerId,
          req.index,
          req.attemptId,
          req.failedMapIndex,
          req.failedWorkerId,
          now,
        );
        break;
      default: {
        cb(invalid("outcome must be DONE, JOB_ERROR or FETCH_FAILED"), null);
        return;
      }
    }
    if (result.type === "rejected") {
      cb(invalid(result.reason), null);
      return;
    }
    if (this.taskRuns.length < 100_000) {
      this.taskRuns.push({
        kind,
        index: req.index,
        attemptId: req.attemptId,
        workerId: req.workerId,
        startedAtMs: req.startedAtMs,
        endedAtMs: req.endedAtMs,
        outcome,
        accepted: result.type === "accepted",
      });
    }
    this.afterChange();
    cb(null, { accepted: result.type === "accepted" });
  }

  private onHeartbeat(req: HeartbeatRequest, cb: sendUnaryData<HeartbeatResponse>): void {
    const bad = this.checkWorker(req.workerId, req.shuffleAddress);
    if (bad) {
      cb(invalid(bad), null);
      return;
    }
    const { exit } = this.table.heartbeat(req.workerId, req.shuffleAddress, this.clock.now());
    this.afterChange();
    if (exit) this.toldExit.add(req.workerId);
    cb(null, { exit });
    if (exit) this.checkEnd();
  }

  // --- internals ---

  private checkWorker(workerId: string, address: string): string | null {
    if (workerId === "" || workerId.length > maxIdLength)
      return `worker_id must be 1..${maxIdLength} characters`;
    if (address === "" || address.length > maxIdLength)
      return `shuffle_address must be 1..${maxIdLength} characters`;
    return null;
  }

  private toResponse(a: Assignment): RequestTaskResponse {
    const base: RequestTaskResponse = {
      kind: TaskKind.TASK_KIND_WAIT,
      index: 0,
      attemptId: 0,
      job: undefined,
      mapInput: undefined,
      mapLocations: [],
      retryAfterMs: 0,
    };
    const job = {
      job: this.record.job,
      optionsJson: JSON.stringify(this.record.options),
      reduces: this.record.reduces,
      outDir: this.record.outDir,
    };
    switch (a.type) {
      case "wait":
        // Only after a held request timed out, or the coordinator is stopping: ask again now.
        return { ...base, retryAfterMs: 0 };
      case "exit":
        return { ...base, kind: TaskKind.TASK_KIND_EXIT };
      case "map":
        return {
          ...base,
          kind: TaskKind.TASK_KIND_MAP,
          index: a.index,
          attemptId: a.attemptId,
          job,
          mapInput: {
            path: a.split.path,
            fileName: a.split.fileName,
            offset: a.split.offset,
            length: a.split.length,
          },
        };
      case "reduce":
        return {
          ...base,
          kind: TaskKind.TASK_KIND_REDUCE,
          index: a.index,
          attemptId: a.attemptId,
          job,
          mapLocations: a.locations.map((l) => ({
            mapIndex: l.mapIndex,
            workerId: l.workerId,
            shuffleAddress: l.address,
          })),
        };
    }
  }

  /**
   * Offers work to the held requests, persists every change, and only then answers them
   * (persist before send: an answer may hand out an attempt); then logs and reports.
   */
  private afterChange(): void {
    if (this.stopped) return;
    const answers: Array<[ParkedRequest, Assignment]> = [];
    for (const request of this.parked.values()) {
      const a = this.table.requestTask(request.workerId, request.address, this.clock.now());
      if (a.type !== "wait") answers.push([request, a]);
    }
    this.store.save(this.table.takeChanges());
    for (const [request, a] of answers) request.answer(a);
    for (const event of this.table.takeEvents()) {
      const level =
        event.type === "job-error" || event.type === "worker-dead" || event.type === "job-failed"
          ? "warn"
          : "debug";
      this.logger[level]({ ...event }, `mapreduce ${event.type}`);
    }
    this.options.onProgress?.(this.progress());
    this.checkEnd();
  }

  private scheduleTick(): void {
    const every = Math.max(
      20,
      Math.min(500, (this.options.taskTimeoutMs ?? coordinatorDefaults.taskTimeoutMs) / 4),
    );
    this.ticker = this.clock.schedule(every, () => {
      if (this.stopped) return;
      this.table.tick(this.clock.now());
      this.afterChange();
      this.scheduleTick();
    });
  }

  /** Held requests are answered WAIT when the coordinator stops: the worker asks again. */
  private answerParked(): void {
    for (const request of [...this.parked.values()]) request.answer({ type: "wait" });
  }

  private endDeadline: number | undefined;

  /** Ends once the job is over and every live worker heard so, or after the linger time. */
  private checkEnd(): void {
    const phase = this.table.phase();
    if (this.ending || this.stopped || (phase !== "done" && phase !== "failed")) return;
    const now = this.clock.now();
    this.endDeadline ??= now + (this.options.lingerMs ?? coordinatorDefaults.lingerMs);
    const waiting = this.table.liveWorkers().filter((w) => !this.toldExit.has(w));
    if (waiting.length > 0 && now < this.endDeadline) return;
    this.ending = true;
    // After the current task, so the reply that told the last worker is on its way; the
    // server's graceful shutdown then lets it finish.
    this.clock.schedule(0, () => void this.end(phase));
  }

  private async end(phase: "done" | "failed"): Promise<void> {
    const failure = this.table.failure();
    const result: JobResult = {
      outDir: this.record.outDir,
      outputs: Array.from({ length: this.record.reduces }, (_, r) => join(this.record.outDir, `mr-out-${r}`)),
      maps: this.record.splits.length,
      reduces: this.record.reduces,
      bytesIn: this.bytesDone,
      elapsedMs: this.clock.now() - this.startedAt,
      runs: {
        map: this.table
          .tasks()
          .filter((t) => t.kind === "map")
          .reduce((n, t) => n + t.runs, 0),
        reduce: this.table
          .tasks()
          .filter((t) => t.kind === "reduce")
          .reduce((n, t) => n + t.runs, 0),
      },
      resumed: this.resumed,
      taskRuns: this.taskRuns,
    };
    this.stopped = true;
    this.ticker?.cancel();
    this.answerParked();
    await this.server.shutdown(500);
    this.store.close();
    if (!this.options.keepState) rmStateFiles(this.statePath);
    if (phase === "done") removeAbandonedOutputs(this.record.outDir);
    if (phase === "done") this.settle.resolve(result);
    else this.settle.reject(jobFailedError(failure));
  }
}

export function jobFailedError(failure: JobFailure | null): MapReduceError {
  if (failure === null) return new MapReduceError("JOB_FAILED", "the job failed");
  const error = new MapReduceError(
    "JOB_FAILED",
    `${failure.kind} task ${failure.index} (${failure.input}) failed ${failure.attempts} times: ${failure.error}`,
  );
  return Object.assign(error, { failure });
}

/** Temp files of reduce attempts whose worker died mid-write (the winners were renamed). */
function removeAbandonedOutputs(outDir: string): void {
  try {
    for (const name of readdirSync(outDir)) {
      if (/^\.mr-out-\d+\.tmp-/.test(name)) rmSync(join(outDir, name), { force: true });
    }
  } catch {
    // The output directory may be on another machine; nothing to tidy here then.
  }
}

function rmStateFiles(path: string): void {
  for (const suffix of ["", "-wal", "-shm"]) rmSync(path + suffix, { force: true });
}

/** Runs a coordinator until the job ends; resolves with the result, rejects with a MapReduceError. */
export async function runCoordinator(
  options: CoordinatorOptions & { onListening?: (address: string) => void },
): Promise<JobResult> {
  const coordinator = await Coordinator.start(options);
  options.onListening?.(coordinator.address);
  try {
    return await coordinator.finished;
  } finally {
    await coordinator.stop();
  }
}
