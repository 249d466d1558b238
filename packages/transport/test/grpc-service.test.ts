import { makeGenericClientConstructor, type ServiceError, status } from "@grpc/grpc-js";
import {
  createGrpcClient,
  promisifyUnary,
  type RunningGrpcServer,
  startGrpcServer,
  TransportError,
} from "@quorum/transport";
import { afterEach, describe, expect, it } from "vitest";

// A generic service over raw bytes, so the helpers are tested without a test-only proto.
const unary = (name: string) => ({
  path: `/test.Echo/${name}`,
  originalName: name,
  requestStream: false,
  responseStream: false,
  requestSerialize: (value: Buffer) => value,
  requestDeserialize: (value: Buffer) => value,
  responseSerialize: (value: Buffer) => value,
  responseDeserialize: (value: Buffer) => value,
});
const echoService = { echo: unary("Echo"), get: unary("Get"), put: unary("Put"), hang: unary("Hang") };
type Callback = (error: Partial<ServiceError> | null, value?: Buffer) => void;
type UnaryMethod = (
  request: Buffer,
  callback: (error: ServiceError | null, response: Buffer) => void,
) => unknown;
interface EchoClient {
  echo: UnaryMethod;
  get: UnaryMethod;
  put: UnaryMethod;
  hang: UnaryMethod;
  close(): void;
}
const EchoClient = makeGenericClientConstructor(echoService, "test.Echo");

const servers: RunningGrpcServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.shutdown(100)));
});

/** Get and Put each fail with UNAVAILABLE on their first `failures` calls. */
async function startEcho(failures = 0) {
  const calls = { get: 0, put: 0, hang: 0 };
  const flaky = (name: "get" | "put") => (call: { request: Buffer }, callback: Callback) => {
    calls[name]++;
    if (calls[name] <= failures) callback({ code: status.UNAVAILABLE, details: "try again" });
    else callback(null, call.request);
  };
  const server = await startGrpcServer({
    address: "127.0.0.1:0",
    services: [
      {
        definition: echoService,
        implementation: {
          echo: (call: { request: Buffer }, callback: Callback) => callback(null, call.request),
          get: flaky("get"),
          put: flaky("put"),
          hang: () => void calls.hang++, // never answers
        },
      },
    ],
  });
  servers.push(server);
  return { server, calls };
}

describe("startGrpcServer / createGrpcClient", () => {
  it("hosts a service on a bound port and answers calls", async () => {
    const { server } = await startEcho();
    expect(server.port).toBeGreaterThan(0);
    expect(server.address).toBe(`127.0.0.1:${server.port}`);
    const client = createGrpcClient(EchoClient, server.address) as unknown as EchoClient;
    const echo = promisifyUnary(client as never, client.echo);
    expect((await echo(Buffer.from("hello"))).toString()).toBe("hello");
    client.close();
  });

  it("retries idempotent methods on UNAVAILABLE, and only those", async () => {
    const { server, calls } = await startEcho(2);
    const client = createGrpcClient(EchoClient, server.address, {
      retry: { maxAttempts: 4, initialBackoffMs: 10, maxBackoffMs: 50 },
      idempotentMethods: ["Get"],
    }) as unknown as EchoClient;
    const get = promisifyUnary(client as never, client.get);
    const put = promisifyUnary(client as never, client.put);
    expect((await get(Buffer.from("k"))).toString()).toBe("k");
    expect(calls.get).toBe(3);
    await expect(put(Buffer.from("v"))).rejects.toMatchObject({ code: status.UNAVAILABLE });
    expect(calls.put).toBe(1);
    client.close();
  });

  it("applies the default deadline to calls without one", async () => {
    const { server, calls } = await startEcho();
    const client = createGrpcClient(EchoClient, server.address, {
      defaultDeadlineMs: 200,
    }) as unknown as EchoClient;
    const hang = promisifyUnary(client as never, client.hang);
    await expect(hang(Buffer.from("x"))).rejects.toMatchObject({ code: status.DEADLINE_EXCEEDED });
    expect(calls.hang).toBe(1);
    client.close();
  });

  it("shutdown ends a hanging call after the grace period", async () => {
    const { server, calls } = await startEcho();
    const client = createGrpcClient(EchoClient, server.address) as unknown as EchoClient;
    const hang = promisifyUnary(client as never, client.hang);
    const pending = hang(Buffer.from("x"));
    await expect.poll(() => calls.hang, { timeout: 10_000 }).toBe(1);
    await server.shutdown(100);
    await expect(pending).rejects.toMatchObject({ code: expect.any(Number) });
    await server.shutdown(100); // idempotent
    client.close();
  });

  it("names unknown idempotent methods and unusable addresses", async () => {
    expect(() =>
      createGrpcClient(EchoClient, "127.0.0.1:1", {
        retry: { maxAttempts: 2, initialBackoffMs: 10, maxBackoffMs: 10 },
        idempotentMethods: ["Nope"],
      }),
    ).toThrow(/idempotentMethods not in the service: Nope/);
    await expect(startGrpcServer({ address: "no-port", services: [] })).rejects.toThrow(TransportError);
  });
});
