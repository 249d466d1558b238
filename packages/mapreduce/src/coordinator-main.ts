#!/usr/bin/env node
// A coordinator process: `node coordinator-main.js --job JOB --input GLOB... --reduces R
// --out DIR [--listen HOST:PORT] [--state FILE] [--option k=v]... [--split-bytes N]
// [--task-timeout-ms N] [--worker-timeout-ms N] [--backup-after-ms N] [--max-task-failures N]`.
// Prints `listening HOST:PORT` once it serves, a JSON summary line when done; exits 1 with a
// one-line error otherwise.
import { parseArgs } from "node:util";
import { pino } from "pino";
import { type CoordinatorOptions, runCoordinator } from "./node/coordinator.js";

function number(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n)) throw new Error(`--${name} must be a number, got ${value}`);
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      job: { type: "string" },
      input: { type: "string", multiple: true },
      reduces: { type: "string" },
      out: { type: "string" },
      listen: { type: "string" },
      state: { type: "string" },
      option: { type: "string", multiple: true },
      "split-bytes": { type: "string" },
      "task-timeout-ms": { type: "string" },
      "worker-timeout-ms": { type: "string" },
      "backup-after-ms": { type: "string" },
      "max-task-failures": { type: "string" },
      "linger-ms": { type: "string" },
    },
    strict: true,
  });
  if (!values.job) throw new Error("--job is required");
  if (!values.out) throw new Error("--out DIR is required");
  const jobOptions: Record<string, string> = {};
  for (const kv of values.option ?? []) {
    const eq = kv.indexOf("=");
    if (eq < 1) throw new Error(`--option must be key=value, got ${kv}`);
    jobOptions[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  const options: CoordinatorOptions = {
    job: values.job,
    jobOptions,
    inputs: values.input ?? [],
    reduces: number("reduces", values.reduces ?? "1")!,
    outDir: values.out,
    logger: pino({ level: process.env.QUORUM_LOG_LEVEL ?? "warn" }, pino.destination(2)),
  };
  if (values.listen) options.listen = values.listen;
  if (values.state) options.statePath = values.state;
  const optional = [
    ["split-bytes", "splitBytes"],
    ["task-timeout-ms", "taskTimeoutMs"],
    ["worker-timeout-ms", "workerTimeoutMs"],
    ["backup-after-ms", "backupAfterMs"],
    ["max-task-failures", "maxTaskFailures"],
    ["linger-ms", "lingerMs"],
  ] as const;
  for (const [flag, key] of optional) {
    const n = number(flag, values[flag]);
    if (n !== undefined) options[key] = n;
  }
  const result = await runCoordinator({
    ...options,
    onListening: (address) => process.stdout.write(`listening ${address}\n`),
  });
  const { taskRuns, ...summary } = result;
  process.stdout.write(`${JSON.stringify({ ...summary, taskRuns })}\n`);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(
      `mapreduce coordinator: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    process.exit(1);
  },
);
