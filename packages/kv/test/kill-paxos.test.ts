import { describe, expect, it, vi } from "vitest";
import { nodeSpawns } from "./helpers/paxos-spawn.js";

/**
 * kill.test.ts on Paxos: the same three `quorum node` processes, SIGKILL nemesis, history
 * check and acknowledged-write check, with every node started with `--consensus paxos`
 * (helpers/paxos-spawn.ts adds the flag; the imported file's tests run here unchanged).
 */
vi.mock("node:child_process", async (importOriginal) =>
  (await import("./helpers/paxos-spawn.js")).withConsensus(await importOriginal(), "paxos"),
);
await import("./kill.test.js");

describe("kill.test.ts on paxos", () => {
  it("started every quorum node process with --consensus paxos", () => {
    // The kill test restarts nodes: more spawns than nodes.
    expect(nodeSpawns.length).toBeGreaterThan(3);
    for (const args of nodeSpawns) expect(args.slice(-2)).toEqual(["--consensus", "paxos"]);
  });
});
