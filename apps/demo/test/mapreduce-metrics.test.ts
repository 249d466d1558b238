import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { defaultPartition } from "@quorum/mapreduce";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runJobCoordinator } from "../src/commands/mapreduce.js";
import { freeBasePort } from "./ports.js";

const cli = fileURLToPath(new URL("../dist/cli.js", import.meta.url));
const gateJob = fileURLToPath(new URL("./mapreduce-gate-job.mjs", import.meta.url));

async function until(what: string, check: () => Promise<boolean> | boolean): Promise<void> {
  for (let i = 0; i < 2_000; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`gave up waiting for ${what}`);
}

/** Samples of the Prometheus text format as `name{labels}` -> value. */
async function scrape(address: string): Promise<Map<string, number>> {
  const response = await fetch(`http://${address}/metrics`);
  expect(response.status).toBe(200);
  const samples = new Map<string, number>();
  for (const line of (await response.text()).split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const space = line.lastIndexOf(" ");
    samples.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return samples;
}

describe("mapreduce coordinator with listenMetrics (the CLI's --listen-metrics)", () => {
  let dir: string;
  let worker: ChildProcess | undefined;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "quorum-mr-metrics-"));
    mkdirSync(join(dir, "in"));
    mkdirSync(join(dir, "gate"));
    writeFileSync(join(dir, "in", "a.txt"), "alpha beta alpha\n");
    writeFileSync(join(dir, "in", "b.txt"), "omega alpha\n");
  });
  afterAll(() => {
    worker?.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });

  it("serves tasks by kind and state, live workers and shuffled bytes while the job runs", async () => {
    // The worker runs reduce 0, then waits inside reduce 1 (key alpha) until released.
    expect(["alpha", "beta", "omega"].map((w) => defaultPartition(w, 2))).toEqual([1, 1, 0]);
    const base = await freeBasePort();
    const coordinator = `127.0.0.1:${base}`;
    const metrics = `127.0.0.1:${base + 1}`;
    const job = runJobCoordinator({
      job: gateJob,
      input: [join(dir, "in", "*.txt")],
      reduces: 2,
      out: join(dir, "out"),
      taskTimeout: 60,
      listen: coordinator,
      listenMetrics: metrics,
    });
    job.catch(() => {});
    // The endpoint answers as soon as it listens, which can be before the job has planned
    // its tasks: wait for the task gauges themselves.
    await until("the metrics endpoint with the job's tasks", () =>
      scrape(metrics).then(
        (m) => m.has('quorum_mapreduce_tasks{kind="map",state="idle"}'),
        () => false,
      ),
    );

    const before = await scrape(metrics);
    expect(before.get('quorum_mapreduce_tasks{kind="map",state="idle"}')).toBe(2);
    expect(before.get('quorum_mapreduce_tasks{kind="reduce",state="idle"}')).toBe(2);
    expect(before.get('quorum_mapreduce_phase{phase="map"}')).toBe(1);
    expect(before.get("quorum_mapreduce_workers")).toBe(0);
    expect(before.get("quorum_mapreduce_shuffled_bytes_total")).toBe(0);
    expect(before.get("quorum_mapreduce_input_bytes")).toBe(29);

    worker = spawn(process.execPath, [cli, "mapreduce", "worker", "--coordinator", coordinator], {
      stdio: "ignore",
      env: { ...process.env, QUORUM_MR_GATE: join(dir, "gate") },
    });
    const exited = new Promise<number | null>((resolve) => worker!.once("exit", resolve));
    await until("the worker to wait in reduce 1", () => existsSync(join(dir, "gate", "waiting")));

    const during = await scrape(metrics);
    expect(during.get('quorum_mapreduce_tasks{kind="map",state="completed"}')).toBe(2);
    expect(during.get('quorum_mapreduce_tasks{kind="reduce",state="completed"}')).toBe(1);
    expect(during.get('quorum_mapreduce_tasks{kind="reduce",state="in-progress"}')).toBe(1);
    expect(during.get('quorum_mapreduce_phase{phase="reduce"}')).toBe(1);
    expect(during.get("quorum_mapreduce_workers")).toBe(1);
    expect(during.get("quorum_mapreduce_input_bytes_total")).toBe(29);
    // Reduce 0 fetched its partition: nothing from map task 0, one record from map task 1.
    expect(during.get("quorum_mapreduce_shuffled_bytes_total")).toBe("omega\t1\n".length);

    writeFileSync(join(dir, "gate", "release"), "");
    await job;
    expect(await exited).toBe(0);
    expect(readFileSync(join(dir, "out", "mr-out-1"), "utf8")).toBe("alpha 3\nbeta 1\n");
    // The endpoint lives as long as the job.
    await expect(fetch(`http://${metrics}/metrics`)).rejects.toThrow();
  }, 60_000);

  it("rejects a --listen-metrics that is not host:port", async () => {
    await expect(
      runJobCoordinator({
        job: "wordcount",
        input: [join(dir, "in", "*.txt")],
        reduces: 1,
        out: join(dir, "out-bad"),
        taskTimeout: 10,
        listen: "127.0.0.1:0",
        listenMetrics: "nowhere",
      }),
    ).rejects.toThrow(/--listen-metrics: "nowhere" is not host:port/);
  });
});
