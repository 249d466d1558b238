import { describe, expect, it, vi } from "vitest";
import { nodeSpawns } from "./helpers/paxos-spawn.js";

/**
 * shard-kill.test.ts on Paxos: its tests run unchanged against `quorum node` processes that
 * helpers/paxos-spawn.ts starts with `--consensus paxos`.
 */
vi.mock("node:child_process", async (importOriginal) =>
  (await import("./helpers/paxos-spawn.js")).withConsensus(await importOriginal(), "paxos"),
);
await import("./shard-kill.test.js");

describe("shard-kill.test.ts on paxos", () => {
  it("started every quorum node process with --consensus paxos", () => {
    expect(nodeSpawns.length).toBeGreaterThanOrEqual(3);
    for (const args of nodeSpawns) expect(args.slice(-2)).toEqual(["--consensus", "paxos"]);
  });
});
