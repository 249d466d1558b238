import {
  GrpcTransport,
  type GrpcTransportOptions,
  TransportError,
  type TransportEvent,
} from "@quorum/transport";
import { afterEach, describe, expect, it } from "vitest";
import { waitFor } from "./helpers.js";

const started: GrpcTransport[] = [];

afterEach(async () => {
  await Promise.all(started.splice(0).map((t) => t.close()));
});

const fastBackoff = { initialMs: 20, maxMs: 200, multiplier: 2, jitter: 0.2 };

async function node(id: string, options: Partial<GrpcTransportOptions> = {}): Promise<GrpcTransport> {
  const transport = new GrpcTransport({
    nodeId: id,
    clusterId: "test",
    listen: "127.0.0.1:0",
    backoff: fastBackoff,
    closeGraceMs: 200,
    ...options,
  });
  started.push(transport);
  await transport.start();
  return transport;
}

function connectAll(nodes: GrpcTransport[]): void {
  for (const a of nodes)
    for (const b of nodes) if (a !== b) a.addPeer({ id: b.localId, address: b.address! });
}

const encode = (n: number) => {
  const payload = new Uint8Array(8);
  new DataView(payload.buffer).setUint32(0, n);
  return payload;
};
const decode = (payload: Uint8Array) =>
  new DataView(payload.buffer, payload.byteOffset, payload.byteLength).getUint32(0);

