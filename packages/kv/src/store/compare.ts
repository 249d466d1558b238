import { type Compare, Compare_CompareResult, Compare_CompareTarget } from "../gen/etcdserverpb/rpc.js";
import type { KeyValue } from "../gen/mvccpb/kv.js";

const emptyKv: KeyValue = {
  key: Buffer.alloc(0),
  createRevision: 0n,
  modRevision: 0n,
  version: 0n,
  value: Buffer.alloc(0),
  lease: 0n,
};

function cmpBig(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** etcd's compareKV: a union field of another target than `target` counts as zero. */
function compareKv(c: Compare, kv: KeyValue): boolean {
  let result = 0;
  switch (c.target) {
    case Compare_CompareTarget.VALUE:
      result = Buffer.compare(kv.value, c.value ?? Buffer.alloc(0));
      break;
    case Compare_CompareTarget.CREATE:
      result = cmpBig(kv.createRevision, c.createRevision ?? 0n);
      break;
    case Compare_CompareTarget.MOD:
      result = cmpBig(kv.modRevision, c.modRevision ?? 0n);
      break;
    case Compare_CompareTarget.VERSION:
      result = cmpBig(kv.version, c.version ?? 0n);
      break;
    case Compare_CompareTarget.LEASE:
      result = cmpBig(kv.lease, c.lease ?? 0n);
      break;
  }
  switch (c.result) {
    case Compare_CompareResult.EQUAL:
      return result === 0;
    case Compare_CompareResult.NOT_EQUAL:
      return result !== 0;
    case Compare_CompareResult.GREATER:
      return result > 0;
    case Compare_CompareResult.LESS:
      return result < 0;
    default:
      return true;
  }
}

/**
 * One compare over the key-values currently in its range: every key must pass; with no key
 * the compare runs against zeros, except that a VALUE compare on a missing key is false
 * (etcd's applyCompare: no way to tell a missing value from an empty one).
 */
export function evaluateCompare(c: Compare, kvs: readonly KeyValue[]): boolean {
  if (kvs.length === 0) {
    if (c.target === Compare_CompareTarget.VALUE) return false;
    return compareKv(c, emptyKv);
  }
  return kvs.every((kv) => compareKv(c, kv));
}
