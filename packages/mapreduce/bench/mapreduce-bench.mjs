#!/usr/bin/env node
// Word count over a generated corpus (default 208 MB): the runner with 1, 2 and 4 worker
// processes, the same job in one sequential process, and `tr -cs 'A-Za-z' '\n' | sort |
// uniq -c` on the same files, in one run. Prints a table (medians) and one JSON line.
//
//   node packages/mapreduce/bench/mapreduce-bench.mjs [--mb 208] [--files 16] [--reduces 8]
//        [--workers 1,2,4] [--seed 1] [--repeat 5] [--no-shell]
//
// Needs the package built (dist/). The corpus lives in a temp dir removed at the end.
import { execFileSync, spawnSync } from "node:child_process";
import {
  closeSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

const { runLocalJob, runSequential } = await import(new URL("../dist/index.js", import.meta.url).href);

const { values } = parseArgs({
  options: {
    mb: { type: "string", default: "208" },
    files: { type: "string", default: "16" },
    reduces: { type: "string", default: "8" },
    workers: { type: "string", default: "1,2,4" },
    seed: { type: "string", default: "1" },
    repeat: { type: "string", default: "5" },
    "no-shell": { type: "boolean", default: false },
  },
});
const totalMb = Number(values.mb);
const fileCount = Number(values.files);
const reduces = Number(values.reduces);
const workerCounts = values.workers.split(",").map(Number);
const seed = Number(values.seed);
// Each configuration runs `repeat` times, in interleaved rounds; the table shows the median
// (and the best: on a shared machine the slowest runs measure the neighbours, not the runner).
const repeat = Math.max(1, Number(values.repeat));

function mulberry32(s) {
  let a = s >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A vocabulary of pronounceable words, a few with non-ASCII letters, Zipf-like frequencies. */
function makeVocabulary(rand, size) {
  const onsets = [
    "b",
    "c",
    "d",
    "f",
    "g",
    "h",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "w",
    "st",
    "th",
    "ch",
    "br",
  ];
  const vowels = ["a", "e", "i", "o", "u", "ea", "ou", "é", "ä", "ö"];
  const words = new Set();
  while (words.size < size) {
    const syllables = 1 + Math.floor(rand() * 3);
    let w = "";
    for (let i = 0; i < syllables; i++) {
      const v = vowels[Math.floor(rand() * (rand() < 0.95 ? 5 : vowels.length))];
      w += onsets[Math.floor(rand() * onsets.length)] + v;
    }
    if (rand() < 0.1) w = w[0].toUpperCase() + w.slice(1);
    words.add(w);
  }
  return [...words];
}

function generateCorpus(dir) {
  const rand = mulberry32(seed);
  const vocab = makeVocabulary(rand, 20_000);
  // Zipf: rank r drawn as floor(n^u) is a cheap heavy-tailed stand-in.
  const pick = () => vocab[Math.min(vocab.length - 1, Math.floor(vocab.length ** rand()) - 1)];
  const perFile = Math.ceil((totalMb * 1e6) / fileCount);
  const punctuation = [" ", " ", " ", " ", ", ", ". ", "; ", " - ", " (", ") "];
  const files = [];
  for (let f = 0; f < fileCount; f++) {
    const path = join(dir, `part-${String(f).padStart(3, "0")}.txt`);
    const fd = openSync(path, "w");
    let written = 0;
    while (written < perFile) {
      const lines = [];
      let size = 0;
      while (size < 1 << 20) {
        const n = 6 + Math.floor(rand() * 10);
        let line = pick();
        for (let i = 1; i < n; i++) line += punctuation[Math.floor(rand() * punctuation.length)] + pick();
        lines.push(line);
        size += line.length + 1;
      }
      const chunk = Buffer.from(`${lines.join("\n")}\n`);
      writeSync(fd, chunk);
      written += chunk.length;
    }
    closeSync(fd);
    files.push(path);
  }
  return files;
}

function outputDigest(dir) {
  let keys = 0;
  let total = 0;
  for (const f of readdirSync(dir).filter((n) => /^mr-out-\d+$/.test(n))) {
    for (const line of readFileSync(join(dir, f), "utf8").split("\n")) {
      if (!line) continue;
      keys++;
      total += Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return { keys, total };
}

/**
 * CPU time (ms) of this process and of its exited children: how much work a run cost, which a
 * busy machine inflates far less than the wall time. Linux only (null elsewhere).
 */
function cpuMs() {
  let children = null;
  try {
    // Fields 16 and 17 of /proc/self/stat: cutime and cstime, in clock ticks (100 per second).
    const fields = readFileSync("/proc/self/stat", "utf8").split(") ")[1].split(" ");
    children = (Number(fields[13]) + Number(fields[14])) * 10;
  } catch {
    return null;
  }
  const own = process.cpuUsage();
  return (own.user + own.system) / 1000 + children;
}

const root = mkdtempSync(join(tmpdir(), "quorum-mr-bench-"));
let interrupted = false;
const onSignal = () => {
  interrupted = true;
  rmSync(root, { recursive: true, force: true });
  process.exit(130);
};
process.once("SIGINT", onSignal);
process.once("SIGTERM", onSignal);

const rows = [];
// The machine may be shared: a busy neighbour halves a 2-core speedup, so say how busy it was.
const loadAtStart = loadavg()[0].toFixed(2);
try {
  process.stderr.write(`generating ${totalMb} MB in ${fileCount} files (seed ${seed}) ... `);
  const t0 = performance.now();
  const corpusDir = join(root, "corpus");
  execFileSync("mkdir", ["-p", corpusDir]);
  const files = generateCorpus(corpusDir);
  const bytes = files.reduce((n, f) => n + statSync(f).size, 0);
  const mb = bytes / 1e6;
  process.stderr.write(`${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  // Read every file once so each run starts from the page cache.
  for (const f of files) readFileSync(f);

  const digestOf = (text) => {
    let keys = 0;
    let total = 0;
    for (const line of text.split("\n")) {
      if (!line) continue;
      keys++;
      total += Number(line.slice(line.lastIndexOf(" ") + 1));
    }
    return { keys, total };
  };

  // Each configuration is one closure returning extra row fields; rounds interleave them, so
  // a burst of load from a neighbour hits every configuration alike.
  const configs = workerCounts.map((workers) => ({
    name: `runner, ${workers} worker${workers > 1 ? "s" : ""}`,
    run: async () => {
      const out = join(root, `out-${workers}`);
      rmSync(out, { recursive: true, force: true });
      const startedAt = Date.now();
      const result = await runLocalJob({ job: "wordcount", inputs: files, reduces, outDir: out, workers });
      const endedAt = Date.now();
      // Where the wall time went: worker start-up, the map phase, the reduce phase, shutdown.
      const runs = result.taskRuns.filter((x) => x.accepted);
      const at = (kind, pick, field) => pick(...runs.filter((x) => x.kind === kind).map((x) => x[field]));
      const phases = {
        startMs: at("map", Math.min, "startedAtMs") - startedAt,
        mapMs: at("map", Math.max, "endedAtMs") - at("map", Math.min, "startedAtMs"),
        reduceMs: at("reduce", Math.max, "endedAtMs") - at("map", Math.max, "endedAtMs"),
        endMs: endedAt - at("reduce", Math.max, "endedAtMs"),
      };
      if (process.env.BENCH_DEBUG) {
        const base = Math.min(...result.taskRuns.map((x) => x.startedAtMs));
        for (const x of result.taskRuns) {
          process.stderr.write(
            `    ${x.kind} ${x.index} ${x.workerId} ${x.startedAtMs - base}..${x.endedAtMs - base}\n`,
          );
        }
      }
      const digest = outputDigest(out);
      rmSync(out, { recursive: true, force: true });
      return { workers, maps: result.maps, reduces: result.reduces, digest, phases };
    },
  }));
  configs.push({
    name: "sequential, 1 process",
    run: async () => {
      const { text } = await runSequential({ job: "wordcount", inputs: files });
      return { digest: digestOf(text) };
    },
  });
  if (!values["no-shell"]) {
    const list = files.map((f) => `'${f}'`).join(" ");
    configs.push({
      name: "tr | sort | uniq -c (LC_ALL=C)",
      run: async () => {
        const shell = spawnSync(
          "bash",
          ["-c", `set -o pipefail; cat ${list} | tr -cs 'A-Za-z' '\\n' | sort | uniq -c > /dev/null`],
          { stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, LC_ALL: "C" } },
        );
        if (shell.status !== 0) throw new Error(`shell pipeline failed (exit ${shell.status})`);
        return {};
      },
    });
  }
  const samples = new Map(configs.map((c) => [c.name, []]));
  const cpuSamples = new Map(configs.map((c) => [c.name, []]));
  const extras = new Map(configs.map((c) => [c.name, []]));
  for (let round = 1; round <= repeat; round++) {
    for (const config of configs) {
      const cpuStart = cpuMs();
      const start = performance.now();
      const extra = await config.run();
      const seconds = (performance.now() - start) / 1000;
      if (cpuStart !== null) cpuSamples.get(config.name).push((cpuMs() - cpuStart) / 1000);
      const p = extra.phases;
      const split = p ? `: start ${p.startMs}, map ${p.mapMs}, reduce ${p.reduceMs}, end ${p.endMs} ms` : "";
      const cpu = cpuSamples.get(config.name).at(-1);
      process.stderr.write(
        `  round ${round}: ${config.name}: ${seconds.toFixed(2)} s${cpu === undefined ? "" : `, cpu ${cpu.toFixed(2)} s`}${split} (load ${loadavg()[0].toFixed(2)})\n`,
      );
      samples.get(config.name).push(seconds);
      extras.get(config.name).push(extra);
    }
  }
  const median = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    const mid = s.length >> 1;
    return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  };
  for (const config of configs) {
    const all = samples.get(config.name);
    const seconds = median(all);
    // The extra fields (phase split, digest) of the run nearest the median.
    const nearest = all.indexOf([...all].sort((a, b) => Math.abs(a - seconds) - Math.abs(b - seconds))[0]);
    rows.push({
      name: config.name,
      seconds,
      best: Math.min(...all),
      samples: all,
      cpuSeconds: cpuSamples.get(config.name).length ? median(cpuSamples.get(config.name)) : null,
      mbPerSec: mb / seconds,
      ...extras.get(config.name)[nearest],
    });
  }

  const by = (name) => rows.find((r) => r.name.startsWith(name));
  const one = rows.find((r) => r.workers === 1);
  const seq = by("sequential");
  const sh = by("tr ");
  // Every run of every configuration, not only the median ones, must give the same counts.
  const digests = [...extras.values()]
    .flat()
    .filter((e) => e.digest)
    .map((e) => JSON.stringify(e.digest));
  const consistent = new Set(digests).size === 1;

  const pad = (s, n) => String(s).padEnd(n);
  const lpad = (s, n) => String(s).padStart(n);
  const load = loadavg()[0].toFixed(2);
  console.log(
    `\nword count over ${mb.toFixed(1)} MB (${files.length} files), ${cpus().length} cores, R=${reduces}, load average ${loadAtStart} at start, ${load} at end`,
  );
  console.log(
    `median of ${repeat} interleaved rounds; speedups compare medians; cpu s: CPU time of all processes of the run`,
  );
  console.log(
    `${pad("run", 34)}${lpad("median s", 10)}${lpad("best s", 8)}${lpad("cpu s", 8)}${lpad("MB/s", 9)}${lpad("vs 1 worker", 13)}${lpad("vs shell", 10)}`,
  );
  for (const r of rows) {
    const vsOne = one ? (one.seconds / r.seconds).toFixed(2) + "x" : "-";
    const vsShell = sh ? (sh.seconds / r.seconds).toFixed(2) + "x" : "-";
    console.log(
      `${pad(r.name, 34)}${lpad(r.seconds.toFixed(2), 10)}${lpad(r.best.toFixed(2), 8)}${lpad(r.cpuSeconds === null ? "-" : r.cpuSeconds.toFixed(2), 8)}${lpad(r.mbPerSec.toFixed(1), 9)}${lpad(vsOne, 13)}${lpad(vsShell, 10)}`,
    );
  }
  console.log(`outputs agree (keys, total words) across runner and sequential: ${consistent ? "yes" : "NO"}`);
  console.log(
    JSON.stringify({
      bench: "mapreduce-wordcount",
      mb: Number(mb.toFixed(1)),
      files: files.length,
      cores: cpus().length,
      loadAverageAtStart: Number(loadAtStart),
      reduces,
      seed,
      repeat,
      loadAverageAtEnd: Number(load),
      runs: rows.map(({ name, seconds, best, samples, cpuSeconds, mbPerSec, workers, phases }) => ({
        name,
        workers,
        seconds: Number(seconds.toFixed(3)),
        best: Number(best.toFixed(3)),
        cpuSeconds: cpuSeconds === null ? null : Number(cpuSeconds.toFixed(3)),
        phasesMs: phases,
        samples: samples.map((x) => Number(x.toFixed(3))),
        mbPerSec: Number(mbPerSec.toFixed(1)),
      })),
      speedup2v1:
        one && rows.find((r) => r.workers === 2)
          ? Number((one.seconds / rows.find((r) => r.workers === 2).seconds).toFixed(2))
          : null,
      speedup4v1:
        one && rows.find((r) => r.workers === 4)
          ? Number((one.seconds / rows.find((r) => r.workers === 4).seconds).toFixed(2))
          : null,
      bestRunnerVsShell: sh
        ? Number((sh.seconds / Math.min(...rows.filter((r) => r.workers).map((r) => r.seconds))).toFixed(2))
        : null,
      sequentialSeconds: seq ? Number(seq.seconds.toFixed(3)) : null,
      outputsAgree: consistent,
    }),
  );
  if (!consistent) process.exitCode = 1;
} finally {
  if (!interrupted) rmSync(root, { recursive: true, force: true });
}
