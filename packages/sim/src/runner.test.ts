import { describe, expect, it } from "vitest";
import { runSeeds, SeedFailure } from "./runner.js";
import { InvariantViolation, LivenessFailure, Simulation } from "./simulation.js";

const quiet = () => {};

describe("runSeeds", () => {
  it("runs QUORUM_SEEDS consecutive seeds from the start seed, each with its own simulation", async () => {
    const seen: number[] = [];
    const { seeds } = await runSeeds(
      "count",
      async (seed, { sim }) => {
        expect(sim.seed).toBe(seed);
        expect(sim.now()).toBe(0);
        seen.push(seed);
      },
      { env: { QUORUM_SEEDS: "7" }, seeds: 3, startSeed: 100, log: quiet },
    );
    expect(seeds).toEqual([100, 101, 102, 103, 104, 105, 106]);
    expect(seen).toEqual(seeds);
  });

  it("QUORUM_SEED replays exactly that seed", async () => {
    const seen: number[] = [];
    await runSeeds("replay", async (seed) => void seen.push(seed), {
      env: { QUORUM_SEED: "4242", QUORUM_SEEDS: "50" },
      log: () => {},
    });
    expect(seen).toEqual([4242]);
  });

  it("rejects a malformed seed variable", async () => {
    await expect(runSeeds("bad", async () => {}, { env: { QUORUM_SEED: "abc" } })).rejects.toThrow(
      /QUORUM_SEED=abc/,
    );
  });

  it("stops at the first failing seed with the seed and the replay command", async () => {
    const ran: number[] = [];
    const err = await runSeeds(
      "fails on 13",
      async (seed) => {
        ran.push(seed);
        if (seed === 13) throw new Error("boom");
      },
      { env: {}, seeds: 10, startSeed: 10, log: quiet },
    ).catch((e: unknown) => e);
    expect(ran).toEqual([10, 11, 12, 13]);
    expect(err).toBeInstanceOf(SeedFailure);
    const f = err as SeedFailure;
    expect(f.seed).toBe(13);
    expect(f.message).toContain("seed 13 failed at t=0ms after 0 steps");
    expect(f.message).toContain(
      "QUORUM_SEED=13 pnpm exec vitest run packages/sim/src/runner.test.ts -t 'fails on 13'",
    );
    expect(f.message).toContain("boom");
    expect((f.cause as Error).message).toBe("boom");
  });

  it("escapes the test name for vitest's -t pattern and the shell", async () => {
    const err = await runSeeds(
      "it's (really) 1.5x",
      async () => {
        throw new Error("x");
      },
      { env: {}, seeds: 1, startSeed: 1, log: quiet },
    ).catch((e: unknown) => e);
    expect((err as SeedFailure).replay).toContain(`-t 'it'\\''s \\(really\\) 1\\.5x'`);
  });

  it("prints progress for long runs", async () => {
    const lines: string[] = [];
    await runSeeds("many", async () => {}, {
      env: { QUORUM_SEEDS: "200" },
      startSeed: 0,
      log: (l) => lines.push(l),
    });
    expect(lines[0]).toBe("[sim] many: 200 seeds from 0");
    expect(lines.filter((l) => l.includes("seeds ok"))).toHaveLength(10);
  });

  it("invariants run after every step and stop the run at the violating step", async () => {
    const err = await runSeeds(
      "invariant",
      async (_seed, { sim }) => {
        let counter = 0;
        sim.addInvariant("counter stays below 5", () => (counter >= 5 ? `counter is ${counter}` : undefined));
        const tick = () => {
          counter++;
          sim.clock.schedule(10, tick);
        };
        sim.clock.schedule(10, tick);
        await sim.runUntilTime(1000);
      },
      { env: {}, seeds: 1, startSeed: 1, log: quiet },
    ).catch((e: unknown) => e);
    const cause = (err as SeedFailure).cause;
    expect(cause).toBeInstanceOf(InvariantViolation);
    expect((cause as InvariantViolation).time).toBe(50);
    expect((cause as InvariantViolation).message).toContain("counter stays below 5");
  });

  it("errors reported with sim.fail() stop the run after the current step", async () => {
    const err = await runSeeds(
      "fail",
      async (_seed, { sim }) => {
        sim.clock.schedule(5, () => {
          Promise.reject(new Error("async failure")).catch((e) => sim.fail(e));
        });
        await sim.runUntilTime(100);
      },
      { env: {}, seeds: 1, startSeed: 1, log: quiet },
    ).catch((e: unknown) => e);
    expect(((err as SeedFailure).cause as Error).message).toBe("async failure");
  });
});

describe("Simulation.eventually", () => {
  it("passes when progress happens in time and fails with a LivenessFailure when it does not", async () => {
    const sim = new Simulation(1);
    let n = 0;
    const tick = () => {
      n++;
      sim.clock.schedule(10, tick);
    };
    sim.clock.schedule(10, tick);
    await sim.eventually("three ticks", () => n >= 3, 100);
    expect(sim.now()).toBe(30);
    await expect(sim.eventually("a thousand ticks", () => n >= 1000, 100)).rejects.toThrow(LivenessFailure);
    expect(sim.now()).toBe(130);
  });
});
