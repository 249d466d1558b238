import { readFileSync, writeFileSync } from "node:fs";
import { collectIntermediate, runMapTask, runReduce } from "./exec.js";
import { expandInputs } from "./input.js";
import { type JobOptions, loadJob, resolveJobName } from "./job.js";

export interface SequentialOptions {
  job: string;
  jobOptions?: JobOptions;
  inputs: string[];
  /** The output file (all keys, sorted); omit to only return the text. */
  outFile?: string;
  cwd?: string;
}

/**
 * The same job in one process, one file at a time, with the same map, combine and reduce
 * code paths: the reference the distributed runs are compared with (as the lab's
 * mrsequential), and the benchmark's single-process baseline.
 */
export async function runSequential(options: SequentialOptions): Promise<{ text: string; bytesIn: number }> {
  const job = await loadJob(resolveJobName(options.job, options.cwd), options.jobOptions ?? {});
  const grouped = new Map<string, string[]>();
  let bytesIn = 0;
  for (const file of expandInputs(options.inputs, options.cwd)) {
    const contents = readFileSync(file.path, "utf8");
    bytesIn += file.size;
    const [part] = runMapTask(job, file.fileName, contents, 1);
    collectIntermediate(part!, grouped);
  }
  const text = runReduce(job, grouped);
  if (options.outFile !== undefined) writeFileSync(options.outFile, text);
  return { text, bytesIn };
}
