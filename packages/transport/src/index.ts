export type { BackoffOptions } from "./backoff.js";
export { defaultBackoff } from "./backoff.js";
export type { Clock, Timer } from "./clock.js";
export { every, systemClock } from "./clock.js";
export type { FaultRules, FaultStats, FaultyTransportOptions } from "./faulty-transport.js";
export { FaultyTransport } from "./faulty-transport.js";
export type {
  GrpcClientConstructor,
  GrpcClientOptions,
  GrpcServerOptions,
  HostedService,
  KeepaliveOptions,
  RetryOptions,
  RunningGrpcServer,
} from "./grpc-service.js";
export { createGrpcClient, defaultKeepalive, promisifyUnary, startGrpcServer } from "./grpc-service.js";
export type { GrpcTransportOptions, GrpcTransportStats } from "./grpc-transport.js";
export { GrpcTransport } from "./grpc-transport.js";
export type { Logger } from "./logger.js";
export { silentLogger } from "./logger.js";
export type { MemoryNetworkOptions } from "./memory-transport.js";
export { MemoryNetwork, MemoryTransport } from "./memory-transport.js";
export type { PeerState, PeerStatus, TransportEvent } from "./peer-connection.js";
export { protocolVersion } from "./peer-server.js";
export { seededRandom } from "./random.js";
export type { TlsMaterial, TlsOptions } from "./tls.js";
export { channelCredentials, loadTlsCredentials, serverCredentials } from "./tls.js";
export type {
  MessageHandler,
  NodeId,
  PeerInfo,
  Transport,
  TransportErrorCode,
  TransportStats,
} from "./transport.js";
export { defaultMaxMessageBytes, emptyStats, TransportError } from "./transport.js";
