import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createGrpcClient, promisifyUnary } from "@quorum/transport";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import {
  CoordinatorClient,
  type ReportTaskRequest,
  type ReportTaskResponse,
  type RequestTaskRequest,
  type RequestTaskResponse,
  TaskKind,
  TaskOutcome,
} from "../gen/quorum/mapreduce/v1/mapreduce.js";
import { Coordinator } from "./coordinator.js";

const dir = mkdtempSync(join(tmpdir(), "quorum-mr-coordinator-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A coordinator for one input file and R=1, and a raw gRPC client speaking for workers. */
async function oneSplitJob() {
  const jobDir = mkdtempSync(join(dir, "job-"));
  const input = join(jobDir, "in.txt");
  writeFileSync(input, "a b a\n");
  const coordinator = await Coordinator.start({
    job: "wordcount",
    inputs: [input],
    reduces: 1,
    outDir: join(jobDir, "out"),
    lingerMs: 100,
  });
  const client = createGrpcClient(CoordinatorClient, coordinator.address, { defaultDeadlineMs: 10_000 });
  const requestTask = promisifyUnary<RequestTaskRequest, RequestTaskResponse>(client, client.requestTask);
  const reportTask = promisifyUnary<ReportTaskRequest, ReportTaskResponse>(client, client.reportTask);
  const done = (workerId: string, task: RequestTaskResponse): ReportTaskRequest => ({
    workerId,
    kind: task.kind,
    index: task.index,
    attemptId: task.attemptId,
    outcome: TaskOutcome.TASK_OUTCOME_DONE,
    error: "",
    failedMapIndex: 0,
    failedWorkerId: "",
    startedAtMs: 0,
    endedAtMs: 0,
    bytesIn: 6,
  });
  const stop = async () => {
    client.close();
    await coordinator.stop();
  };
  return { coordinator, requestTask, reportTask, done, stop };
}

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((r) => setTimeout(r, 5));
}

let cleanup: (() => Promise<void>) | undefined;
afterEach(async () => {
  await cleanup?.();
  cleanup = undefined;
});

describe("Coordinator", () => {
  it("holds a request for work until a task appears, instead of answering WAIT", async () => {
    const job = await oneSplitJob();
    cleanup = job.stop;
    const map = await job.requestTask({ workerId: "a", shuffleAddress: "127.0.0.1:1" });
    expect(map.kind).toBe(TaskKind.TASK_KIND_MAP);
    // The only map task is taken and the reduce phase cannot start: b's request is held ...
    const held = job.requestTask({ workerId: "b", shuffleAddress: "127.0.0.1:2" });
    await until(() => job.coordinator.progress().liveWorkers === 2); // b's request has arrived
    // ... and answered with the reduce task as soon as the map task is done.
    await job.reportTask(job.done("a", map));
    const reduce = await held;
    expect(reduce.kind).toBe(TaskKind.TASK_KIND_REDUCE);
    expect(reduce.mapLocations).toEqual([{ mapIndex: 0, workerId: "a", shuffleAddress: "127.0.0.1:1" }]);
  });

  it("offers no task to the held request of a worker whose process exited", async () => {
    const job = await oneSplitJob();
    cleanup = job.stop;
    const map = await job.requestTask({ workerId: "a", shuffleAddress: "127.0.0.1:1" });
    const held = job.requestTask({ workerId: "b", shuffleAddress: "127.0.0.1:2" });
    await until(() => job.coordinator.progress().liveWorkers === 2);
    job.coordinator.workerExited("b");
    expect((await held).kind).toBe(TaskKind.TASK_KIND_WAIT);
    await job.reportTask(job.done("a", map));
    // The reduce task waits for a live worker; b was not taken back by its old request.
    const p = job.coordinator.progress();
    expect(p.liveWorkers).toBe(1);
    expect(p.reduce.idle).toBe(1);
  });

  it("answers a held request EXIT when the job ends", async () => {
    const job = await oneSplitJob();
    cleanup = job.stop;
    const map = await job.requestTask({ workerId: "a", shuffleAddress: "127.0.0.1:1" });
    await job.reportTask(job.done("a", map));
    const reduce = await job.requestTask({ workerId: "a", shuffleAddress: "127.0.0.1:1" });
    expect(reduce.kind).toBe(TaskKind.TASK_KIND_REDUCE);
    const held = job.requestTask({ workerId: "b", shuffleAddress: "127.0.0.1:2" });
    await until(() => job.coordinator.progress().liveWorkers === 2);
    await job.reportTask(job.done("a", reduce));
    expect((await held).kind).toBe(TaskKind.TASK_KIND_EXIT);
  });
});
