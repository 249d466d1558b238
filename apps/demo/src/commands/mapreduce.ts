import {
  type JobProgress,
  type JobResult,
  MapReduceError,
  runCoordinator,
  runLocalJob,
  runWorker,
} from "@quorum/mapreduce";
import { MapreduceMetrics, serveMapreduceMetrics } from "./mapreduce-metrics.js";

export interface RunJobFlags {
  job: string;
  input: string[];
  reduces: number;
  workers: number;
  out: string;
  pattern?: string;
  splitMb?: number;
  taskTimeout: number;
  /** host:port to serve Prometheus metrics on while the job runs. */
  listenMetrics?: string;
}

/** One line that redraws itself on a terminal; plain lines every few seconds in a pipe. */
function progressPrinter(): { update(p: JobProgress): void; done(): void } {
  const tty = process.stderr.isTTY === true;
  let lastPlain = 0;
  const bar = (done: number, total: number, width = 20) => {
    const filled = total === 0 ? width : Math.round((done / total) * width);
    return `[${"#".repeat(filled)}${".".repeat(width - filled)}]`;
  };
  return {
    update(p) {
      const mb = p.bytesDone / 1e6;
      const rate = p.elapsedMs > 0 ? mb / (p.elapsedMs / 1000) : 0;
      const line =
        `map ${bar(p.map.completed, p.map.total)} ${p.map.completed}/${p.map.total}  ` +
        `reduce ${bar(p.reduce.completed, p.reduce.total)} ${p.reduce.completed}/${p.reduce.total}  ` +
        `${mb.toFixed(1)} MB at ${rate.toFixed(1)} MB/s  workers ${p.liveWorkers}`;
      if (tty) process.stderr.write(`\r${line}`);
      else if (p.elapsedMs - lastPlain >= 2000) {
        lastPlain = p.elapsedMs;
        process.stderr.write(`${line}\n`);
      }
    },
    done() {
      if (tty) process.stderr.write("\n");
    },
  };
}

function summary(result: JobResult): string {
  const seconds = result.elapsedMs / 1000;
  const reruns = result.runs.map - result.maps + (result.runs.reduce - result.reduces);
  return (
    `job done in ${seconds.toFixed(2)} s: ${result.maps} map and ${result.reduces} reduce tasks` +
    `${reruns > 0 ? ` (${reruns} re-run or backup attempts)` : ""}, ` +
    `${(result.bytesIn / 1e6).toFixed(1)} MB in at ${(result.bytesIn / 1e6 / Math.max(seconds, 1e-3)).toFixed(1)} MB/s` +
    `${result.resumed ? ", resumed from a previous run" : ""}\n` +
    `output: ${result.outputs.join(" ")}\n`
  );
}

/** Maps the runner's typed errors to one line, as every CLI error reads. */
async function oneLine<T>(work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (err) {
    if (err instanceof MapReduceError) throw new Error(err.message.split("\n")[0]);
    throw err;
  }
}

/**
 * Runs a job with its progress on the bar and, with `--listen-metrics`, in Prometheus
 * metrics served for as long as the job runs; prints the summary.
 */
async function reporting(
  listenMetrics: string | undefined,
  work: (onProgress: (p: JobProgress) => void) => Promise<JobResult>,
): Promise<void> {
  const metrics = listenMetrics === undefined ? undefined : new MapreduceMetrics();
  const server = metrics && (await serveMapreduceMetrics(listenMetrics!, metrics.registry));
  if (server) process.stderr.write(`metrics on http://${server.address}/metrics\n`);
  const progress = progressPrinter();
  try {
    const result = await oneLine(
      work((p) => {
        progress.update(p);
        metrics?.update(p);
      }),
    );
    progress.done();
    process.stdout.write(summary(result));
  } catch (err) {
    progress.done();
    throw err;
  } finally {
    await server?.close();
  }
}

/** The coordinator options both `run` and `coordinator` take from their flags. */
function jobSettings(flags: Omit<RunJobFlags, "workers">) {
  return {
    job: flags.job,
    ...(flags.pattern === undefined ? {} : { jobOptions: { pattern: flags.pattern } }),
    inputs: flags.input,
    reduces: flags.reduces,
    outDir: flags.out,
    taskTimeoutMs: flags.taskTimeout * 1000,
    ...(flags.splitMb ? { splitBytes: flags.splitMb * 1e6 } : {}),
  };
}

/** `quorum mapreduce run`: a coordinator and W worker processes on this machine. */
export async function runJob(flags: RunJobFlags): Promise<void> {
  const abort = new AbortController();
  const onInterrupt = () => abort.abort();
  process.once("SIGINT", onInterrupt);
  try {
    await reporting(flags.listenMetrics, (onProgress) =>
      runLocalJob({ ...jobSettings(flags), workers: flags.workers, onProgress, signal: abort.signal }),
    );
  } finally {
    process.removeListener("SIGINT", onInterrupt);
  }
}

export interface CoordinatorFlags extends Omit<RunJobFlags, "workers"> {
  listen: string;
  state?: string;
}

/** `quorum mapreduce coordinator`: hands out tasks to workers that dial in. */
export async function runJobCoordinator(flags: CoordinatorFlags): Promise<void> {
  await reporting(flags.listenMetrics, (onProgress) =>
    runCoordinator({
      ...jobSettings(flags),
      listen: flags.listen,
      ...(flags.state ? { statePath: flags.state } : {}),
      onListening: (address) => process.stderr.write(`coordinator listening on ${address}\n`),
      onProgress,
    }),
  );
}

/** `quorum mapreduce worker`: runs tasks for a coordinator until the job is done. */
export async function runJobWorker(flags: { coordinator: string; listen?: string; advertise?: string }) {
  const result = await oneLine(
    runWorker({
      coordinator: flags.coordinator,
      ...(flags.listen ? { listen: flags.listen } : {}),
      ...(flags.advertise ? { advertise: flags.advertise } : {}),
    }),
  );
  process.stdout.write(`worker ${result.id} ran ${result.tasks} tasks\n`);
}
