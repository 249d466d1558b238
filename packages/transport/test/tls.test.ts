import { readFileSync } from "node:fs";
import { credentials, type StatusObject } from "@grpc/grpc-js";
import { GrpcTransport, loadTlsCredentials, type TransportEvent } from "@quorum/transport";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { PeerClient } from "../src/gen/quorum/transport/v1/transport.js";
import { makeTestCa, type TestCa } from "../src/testing/index.js";
import { waitFor } from "./helpers.js";

let ca: TestCa;
let otherCa: TestCa;
const started: GrpcTransport[] = [];

beforeAll(() => {
  ca = makeTestCa("cluster-ca");
  otherCa = makeTestCa("other-ca");
});
afterAll(() => {
  ca.remove();
  otherCa.remove();
});
afterEach(async () => {
  await Promise.all(started.splice(0).map((t) => t.close()));
});

async function tlsNode(id: string, authority: TestCa): Promise<GrpcTransport> {
  const transport = new GrpcTransport({
    nodeId: id,
    clusterId: "secure",
    listen: "127.0.0.1:0",
    tls: { caFile: authority.caFile, ...authority.issue(id) },
    backoff: { initialMs: 20, maxMs: 200, multiplier: 2, jitter: 0.2 },
    closeGraceMs: 200,
  });
  started.push(transport);
  await transport.start();
  return transport;
}

describe("mutual TLS", () => {
  it("carries messages between nodes with certificates of the cluster's CA", async () => {
    const a = await tlsNode("a", ca);
    const b = await tlsNode("b", ca);
    a.addPeer({ id: "b", address: b.address! });
    b.addPeer({ id: "a", address: a.address! });
    const got: string[] = [];
    b.subscribe("x", (from, payload) => got.push(`${from}:${Buffer.from(payload).toString()}`));
    a.subscribe("x", (from, payload) => got.push(`${from}:${Buffer.from(payload).toString()}`));
    a.send("b", "x", Buffer.from("ping"));
    b.send("a", "x", Buffer.from("pong"));
    await waitFor(() => got.length === 2, "both messages");
    expect(got.sort()).toEqual(["a:ping", "b:pong"]);
  });

  it("refuses a client that presents no certificate", async () => {
    const server = await tlsNode("server", ca);
    let received = 0;
    server.subscribe("x", () => received++);
    // Trusts the server's CA but has no certificate of its own.
    const client = new PeerClient(server.address!, credentials.createSsl(readFileSync(ca.caFile)));
    try {
      const call = client.stream();
      const ended = new Promise<StatusObject>((resolve) => call.on("status", resolve));
      call.on("error", () => {});
      call.write({
        hello: { clusterId: "secure", from: "intruder", to: "server", protocolVersion: 1 },
        envelopes: [],
      });
      call.write({
        hello: undefined,
        envelopes: [{ from: "intruder", to: "server", channel: "x", payload: Buffer.from("hi") }],
      });
      const status = await ended;
      expect(status.code).not.toBe(0);
    } finally {
      client.close();
    }
    expect(received).toBe(0);
    expect(server.stats().received).toBe(0);
  });

  it("fails both ways between nodes whose certificates come from different CAs", async () => {
    const a = await tlsNode("a", ca);
    const stranger = await tlsNode("b", otherCa);
    let received = 0;
    a.subscribe("x", () => received++);
    const events: TransportEvent[] = [];
    stranger.onEvent((event) => events.push(event));
    stranger.addPeer({ id: "a", address: a.address! });
    stranger.send("a", "x", Buffer.from("hi"));
    await waitFor(() => events.filter((e) => e.type === "dial-failed").length >= 2, "repeated failed dials");
    expect(events.some((e) => e.type === "connected")).toBe(false);
    expect(stranger.peerStatus()[0]).toMatchObject({ connected: false, queueLength: 1 });
    expect(received).toBe(0);
  });

  it("reports a missing TLS file clearly", () => {
    expect(() => loadTlsCredentials({ caFile: "/nonexistent/ca.pem", cert: "x", key: "y" })).toThrow(
      /cannot read caFile \/nonexistent\/ca.pem/,
    );
    expect(() => loadTlsCredentials({ cert: "x", key: "y" })).toThrow(/ca or caFile is required/);
  });
});
