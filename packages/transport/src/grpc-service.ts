import {
  type ChannelCredentials,
  type ChannelOptions,
  type Client,
  InterceptingCall,
  type Interceptor,
  Server,
  type ServiceDefinition,
  type ServiceError,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { channelCredentials, serverCredentials, type TlsOptions } from "./tls.js";
import { TransportError } from "./transport.js";

/** HTTP/2 keepalive pings, so a peer that vanished (no FIN, no RST) is noticed. */
export interface KeepaliveOptions {
  /** Ping after this long without activity. */
  timeMs: number;
  /** Declare the connection dead if a ping is unanswered this long. */
  timeoutMs: number;
}

export const defaultKeepalive: KeepaliveOptions = { timeMs: 10_000, timeoutMs: 5_000 };

export function keepaliveChannelOptions(keepalive: KeepaliveOptions): ChannelOptions {
  return {
    "grpc.keepalive_time_ms": keepalive.timeMs,
    "grpc.keepalive_timeout_ms": keepalive.timeoutMs,
    // Node-to-node streams sit idle between bursts; the dead-peer check must run then too.
    "grpc.keepalive_permit_without_calls": 1,
  };
}

export interface HostedService {
  // biome-ignore lint/suspicious/noExplicitAny: grpc-js's own definition type is generic over any
  definition: ServiceDefinition<any>;
  implementation: UntypedServiceImplementation;
}

export interface GrpcServerOptions {
  /** `host:port`; port 0 picks a free port (read it from the result). */
  address: string;
  services: HostedService[];
  tls?: TlsOptions;
  /** Largest request message accepted (default: grpc-js's 4 MiB). */
  maxReceiveMessageBytes?: number;
  /** Largest response message sent (default: grpc-js's default). */
  maxSendMessageBytes?: number;
  keepalive?: KeepaliveOptions;
}

export interface RunningGrpcServer {
  /** The bound port (the real one when the address asked for port 0). */
  port: number;
  /** `host:port` with the bound port. */
  address: string;
  server: Server;
  /**
   * Stops accepting calls and waits up to `graceMs` for running calls to finish, then
   * cancels whatever is left. Resolves when the server is down. Idempotent.
   */
  shutdown(graceMs?: number): Promise<void>;
}

/** Splits `host:port`, accepting bracketed IPv6 hosts. */
export function splitHostPort(address: string): { host: string; port: number } {
  const match = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(address);
  if (!match) throw new TransportError("INVALID_CONFIG", `address "${address}" is not host:port`);
  return { host: match[1]!, port: Number(match[2]) };
}

/** Starts a gRPC server hosting `services`; resolves once it listens. */
export async function startGrpcServer(options: GrpcServerOptions): Promise<RunningGrpcServer> {
  const { host } = splitHostPort(options.address);
  const serverOptions: ChannelOptions = {
    ...keepaliveChannelOptions(options.keepalive ?? defaultKeepalive),
  };
  if (options.maxReceiveMessageBytes !== undefined) {
    serverOptions["grpc.max_receive_message_length"] = options.maxReceiveMessageBytes;
  }
  if (options.maxSendMessageBytes !== undefined) {
    serverOptions["grpc.max_send_message_length"] = options.maxSendMessageBytes;
  }
  const server = new Server(serverOptions);
  for (const service of options.services) server.addService(service.definition, service.implementation);
  const credentials = serverCredentials(options.tls);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(options.address, credentials, (err, boundPort) => {
      if (err)
        reject(new TransportError("INVALID_CONFIG", `cannot listen on ${options.address}: ${err.message}`));
      else resolve(boundPort);
    });
  });
  let stopped: Promise<void> | undefined;
  return {
    port,
    address: `${host}:${port}`,
    server,
    shutdown(graceMs = 1_000) {
      stopped ??= new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      return stopped;
    },
  };
}

export interface RetryOptions {
  /** Total attempts including the first (grpc-js caps this at 5). */
  maxAttempts: number;
  initialBackoffMs: number;
  maxBackoffMs: number;
  /** Default 2. */
  backoffMultiplier?: number;
}

