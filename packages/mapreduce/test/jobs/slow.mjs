// Word count whose map and reduce take a while and leave a trace, as the MIT 6.824 lab's
// timing and job-count plugins do: options `sleepMs` and `traceDir`.
import { appendFileSync } from "node:fs";
import { join } from "node:path";

let sleepMs = 0;
let traceDir = "";

export function setup(options) {
  sleepMs = Number(options.sleepMs ?? 0);
  traceDir = options.traceDir ?? "";
}

function sleep(ms) {
  if (ms > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function trace(kind, what) {
  if (traceDir) appendFileSync(join(traceDir, `${kind}-runs`), `${process.pid} ${what}\n`);
}

export function map(fileName, contents) {
  trace("map", fileName);
  sleep(sleepMs);
  const out = [];
  for (const m of contents.matchAll(/\p{L}+/gu)) out.push([m[0], "1"]);
  return out;
}

export function reduce(key, values) {
  trace("reduce", key);
  sleep(sleepMs / 50);
  let n = 0;
  for (const v of values) n += Number(v);
  return String(n);
}
