import { status } from "@grpc/grpc-js";
import { EtcdError, type RequestOp, type ShardMap, type TxnRequest } from "@quorum/kv";

/** Where one compare or op of the client's Txn went: a shard, and its index in that shard's part. */
export interface Placement {
  readonly shard: number;
  readonly index: number;
}

/**
 * A Txn over several shards, cut into one part per shard. Each compare and op is clipped to
 * every shard its key or range touches; the placements say where each one went, so the
 * shards' votes can be put back together in the client's order.
 */
export interface TxnPlan {
  /** The shards involved, ascending. The first is the anchor: its part carries the whole request. */
  readonly shards: readonly number[];
  readonly parts: ReadonlyMap<number, TxnRequest>;
  readonly compares: readonly (readonly Placement[])[];
  readonly success: readonly (readonly Placement[])[];
  readonly failure: readonly (readonly Placement[])[];
}

function partOf(parts: Map<number, TxnRequest>, shard: number): TxnRequest {
  let part = parts.get(shard);
  if (!part) {
    part = { compare: [], success: [], failure: [] };
    parts.set(shard, part);
  }
  return part;
}

/** Splits `req` by the shard map (pure). Nested Txns over several shards are refused. */
export function planTxn(req: TxnRequest, map: ShardMap): TxnPlan {
  const parts = new Map<number, TxnRequest>();
  const compares = req.compare.map((c) =>
    map.shardsOf(c.key, c.rangeEnd).map((shard) => {
      const list = partOf(parts, shard).compare;
      list.push({ ...c, ...map.clip(c.key, c.rangeEnd, shard) });
      return { shard, index: list.length - 1 };
    }),
  );
  const branch = (ops: readonly RequestOp[], pick: (t: TxnRequest) => RequestOp[]) =>
    ops.map((op) => {
      let pieces: { shard: number; op: RequestOp }[];
      if (op.requestRange) {
        const r = op.requestRange;
        pieces = map.shardsOf(r.key, r.rangeEnd).map((shard) => ({
          shard,
          op: { requestRange: { ...r, ...map.clip(r.key, r.rangeEnd, shard) } },
        }));
      } else if (op.requestPut) {
        pieces = [{ shard: map.shardOf(op.requestPut.key), op }];
      } else if (op.requestDeleteRange) {
        const d = op.requestDeleteRange;
        pieces = map.shardsOf(d.key, d.rangeEnd).map((shard) => ({
          shard,
          op: { requestDeleteRange: { ...d, ...map.clip(d.key, d.rangeEnd, shard) } },
        }));
      } else if (op.requestTxn) {
        throw new EtcdError(
          status.UNIMPLEMENTED,
          "quorum: a nested Txn inside a Txn over several shards is not supported",
        );
      } else pieces = [];
      return pieces.map(({ shard, op: piece }) => {
        const list = pick(partOf(parts, shard));
        list.push(piece);
        return { shard, index: list.length - 1 };
      });
    });
  const success = branch(req.success, (t) => t.success);
  const failure = branch(req.failure, (t) => t.failure);
  const shards = [...parts.keys()].sort((a, b) => a - b);
  return { shards, parts, compares, success, failure };
}
