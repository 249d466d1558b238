import type { NodeId } from "./types.js";

/** Phase-1 (prepare) and phase-2 (accept) quorum sizes. */
export interface Quorums {
  readonly phase1: number;
  readonly phase2: number;
}

/** Classic Paxos: a majority for both phases. */
export function majorityQuorums(voters: number): Quorums {
  const q = Math.floor(voters / 2) + 1;
  return { phase1: q, phase2: q };
}

/**
 * Flexible Paxos (Howard, Malkhi, Spiegelman 2016): safety needs only that every phase-1
 * quorum meets every phase-2 quorum, i.e. q1 + q2 > n. Returns why `q` is unusable, or
 * undefined when it is fine.
 */
export function checkQuorums(voters: readonly NodeId[], q: Quorums): string | undefined {
  const n = voters.length;
  for (const [name, size] of [
    ["phase-1", q.phase1],
    ["phase-2", q.phase2],
  ] as const) {
    if (!Number.isInteger(size) || size < 1 || size > n) {
      return `${name} quorum must be an integer from 1 to ${n} (the number of voters), got ${size}`;
    }
  }
  if (q.phase1 + q.phase2 <= n) {
    return `phase-1 quorum ${q.phase1} + phase-2 quorum ${q.phase2} must exceed the ${n} voters, or two leaders could choose different values`;
  }
  return undefined;
}
