import { randomInt } from "node:crypto";
import { normalizeSeed } from "./prng.js";
import { Simulation, type SimulationOptions } from "./simulation.js";

/** What a scenario gets for one seed: a fresh simulated world built from that seed. */
export interface ScenarioContext {
  readonly seed: number;
  readonly sim: Simulation;
}

export type Scenario = (seed: number, ctx: ScenarioContext) => Promise<void>;

export interface RunSeedsOptions {
  /** How many seeds (default: env QUORUM_SEEDS, else 25). Ignored when QUORUM_SEED is set. */
  seeds?: number;
  /** First seed (default: random, printed); seeds are start, start+1, ... */
  startSeed?: number;
  /** Options for each seed's Simulation. */
  simulation?: SimulationOptions;
  /** Print progress every N seeds (default: every 10% when there are >= 100 seeds). */
  progressEvery?: number;
  /** The test file to name in the replay command (default: found on the call stack). */
  testFile?: string;
  /**
   * The test name for the replay command's `-t` filter (default: `name`). Vitest matches it
   * against test names, so name the `runSeeds` call like its `it` or pass this.
   */
  testName?: string;
  /** Where progress goes (default: stderr). */
  log?: (line: string) => void;
  /** The environment to read QUORUM_SEED(S) from (default: process.env). */
  env?: Record<string, string | undefined>;
}

export interface RunSeedsResult {
  readonly seeds: number[];
  readonly elapsedMs: number;
}

/** Thrown when a seed fails; the message says how to replay it. */
export class SeedFailure extends Error {
  override readonly name = "SeedFailure";
  constructor(
    readonly scenario: string,
    readonly seed: number,
    readonly replay: string,
    cause: unknown,
    /** Virtual time and step count when it failed. */
    readonly at: { readonly time: number; readonly steps: number },
  ) {
    const reason = cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause);
    super(
      `${scenario}: seed ${seed} failed at t=${at.time}ms after ${at.steps} steps\n  replay: ${replay}\n${reason}`,
      { cause },
    );
  }
}

function parseSeedEnv(name: string, raw: string | undefined): number | undefined {
  if (raw === undefined || raw.trim() === "") return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`${name}=${raw}: expected a non-negative integer`);
  return n;
}

/** `-t` takes a regular expression; a test name with parentheses must match itself. */
function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

function shellQuote(s: string): string {
  return `'${s.replaceAll("'", "'\\''")}'`;
}

/** The first `*.test.ts` frame on the stack, relative to the working directory. */
function callerTestFile(): string | undefined {
  const stack = new Error().stack ?? "";
  for (const line of stack.split("\n")) {
    const m = /(?:file:\/\/)?(\/[^\s:()]+\.test\.[cm]?[jt]s)/.exec(line);
    if (m?.[1]) {
      const cwd = process.cwd();
      return m[1].startsWith(`${cwd}/`) ? m[1].slice(cwd.length + 1) : m[1];
    }
  }
  return undefined;
}

/**
 * How many seeds `runSeeds` will run with these options: 1 when QUORUM_SEED is set, else
 * QUORUM_SEEDS, else `opts.seeds`, else 25. Use it to size a test's timeout.
 */
export function seedCount(opts: Pick<RunSeedsOptions, "seeds" | "env"> = {}): number {
  const env = opts.env ?? process.env;
  if (parseSeedEnv("QUORUM_SEED", env.QUORUM_SEED) !== undefined) return 1;
  return parseSeedEnv("QUORUM_SEEDS", env.QUORUM_SEEDS) ?? opts.seeds ?? 25;
}

/**
 * Runs `scenario` once per seed, each with a fresh Simulation. The first failing seed stops
 * the run with a SeedFailure whose message carries the replay command. With QUORUM_SEED set,
 * runs exactly that seed (replay); otherwise QUORUM_SEEDS (or `opts.seeds`) seeds from a
 * random start that is printed, so a CI run explores new seeds and still reports its own.
 */
export async function runSeeds(
  name: string,
  scenario: Scenario,
  opts: RunSeedsOptions = {},
): Promise<RunSeedsResult> {
  const env = opts.env ?? process.env;
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const replaySeed = parseSeedEnv("QUORUM_SEED", env.QUORUM_SEED);
  const count = seedCount(opts);
  const start = normalizeSeed(replaySeed ?? opts.startSeed ?? randomInt(0, 2 ** 32));
  const file = opts.testFile ?? callerTestFile() ?? "<test file>";
  const replay = (seed: number) =>
    `QUORUM_SEED=${seed} pnpm exec vitest run ${file} -t ${shellQuote(escapeRegExp(opts.testName ?? name))}`;
  const every = opts.progressEvery ?? (count >= 100 ? Math.ceil(count / 10) : 0);
  if (replaySeed !== undefined) log(`[sim] ${name}: replaying seed ${start}`);
  else log(`[sim] ${name}: ${count} seeds from ${start}`);

  const began = performance.now();
  const seeds: number[] = [];
  for (let i = 0; i < count; i++) {
    const seed = normalizeSeed(start + i);
    seeds.push(seed);
    const sim = new Simulation(seed, opts.simulation);
    try {
      await scenario(seed, { seed, sim });
    } catch (e) {
      throw new SeedFailure(name, seed, replay(seed), e, {
        time: sim.now(),
        steps: sim.scheduler.stepCount(),
      });
    }
    if (every > 0 && (i + 1) % every === 0) {
      const s = ((performance.now() - began) / 1000).toFixed(1);
      log(`[sim] ${name}: ${i + 1}/${count} seeds ok (${s}s)`);
    }
  }
  return { seeds, elapsedMs: performance.now() - began };
}
