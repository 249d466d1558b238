import { runSeeds, seedCount } from "@quorum/sim";
import { describe, expect, it } from "vitest";
import { raftScenario } from "./sim-scenario.js";

describe("RaftNode cluster under simulation", () => {
  const name = "five RaftNodes keep the five safety properties under faults, then converge";
  it(name, { timeout: 60_000 + 3_000 * seedCount({ seeds: 4 }) }, async () => {
    const { seeds } = await runSeeds(
      name,
      // Connection events on: crashed nodes' streams end, plus false alarms during the faults.
      (_seed, ctx) => raftScenario(ctx, { connectionEvents: { falseAlarmsUntilMs: 2_000 } }),
      { seeds: 4 },
    );
    expect(seeds.length).toBeGreaterThan(0);
  });
});