export interface GrpcClientOptions {
  tls?: TlsOptions;
  keepalive?: KeepaliveOptions;
  /** Deadline applied to every call that does not set its own. Not applied to streaming calls. */
  defaultDeadlineMs?: number;
  /**
   * Retries on UNAVAILABLE, for the methods named in `idempotentMethods` only: retrying a
   * call that is not idempotent could apply it twice.
   */
  retry?: RetryOptions;
  /** Method names (as in the .proto, e.g. "Range", or the client's key, e.g. "range"). */
  idempotentMethods?: string[];
  /** Extra grpc-js channel options. */
  channelOptions?: ChannelOptions;
}

interface MethodInfo {
  path: string;
  originalName?: string;
  requestStream: boolean;
  responseStream: boolean;
}

/** A generated (or `makeGenericClientConstructor`) client class. */
export interface GrpcClientConstructor<C extends Client> {
  new (address: string, credentials: ChannelCredentials, options?: ChannelOptions): C;
  // biome-ignore lint/suspicious/noExplicitAny: grpc-js's own definition type is generic over any
  service: ServiceDefinition<any>;
}

/**
 * Creates a client of a typed service with the cluster's TLS, keepalive, a default deadline
 * per unary call and retries of idempotent methods. Retries use grpc-js's built-in retry
 * (a service config retryPolicy), which also respects server pushback and buffer limits.
 */
export function createGrpcClient<C extends Client>(
  ClientCtor: GrpcClientConstructor<C>,
  address: string,
  options: GrpcClientOptions = {},
): C {
  const methods = Object.entries(ClientCtor.service).map(([key, def]) => ({ key, ...(def as MethodInfo) }));
  const channelOptions: ChannelOptions = {
    ...keepaliveChannelOptions(options.keepalive ?? defaultKeepalive),
    ...options.channelOptions,
  };
  if (options.retry) {
    const wanted = new Set(options.idempotentMethods ?? []);
    const names: { service: string; method: string }[] = [];
    for (const method of methods) {
      const [, service, name] = /^\/([^/]+)\/([^/]+)$/.exec(method.path) ?? [];
      if (!service || !name) continue;
      if (
        wanted.has(method.key) ||
        wanted.has(name) ||
        (method.originalName && wanted.has(method.originalName))
      ) {
        names.push({ service, method: name });
        wanted.delete(method.key);
        wanted.delete(name);
        if (method.originalName) wanted.delete(method.originalName);
      }
    }
    if (wanted.size > 0) {
      throw new TransportError(
        "INVALID_CONFIG",
        `idempotentMethods not in the service: ${[...wanted].join(", ")}`,
      );
    }
    const { maxAttempts, initialBackoffMs, maxBackoffMs, backoffMultiplier = 2 } = options.retry;
    if (names.length > 0) {
      channelOptions["grpc.service_config"] = JSON.stringify({
        methodConfig: [
          {
            name: names,
            retryPolicy: {
              maxAttempts,
              initialBackoff: `${initialBackoffMs / 1000}s`,
              maxBackoff: `${maxBackoffMs / 1000}s`,
              backoffMultiplier,
              retryableStatusCodes: ["UNAVAILABLE"],
            },
          },
        ],
      });
    }
  }
  const interceptors: Interceptor[] = [];
  if (options.defaultDeadlineMs !== undefined) {
    const deadlineMs = options.defaultDeadlineMs;
    const unaryPaths = new Set(
      methods.filter((m) => !m.requestStream && !m.responseStream).map((m) => m.path),
    );
    // An interceptor sees each call's options before it starts, so it can add a deadline
    // only where the caller gave none; long-lived streams are left without one.
    interceptors.push((callOptions, nextCall) => {
      if (callOptions.deadline === undefined && unaryPaths.has(callOptions.method_definition.path)) {
        return new InterceptingCall(nextCall({ ...callOptions, deadline: Date.now() + deadlineMs }));
      }
      return new InterceptingCall(nextCall(callOptions));
    });
  }
  return new ClientCtor(address, channelCredentials(options.tls), { ...channelOptions, interceptors });
}

/**
 * Turns a callback-style unary client method into one returning a promise:
 * `const get = promisifyUnary(client, client.get); await get(request)`.
 */
export function promisifyUnary<Req, Res>(
  client: Client,
  method: (request: Req, callback: (error: ServiceError | null, response: Res) => void) => unknown,
): (request: Req) => Promise<Res> {
  return (request) =>
    new Promise<Res>((resolve, reject) => {
      method.call(client, request, (error, response) => (error ? reject(error) : resolve(response)));
    });
}
