import { GrpcTransport } from "@quorum/transport";

export interface TransportDemoOptions {
  nodes: number;
  messages: number;
}

/**
 * Starts `nodes` gRPC transports on 127.0.0.1, has each send `messages` numbered messages to
 * every other node, checks that every stream arrived complete and in order, and prints the
 * throughput. The cluster demo replaces this once the store runs.
 */
export async function runTransportDemo({ nodes, messages }: TransportDemoOptions): Promise<void> {
  const ids = Array.from({ length: nodes }, (_, i) => `n${i + 1}`);
  const transports = ids.map(
    (id) => new GrpcTransport({ nodeId: id, clusterId: "demo", listen: "127.0.0.1:0" }),
  );
  try {
    const addresses = await Promise.all(transports.map((t) => t.start()));
    for (const t of transports) {
      ids.forEach((id, i) => {
        if (id !== t.localId) t.addPeer({ id, address: addresses[i]! });
      });
    }
    console.log(`started ${nodes} nodes: ${ids.map((id, i) => `${id}=${addresses[i]}`).join(" ")}`);

    // next[receiver][sender] = the sequence number expected next; any gap or reorder is an error.
    const next = new Map(ids.map((id) => [id, new Map(ids.map((from) => [from, 0]))]));
    let received = 0;
    let outOfOrder = 0;
    const expected = nodes * (nodes - 1) * messages;
    const done = new Promise<void>((resolve) => {
      for (const t of transports) {
        t.subscribe("demo", (from, payload) => {
          const seq = Buffer.from(payload).readUInt32BE(0);
          const want = next.get(t.localId)!;
          if (seq !== want.get(from)) outOfOrder++;
          want.set(from, seq + 1);
          if (++received === expected) resolve();
        });
      }
    });

    const started = performance.now();
    const payload = Buffer.alloc(1024);
    for (let seq = 0; seq < messages; seq++) {
      payload.writeUInt32BE(seq, 0);
      for (const t of transports) {
        for (const id of ids) if (id !== t.localId) t.send(id, "demo", payload);
      }
      // Yield now and then so the transports flush their batches while we produce.
      if (seq % 256 === 255) await new Promise((r) => setImmediate(r));
    }
    const timeout = new Promise<never>((_, reject) =>
      setTimeout(
        () => reject(new Error(`only ${received} of ${expected} messages arrived within 30 s`)),
        30_000,
      ).unref(),
    );
    await Promise.race([done, timeout]);
    const seconds = (performance.now() - started) / 1000;

    console.log(`delivered ${received} messages of 1 KiB in ${seconds.toFixed(2)} s`);
    console.log(
      `  ${Math.round(received / seconds).toLocaleString("en")} messages/s, ${(received / 1024 / seconds).toFixed(1)} MiB/s`,
    );
    console.log(`  out of order: ${outOfOrder}`);
    for (const t of transports) {
      const s = t.stats();
      console.log(
        `  ${t.localId}: sent ${s.sent}, received ${s.received}, dropped ${s.droppedQueueFull + s.droppedDisconnected}`,
      );
    }
    if (outOfOrder > 0) throw new Error(`${outOfOrder} messages arrived out of order`);
  } finally {
    await Promise.all(transports.map((t) => t.close()));
  }
}
