import { existsSync, statSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { MapReduceError } from "./errors.js";
import * as grep from "./jobs/grep.js";
import * as indexer from "./jobs/indexer.js";
import * as wordcount from "./jobs/wordcount.js";

export type KeyValue = readonly [key: string, value: string];
export type JobOptions = Record<string, string>;

/**
 * A MapReduce job, as a module exports it. Keys and values are strings. `map` may return an
 * array or any iterable (a generator avoids building a large array).
 */
export interface JobModule {
  map(fileName: string, contents: string): Iterable<KeyValue>;
  reduce(key: string, values: string[]): string;
  /** Runs on a map task's output before it is written; must agree with `reduce`. */
  combine?(key: string, values: string[]): string;
  /** Which reduce task (0..reduces-1) gets a key; default: stable hash mod reduces. */
  partition?(key: string, reduces: number): number;
  /** Called once per process with the job options before any other function. */
  setup?(options: JobOptions): void;
}

export const builtinJobs = { wordcount, indexer, grep } as const;
export type BuiltinJobName = keyof typeof builtinJobs;

export function isBuiltinJob(name: string): name is BuiltinJobName {
  return Object.hasOwn(builtinJobs, name);
}

/**
 * Names a job the same way on every machine: a built-in name as is, a module path made
 * absolute (workers on other machines need the module at the same path).
 */
export function resolveJobName(job: string, cwd = process.cwd()): string {
  if (job.trim() === "")
    throw new MapReduceError("BAD_JOB", "no job given (use wordcount, indexer, grep or a module path)");
  if (isBuiltinJob(job)) return job;
  const path = isAbsolute(job) ? job : resolve(cwd, job);
  if (!existsSync(path) || !statSync(path).isFile()) {
    throw new MapReduceError(
      "BAD_JOB",
      `job "${job}" is neither a built-in job (wordcount, indexer, grep) nor a module file`,
    );
  }
  return path;
}

/** Loads and checks a job: it must export functions `map` and `reduce`. */
export async function loadJob(job: string, options: JobOptions = {}): Promise<JobModule> {
  let mod: Record<string, unknown>;
  if (isBuiltinJob(job)) {
    mod = builtinJobs[job] as unknown as Record<string, unknown>;
  } else {
    const path = resolveJobName(job);
    try {
      mod = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
    } catch (error) {
      const why = error instanceof Error ? (error.message.split("\n")[0] ?? "") : String(error);
      throw new MapReduceError("BAD_JOB", `cannot load job module ${path}: ${why}`);
    }
  }
  // A CommonJS or `export default {map, reduce}` module puts its functions on `default`.
  const source =
    typeof mod.map !== "function" && typeof mod.default === "object" && mod.default !== null
      ? (mod.default as Record<string, unknown>)
      : mod;
  if (typeof source.map !== "function" || typeof source.reduce !== "function") {
    throw new MapReduceError("BAD_JOB", `job module ${job} must export functions map and reduce`);
  }
  for (const name of ["combine", "partition", "setup"]) {
    if (source[name] !== undefined && typeof source[name] !== "function") {
      throw new MapReduceError("BAD_JOB", `job module ${job} exports ${name} but it is not a function`);
    }
  }
  const loaded = source as unknown as JobModule;
  if (loaded.setup) {
    try {
      loaded.setup(options);
    } catch (error) {
      const why = error instanceof Error ? error.message : String(error);
      throw new MapReduceError("BAD_JOB", `job ${job} rejected its options: ${why}`);
    }
  }
  return loaded;
}
