import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { open, rename, rm, writeFile } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { type ServiceError, status } from "@grpc/grpc-js";
import {
  createGrpcClient,
  type Logger,
  promisifyUnary,
  type RunningGrpcServer,
  silentLogger,
  startGrpcServer,
} from "@quorum/transport";
import { describeError, MapReduceError } from "../errors.js";
import { collectIntermediate, JobCodeError, runMapTask, runReduce } from "../exec.js";
import {
  CoordinatorClient,
  type HeartbeatRequest,
  type HeartbeatResponse,
  type JobSpec,
  type ReportTaskRequest,
  type ReportTaskResponse,
  type RequestTaskRequest,
  type RequestTaskResponse,
  ShuffleService,
  TaskKind,
  TaskOutcome,
} from "../gen/quorum/mapreduce/v1/mapreduce.js";
import { type JobModule, loadJob } from "../job.js";
import { FetchError, mapOutputPath, ShuffleReader, shuffleService } from "./shuffle.js";

export interface WorkerOptions {
  /** host:port of the coordinator. */
  coordinator: string;
  /** Unique per worker process (default: host, pid and random bytes). */
  id?: string;
  /** host:port for this worker's shuffle service (default 127.0.0.1:0). */
  listen?: string;
  /** host:port reduce workers dial to fetch from this one (default: the bound listen address). */
  advertise?: string;
  /** Where map output is kept (default: a fresh temp dir, removed at exit). */
  dir?: string;
  heartbeatMs?: number;
  /** Give up when the coordinator has been unreachable this long (default 30 s). */
  coordinatorLostMs?: number;
  /** A fetch that receives nothing for this long counts as failed (default 5 s). */
  fetchIdleTimeoutMs?: number;
  /** Concurrent fetches of one reduce task (default 8). */
  fetchConcurrency?: number;
  logger?: Logger;
}