describe("GrpcTransport", () => {
  it("three nodes exchange 1000 messages per pair and channel, in order", async () => {
    const nodes = [await node("n1"), await node("n2"), await node("n3")];
    connectAll(nodes);
    const channels = ["raft", "kv"];
    const received = new Map<string, number[]>();
    for (const n of nodes) {
      for (const channel of channels) {
        n.subscribe(channel, (from, payload) => {
          const key = `${from}->${n.localId}/${channel}`;
          let list = received.get(key);
          if (!list) received.set(key, (list = []));
          list.push(decode(payload));
        });
      }
    }
    const perPair = 1000;
    for (let i = 0; i < perPair; i++) {
      for (const from of nodes) {
        for (const to of nodes) {
          if (from === to) continue;
          for (const channel of channels) from.send(to.localId, channel, encode(i));
        }
      }
      // Yield now and then so batches interleave with connection setup and draining.
      if (i % 100 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    const total = 3 * 2 * channels.length * perPair;
    await waitFor(
      () => [...received.values()].reduce((sum, list) => sum + list.length, 0) >= total,
      `${total} messages received`,
    );
    expect(received.size).toBe(12);
    const expected = Array.from({ length: perPair }, (_, i) => i);
    for (const [key, list] of received) expect(list, key).toEqual(expected);
    for (const n of nodes) {
      const stats = n.stats();
      expect(stats.sent).toBe(2 * channels.length * perPair);
      expect(stats.received).toBe(2 * channels.length * perPair);
      expect(stats.droppedQueueFull + stats.droppedDisconnected + stats.droppedInvalid).toBe(0);
      expect(n.peerStatus().every((p) => p.connected)).toBe(true);
    }
    await waitFor(() => nodes.every((n) => n.stats().delivered === n.stats().sent), "all writes completed");
  });

  it("keeps order when every message is its own write and the stream pushes back", async () => {
    // One message per Frame makes write() report backpressure (grpc-js buffers 16 frames),
    // so the sender must wait for 'drain' without losing or reordering anything.
    const a = await node("a", { maxBatchMessages: 1 });
    const b = await node("b");
    connectAll([a, b]);
    const got: number[] = [];
    b.subscribe("x", (_from, payload) => got.push(decode(payload)));
    const count = 5000;
    for (let i = 0; i < count; i++) a.send("b", "x", encode(i));
    await waitFor(() => got.length === count, `${count} messages`);
    expect(got).toEqual(Array.from({ length: count }, (_, i) => i));
    expect(a.stats()).toMatchObject({ sent: count, droppedQueueFull: 0 });
    expect(a.peerStatus()[0]!.drainWaits).toBeGreaterThan(0);
  });

  it("reconnects to a peer restarted on the same port, and traffic resumes", async () => {
    const a = await node("a");
    const b1 = await node("b");
    const port = b1.port!;
    a.addPeer({ id: "b", address: b1.address! });
    const events: TransportEvent[] = [];
    a.onEvent((event) => events.push(event));
    const got1: number[] = [];
    b1.subscribe("x", (_from, payload) => got1.push(decode(payload)));
    a.send("b", "x", encode(1));
    await waitFor(() => got1.length === 1, "first message");

    await b1.close();
    await waitFor(() => events.some((e) => e.type === "disconnected"), "disconnect noticed");
    // Sent while b is down: queued, and flushed after the reconnect.
    for (let i = 2; i <= 10; i++) a.send("b", "x", encode(i));

    const b2 = await node("b", { listen: `127.0.0.1:${port}` });
    const got2: number[] = [];
    b2.subscribe("x", (_from, payload) => got2.push(decode(payload)));
    await waitFor(() => got2.length >= 9, "messages queued during the outage");
    expect(got2).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10]);
    a.send("b", "x", encode(11));
    await waitFor(() => got2.length === 10, "message after the reconnect");
    expect(got2.at(-1)).toBe(11);
    const status = a.peerStatus().find((p) => p.id === "b")!;
    expect(status.connected).toBe(true);
    expect(status.reconnects).toBeGreaterThanOrEqual(1);
    expect(events.filter((e) => e.type === "connected").length).toBe(2);
  });

  it("redials a backed-off peer at once when that peer dials in", async () => {
    // A backoff of a minute: only the peer's own Hello can bring the connection back in time.
    const slow = { initialMs: 60_000, maxMs: 60_000, multiplier: 1, jitter: 0 };
    const a = await node("a", { backoff: slow });
    const b1 = await node("b");
    const port = b1.port!;
    a.addPeer({ id: "b", address: b1.address! });
    const events: TransportEvent[] = [];
    a.onEvent((event) => events.push(event));
    a.send("b", "x", encode(1));
    await waitFor(() => events.some((e) => e.type === "connected"), "first connection");
    await b1.close();
    await waitFor(() => a.peerStatus()[0]!.state === "backoff", "a backs off from b");

    a.send("b", "x", encode(2));
    const b2 = await node("b", { listen: `127.0.0.1:${port}` });
    const got: number[] = [];
    b2.subscribe("x", (_from, payload) => got.push(decode(payload)));
    b2.addPeer({ id: "a", address: a.address! });
    b2.send("a", "hello", encode(0)); // b's stream to a carries its Hello: a learns b is up
    await waitFor(() => got.length === 1, "a's queued message after b dialed in");
    expect(got).toEqual([2]);
  });

  it("drops and counts messages beyond the queue limit of an unreachable peer", async () => {
    const a = await node("a", { queueLimit: 5 });
    // A port nobody listens on: bind a server, note its port, close it.
    const ghost = await node("ghost");
    const address = ghost.address!;
    await ghost.close();
    a.addPeer({ id: "ghost", address });
    for (let i = 0; i < 20; i++) a.send("ghost", "x", encode(i));
    expect(a.stats()).toMatchObject({ sent: 20, droppedQueueFull: 15, delivered: 0 });
    expect(a.peerStatus()[0]).toMatchObject({ id: "ghost", queueLength: 5, connected: false });
    await waitFor(() => a.peerStatus()[0]!.reconnects >= 2, "repeated dials with backoff");
    expect(a.peerStatus()[0]!.queueLength).toBe(5);
    a.send("nobody", "x", encode(0));
    expect(a.stats().droppedUnknownPeer).toBe(1);
  });

  it("throws MESSAGE_TOO_LARGE with both sizes for an oversized message", async () => {
    const a = await node("a", { maxMessageBytes: 1024 });
    a.addPeer({ id: "b", address: "127.0.0.1:1" });
    let error: unknown;
    try {
      a.send("b", "x", new Uint8Array(1025));
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(TransportError);
    expect((error as TransportError).code).toBe("MESSAGE_TOO_LARGE");
    expect((error as TransportError).message).toMatch(/1025 bytes.*1024 bytes/);
    expect(a.stats().sent).toBe(0);
    expect(() => a.send("b", "x", new Uint8Array(1024))).not.toThrow();
  });

  it("carries messages near the size limit, batched with small ones", async () => {
    const max = 256 * 1024;
    const a = await node("a", { maxMessageBytes: max, maxBatchBytes: 64 * 1024 });
    const b = await node("b", { maxMessageBytes: max, maxBatchBytes: 64 * 1024 });
    connectAll([a, b]);
    const sizes: number[] = [];
    b.subscribe("x", (_from, payload) => sizes.push(payload.byteLength));
    const plan = [max, 10, 10, max, 100, max];
    for (const size of plan) a.send("b", "x", new Uint8Array(size).fill(7));
    await waitFor(() => sizes.length === plan.length, "all sizes received");
    expect(sizes).toEqual(plan);
  });

  it("refuses a peer of another cluster with a clear error, and delivers nothing", async () => {
    const b = await node("n2", { clusterId: "a" });
    const a = await node("n1", { clusterId: "b" });
    const got: Uint8Array[] = [];
    b.subscribe("x", (_from, payload) => got.push(payload));
    const events: TransportEvent[] = [];
    const incoming: TransportEvent[] = [];
    a.onEvent((event) => events.push(event));
    b.onEvent((event) => incoming.push(event));
    a.addPeer({ id: "n2", address: b.address! });
    a.send("n2", "x", encode(1));
    await waitFor(
      () => events.filter((e) => e.type === "refused").length >= 2,
      "refused, twice (backing off)",
    );
    const refused = events.find((e) => e.type === "refused")!;
    expect(refused).toMatchObject({
      peer: "n2",
      reason: 'cluster id mismatch: this node n2 is in cluster "a", caller n1 says "b"',
    });
    expect(incoming[0]).toMatchObject({ type: "refused-incoming", peer: "n1" });
    expect(a.stats().refusedOutgoing).toBeGreaterThanOrEqual(2);
    expect(b.stats().refusedIncoming).toBeGreaterThanOrEqual(2);
    expect(a.peerStatus()[0]).toMatchObject({ connected: false, queueLength: 1 });
    expect(a.peerStatus()[0]!.lastError).toMatch(/cluster id mismatch/);
    expect(got).toEqual([]);
    expect(b.stats().received).toBe(0);
  });

  it("refuses a stream meant for another node", async () => {
    const b = await node("n2");
    const a = await node("n1");
    const events: TransportEvent[] = [];
    a.onEvent((event) => events.push(event));
    // The address of n2, but a's configuration calls it n3.
    a.addPeer({ id: "n3", address: b.address! });
    a.send("n3", "x", encode(1));
    await waitFor(() => events.some((e) => e.type === "refused"), "refused");
    expect(events.find((e) => e.type === "refused")).toMatchObject({
      reason: 'wrong node: caller n1 meant to reach "n3", but this is node n2',
    });
    expect(b.stats().received + b.stats().droppedNoSubscriber).toBe(0);
  });

  it("a throwing subscriber is logged and does not break the stream", async () => {
    const errors: object[] = [];
    const logger = { debug() {}, info() {}, warn() {}, error: (obj: object) => void errors.push(obj) };
    const a = await node("a");
    const b = await node("b", { logger });
    connectAll([a, b]);
    const got: number[] = [];
    b.subscribe("x", (_from, payload) => {
      const n = decode(payload);
      if (n % 2 === 0) throw new Error(`even ${n}`);
      got.push(n);
    });
    for (let i = 1; i <= 10; i++) a.send("b", "x", encode(i));
    await waitFor(() => got.length === 5, "odd messages");
    expect(got).toEqual([1, 3, 5, 7, 9]);
    expect(errors).toHaveLength(5);
    expect(a.peerStatus()[0]!.reconnects).toBe(0);
    expect(b.stats().received).toBe(10);
  });

  it("counts messages without a subscriber and rejects bad input", async () => {
    const a = await node("a");
    const b = await node("b");
    connectAll([a, b]);
    a.send("b", "nobody-listens", encode(1));
    await waitFor(() => b.stats().droppedNoSubscriber === 1, "droppedNoSubscriber");
    expect(() => a.send("b", "", encode(1))).toThrow(/empty channel/);
    expect(() => a.addPeer({ id: "a", address: "127.0.0.1:1" })).toThrow(/itself/);
    expect(() => a.addPeer({ id: "c", address: "no port here" })).toThrow(/is not host:port/);
    expect(
      () => new GrpcTransport({ nodeId: "x", clusterId: "c", listen: "127.0.0.1:0", queueLimit: 0 }),
    ).toThrow(/queueLimit must be a positive integer/);
    await a.close();
    await a.close(); // idempotent
    expect(() => a.send("b", "x", encode(1))).toThrow(/closed/);
  });
});
