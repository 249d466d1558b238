import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type JobProgress, runLocalJob } from "@quorum/mapreduce";
import { oneLine } from "./workloads.js";

/** The texts shipped with the app (apps/demo/assets/texts), from dist/ or src/ alike. */
export function textsDir(): string {
  return fileURLToPath(new URL("../../assets/texts/", import.meta.url));
}

export interface MapReduceView {
  /** Jobs started since the demo started. */
  jobs: number;
  running: boolean;
  phase: JobProgress["phase"] | "idle";
  map: JobProgress["map"] | undefined;
  reduce: JobProgress["reduce"] | undefined;
  liveWorkers: number;
  elapsedMs: number;
  /** The last finished job's most frequent words of four letters or more. */
  topWords: [string, number][];
  inputs: string[];
  outDir: string | undefined;
  error: string | undefined;
  lastDurationMs: number | undefined;
}

/** Word count over the shipped texts with runLocalJob: one job at a time, started again on demand. */
export class WordCountJobs {
  readonly view: MapReduceView = {
    jobs: 0,
    running: false,
    phase: "idle",
    map: undefined,
    reduce: undefined,
    liveWorkers: 0,
    elapsedMs: 0,
    topWords: [],
    inputs: [],
    outDir: undefined,
    error: undefined,
    lastDurationMs: undefined,
  };
  private abort = new AbortController();
  private current: Promise<void> | undefined;

  constructor(
    private readonly outRoot: string,
    private readonly onEvent: (text: string) => void,
  ) {
    this.view.inputs = readdirSync(textsDir())
      .filter((f) => f.endsWith(".txt"))
      .sort();
  }

  /** Starts a job unless one is running; false when one is. */
  start(): boolean {
    if (this.view.running) return false;
    const n = ++this.view.jobs;
    const outDir = join(this.outRoot, `job-${n}`);
    Object.assign(this.view, {
      running: true,
      phase: "map",
      map: undefined,
      reduce: undefined,
      error: undefined,
      outDir,
      elapsedMs: 0,
    });
    this.onEvent(`MapReduce job ${n} started: word count over ${this.view.inputs.length} texts`);
    this.current = runLocalJob({
      job: "wordcount",
      inputs: this.view.inputs.map((f) => join(textsDir(), f)),
      reduces: 3,
      outDir,
      workers: 2,
      // Small inputs: split each text into a few map tasks so that the phases are visible.
      splitBytes: 1024,
      lingerMs: 500,
      signal: this.abort.signal,
      onProgress: (p) => {
        this.view.phase = p.phase;
        this.view.map = p.map;
        this.view.reduce = p.reduce;
        this.view.liveWorkers = p.liveWorkers;
        this.view.elapsedMs = p.elapsedMs;
      },
    })
      .then(
        (result) => {
          this.view.phase = "done";
          this.view.lastDurationMs = result.elapsedMs;
          this.view.topWords = topWords(result.outputs);
          this.onEvent(
            `MapReduce job ${n} done in ${(result.elapsedMs / 1000).toFixed(1)} s: ${result.maps} map and ${result.reduces} reduce tasks`,
          );
        },
        (err: unknown) => {
          this.view.phase = "failed";
          this.view.error = oneLine(err);
          this.onEvent(`MapReduce job ${n} failed: ${this.view.error}`);
        },
      )
      .finally(() => {
        this.view.running = false;
        this.view.liveWorkers = 0;
      });
    return true;
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.current;
  }
}

function topWords(outputs: string[], count = 10): [string, number][] {
  const words: [string, number][] = [];
  for (const file of outputs) {
    for (const line of readFileSync(file, "utf8").split("\n")) {
      const space = line.lastIndexOf(" ");
      if (space >= 4) words.push([line.slice(0, space), Number(line.slice(space + 1))]);
    }
  }
  return words.sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(0, count);
}
