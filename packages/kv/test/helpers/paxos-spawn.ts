import type { spawn as nodeSpawn } from "node:child_process";

/**
 * Runs the process tests of this folder on Paxos without a copy of them: a test file mocks
 * `node:child_process` so that `spawn` adds `--consensus paxos` to every `quorum node`
 * command, then imports the Raft test file, whose tests then run against Paxos processes.
 * (helpers/process-cluster.ts has no consensus option yet; this keeps it unedited.)
 *
 *   vi.mock("node:child_process", async (importOriginal) =>
 *     (await import("./helpers/paxos-spawn.js")).withConsensus(await importOriginal(), "paxos"));
 */

/** The argument lists of every `quorum node` process started through the mock. */
export const nodeSpawns: string[][] = [];

/** Whether `args` start a `quorum node` (the demo CLI's node command). */
function isQuorumNode(args: readonly string[]): boolean {
  return args.length >= 2 && args[0]!.endsWith("apps/demo/dist/cli.js") && args[1] === "node";
}

/** `node:child_process` with a `spawn` that runs every `quorum node` on `consensus`. */
export function withConsensus<M extends { spawn: typeof nodeSpawn; default?: unknown }>(
  actual: M,
  consensus: "paxos" | "raft",
): M {
  const spawn = ((file: string, args?: readonly string[], options?: object) => {
    if (Array.isArray(args) && isQuorumNode(args)) {
      if (args.includes("--consensus")) throw new Error("this quorum node command already names --consensus");
      const withFlag = [...args, "--consensus", consensus];
      nodeSpawns.push(withFlag);
      return actual.spawn(file, withFlag, options ?? {});
    }
    // biome-ignore lint/suspicious/noExplicitAny: passes every other overload through unchanged
    return (actual.spawn as any)(file, args, options);
  }) as typeof nodeSpawn;
  const defaults = (actual.default ?? actual) as object;
  return { ...actual, spawn, default: { ...defaults, spawn } };
}
