import { status } from "@grpc/grpc-js";

/**
 * An error as etcd reports it: clients (etcdctl, clientv3, the etcd3 npm client) match the
 * message text, so messages are etcd's, byte for byte, with etcd's gRPC status codes.
 */
export class EtcdError extends Error {
  override readonly name = "EtcdError";
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
  }
}

export function isEtcdError(err: unknown): err is EtcdError {
  return err instanceof EtcdError;
}

const e = (code: status, message: string) => () => new EtcdError(code, message);

export const etcdErrors = {
  emptyKey: e(status.INVALID_ARGUMENT, "etcdserver: key is not provided"),
  keyNotFound: e(status.INVALID_ARGUMENT, "etcdserver: key not found"),
  valueProvided: e(status.INVALID_ARGUMENT, "etcdserver: value is provided"),
  leaseProvided: e(status.INVALID_ARGUMENT, "etcdserver: lease is provided"),
  tooManyOps: e(status.INVALID_ARGUMENT, "etcdserver: too many operations in txn request"),
  duplicateKey: e(status.INVALID_ARGUMENT, "etcdserver: duplicate key given in txn request"),
  invalidSortOption: e(status.INVALID_ARGUMENT, "etcdserver: invalid sort option"),
  requestTooLarge: e(status.INVALID_ARGUMENT, "etcdserver: request is too large"),
  compacted: e(status.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted"),
  futureRevision: e(status.OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision"),
  leaseNotFound: e(status.NOT_FOUND, "etcdserver: requested lease not found"),
  leaseExists: e(status.FAILED_PRECONDITION, "etcdserver: lease already exists"),
  leaseTtlTooLarge: e(status.OUT_OF_RANGE, "etcdserver: too large lease TTL"),
  noLeader: e(status.UNAVAILABLE, "etcdserver: no leader"),
  leaderChanged: e(status.UNAVAILABLE, "etcdserver: leader changed"),
  notCapable: e(status.UNAVAILABLE, "etcdserver: not capable"),
  stopped: e(status.UNAVAILABLE, "etcdserver: server stopped"),
  timeout: e(status.UNAVAILABLE, "etcdserver: request timed out"),
  tooManyRequests: e(status.RESOURCE_EXHAUSTED, "etcdserver: too many requests"),
  /** grpc-go's wording (etcd's server), not grpc-js's, so that clients see what etcd sends. */
  messageTooLarge: (size: number, max: number) =>
    new EtcdError(status.RESOURCE_EXHAUSTED, `grpc: received message larger than max (${size} vs. ${max})`),
  unimplemented: (what: string) =>
    new EtcdError(status.UNIMPLEMENTED, `quorum: ${what} is not implemented yet`),
  corruptCommand: (why: string) =>
    new EtcdError(status.INTERNAL, `quorum: undecodable command in the log: ${why}`),
} as const;
