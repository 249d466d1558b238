import type { ShardMap, TxnDecision, TxnPart, TxnRequest, TxnState, TxnVote } from "@quorum/kv";
import { type Verdict, verdict } from "./outcome.js";
import { planTxn, type TxnPlan } from "./plan.js";

/**
 * What the shards' states say about a transaction. With parallel commits a transaction is
 * committed exactly when every part is prepared, so nobody may abort it until one part can
 * no longer prepare: a shard that recorded a decision (an abort recorded by a fence is one)
 * refuses the part forever.
 */
export type Resolution =
  /** A shard has applied the commit already: every shard gets that same decision. */
  | { readonly kind: "committed"; readonly decision: TxnDecision }
  /** A shard recorded an abort: the transaction can never commit. */
  | { readonly kind: "aborted" }
  /** Every part is prepared: the verdict (from the request and the votes) is the outcome. */
  | {
      readonly kind: "prepared";
      readonly request: TxnRequest;
      readonly plan: TxnPlan;
      readonly votes: ReadonlyMap<number, TxnVote>;
      readonly verdict: Verdict;
    }
  /** Some shard's state is not known (it did not answer): ask again. */
  | { readonly kind: "unknown" };

/**
 * Resolves a transaction from every shard's state (`states[i]` is `part.shards[i]`'s;
 * undefined where it is unknown). Pure, and used alike by the coordinator (when some prepare
 * did not come back PREPARED) and by recovery, so they cannot disagree.
 */
export function resolve(part: TxnPart, states: readonly (TxnState | undefined)[], map: ShardMap): Resolution {
  const committed = states.find((s) => s?.decided?.commit)?.decided;
  if (committed) return { kind: "committed", decision: committed };
  if (states.some((s) => s?.decided)) return { kind: "aborted" };
  if (states.some((s) => s?.prepared === undefined)) return { kind: "unknown" };
  const request = states[part.shards.indexOf(part.anchor)]?.prepared?.part?.request;
  // A part without the client's request predates parallel commits, when only a decision
  // recorded on the anchor committed a transaction: the anchor has none, so it did not.
  if (!request) return { kind: "aborted" };
  const plan = planTxn(request, map);
  if (plan.shards.join() !== part.shards.join())
    throw new Error(
      `the request spans shards ${plan.shards}, its parts ${part.shards}: has the shard map changed?`,
    );
  const votes = new Map(part.shards.map((shard, i) => [shard, states[i]!.prepared!.vote!]));
  return { kind: "prepared", request, plan, votes, verdict: verdict(request, plan, votes, part.minRevision) };
}

/** The decision every shard gets once a transaction is resolved (not "unknown"). */
export function decisionOf(txId: Buffer, r: Exclude<Resolution, { kind: "unknown" }>): TxnDecision {
  if (r.kind === "committed") return r.decision;
  if (r.kind === "prepared" && r.verdict.commit)
    return { txId, commit: true, revision: r.verdict.revision, succeeded: r.verdict.succeeded };
  return { txId, commit: false, revision: 0n, succeeded: false };
}
