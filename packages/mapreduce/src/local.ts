import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { silentLogger } from "@quorum/transport";
import { MapReduceError } from "./errors.js";
import { Coordinator, type CoordinatorOptions, type JobResult } from "./node/coordinator.js";

export interface LocalJobOptions extends Omit<CoordinatorOptions, "listen"> {
  /** Worker processes to start. */
  workers: number;
  /** Start a new worker when one dies before the job ends (default true). */
  respawn?: boolean;
  /** Most workers started in all, respawns included (default 3 x workers). */
  maxWorkerStarts?: number;
  /** The worker entry script (default: dist/worker-main.js of this package). */
  workerScript?: string;
  /** Extra arguments for each worker process (e.g. ["--heartbeat-ms", "200"]). */
  workerArgs?: string[];
  /** Node.js options for each worker process (e.g. ["--cpu-prof"] to profile a job). */
  workerExecArgv?: string[];
  workerEnv?: NodeJS.ProcessEnv;
  /** Aborting stops the coordinator and kills the workers. */
  signal?: AbortSignal;
}

export function defaultWorkerScript(): string {
  // From dist/local.js the entry sits beside it; from src/local.ts (tests) it is in dist/.
  const url = import.meta.url.endsWith(".ts") ? "../dist/worker-main.js" : "./worker-main.js";
  return fileURLToPath(new URL(url, import.meta.url));
}

/** Exits with the process, or after `ms`; true when it exited. */
function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/**
 * Runs a whole job on this machine: a coordinator in this process and `workers` worker
 * processes on 127.0.0.1. Resolves when the job is done and every worker has exited; rejects
 * with a MapReduceError (bad input, a job that failed, all workers lost).
 */
export async function runLocalJob(options: LocalJobOptions): Promise<JobResult> {
  if (!Number.isInteger(options.workers) || options.workers < 1) {
    throw new MapReduceError(
      "BAD_OPTION",
      `the number of workers must be an integer >= 1, got ${options.workers}`,
    );
  }
  const script = options.workerScript ?? defaultWorkerScript();
  if (!existsSync(script)) {
    throw new MapReduceError(
      "BAD_OPTION",
      `worker script ${script} not found (build @quorum/mapreduce first)`,
    );
  }
  if (options.signal?.aborted) throw new MapReduceError("JOB_FAILED", "the job was cancelled");
  const logger = options.logger ?? silentLogger;
  const coordinator = await Coordinator.start({ ...options, listen: "127.0.0.1:0" });
  // Workers keep map output here; removing it at the end also covers workers that were killed.
  const workRoot = mkdtempSync(join(tmpdir(), "quorum-mr-local-"));
  const children = new Map<string, ChildProcess>();
  const maxStarts = options.maxWorkerStarts ?? 3 * options.workers;
  let starts = 0;
  let over = false;
  let lost: ((e: Error) => void) | undefined;
  const lostPromise = new Promise<never>((_, reject) => {
    lost = reject;
  });
  lostPromise.catch(() => {});

  const startWorker = (): void => {
    starts++;
    const id = `w${starts}-${process.pid}`;
    const child = spawn(
      process.execPath,
      [
        ...(options.workerExecArgv ?? []),
        script,
        ...["--coordinator", coordinator.address, "--id", id, "--dir", join(workRoot, id)],
        ...(options.workerArgs ?? []),
      ],
      { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, ...options.workerEnv } },
    );
    children.set(id, child);
    let tail = "";
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (text: string) => {
      tail = (tail + text).slice(-2_000);
      for (const line of text.split("\n"))
        if (line.trim()) logger.debug({ workerId: id, line }, "worker output");
    });
    child.on("exit", (code, signal) => {
      children.delete(id);
      // Exit code 0: the worker was told the job is over.
      if (over || code === 0) return;
      logger.warn(
        { workerId: id, code, signal, stderr: tail.trim().split("\n").at(-1) },
        "worker exited before the job ended",
      );
      coordinator.workerExited(id);
      if ((options.respawn ?? true) && starts < maxStarts) {
        startWorker();
      } else if (children.size === 0) {
        const last = tail.trim().split("\n").at(-1) ?? "";
        lost?.(
          new MapReduceError(
            "WORKERS_LOST",
            `all worker processes exited before the job ended${last ? `: ${last}` : ""}`,
          ),
        );
      }
    });
  };

  const onAbort = () => lost?.(new MapReduceError("JOB_FAILED", "the job was cancelled"));
  options.signal?.addEventListener("abort", onAbort, { once: true });
  try {
    for (let i = 0; i < options.workers; i++) startWorker();
    return await Promise.race([coordinator.finished, lostPromise]);
  } finally {
    over = true;
    options.signal?.removeEventListener("abort", onAbort);
    await coordinator.stop();
    const running = [...children.values()];
    // Workers exit on their own once told the job is over; one that was stalled when the
    // coordinator ended would wait for it in vain, so stragglers are killed.
    const exited = await Promise.all(running.map((c) => waitExit(c, 1_000)));
    running.forEach((c, i) => {
      if (!exited[i]) c.kill("SIGKILL");
    });
    await Promise.all(running.map((c) => waitExit(c, 5_000)));
    rmSync(workRoot, { recursive: true, force: true });
  }
}
