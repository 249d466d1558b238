import { RangeRequest_SortTarget } from "../gen/etcdserverpb/rpc.js";
import type { KeyValue } from "../gen/mvccpb/kv.js";

export function cmpBig(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** etcd's Range sort targets as a comparator (ascending); ties stay unordered, as in etcd. */
export function sorter(target: RangeRequest_SortTarget): (a: KeyValue, b: KeyValue) => number {
  switch (target) {
    case RangeRequest_SortTarget.VERSION:
      return (a, b) => cmpBig(a.version, b.version);
    case RangeRequest_SortTarget.CREATE:
      return (a, b) => cmpBig(a.createRevision, b.createRevision);
    case RangeRequest_SortTarget.MOD:
      return (a, b) => cmpBig(a.modRevision, b.modRevision);
    case RangeRequest_SortTarget.VALUE:
      return (a, b) => Buffer.compare(a.value, b.value);
    default:
      return (a, b) => Buffer.compare(a.key, b.key);
  }
}
