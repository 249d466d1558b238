#!/usr/bin/env node
// Throughput of the gRPC transport against plain grpc-js unary calls, on loopback, between
// two processes (this one sends; a child process receives). 1 KiB payloads.
//   (a) GrpcTransport: the sender keeps up to WINDOW messages unacknowledged; the receiver
//       sends cumulative acks back over its own transport. Counted: acknowledged messages.
//   (b) grpc-js unary calls with 64 in flight, same payload, empty response.
// Prints a table and one JSON line. Each measurement runs DURATION_MS; the whole run is
// bounded by a watchdog and always kills its child.
import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import grpc from "@grpc/grpc-js";
import { GrpcTransport } from "../dist/index.js";

const PAYLOAD_BYTES = 1024;
const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 5_000);
const WARMUP_MS = 500;
const WINDOW = 5_000;
const ACK_EVERY = 256;
const UNARY_IN_FLIGHT = 64;

const rawService = {
  call: {
    path: "/bench.Raw/Call",
    requestStream: false,
    responseStream: false,
    requestSerialize: (value) => value,
    requestDeserialize: (value) => value,
    responseSerialize: (value) => value,
    responseDeserialize: (value) => value,
  },
};

if (process.argv[2] === "--receiver") await receiver();
else await sender();

async function receiver() {
  const rx = new GrpcTransport({ nodeId: "rx", clusterId: "bench", listen: "127.0.0.1:0" });
  const transportAddress = await rx.start();
  let count = 0;
  let acked = 0;
  rx.subscribe("data", () => {
    count++;
    if (count - acked >= ACK_EVERY) {
      acked = count;
      const ack = Buffer.alloc(8);
      ack.writeDoubleBE(count);
      rx.send("tx", "ack", ack);
    }
  });
  const server = new grpc.Server();
  const empty = Buffer.alloc(0);
  server.addService(rawService, { call: (_call, callback) => callback(null, empty) });
  const rawPort = await new Promise((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, port) =>
      err ? reject(err) : resolve(port),
    ),
  );
  process.on("message", (message) => {
    if (message.type === "peer") rx.addPeer({ id: "tx", address: message.address });
    if (message.type === "stop") {
      server.forceShutdown();
      void rx.close().then(() => process.exit(0));
    }
  });
  process.send({ type: "ready", transportAddress, rawAddress: `127.0.0.1:${rawPort}` });
}

async function sender() {
  const child = fork(fileURLToPath(import.meta.url), ["--receiver"], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const watchdog = setTimeout(
    () => {
      console.error("benchmark watchdog expired; stopping");
      child.kill("SIGKILL");
      process.exit(1);
    },
    4 * DURATION_MS + 30_000,
  );
  const stopChild = () => {
    if (child.exitCode === null) child.kill("SIGKILL");
  };
  process.on("exit", stopChild);
  try {
    const ready = await new Promise((resolve, reject) => {
      child.once("message", resolve);
      child.once("exit", (code) => reject(new Error(`receiver exited early (code ${code})`)));
    });
    const transport = await benchTransport(child, ready.transportAddress);
    const unary = await benchUnary(ready.rawAddress);
    const mb = (perSec) => (perSec * PAYLOAD_BYTES) / 1e6;
    const rows = [
      ["GrpcTransport (window " + WINDOW + ")", transport.perSec, mb(transport.perSec)],
      [`grpc-js unary (${UNARY_IN_FLIGHT} in flight)`, unary.perSec, mb(unary.perSec)],
    ];
    console.log(
      `\ntransport benchmark: ${PAYLOAD_BYTES} B payloads, loopback, 2 processes, ${DURATION_MS} ms each\n`,
    );
    console.log(`${"measurement".padEnd(34)}${"msgs/s".padStart(12)}${"MB/s".padStart(10)}`);
    for (const [name, perSec, mbPerSec] of rows) {
      console.log(
        `${name.padEnd(34)}${Math.round(perSec).toLocaleString("en-US").padStart(12)}${mbPerSec.toFixed(1).padStart(10)}`,
      );
    }
    const result = {
      bench: "transport",
      payloadBytes: PAYLOAD_BYTES,
      durationMs: DURATION_MS,
      grpcTransport: {
        msgsPerSec: Math.round(transport.perSec),
        mbPerSec: round(mb(transport.perSec)),
        window: WINDOW,
      },
      grpcUnary: {
        callsPerSec: Math.round(unary.perSec),
        mbPerSec: round(mb(unary.perSec)),
        inFlight: UNARY_IN_FLIGHT,
      },
      ratio: round(transport.perSec / unary.perSec),
    };
    console.log(JSON.stringify(result));
    child.send({ type: "stop" });
    await new Promise((resolve) => child.once("exit", resolve));
  } finally {
    clearTimeout(watchdog);
    stopChild();
  }
}

async function benchTransport(child, receiverAddress) {
  const tx = new GrpcTransport({ nodeId: "tx", clusterId: "bench", listen: "127.0.0.1:0" });
  const address = await tx.start();
  child.send({ type: "peer", address });
  tx.addPeer({ id: "rx", address: receiverAddress });
  const payload = Buffer.alloc(PAYLOAD_BYTES, 7);
  let sent = 0;
  let acked = 0;
  let stopped = false;
  const pump = () => {
    while (!stopped && sent - acked < WINDOW) {
      tx.send("rx", "data", payload);
      sent++;
    }
  };
  tx.subscribe("ack", (_from, ack) => {
    acked = Buffer.from(ack.buffer, ack.byteOffset, ack.byteLength).readDoubleBE(0);
    pump();
  });
  pump();
  await sleep(WARMUP_MS);
  const startAcked = acked;
  const start = performance.now();
  await sleep(DURATION_MS);
  const perSec = ((acked - startAcked) * 1000) / (performance.now() - start);
  stopped = true;
  await tx.close();
  return { perSec };
}

async function benchUnary(address) {
  const Client = grpc.makeGenericClientConstructor(rawService, "bench.Raw");
  const client = new Client(address, grpc.credentials.createInsecure());
  const payload = Buffer.alloc(PAYLOAD_BYTES, 7);
  let completed = 0;
  let errors = 0;
  let stopped = false;
  let running = 0;
  let done;
  const finished = new Promise((resolve) => (done = resolve));
  const loop = () => {
    if (stopped) {
      if (--running === 0) done();
      return;
    }
    client.call(payload, (err) => {
      if (err) errors++;
      else completed++;
      loop();
    });
  };
  for (let i = 0; i < UNARY_IN_FLIGHT; i++) {
    running++;
    loop();
  }
  await sleep(WARMUP_MS);
  const startCompleted = completed;
  const start = performance.now();
  await sleep(DURATION_MS);
  const perSec = ((completed - startCompleted) * 1000) / (performance.now() - start);
  stopped = true;
  await finished;
  client.close();
  if (errors > 0) console.error(`grpc-js unary: ${errors} calls failed`);
  return { perSec };
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function round(x) {
  return Math.round(x * 100) / 100;
}
