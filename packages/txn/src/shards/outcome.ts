import {
  type BranchResult,
  EtcdError,
  evaluateCompare,
  type KeyValue,
  mergeDelete,
  mergeRange,
  type ResponseOp,
  revisionHeader,
  type TxnRequest,
  type TxnResponse,
  type TxnVote,
  TxnVote_CompareResult,
} from "@quorum/kv";
import type { Placement, TxnPlan } from "./plan.js";

/**
 * Whether every compare of the client's Txn holds, from the shards' votes: a compare fails if
 * it fails in any shard; a range compare with no key in any shard is evaluated on no keys,
 * as etcd does.
 */
export function comparesHold(req: TxnRequest, plan: TxnPlan, votes: ReadonlyMap<number, TxnVote>): boolean {
  return req.compare.every((c, i) => {
    const results = plan.compares[i]!.map((p) => votes.get(p.shard)!.compares[p.index]);
    if (results.some((r) => r === TxnVote_CompareResult.FAILS)) return false;
    if (results.every((r) => r === TxnVote_CompareResult.NO_KEYS)) return evaluateCompare(c, []);
    return true;
  });
}

function branchOf(vote: TxnVote, succeeded: boolean): BranchResult {
  return (succeeded ? vote.success : vote.failure) ?? { responses: [], errorCode: 0, errorMessage: "" };
}

/** The etcd error the taken branch fails with in some shard (lowest shard first), if any. */
export function branchError(
  plan: TxnPlan,
  votes: ReadonlyMap<number, TxnVote>,
  succeeded: boolean,
): EtcdError | undefined {
  for (const shard of plan.shards) {
    const b = branchOf(votes.get(shard)!, succeeded);
    if (b.errorCode !== 0) return new EtcdError(b.errorCode, b.errorMessage);
  }
  return undefined;
}

/**
 * Whether the taken branch changes anything, so that the transaction's revision exists: a
 * put, a delete whose dry runs found keys, or a nested Txn that may write (as etcd, a Txn
 * that deletes nothing does not raise the revision).
 */
export function branchChanges(
  req: TxnRequest,
  plan: TxnPlan,
  votes: ReadonlyMap<number, TxnVote>,
  succeeded: boolean,
): boolean {
  const placements = succeeded ? plan.success : plan.failure;
  return (succeeded ? req.success : req.failure).some((op, i) => {
    if (op.requestPut) return true;
    if (op.requestTxn) return mayWrite(op.requestTxn);
    if (!op.requestDeleteRange) return false;
    return placements[i]!.some(
      (p) =>
        (branchOf(votes.get(p.shard)!, succeeded).responses[p.index]?.responseDeleteRange?.deleted ?? 0n) >
        0n,
    );
  });
}

function mayWrite(txn: TxnRequest): boolean {
  return [...txn.success, ...txn.failure].some(
    (op) => op.requestPut || op.requestDeleteRange || (op.requestTxn && mayWrite(op.requestTxn)),
  );
}

/**
 * The transaction's revision: above every shard's revision at its prepare (so no shard has
 * written the transaction's keys at or after it), and above `minRevision` (the highest
 * revision the coordinating node knew when it began, so revisions follow real time through
 * that node).
 */
export function commitRevision(votes: ReadonlyMap<number, TxnVote>, minRevision: bigint): bigint {
  let max = minRevision + 1n;
  for (const v of votes.values()) if (v.provisionalRevision > max) max = v.provisionalRevision;
  return max;
}

/** What a transaction's votes decide, once every part is prepared. */
export type Verdict =
  | { readonly commit: true; readonly succeeded: boolean; readonly revision: bigint }
  /** The taken branch fails in some shard (with this etcd error): nothing is written. */
  | { readonly commit: false; readonly error: EtcdError };

/**
 * The outcome of a transaction whose parts are all prepared: a pure function of the client's
 * request and the stored votes, so the coordinator and any node's recovery derive the same
 * one (parallel commits: there is no separate commit point to disagree about).
 */
export function verdict(
  req: TxnRequest,
  plan: TxnPlan,
  votes: ReadonlyMap<number, TxnVote>,
  minRevision: bigint,
): Verdict {
  const succeeded = comparesHold(req, plan, votes);
  const error = branchError(plan, votes, succeeded);
  if (error) return { commit: false, error };
  return { commit: true, succeeded, revision: commitRevision(votes, minRevision) };
}

/** A shard's dry run wrote at its provisional revision; the transaction's writes are at `revision`. */
function fixKv(kv: KeyValue, provisional: bigint, revision: bigint): KeyValue {
  if (kv.modRevision !== provisional && kv.createRevision !== provisional) return kv;
  return {
    ...kv,
    modRevision: kv.modRevision === provisional ? revision : kv.modRevision,
    createRevision: kv.createRevision === provisional ? revision : kv.createRevision,
  };
}

/** The client's TxnResponse, from the taken branch's dry runs in every shard, at `revision`. */
export function txnResponse(
  req: TxnRequest,
  plan: TxnPlan,
  votes: ReadonlyMap<number, TxnVote>,
  succeeded: boolean,
  revision: bigint,
): TxnResponse {
  const ops = succeeded ? req.success : req.failure;
  const placements = succeeded ? plan.success : plan.failure;
  const pieces = (i: number): ResponseOp[] =>
    placements[i]!.map((p: Placement) => {
      const vote = votes.get(p.shard)!;
      return branchOf(vote, succeeded).responses[p.index]!;
    });
  const provisional = (i: number) => placements[i]!.map((p) => votes.get(p.shard)!.provisionalRevision);
  const responses: ResponseOp[] = ops.map((op, i) => {
    const parts = pieces(i);
    const provs = provisional(i);
    if (op.requestRange) {
      const ranges = parts.map((r, j) => {
        const range = r.responseRange!;
        return { ...range, kvs: range.kvs.map((kv) => fixKv(kv, provs[j]!, revision)) };
      });
      return { responseRange: mergeRange(op.requestRange, ranges, revision) };
    }
    if (op.requestPut) {
      const put = parts[0]!.responsePut!;
      return { responsePut: { ...put, header: revisionHeader(revision) } };
    }
    if (op.requestDeleteRange) {
      const merged = mergeDelete(parts.map((r) => r.responseDeleteRange!));
      return { responseDeleteRange: { ...merged, header: revisionHeader(revision) } };
    }
    return {};
  });
  return { header: revisionHeader(revision), succeeded, responses };
}
