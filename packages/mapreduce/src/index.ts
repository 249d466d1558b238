export type {
  Assignment,
  JobFailure,
  MapLocation,
  MapSplit,
  Phase,
  PhaseProgress,
  TableChanges,
  TableEvent,
  TableSnapshot,
  TaskKind,
  TaskRecord,
  TaskState,
  TaskTableConfig,
  WorkerRecord,
} from "./core/task-table.js";
export { TaskTable } from "./core/task-table.js";
export type { MapReduceErrorCode } from "./errors.js";
export { MapReduceError } from "./errors.js";
export { defaultPartition, stableHash } from "./hash.js";
export type { InputFile } from "./input.js";
export { computeSplits, expandInputs, glob } from "./input.js";
export type { BuiltinJobName, JobModule, JobOptions, KeyValue } from "./job.js";
export { builtinJobs, isBuiltinJob, loadJob, resolveJobName } from "./job.js";
export type { LocalJobOptions } from "./local.js";
export { defaultWorkerScript, runLocalJob } from "./local.js";
export type { CoordinatorOptions, JobProgress, JobResult, TaskRun } from "./node/coordinator.js";
export { Coordinator, coordinatorDefaults, runCoordinator } from "./node/coordinator.js";
export type { WorkerOptions, WorkerResult } from "./node/worker.js";
export { runWorker } from "./node/worker.js";
export type { SequentialOptions } from "./sequential.js";
export { runSequential } from "./sequential.js";
