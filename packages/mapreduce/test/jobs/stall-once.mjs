// Word count whose first map call (the first to claim a marker file in `markerDir`) stalls
// the whole worker process for `stallMs`: a straggler, as in paper 3.6.
import { closeSync, openSync } from "node:fs";
import { join } from "node:path";

let markerDir = "";
let stallMs = 0;

export function setup(options) {
  markerDir = options.markerDir;
  stallMs = Number(options.stallMs);
}

export function map(_fileName, contents) {
  try {
    closeSync(openSync(join(markerDir, "stalled"), "wx"));
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, stallMs);
  } catch {}
  const out = [];
  for (const m of contents.matchAll(/\p{L}+/gu)) out.push([m[0], "1"]);
  return out;
}

export function reduce(_key, values) {
  return String(values.length);
}
