// Word count whose reduce of the key `alpha` waits until the file $QUORUM_MR_GATE/release
// exists, so a test can look at a job in the middle of its reduce phase.
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export function map(_fileName, contents) {
  const counts = new Map();
  for (const [w] of contents.matchAll(/\p{L}+/gu)) counts.set(w, (counts.get(w) ?? 0) + 1);
  return [...counts].map(([w, n]) => [w, String(n)]);
}

export function reduce(key, values) {
  const gate = process.env.QUORUM_MR_GATE;
  if (key === "alpha" && gate) {
    writeFileSync(join(gate, "waiting"), "");
    while (!existsSync(join(gate, "release")))
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
  }
  let n = 0;
  for (const v of values) n += Number(v);
  return String(n);
}
