// Word count that kills its own process (SIGKILL) or stalls it, as the lab's crash plugin, but
// with a fault plan that replays from a seed. Whether an attempt fails is a pure function of
// (seed, task, attempt number), never of the process or the clock: the n-th attempt of a map
// task (named by its file and contents) or of a sampled key's reduce crashes, stalls or runs,
// whichever worker runs it and whenever. Attempts are numbered by claiming marker files
// `<task>-<n>` in `markerDir`, shared by all workers of the job.
//
// Options: `seed`, `crash` and `stall` (probabilities per attempt), `stallMs`, `markerDir`, and
// `crashFile` / `stallFile`: the first attempt of every split of the file with that base name
// crashes / stalls, so every seed sees at least one of each; `reduceKeys`, the share of keys
// whose reduce may fail (default 0.1). Attempts after the third never fail, so every task
// finishes.
import { closeSync, openSync } from "node:fs";
import { basename, join } from "node:path";

let seed = 1;
let crash = 0;
let stall = 0;
let stallMs = 0;
let markerDir = "";
let crashFile = "";
let stallFile = "";
let reduceKeys = 0.1;

export function setup(options) {
  seed = Number(options.seed ?? 1);
  crash = Number(options.crash ?? 0);
  stall = Number(options.stall ?? 0);
  stallMs = Number(options.stallMs ?? 0);
  markerDir = options.markerDir ?? "";
  crashFile = options.crashFile ?? "";
  stallFile = options.stallFile ?? "";
  reduceKeys = Number(options.reduceKeys ?? 0.1);
}

/** FNV-1a, 32 bits. */
function hash(text) {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** A number in [0, 1) drawn from the seed and `what` alone. */
function draw(what) {
  let h = hash(`${seed}:${what}`);
  // Finalizer (murmur3 fmix32) so neighbouring attempt numbers draw unrelated values.
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return ((h ^ (h >>> 16)) >>> 0) / 4294967296;
}

/** This attempt's number for `task`: 0 for the first attempt anywhere, then 1, 2, ... */
function attemptNumber(task) {
  if (!markerDir) return 0;
  const name = hash(task).toString(16);
  for (let n = 0; ; n++) {
    try {
      closeSync(openSync(join(markerDir, `${name}-${n}`), "wx"));
      return n;
    } catch {
      // Claimed by an earlier attempt: try the next number.
    }
  }
}

function stallNow() {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, stallMs);
}

function fail(task, n, forced) {
  if (n >= 3) return;
  const r = draw(`${task}:${n}`);
  if (forced === "crash" || r < crash) process.kill(process.pid, "SIGKILL");
  else if (forced === "stall" || r < crash + stall) stallNow();
}

export function map(fileName, contents) {
  const task = `map:${fileName}:${contents.length}:${hash(contents)}`;
  const n = attemptNumber(task);
  const file = basename(fileName);
  fail(task, n, n === 0 && file === crashFile ? "crash" : n === 0 && file === stallFile ? "stall" : null);
  const counts = new Map();
  for (const m of contents.matchAll(/\p{L}+/gu)) counts.set(m[0], (counts.get(m[0]) ?? 0) + 1);
  return [...counts].map(([w, n]) => [w, String(n)]);
}

export function reduce(key, values) {
  // Each key belongs to one reduce task, so a key's n-th reduce is that task's n-th attempt
  // to reach it.
  if (draw(`sample:${key}`) < reduceKeys) {
    const task = `reduce:${key}`;
    fail(task, attemptNumber(task), null);
  }
  let n = 0;
  for (const v of values) n += Number(v);
  return String(n);
}
