import { describe, expect, it } from "vitest";
import { runSeeds, SeedFailure, seedCount } from "../src/index.js";
import { registerScenario } from "./toy-register.js";

describe("toy replicated register under simulation", () => {
  // The scenario has the test's name, so the printed replay command's -t filter selects it.
  // About 5-10 ms per seed here; the timeout grows with QUORUM_SEEDS.
  const correct = "the correct protocol (reads at the leader) is linearizable on every seed";
  it(correct, { timeout: 20_000 + 50 * seedCount() }, async () => {
    const { seeds } = await runSeeds(correct, (_seed, ctx) => registerScenario(ctx, false));
    expect(seeds).toHaveLength(seedCount());
  });

  it("the buggy protocol (reads at any replica) is caught, and its seed replays exactly", async () => {
    const run = () =>
      runSeeds("register: buggy", (_seed, ctx) => registerScenario(ctx, true), {
        seeds: 20,
        startSeed: 1000,
        env: {}, // a QUORUM_SEED meant for another test must not narrow this search
        log: () => {},
      });
    const failure = await run().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(failure).toBeInstanceOf(SeedFailure);
    const f = failure as SeedFailure;
    expect(f.message).toContain(`seed ${f.seed}`);
    expect(f.message).toContain(`QUORUM_SEED=${f.seed} pnpm exec vitest run`);
    expect(f.message).toContain("toy-register.test.ts");
    expect(f.message).toMatch(/not linearizable/);

    const replay = await runSeeds("register: buggy", (_seed, ctx) => registerScenario(ctx, true), {
      env: { QUORUM_SEED: String(f.seed) },
      log: () => {},
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((replay as SeedFailure).message).toBe(f.message);
  });
});
