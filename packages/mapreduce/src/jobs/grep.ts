import type { JobOptions, KeyValue } from "../job.js";

let pattern: RegExp | undefined;

/** Options: `pattern` (a JavaScript regular expression, required), `flags` (e.g. "i"). */
export function setup(options: JobOptions): void {
  const source = options.pattern;
  if (source === undefined || source === "") throw new Error("grep needs a pattern option");
  pattern = new RegExp(source, (options.flags ?? "").replace(/[gy]/g, ""));
}

/** Distributed grep: each matching line to the sorted list of files it occurs in. */
export function map(fileName: string, contents: string): KeyValue[] {
  if (pattern === undefined) throw new Error("grep needs a pattern option");
  const out: KeyValue[] = [];
  for (const line of contents.split("\n")) {
    if (pattern.test(line)) out.push([line, fileName]);
  }
  return out;
}

export function reduce(_key: string, values: string[]): string {
  const files = new Set<string>();
  for (const v of values) for (const f of v.split(",")) files.add(f);
  return [...files].sort().join(",");
}

export const combine = reduce;
