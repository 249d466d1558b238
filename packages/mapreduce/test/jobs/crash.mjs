// Word count that randomly kills its own process or stalls it, as the lab's crash plugin:
// options `seed`, `crash` and `stall` (probabilities per call), `stallMs`, and `markerDir`:
// the first map call to claim a marker file there crashes, the second stalls, so every run
// sees at least one of each.
import { closeSync, openSync } from "node:fs";
import { join } from "node:path";

let markerDir = "";
let rand = Math.random;
let crash = 0;
let stall = 0;
let stallMs = 0;

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function setup(options) {
  // Each worker process draws its own stream; the pid keeps restarted workers from replaying.
  rand = mulberry32(Number(options.seed ?? 1) * 7919 + process.pid);
  crash = Number(options.crash ?? 0);
  stall = Number(options.stall ?? 0);
  stallMs = Number(options.stallMs ?? 0);
  markerDir = options.markerDir ?? "";
}

function claim(name) {
  if (!markerDir) return false;
  try {
    closeSync(openSync(join(markerDir, name), "wx"));
    return true;
  } catch {
    return false;
  }
}

function maybeFail() {
  const r = rand();
  if (r < crash) process.kill(process.pid, "SIGKILL");
  else if (r < crash + stall) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, stallMs);
}

export function map(_fileName, contents) {
  if (claim("crashed")) process.kill(process.pid, "SIGKILL");
  if (claim("stalled")) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, stallMs);
  maybeFail();
  const counts = new Map();
  for (const m of contents.matchAll(/\p{L}+/gu)) counts.set(m[0], (counts.get(m[0]) ?? 0) + 1);
  return [...counts].map(([w, n]) => [w, String(n)]);
}

let reduceCalls = 0;
export function reduce(_key, values) {
  // Once per reduce task is enough: a reduce task calls this once per key.
  if (reduceCalls++ % 200 === 0) maybeFail();
  let n = 0;
  for (const v of values) n += Number(v);
  return String(n);
}
