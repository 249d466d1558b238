import {
  type DeleteRangeResponse,
  type RangeRequest,
  RangeRequest_SortOrder,
  RangeRequest_SortTarget,
  type RangeResponse,
  type RequestOp,
  type TxnRequest,
} from "../gen/etcdserverpb/rpc.js";
import type { Event } from "../gen/mvccpb/kv.js";
import { revisionHeader } from "../store/kv-store.js";
import { sorter } from "../store/sort.js";

/**
 * Merges per-shard Range responses (given in shard order, each read with the same limit and
 * sort) into one: the global first `limit` results are among each shard's first `limit`, so
 * concatenating (key order) or re-sorting, then truncating, is exact. `count` ignores limit
 * and filters in etcd, so it is the sum; `more` is set when anything was left out.
 */
export function mergeRange(
  req: RangeRequest,
  parts: readonly RangeResponse[],
  revision: bigint,
): RangeResponse {
  const count = parts.reduce((n, p) => n + p.count, 0n);
  const out: RangeResponse = {
    header: revisionHeader(revision),
    kvs: [],
    more: false,
    count,
  };
  if (req.countOnly) return out;
  let kvs = parts.flatMap((p) => p.kvs);
  let order = req.sortOrder;
  if (req.sortTarget !== RangeRequest_SortTarget.KEY && order === RangeRequest_SortOrder.NONE) {
    order = RangeRequest_SortOrder.ASCEND;
  }
  if (order === RangeRequest_SortOrder.DESCEND || req.sortTarget !== RangeRequest_SortTarget.KEY) {
    const by = sorter(req.sortTarget);
    kvs.sort(order === RangeRequest_SortOrder.DESCEND ? (a, b) => by(b, a) : by);
  }
  const limit = Number(req.limit);
  out.more = parts.some((p) => p.more);
  if (limit > 0 && kvs.length > limit) {
    kvs = kvs.slice(0, limit);
    out.more = true;
  }
  out.kvs = kvs;
  return out;
}

/** Per-shard DeleteRange responses (shard order, so prev kvs stay in key order) as one. */
export function mergeDelete(parts: readonly DeleteRangeResponse[]): DeleteRangeResponse {
  const revision = parts.reduce((m, p) => (p.header && p.header.revision > m ? p.header.revision : m), 0n);
  return {
    header: revisionHeader(revision),
    deleted: parts.reduce((n, p) => n + p.deleted, 0n),
    prevKvs: parts.flatMap((p) => p.prevKvs),
  };
}

/** Every (key, range_end) a Txn reads or writes, nested txns included (for routing). */
export function txnRanges(txn: TxnRequest): { key: Buffer; rangeEnd: Buffer }[] {
  const out: { key: Buffer; rangeEnd: Buffer }[] = [];
  for (const c of txn.compare) out.push({ key: c.key, rangeEnd: c.rangeEnd });
  const ops = (list: readonly RequestOp[]) => {
    for (const op of list) {
      if (op.requestRange) out.push({ key: op.requestRange.key, rangeEnd: op.requestRange.rangeEnd });
      if (op.requestPut) out.push({ key: op.requestPut.key, rangeEnd: Buffer.alloc(0) });
      if (op.requestDeleteRange)
        out.push({ key: op.requestDeleteRange.key, rangeEnd: op.requestDeleteRange.rangeEnd });
      if (op.requestTxn) out.push(...txnRanges(op.requestTxn));
    }
  };
  ops(txn.success);
  ops(txn.failure);
  return out;
}

/** Events of one shard, in revision order, cut into one group per revision. */
export function groupByRevision(events: readonly Event[]): { revision: number; events: Event[] }[] {
  const out: { revision: number; events: Event[] }[] = [];
  for (const e of events) {
    const revision = Number(e.kv?.modRevision ?? 0n);
    const last = out[out.length - 1];
    if (last && last.revision === revision) last.events.push(e);
    else out.push({ revision, events: [e] });
  }
  return out;
}

/**
 * Takes, from per-shard queues of revision groups (each ascending), every group at or below
 * `watermark`, merged into one group per revision (shards in index order within a revision).
 */
export function takeUpTo(
  queues: readonly { revision: number; events: Event[] }[][],
  watermark: number,
): { revision: number; events: Event[] }[] {
  const ready: { revision: number; shard: number; events: Event[] }[] = [];
  queues.forEach((q, shard) => {
    let n = 0;
    while (n < q.length && q[n]!.revision <= watermark) n++;
    for (const g of q.splice(0, n)) ready.push({ revision: g.revision, shard, events: g.events });
  });
  ready.sort((a, b) => a.revision - b.revision || a.shard - b.shard);
  const out: { revision: number; events: Event[] }[] = [];
  for (const g of ready) {
    const last = out[out.length - 1];
    if (last && last.revision === g.revision) last.events.push(...g.events);
    else out.push({ revision: g.revision, events: [...g.events] });
  }
  return out;
}
