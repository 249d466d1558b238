// A custom MapReduce job, run on this machine: a coordinator in this process and two worker
// processes, talking gRPC on 127.0.0.1.
//
// What it shows: the job module (jobs/word-lengths.ts) is split into map tasks, its map
// output is shuffled to reduce tasks by its own `partition`, and the reduce output matches
// running the same job sequentially in one process.
//
// Run it (after `pnpm build` at the root):  node examples/dist/mapreduce-job.js

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { runLocalJob, runSequential } from "@quorum/mapreduce";
import { check, exitIfStuck, section } from "./util.js";

exitIfStuck(30_000);

// Workers import the job by path, so we pass the compiled module's absolute path.
const job = fileURLToPath(new URL("./jobs/word-lengths.js", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "quorum-example-mr-"));

const texts: Record<string, string> = {
  "consensus.txt": "A consensus protocol lets a group of machines agree on one value even when some fail.",
  "raft.txt": "Raft elects a leader, which appends entries to its log and replicates them to followers.",
  "paxos.txt": "Paxos chooses a value per slot: prepare and promise, then accept and accepted.",
};

async function main(): Promise<void> {
  section("Input: three small text files");
  for (const [name, text] of Object.entries(texts)) {
    writeFileSync(join(dir, name), text);
    console.log(`  ${name}: ${text.length} bytes`);
  }

  section("Running the job: 2 workers, 2 reduce tasks");
  const outDir = join(dir, "out");
  let lastPhase = "";
  const result = await runLocalJob({
    job,
    inputs: [join(dir, "*.txt")], // files or globs; each file is at least one map task
    reduces: 2, // the number of output files, mr-out-0 and mr-out-1
    outDir,
    workers: 2, // worker processes to start; one that dies is replaced
    lingerMs: 200,
    onProgress: (p) => {
      if (p.phase !== lastPhase) console.log(`  phase: ${(lastPhase = p.phase)}`);
    },
  });
  console.log(
    `  ${result.maps} map tasks and ${result.reduces} reduce tasks in ${Math.round(result.elapsedMs)} ms`,
  );

  section("Output: one file per reduce task, `key value` lines sorted by key");
  const outputs = result.outputs.map((path) => readFileSync(path, "utf8"));
  for (const [i, text] of outputs.entries()) {
    console.log(`  mr-out-${i}: ${text.trim().split("\n").join(" | ")}`);
  }
  // Our partition sent even lengths to reduce task 0 and odd lengths to task 1.
  const lengthsIn = (text: string) =>
    text
      .trim()
      .split("\n")
      .map((line) => Number(line.split(" ")[0]));
  check(
    lengthsIn(outputs[0]!).every((n) => n % 2 === 0) && lengthsIn(outputs[1]!).every((n) => n % 2 === 1),
    "the job's own partition function placed the keys",
  );

  section("Checking against the same job run sequentially in one process");
  const reference = await runSequential({ job, inputs: [join(dir, "*.txt")] });
  const merged = outputs.join("").trim().split("\n").sort().join("\n");
  check(merged === reference.text.trim(), "the distributed run produced exactly the sequential result");
  const words = Object.values(texts).reduce((n, t) => n + (t.match(/\p{L}+/gu)?.length ?? 0), 0);
  const counted = merged.split("\n").reduce((n, line) => n + Number(line.split(" ")[1]), 0);
  check(counted === words, `every word was counted once (${words})`);
  console.log("\nOK: a custom job ran on two workers and matched the sequential run");
}

try {
  await main();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
