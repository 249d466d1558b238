import { describeError } from "./errors.js";
import { defaultPartition } from "./hash.js";
import type { JobModule } from "./job.js";

/** Once a key has this many buffered values, the combiner folds them into one. */
const combineEvery = 64;

const needsEscape = /[\\\t\n]/;

function escapeField(s: string): string {
  if (!needsEscape.test(s)) return s;
  return s.replace(/[\\\t\n]/g, (c) => (c === "\\" ? "\\\\" : c === "\t" ? "\\t" : "\\n"));
}

function unescapeField(s: string): string {
  if (s.indexOf("\\") === -1) return s;
  return s.replace(/\\(.)/g, (_, c: string) => (c === "t" ? "\t" : c === "n" ? "\n" : c));
}

export class JobCodeError extends Error {
  override readonly name = "JobCodeError";
}

function jobCall<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    throw new JobCodeError(`${what} threw ${describeError(error)}`);
  }
}

/**
 * Runs the job's map over one split and returns R intermediate files' contents: lines
 * `key<TAB>value`, with backslash, tab and newline escaped.
 */
export function runMapTask(job: JobModule, fileName: string, contents: string, reduces: number): string[] {
  const grouped = new Map<string, string[]>();
  const combine = job.combine;
  const pairs = jobCall("map", () => job.map(fileName, contents));
  jobCall("map", () => {
    for (const pair of pairs) {
      if (!Array.isArray(pair) || typeof pair[0] !== "string" || typeof pair[1] !== "string") {
        throw new TypeError(`map must yield [key, value] pairs of strings, got ${JSON.stringify(pair)}`);
      }
      const [k, v] = pair;
      const values = grouped.get(k);
      if (values === undefined) grouped.set(k, [v]);
      else {
        values.push(v);
        if (combine && values.length >= combineEvery) {
          const folded = combine(k, values);
          values.length = 0;
          values.push(folded);
        }
      }
    }
  });
  const partition = job.partition;
  const parts: string[][] = Array.from({ length: reduces }, () => []);
  for (const [k, values] of grouped) {
    const p = partition ? jobCall("partition", () => partition(k, reduces)) : defaultPartition(k, reduces);
    if (!Number.isInteger(p) || p < 0 || p >= reduces) {
      throw new JobCodeError(
        `partition returned ${p} for key ${JSON.stringify(k)}; expected 0..${reduces - 1}`,
      );
    }
    const ek = escapeField(k);
    const out = parts[p]!;
    if (combine && values.length > 1) {
      const folded = jobCall("combine", () => combine(k, values));
      out.push(`${ek}\t${escapeField(folded)}\n`);
    } else {
      for (const v of values) out.push(`${ek}\t${escapeField(v)}\n`);
    }
  }
  return parts.map((lines) => lines.join(""));
}

/** Adds one intermediate file's records to `grouped`. */
export function collectIntermediate(text: string, grouped: Map<string, string[]>): void {
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf("\n", start);
    if (end === -1) end = text.length;
    const tab = text.indexOf("\t", start);
    if (tab !== -1 && tab < end) {
      const k = unescapeField(text.slice(start, tab));
      const v = unescapeField(text.slice(tab + 1, end));
      const values = grouped.get(k);
      if (values === undefined) grouped.set(k, [v]);
      else values.push(v);
    }
    start = end + 1;
  }
}

/** Reduces grouped values and formats the output: one line `key value` per key, keys sorted. */
export function runReduce(job: JobModule, grouped: Map<string, string[]>): string {
  const keys = [...grouped.keys()].sort();
  const lines: string[] = [];
  for (const k of keys) {
    const value = jobCall("reduce", () => job.reduce(k, grouped.get(k)!));
    if (typeof value !== "string") {
      throw new JobCodeError(`reduce must return a string, got ${typeof value} for key ${JSON.stringify(k)}`);
    }
    lines.push(`${k} ${value}\n`);
  }
  return lines.join("");
}
