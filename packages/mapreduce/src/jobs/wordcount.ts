import type { KeyValue } from "../job.js";
import { forEachWord } from "./words.js";

/**
 * Counts inside the map task (an in-mapper combiner) rather than emitting ("w", "1") per
 * occurrence: the same result, without millions of short-lived pairs.
 */
export function map(_fileName: string, contents: string): KeyValue[] {
  const counts = new Map<string, number>();
  forEachWord(contents, (w) => counts.set(w, (counts.get(w) ?? 0) + 1));
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
