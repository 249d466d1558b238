import type { KeyValue } from "../job.js";
import { forEachWord } from "./words.js";

/** Inverted index: each word to the sorted list of files that contain it. */
export function map(fileName: string, contents: string): KeyValue[] {
  const seen = new Set<string>();
  forEachWord(contents, (w) => seen.add(w));
  return [...seen].map((w) => [w, fileName] as const);
}

export function reduce(_key: string, values: string[]): string {
  const files = new Set<string>();
  for (const v of values) for (const f of v.split(",")) files.add(f);
  return [...files].sort().join(",");
}

export const combine = reduce;
