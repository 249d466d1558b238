import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { seededRandom } from "@quorum/transport";

export const packageDir = fileURLToPath(new URL("..", import.meta.url));
export const dist = join(packageDir, "dist");
export const workerMain = join(dist, "worker-main.js");
export const coordinatorMain = join(dist, "coordinator-main.js");
export const jobPath = (name: string) => join(packageDir, "test", "jobs", `${name}.mjs`);

/** Builds this package (and the transport package if it has never been built). */
export function buildDist(): void {
  const tsc = join(packageDir, "node_modules", ".bin", "tsc");
  const bin = existsSync(tsc) ? tsc : join(packageDir, "..", "..", "node_modules", ".bin", "tsc");
  const transport = join(packageDir, "..", "transport");
  if (!existsSync(join(transport, "dist", "index.js"))) {
    execFileSync(bin, ["-p", "tsconfig.build.json"], { cwd: transport, stdio: "inherit" });
  }
  execFileSync(bin, ["-p", "tsconfig.build.json"], { cwd: packageDir, stdio: "inherit" });
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `quorum-mr-${prefix}-`));
}

/** Deterministic test corpora: the transport package's seeded PRNG. */
export const prng = seededRandom;

const vocabulary = [
  "the",
  "The",
  "of",
  "and",
  "a",
  "to",
  "in",
  "is",
  "you",
  "that",
  "it",
  "he",
  "was",
  "for",
  "on",
  "are",
  "Moby",
  "Dick",
  "whale",
  "Ahab",
  "Ishmael",
  "sea",
  "ship",
  "captain",
  "Émile",
  "café",
  "naïve",
  "Straße",
  "東京",
  "москва",
  "Ελλάδα",
  "don't",
  "x2y",
  "end-of-line",
];

/** `files` text files of seeded pseudo-random lines, including Unicode words and punctuation. */
export function makeCorpus(dir: string, files: number, linesPerFile: number, seed = 1): string[] {
  mkdirSync(dir, { recursive: true });
  const rand = prng(seed);
  const names: string[] = [];
  for (let f = 0; f < files; f++) {
    const lines: string[] = [];
    for (let l = 0; l < linesPerFile; l++) {
      const n = 1 + Math.floor(rand() * 12);
      const words = Array.from({ length: n }, () => vocabulary[Math.floor(rand() * vocabulary.length)]!);
      lines.push(words.join(rand() < 0.2 ? ", " : " ") + (rand() < 0.1 ? "." : ""));
    }
    const name = join(dir, `pg-${f}.txt`);
    writeFileSync(name, `${lines.join("\n")}\n`);
    names.push(name);
  }
  return names;
}

/** Every line of every mr-out-* file, sorted (as the lab's test does with `sort`). */
export function readOutputs(outDir: string): string[] {
  return readdirSync(outDir)
    .filter((f) => /^mr-out-\d+$/.test(f))
    .flatMap((f) => readFileSync(join(outDir, f), "utf8").split("\n"))
    .filter((l) => l !== "")
    .sort();
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Child processes a test started; `killAll` in afterEach stops whatever is left. */
export class Processes {
  private readonly children = new Set<ChildProcess>();

  start(
    script: string,
    args: string[],
  ): ChildProcess & { output: () => string; exited: Promise<number | null> } {
    const child = spawn(process.execPath, [script, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    this.children.add(child);
    let out = "";
    child.stdout?.setEncoding("utf8").on("data", (d: string) => (out += d));
    child.stderr?.setEncoding("utf8").on("data", (d: string) => (out += d));
    const exited = new Promise<number | null>((resolve) =>
      child.once("exit", (code) => {
        this.children.delete(child);
        resolve(code);
      }),
    );
    return Object.assign(child, { output: () => out, exited });
  }

  async killAll(): Promise<void> {
    const left = [...this.children];
    await Promise.all(
      left.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) return resolve();
            c.once("exit", () => resolve());
            c.kill("SIGKILL");
          }),
      ),
    );
    this.children.clear();
  }
}

export async function waitFor(what: string, check: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export function cleanup(...dirs: string[]): void {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}
