import { type Metadata, status } from "@grpc/grpc-js";
import { EtcdError } from "../errors.js";
import type { ShardTxnClient, ShardTxnOp, ShardTxnResult } from "../gen/quorum/kv/v1/command.js";

interface Pending {
  readonly op: ShardTxnOp;
  readonly resolve: (result: ShardTxnResult) => void;
  readonly reject: (err: unknown) => void;
}

/**
 * Forwards a node's cross-shard prepares, decisions, fences and forgets to the nodes that lead their
 * shards, with everything bound for one node in one turn of the event loop in one
 * `ShardTxn.Batch` call: under load a transaction's decision is sent with dozens of others,
 * and a gRPC call costs more than the entry it carries. Each op is answered on its own.
 */
export class ShardTxnForwarder {
  private readonly queues = new Map<string, Pending[]>();

  constructor(
    private readonly client: (address: string) => InstanceType<typeof ShardTxnClient>,
    /** Sent as the forwarded-from header: the receiving node does not forward again. */
    private readonly metadata: () => Metadata,
    private readonly timeoutMs: number,
  ) {}

  call(address: string, op: ShardTxnOp): Promise<ShardTxnResult> {
    let queue = this.queues.get(address);
    if (!queue) {
      queue = [];
      this.queues.set(address, queue);
      setImmediate(() => this.flush(address));
    }
    const q = queue;
    return new Promise((resolve, reject) => q.push({ op, resolve, reject }));
  }

  private flush(address: string): void {
    const batch = this.queues.get(address) ?? [];
    this.queues.delete(address);
    try {
      this.sendBatch(address, batch);
    } catch (err) {
      // A closed client (the node is stopping) throws at once: fail the ops, not the process.
      for (const p of batch) p.reject(err);
    }
  }

  private sendBatch(address: string, batch: readonly Pending[]): void {
    this.client(address).batch(
      { ops: batch.map((p) => p.op) },
      this.metadata(),
      { deadline: Date.now() + this.timeoutMs },
      (err, response) => {
        batch.forEach((p, i) => {
          const result = response?.results[i];
          if (err) p.reject(new EtcdError(err.code, err.details));
          else if (!result)
            p.reject(new EtcdError(status.INTERNAL, `quorum: ${address} answered fewer results than ops`));
          else if (result.error) p.reject(new EtcdError(result.error.code, result.error.message));
          else p.resolve(result);
        });
      },
    );
  }
}

/** The result `r` carries (its vote, decision, state or forget), or an error if it has none. */
export function resultOf<K extends "vote" | "decision" | "state" | "forgotten">(
  r: ShardTxnResult,
  kind: K,
): NonNullable<ShardTxnResult[K]> {
  const value = r[kind];
  if (value === undefined)
    throw new EtcdError(status.INTERNAL, `quorum: a ShardTxn result without its ${kind}`);
  return value as NonNullable<ShardTxnResult[K]>;
}
