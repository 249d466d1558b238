import type { KeyValue } from "../job.js";

/** A word is a maximal run of Unicode letters; case is kept. */
const word = /\p{L}+/gu;

/**
 * Counts inside the map task (an in-mapper combiner) rather than emitting ("w", "1") per
 * occurrence: the same result, without millions of short-lived pairs.
 */
export function map(_fileName: string, contents: string): KeyValue[] {
  const counts = new Map<string, number>();
  for (const m of contents.matchAll(word)) {
    const w = m[0];
    counts.set(w, (counts.get(w) ?? 0) + 1);
  }
  const out: KeyValue[] = [];
  for (const [w, n] of counts) out.push([w, String(n)]);
  return out;
}

export function reduce(_key: string, values: string[]): string {
  let total = 0;
  for (const v of values) total += Number(v);
  return String(total);
}

export const combine = reduce;
