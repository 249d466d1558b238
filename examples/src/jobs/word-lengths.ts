// A MapReduce job module: how many words of each length the input has.
//
// A job is a module that exports `map` and `reduce` (and optionally `combine`, `partition`,
// `setup`). Workers load it by its path, in their own processes, so it must be
// self-contained: no shared state with the program that starts the job.

import type { KeyValue } from "@quorum/mapreduce";

const word = /\p{L}+/gu;

/** Called once per input split: emits (length, count) for the words of this split. */
export function map(_fileName: string, contents: string): KeyValue[] {
  // Counting here (an "in-mapper combiner") sends one pair per length, not one per word.
  const counts = new Map<number, number>();
  for (const [w] of contents.matchAll(word)) counts.set(w.length, (counts.get(w.length) ?? 0) + 1);
  // Keys are strings; zero-padding makes the output, sorted by key, read in numeric order.
  return [...counts].map(([length, n]) => [String(length).padStart(2, "0"), String(n)] as const);
}

/** Called once per key with every value the maps emitted for it: the total count. */
export function reduce(_length: string, counts: string[]): string {
  return String(counts.reduce((sum, n) => sum + Number(n), 0));
}

/** Run on each map task's output before the shuffle; it must agree with `reduce`. */
export const combine = reduce;

/** Which reduce task gets a key: even lengths to one, odd to another (when there are 2). */
export function partition(length: string, reduces: number): number {
  return Number(length) % reduces;
}
