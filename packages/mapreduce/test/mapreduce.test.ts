import { existsSync, readdirSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { runSeeds } from "@quorum/sim";
import Database from "better-sqlite3";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { MapReduceError } from "../src/errors.js";
import { runLocalJob } from "../src/local.js";
import { runSequential } from "../src/sequential.js";
import {
  buildDist,
  cleanup,
  coordinatorMain,
  freePort,
  jobPath,
  makeCorpus,
  Processes,
  readOutputs,
  tempDir,
  waitFor,
  workerMain,
} from "./helpers.js";

// Short timeouts so faults are noticed in test time; the defaults are 10 s.
const fast = { taskTimeoutMs: 1_500, workerTimeoutMs: 1_500, backupAfterMs: 800, lingerMs: 1_000 };
const fastWorker = [
  "--heartbeat-ms",
  "200",
  "--fetch-idle-timeout-ms",
  "1000",
  "--coordinator-lost-ms",
  "15000",
];

let root: string;
let corpus: string[];
const processes = new Processes();

beforeAll(() => {
  buildDist();
  root = tempDir("e2e");
  corpus = makeCorpus(join(root, "in"), 6, 3_000, 42);
}, 60_000);

afterEach(() => processes.killAll());
afterAll(() => cleanup(root));

async function sequentialLines(job: string, inputs: string[], jobOptions: Record<string, string> = {}) {
  const { text } = await runSequential({ job, inputs, jobOptions });
  return text
    .split("\n")
    .filter((l) => l !== "")
    .sort();
}

describe("mapreduce end to end (real worker processes on 127.0.0.1)", () => {
  it("word count equals a sequential run's", async () => {
    const out = join(root, "wc");
    const result = await runLocalJob({
      job: "wordcount",
      inputs: [join(root, "in", "pg-*.txt")],
      reduces: 3,
      outDir: out,
      workers: 2,
      splitBytes: 40_000,
      ...fast,
    });
    expect(result.maps).toBeGreaterThan(corpus.length); // large files were split
    expect(
      readdirSync(out)
        .filter((f) => f.startsWith("mr-out-"))
        .sort(),
    ).toEqual(["mr-out-0", "mr-out-1", "mr-out-2"]);
    // Keys sorted within each output file.
    for (const file of result.outputs) {
      const keys = readFileSync(file, "utf8")
        .split("\n")
        .filter(Boolean)
        .map((l) => l.split(" ")[0]!);
      expect(keys).toEqual([...keys].sort());
    }
    const lines = readOutputs(out);
    expect(lines).toEqual(await sequentialLines("wordcount", corpus));
    expect(lines).toContain(`Straße ${lines.find((l) => l.startsWith("Straße "))!.split(" ")[1]}`);
    expect(lines.some((l) => l.startsWith("東京 "))).toBe(true);
    expect(existsSync(join(out, ".mr-coordinator.sqlite"))).toBe(false);
  });

  it("indexer and grep outputs equal a sequential run's", async () => {
    const out = join(root, "ix");
    await runLocalJob({ job: "indexer", inputs: corpus, reduces: 2, outDir: out, workers: 2, ...fast });
    const lines = readOutputs(out);
    expect(lines).toEqual(await sequentialLines("indexer", corpus));
    expect(lines.find((l) => l.startsWith("Ahab "))).toBe(`Ahab ${[...corpus].sort().join(",")}`);

    const gout = join(root, "grep");
    const options = { pattern: "Ahab.*東京" };
    await runLocalJob({
      job: "grep",
      jobOptions: options,
      inputs: corpus,
      reduces: 2,
      outDir: gout,
      workers: 2,
      ...fast,
    });
    const glines = readOutputs(gout);
    expect(glines.length).toBeGreaterThan(0);
    expect(glines).toEqual(await sequentialLines("grep", corpus, options));
  });

  it("runs map tasks and reduce tasks in parallel on two workers, each task once", async () => {
    const out = join(root, "par");
    const trace = tempDir("trace");
    try {
      const result = await runLocalJob({
        job: jobPath("slow"),
        jobOptions: { sleepMs: "500", traceDir: trace },
        inputs: corpus.slice(0, 4),
        reduces: 2,
        outDir: out,
        workers: 2,
        // Default timeouts (10 s) and backups (after 3 s): nothing should run twice.
      });
      const overlaps = (kind: "map" | "reduce") => {
        const runs = result.taskRuns.filter((r) => r.kind === kind);
        return runs.some((a) =>
          runs.some(
            (b) => a.workerId !== b.workerId && a.startedAtMs < b.endedAtMs && b.startedAtMs < a.endedAtMs,
          ),
        );
      };
      expect(overlaps("map")).toBe(true);
      expect(overlaps("reduce")).toBe(true);
      // Nothing failed, so nothing ran twice: not in the table, and not in the job code.
      expect(result.runs).toEqual({ map: 4, reduce: 2 });
      const mapRuns = readFileSync(join(trace, "map-runs"), "utf8").trim().split("\n");
      expect(mapRuns).toHaveLength(4);
      expect(new Set(mapRuns.map((l) => l.split(" ")[0])).size).toBe(2); // two worker processes
      expect(result.taskRuns.every((r) => r.accepted && r.outcome === "done")).toBe(true);
      expect(readOutputs(out)).toEqual(await sequentialLines(jobPath("slow"), corpus.slice(0, 4)));
    } finally {
      cleanup(trace);
    }
  });

  it("finishes a phase with a backup copy of a straggler's task; the first to finish wins", async () => {
    const out = join(root, "backup");
    const markers = tempDir("markers");
    try {
      // The straggler stalls for longer than the test may run: only a backup copy of its task
      // can finish the map phase in time.
      const result = await runLocalJob({
        job: jobPath("stall-once"),
        jobOptions: { markerDir: markers, stallMs: "120000" },
        inputs: corpus.slice(0, 3),
        reduces: 2,
        outDir: out,
        workers: 2,
        // Timeouts far above the stall: only a backup copy can finish the map phase early.
        taskTimeoutMs: 30_000,
        workerTimeoutMs: 30_000,
        backupAfterMs: 300,
        lingerMs: 500,
      });
      expect(result.runs).toEqual({ map: 4, reduce: 2 });
      expect(readOutputs(out)).toEqual(await sequentialLines("wordcount", corpus.slice(0, 3)));
    } finally {
      cleanup(markers);
    }
  }, 60_000);

  it("workers and the coordinator exit only after the job is done", async () => {
    const out = join(root, "early");
    const port = await freePort();
    const coordinator = processes.start(coordinatorMain, [
      "--job",
      jobPath("slow"),
      "--option",
      "sleepMs=300",
      ...corpus.flatMap((f) => ["--input", f]),
      "--reduces",
      "3",
      "--out",
      out,
      "--listen",
      `127.0.0.1:${port}`,
      "--task-timeout-ms",
      "5000",
      "--linger-ms",
      "2000",
    ]);
    await waitFor("coordinator listening", () => coordinator.output().includes("listening"));
    const workers = [0, 1, 2].map(() =>
      processes.start(workerMain, ["--coordinator", `127.0.0.1:${port}`, ...fastWorker]),
    );
    const snapshots: string[][] = [];
    const all = [coordinator, ...workers];
    await Promise.all(all.map((p) => p.exited.then(() => snapshots.push(readOutputs(out)))));
    const final = readOutputs(out);
    expect(final).toEqual(await sequentialLines("wordcount", corpus));
    // Whoever exited first already saw the complete output.
    for (const s of snapshots) expect(s).toEqual(final);
    expect(await coordinator.exited).toBe(0);
    for (const w of workers) expect(await w.exited).toBe(0);
  });

  it("gets exactly the right output when workers randomly crash (SIGKILL) or stall", async () => {
    // One seed per run (random unless QUORUM_SEED is set); a failure prints its replay command.
    // The seed fixes which attempt of which task crashes or stalls; the interleaving of the
    // processes is the machine's (the core's simulation replays interleavings).
    await runSeeds(
      "gets exactly the right output when workers randomly crash (SIGKILL) or stall",
      async (seed) => {
        const out = join(root, `crash-${seed}`);
        const markers = tempDir("markers");
        try {
          const result = await runLocalJob({
            job: jobPath("crash"),
            jobOptions: {
              seed: String(seed),
              crash: "0.06",
              stall: "0.06",
              stallMs: "2500",
              markerDir: markers,
              crashFile: basename(corpus[0]!),
              stallFile: basename(corpus[1]!),
            },
            inputs: corpus,
            reduces: 3,
            outDir: out,
            workers: 3,
            splitBytes: 60_000,
            maxWorkerStarts: 200,
            workerArgs: fastWorker,
            ...fast,
          });
          expect(readOutputs(out)).toEqual(await sequentialLines("wordcount", corpus));
          // Faults happened, so tasks ran more than once.
          expect(result.runs.map + result.runs.reduce).toBeGreaterThan(result.maps + result.reduces);
          expect(readdirSync(out).filter((f) => f.includes(".tmp"))).toEqual([]);
        } finally {
          cleanup(markers);
        }
      },
      { seeds: 1 },
    );
  }, 60_000);

  it("resumes the job when the coordinator is killed and restarted", async () => {
    const out = join(root, "restart");
    const trace = tempDir("trace");
    const state = join(trace, "state.sqlite");
    const port = await freePort();
    const args = [
      "--job",
      jobPath("slow"),
      "--option",
      "sleepMs=250",
      "--option",
      `traceDir=${trace}`,
      ...corpus.flatMap((f) => ["--input", f]),
      "--split-bytes",
      "40000",
      "--reduces",
      "2",
      "--out",
      out,
      "--listen",
      `127.0.0.1:${port}`,
      "--state",
      state,
      "--task-timeout-ms",
      "5000",
      "--linger-ms",
      "2000",
    ];
    try {
      const first = processes.start(coordinatorMain, args);
      await waitFor("coordinator listening", () => first.output().includes("listening"));
      const workers = [0, 1].map(() =>
        processes.start(workerMain, ["--coordinator", `127.0.0.1:${port}`, ...fastWorker]),
      );
      const completedMaps = () => {
        const db = new Database(state, { readonly: true, fileMustExist: true });
        try {
          return (db.prepare("SELECT row FROM tasks WHERE kind = 'map'").all() as { row: string }[]).filter(
            (r) => JSON.parse(r.row).state === "completed",
          ).length;
        } finally {
          db.close();
        }
      };
      await waitFor("some maps completed", () => completedMaps() >= 4);
      first.kill("SIGKILL");
      await first.exited;
      const doneBefore = completedMaps();
      await new Promise((r) => setTimeout(r, 500));
      expect(workers.every((w) => w.exitCode === null)).toBe(true); // workers wait for it

      const second = processes.start(coordinatorMain, args);
      expect(await second.exited).toBe(0);
      const summary = JSON.parse(second.output().trim().split("\n").at(-1)!);
      expect(summary.resumed).toBe(true);
      for (const w of workers) expect(await w.exited).toBe(0);
      expect(readOutputs(out)).toEqual(await sequentialLines("wordcount", corpus));
      // Map tasks completed before the crash did not run again; at most the two in flight did.
      const mapRuns = readFileSync(join(trace, "map-runs"), "utf8").trim().split("\n").length;
      expect(mapRuns).toBeLessThanOrEqual(summary.maps + 2);
      expect(doneBefore).toBeLessThan(summary.maps);
      expect(existsSync(state)).toBe(false);
    } finally {
      cleanup(trace);
    }
  }, 60_000);

  it("reports a job whose code throws with the task, the input and the message", async () => {
    const dir = tempDir("bad");
    try {
      const bad = join(dir, "bad.txt");
      const good = join(dir, "good.txt");
      const { writeFileSync } = await import("node:fs");
      writeFileSync(good, "a b c\n");
      writeFileSync(bad, "x y z\n");
      const run = runLocalJob({
        job: jobPath("throws"),
        inputs: [good, bad],
        reduces: 1,
        outDir: join(dir, "out"),
        workers: 2,
        maxTaskFailures: 3,
        ...fast,
      });
      const error = await run.catch((e: unknown) => e);
      expect(error).toBeInstanceOf(MapReduceError);
      expect((error as MapReduceError).code).toBe("JOB_FAILED");
      expect((error as MapReduceError).message).toBe(
        `map task 1 (${bad} bytes 0..6) failed 3 times: map threw Error: cannot parse ${bad}`,
      );
    } finally {
      cleanup(dir);
    }
  });

  it("cancels a running job through its AbortSignal, promptly", async () => {
    // Each map task sleeps a minute: only a prompt cancel ends the job within the test's time.
    const controller = new AbortController();
    const error = await runLocalJob({
      job: jobPath("slow"),
      jobOptions: { sleepMs: "60000" },
      inputs: corpus,
      reduces: 1,
      outDir: join(root, "cancel"),
      workers: 2,
      signal: controller.signal,
      onProgress: (p) => {
        if (p.map.inProgress > 0) controller.abort();
      },
    }).catch((e: unknown) => e);
    expect((error as MapReduceError).code).toBe("JOB_FAILED");
    expect((error as Error).message).toBe("the job was cancelled");
    // The state file stays, so the same job could resume.
    expect(existsSync(join(root, "cancel", ".mr-coordinator.sqlite"))).toBe(true);
  }, 30_000);

  it("rejects bad input with one-line typed errors", async () => {
    const out = join(root, "bad-input");
    const base = { job: "wordcount", inputs: corpus, reduces: 1, outDir: out, workers: 1 };
    const code = async (over: Partial<typeof base>) => {
      const e = await runLocalJob({ ...base, ...over }).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(MapReduceError);
      expect((e as Error).message).not.toContain("\n");
      return [(e as MapReduceError).code, (e as Error).message];
    };
    expect(await code({ inputs: [join(root, "in", "nothing-*.txt")] })).toEqual([
      "NO_INPUT",
      `no file matches ${join(root, "in", "nothing-*.txt")}`,
    ]);
    expect((await code({ inputs: [join(root, "missing.txt")] }))[0]).toBe("NO_INPUT");
    expect((await code({ inputs: [join(root, "in")] }))[0]).toBe("UNREADABLE_INPUT");
    expect((await code({ reduces: 0 }))[0]).toBe("BAD_REDUCES");
    expect(await code({ job: jobPath("no-reduce") })).toEqual([
      "BAD_JOB",
      `job module ${jobPath("no-reduce")} must export functions map and reduce`,
    ]);
    expect((await code({ job: "nope" }))[0]).toBe("BAD_JOB");
    expect((await code({ workers: 0 }))[0]).toBe("BAD_OPTION");
    expect(existsSync(join(out, ".mr-coordinator.sqlite"))).toBe(false);
  });
});
