#!/usr/bin/env node
// A worker process: `node worker-main.js --coordinator HOST:PORT [--id ID] [--listen HOST:PORT]
// [--advertise HOST:PORT] [--dir DIR] [--heartbeat-ms N] [--coordinator-lost-ms N]
// [--fetch-idle-timeout-ms N]`. Exits 0 when the job is over, 1 with a one-line error otherwise.
import { parseArgs } from "node:util";
import { pino } from "pino";
import { runWorker, type WorkerOptions } from "./node/worker.js";

function number(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number, got ${value}`);
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      coordinator: { type: "string" },
      id: { type: "string" },
      listen: { type: "string" },
      advertise: { type: "string" },
      dir: { type: "string" },
      "heartbeat-ms": { type: "string" },
      "coordinator-lost-ms": { type: "string" },
      "fetch-idle-timeout-ms": { type: "string" },
    },
    strict: true,
  });
  if (!values.coordinator) throw new Error("--coordinator HOST:PORT is required");
  const logger = pino({ level: process.env.QUORUM_LOG_LEVEL ?? "warn" }, pino.destination(2));
  const options: WorkerOptions = { coordinator: values.coordinator, logger };
  if (values.id) options.id = values.id;
  if (values.listen) options.listen = values.listen;
  if (values.advertise) options.advertise = values.advertise;
  if (values.dir) options.dir = values.dir;
  const hb = number("heartbeat-ms", values["heartbeat-ms"]);
  if (hb !== undefined) options.heartbeatMs = hb;
  const lost = number("coordinator-lost-ms", values["coordinator-lost-ms"]);
  if (lost !== undefined) options.coordinatorLostMs = lost;
  const idle = number("fetch-idle-timeout-ms", values["fetch-idle-timeout-ms"]);
  if (idle !== undefined) options.fetchIdleTimeoutMs = idle;
  await runWorker(options);
}

// Exit through process.exit so the worker's exit hook removes its temp dir.
for (const signal of ["SIGINT", "SIGTERM"] as const)
  process.once(signal, () => process.exit(128 + (signal === "SIGINT" ? 2 : 15)));

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`mapreduce worker: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
