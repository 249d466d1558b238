import { etcdErrors } from "../errors.js";
import {
  type DeleteRangeRequest,
  type PutRequest,
  type RangeRequest,
  RangeRequest_SortOrder,
  RangeRequest_SortTarget,
  type RequestOp,
  type TxnRequest,
} from "../gen/etcdserverpb/rpc.js";

/** etcd's defaults: --max-txn-ops and --max-request-bytes; grpc max receive adds 512 KiB. */
export const defaultMaxTxnOps = 128;
export const defaultMaxRequestBytes = 1.5 * 1024 * 1024;
export const grpcOverheadBytes = 512 * 1024;

const sortOrders = new Set<number>([
  RangeRequest_SortOrder.NONE,
  RangeRequest_SortOrder.ASCEND,
  RangeRequest_SortOrder.DESCEND,
]);
const sortTargets = new Set<number>([
  RangeRequest_SortTarget.KEY,
  RangeRequest_SortTarget.VERSION,
  RangeRequest_SortTarget.CREATE,
  RangeRequest_SortTarget.MOD,
  RangeRequest_SortTarget.VALUE,
]);

/**
 * etcd 3.4 (the differential test's reference) accepts unknown sort enums and then does not
 * sort; 3.5 answers `invalid sort option`. We follow 3.4 unless `strictSort` is asked for.
 */
export function checkRangeRequest(r: RangeRequest, strictSort = false): void {
  if (r.key.length === 0) throw etcdErrors.emptyKey();
  if (strictSort && (!sortOrders.has(r.sortOrder) || !sortTargets.has(r.sortTarget))) {
    throw etcdErrors.invalidSortOption();
  }
}

export function checkPutRequest(r: PutRequest): void {
  if (r.key.length === 0) throw etcdErrors.emptyKey();
  if (r.ignoreValue && r.value.length !== 0) throw etcdErrors.valueProvided();
  if (r.ignoreLease && r.lease !== 0n) throw etcdErrors.leaseProvided();
}

export function checkDeleteRequest(r: DeleteRangeRequest): void {
  if (r.key.length === 0) throw etcdErrors.emptyKey();
}

function checkRequestOp(op: RequestOp, maxTxnOps: number): void {
  if (op.requestRange) checkRangeRequest(op.requestRange);
  else if (op.requestPut) checkPutRequest(op.requestPut);
  else if (op.requestDeleteRange) checkDeleteRequest(op.requestDeleteRange);
  else if (op.requestTxn) checkTxnOps(op.requestTxn, maxTxnOps);
  // An empty RequestOp: etcd answers "key not found".
  else throw etcdErrors.keyNotFound();
}

function checkTxnOps(r: TxnRequest, maxTxnOps: number): void {
  const opc = Math.max(r.compare.length, r.success.length, r.failure.length);
  if (opc > maxTxnOps) throw etcdErrors.tooManyOps();
  for (const c of r.compare) if (c.key.length === 0) throw etcdErrors.emptyKey();
  // Nested txns get what is left of the budget (etcd's checkTxnRequest).
  for (const op of r.success) checkRequestOp(op, maxTxnOps - opc);
  for (const op of r.failure) checkRequestOp(op, maxTxnOps - opc);
}

/** A half-open interval [begin, end) of keys as strings of bytes, or a point when end is undefined. */
interface Interval {
  readonly begin: Buffer;
  readonly end: Buffer | undefined;
}

function intersectsPoint(dels: readonly Interval[], key: Buffer): boolean {
  return dels.some((d) =>
    d.end === undefined
      ? Buffer.compare(d.begin, key) === 0
      : Buffer.compare(d.begin, key) <= 0 && Buffer.compare(key, d.end) < 0,
  );
}

/**
 * etcd's checkIntervals: within one branch, two puts to a key, or a put inside a delete's
 * range, is a duplicate; a nested txn's then and else may share keys with each other but
 * not with the outer branch. Ranges are taken literally as etcd's interval tree does
 * (a `"\0"` range_end makes an empty interval there too).
 */
function checkIntervals(reqs: readonly RequestOp[]): { puts: Set<string>; dels: Interval[] } {
  const dels: Interval[] = [];
  for (const req of reqs) {
    const d = req.requestDeleteRange;
    if (!d) continue;
    dels.push({ begin: d.key, end: d.rangeEnd.length !== 0 ? d.rangeEnd : undefined });
  }
  const puts = new Set<string>();
  for (const req of reqs) {
    const t = req.requestTxn;
    if (!t) continue;
    const then = checkIntervals(t.success);
    const otherwise = checkIntervals(t.failure);
    for (const k of then.puts) {
      if (puts.has(k) || intersectsPoint(dels, Buffer.from(k, "latin1"))) throw etcdErrors.duplicateKey();
      puts.add(k);
    }
    for (const k of otherwise.puts) {
      if (puts.has(k) && !then.puts.has(k)) throw etcdErrors.duplicateKey();
      if (intersectsPoint(dels, Buffer.from(k, "latin1"))) throw etcdErrors.duplicateKey();
      puts.add(k);
    }
    dels.push(...then.dels, ...otherwise.dels);
  }
  for (const req of reqs) {
    const p = req.requestPut;
    if (!p) continue;
    const k = p.key.toString("latin1");
    if (puts.has(k) || intersectsPoint(dels, p.key)) throw etcdErrors.duplicateKey();
    puts.add(k);
  }
  return { puts, dels };
}

export function checkTxnRequest(r: TxnRequest, maxTxnOps = defaultMaxTxnOps): void {
  checkTxnOps(r, maxTxnOps);
  checkIntervals(r.success);
  checkIntervals(r.failure);
}

/** etcd's isTxnSerializable: every op of both branches is a serializable Range. */
export function isTxnSerializable(r: TxnRequest): boolean {
  return [...r.success, ...r.failure].every((op) => op.requestRange?.serializable === true);
}

/**
 * The size etcd checks against --max-request-bytes: its InternalRaftRequest, i.e. the
 * request plus a 14-byte request header. Our command wraps the request with the same one-byte
 * tag and length prefix, so the sizes agree: a Put of a 1-byte key carries up to 1,572,839
 * value bytes under the default limit, as on etcd.
 */
export function proposalSize(commandBytes: number): number {
  return commandBytes + 14;
}
