import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { JobProgress } from "@quorum/mapreduce";
import { Counter, Gauge, Registry } from "prom-client";
import { parseHostPort } from "../node/config.js";

const phases = ["map", "reduce", "done", "failed"] as const;
const states = ["idle", "inProgress", "completed"] as const;
const stateLabel = { idle: "idle", inProgress: "in-progress", completed: "completed" } as const;

/**
 * Prometheus metrics of a MapReduce coordinator. They are fed from its progress reports (one
 * per change of the task table), so the runner itself needs no metrics library.
 */
export class MapreduceMetrics {
  readonly registry = new Registry();
  private readonly tasks = new Gauge({
    name: "quorum_mapreduce_tasks",
    help: "Tasks by kind (map, reduce) and state (idle, in-progress, completed)",
    labelNames: ["kind", "state"],
    registers: [this.registry],
  });
  private readonly phase = new Gauge({
    name: "quorum_mapreduce_phase",
    help: "1 for the job's current phase (map, reduce, done, failed), 0 for the others",
    labelNames: ["phase"],
    registers: [this.registry],
  });
  private readonly workers = new Gauge({
    name: "quorum_mapreduce_workers",
    help: "Workers the coordinator counts as alive",
    registers: [this.registry],
  });
  private readonly inputBytes = new Counter({
    name: "quorum_mapreduce_input_bytes_total",
    help: "Input bytes of completed map tasks",
    registers: [this.registry],
  });
  private readonly inputBytesTotal = new Gauge({
    name: "quorum_mapreduce_input_bytes",
    help: "Input bytes of the whole job",
    registers: [this.registry],
  });
  private readonly shuffledBytes = new Counter({
    name: "quorum_mapreduce_shuffled_bytes_total",
    help: "Intermediate bytes reduce attempts read from map output (other workers' or their own)",
    registers: [this.registry],
  });
  private seen = { bytesDone: 0, bytesShuffled: 0 };

  update(p: JobProgress): void {
    for (const kind of ["map", "reduce"] as const) {
      for (const state of states) this.tasks.set({ kind, state: stateLabel[state] }, p[kind][state]);
    }
    for (const phase of phases) this.phase.set({ phase }, p.phase === phase ? 1 : 0);
    this.workers.set(p.liveWorkers);
    this.inputBytesTotal.set(p.bytesTotal);
    // The progress carries running totals; counters take the increase since the last report.
    this.inputBytes.inc(Math.max(0, p.bytesDone - this.seen.bytesDone));
    this.shuffledBytes.inc(Math.max(0, p.bytesShuffled - this.seen.bytesShuffled));
    this.seen = { bytesDone: p.bytesDone, bytesShuffled: p.bytesShuffled };
  }
}

export interface MetricsServer {
  /** The bound host:port (the real port when asked for port 0). */
  address: string;
  close(): Promise<void>;
}

/** Serves `registry` at http://address/metrics until closed. */
export async function serveMapreduceMetrics(address: string, registry: Registry): Promise<MetricsServer> {
  const bare = parseHostPort("--listen-metrics", address);
  const colon = bare.lastIndexOf(":");
  const host = bare.slice(0, colon).replace(/^\[|\]$/g, "");
  const server = createServer((req, res) => {
    if ((req.url ?? "/").split("?")[0] !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain" }).end("only /metrics here\n");
      return;
    }
    registry.metrics().then(
      (body) => res.writeHead(200, { "content-type": registry.contentType }).end(body),
      (err: Error) => res.writeHead(500, { "content-type": "text/plain" }).end(`${err.message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err: Error) => reject(new Error(`--listen-metrics ${address}: ${err.message}`)));
    server.listen(Number(bare.slice(colon + 1)), host, resolve);
  });
  const port = (server.address() as AddressInfo).port;
  return {
    address: `${bare.slice(0, colon)}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