export interface WorkerResult {
  id: string;
  /** Attempts this worker ran. */
  tasks: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A wildcard listen address is not dialable from elsewhere: advertise the host name instead. */
function advertisedAddress(bound: string): string {
  const match = /^(.*):(\d+)$/.exec(bound);
  if (!match) return bound;
  const host = match[1]!;
  return host === "0.0.0.0" || host === "[::]" || host === "::" ? `${hostname()}:${match[2]}` : bound;
}

/**
 * A worker process's runtime: asks the coordinator for tasks until told to exit, runs them,
 * keeps map output on its own disk and serves it to reduce workers.
 */
export async function runWorker(options: WorkerOptions): Promise<WorkerResult> {
  const logger = options.logger ?? silentLogger;
  const id = options.id ?? `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`;
  const ownDir = options.dir === undefined;
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), "quorum-mr-worker-"));
  mkdirSync(dir, { recursive: true });
  // A worker stopped by a signal exits without unwinding; still leave no temp dir behind.
  const removeDir = () => rmSync(dir, { recursive: true, force: true });
  if (ownDir) process.once("exit", removeDir);
  const heartbeatMs = options.heartbeatMs ?? 1_000;
  const lostMs = options.coordinatorLostMs ?? 30_000;
  const idleMs = options.fetchIdleTimeoutMs ?? 5_000;
  const concurrency = options.fetchConcurrency ?? 8;

  let server: RunningGrpcServer | undefined;
  const coordinator = createGrpcClient(CoordinatorClient, options.coordinator, { defaultDeadlineMs: 10_000 });
  const shuffle = new ShuffleReader(id, dir, idleMs);
  let heartbeat: NodeJS.Timeout | undefined;
  let tasks = 0;
  try {
    server = await startGrpcServer({
      address: options.listen ?? "127.0.0.1:0",
      services: [{ definition: ShuffleService, implementation: shuffleService(dir) }],
    });
    const address = options.advertise ?? advertisedAddress(server.address);
    const requestTask = promisifyUnary<RequestTaskRequest, RequestTaskResponse>(
      coordinator,
      coordinator.requestTask,
    );
    const reportTask = promisifyUnary<ReportTaskRequest, ReportTaskResponse>(
      coordinator,
      coordinator.reportTask,
    );
    const sendHeartbeat = promisifyUnary<HeartbeatRequest, HeartbeatResponse>(
      coordinator,
      coordinator.heartbeat,
    );

    let lastContact = Date.now();
    let exitRequested = false;
    /** Calls the coordinator until it answers; it may be restarting. */
    const call = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
      let backoff = 50;
      for (;;) {
        try {
          const result = await fn();
          lastContact = Date.now();
          return result;
        } catch (error) {
          const code = (error as ServiceError).code;
          if (code === status.INVALID_ARGUMENT) throw error;
          if (Date.now() - lastContact > lostMs) {
            throw new MapReduceError(
              "COORDINATOR_UNREACHABLE",
              `coordinator ${options.coordinator} unreachable for ${Math.round(lostMs / 1000)} s (${what}: ${(error as Error).message})`,
            );
          }
          await sleep(backoff);
          backoff = Math.min(1_000, backoff * 2);
        }
      }
    };

    heartbeat = setInterval(() => {
      sendHeartbeat({ workerId: id, shuffleAddress: address })
        .then((r) => {
          lastContact = Date.now();
          if (r.exit) exitRequested = true;
        })
        .catch(() => {});
    }, heartbeatMs);
    heartbeat.unref();

    const jobs = new Map<string, Promise<JobModule>>();
    const jobFor = (spec: JobSpec): Promise<JobModule> => {
      const key = `${spec.job}\0${spec.optionsJson}`;
      let job = jobs.get(key);
      if (job === undefined) {
        job = loadJob(spec.job, JSON.parse(spec.optionsJson || "{}") as Record<string, string>);
        jobs.set(key, job);
        job.catch(() => jobs.delete(key));
      }
      return job;
    };

    const runMap = async (task: RequestTaskResponse, job: JobModule, spec: JobSpec): Promise<number> => {
      const input = task.mapInput!;
      const handle = await open(input.path, "r");
      let contents: string;
      try {
        const buf = Buffer.allocUnsafe(input.length);
        let got = 0;
        while (got < input.length) {
          const { bytesRead } = await handle.read(buf, got, input.length - got, input.offset + got);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
        contents = buf.toString("utf8", 0, got);
      } finally {
        await handle.close();
      }
      const parts = runMapTask(job, input.fileName, contents, spec.reduces);
      // Temp names then rename: a reader never sees a partial file, and a duplicate attempt of
      // the same task on this worker replaces the file with identical contents.
      await Promise.all(
        parts.map(async (text, r) => {
          const tmp = join(dir, `.tmp-${task.attemptId}-${task.index}-${r}`);
          await writeFile(tmp, text);
          await rename(tmp, mapOutputPath(dir, task.index, r));
        }),
      );
      return input.length;
    };

    const runReduceTask = async (
      task: RequestTaskResponse,
      job: JobModule,
      spec: JobSpec,
    ): Promise<number> => {
      const grouped = new Map<string, string[]>();
      const queue = [...task.mapLocations];
      const buffers: Buffer[] = [];
      await Promise.all(
        Array.from({ length: Math.min(concurrency, queue.length) }, async () => {
          for (let loc = queue.shift(); loc !== undefined; loc = queue.shift()) {
            buffers.push(await shuffle.read(loc, task.index));
          }
        }),
      );
      let bytes = 0;
      for (const b of buffers) {
        bytes += b.length;
        collectIntermediate(b.toString("utf8"), grouped);
      }
      const text = runReduce(job, grouped);
      const final = join(spec.outDir, `mr-out-${task.index}`);
      const tmp = join(spec.outDir, `.mr-out-${task.index}.tmp-${id}-${task.attemptId}`);
      const handle = await open(tmp, "w");
      try {
        await handle.writeFile(text);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(tmp, final);
      return bytes;
    };

    while (!exitRequested) {
      const task = await call("RequestTask", () => requestTask({ workerId: id, shuffleAddress: address }));
      if (task.kind === TaskKind.TASK_KIND_EXIT) break;
      if (task.kind === TaskKind.TASK_KIND_WAIT || task.job === undefined) {
        // The coordinator holds a request until there is work, so a WAIT asks again at once.
        if (task.retryAfterMs > 0) await sleep(task.retryAfterMs);
        continue;
      }
      tasks++;
      const kind = task.kind === TaskKind.TASK_KIND_MAP ? "map" : "reduce";
      const startedAtMs = Date.now();
      const report: ReportTaskRequest = {
        workerId: id,
        kind: task.kind,
        index: task.index,
        attemptId: task.attemptId,
        outcome: TaskOutcome.TASK_OUTCOME_DONE,
        error: "",
        failedMapIndex: 0,
        failedWorkerId: "",
        startedAtMs,
        endedAtMs: 0,
        bytesIn: 0,
      };
      logger.debug({ kind, index: task.index, attemptId: task.attemptId }, "task started");
      try {
        const job = await jobFor(task.job);
        report.bytesIn =
          kind === "map" ? await runMap(task, job, task.job) : await runReduceTask(task, job, task.job);
      } catch (error) {
        if (error instanceof FetchError) {
          report.outcome = TaskOutcome.TASK_OUTCOME_FETCH_FAILED;
          report.failedMapIndex = error.location.mapIndex;
          report.failedWorkerId = error.location.workerId;
          report.error = error.message;
        } else {
          // Job code that throws, a job module that does not load here, or an input that
          // cannot be read: all count toward the task's retry limit.
          report.outcome = TaskOutcome.TASK_OUTCOME_JOB_ERROR;
          report.error =
            error instanceof JobCodeError || error instanceof MapReduceError
              ? error.message
              : describeError(error);
        }
        logger.warn({ kind, index: task.index, error: report.error }, "task failed");
      }
      report.endedAtMs = Date.now();
      await call("ReportTask", () => reportTask(report));
      if (kind === "map" && report.outcome !== TaskOutcome.TASK_OUTCOME_DONE) {
        await Promise.all(
          Array.from({ length: task.job.reduces }, (_, r) =>
            rm(join(dir, `.tmp-${task.attemptId}-${task.index}-${r}`), { force: true }),
          ),
        );
      }
    }
    return { id, tasks };
  } finally {
    if (heartbeat) clearInterval(heartbeat);
    shuffle.close();
    coordinator.close();
    await server?.shutdown(200);
    if (ownDir) {
      process.removeListener("exit", removeDir);
      removeDir();
    }
  }
}
