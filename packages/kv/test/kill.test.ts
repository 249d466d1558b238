import { checkLinearizability, formatOperation, type Operation } from "@quorum/sim";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { debugLog, missingWrites, nudge, rand, runKillWorkload } from "./helpers/kill-workload.js";
import { ProcessCluster } from "./helpers/process-cluster.js";

/**
 * Real processes (DESIGN.md rules 2 and 4): three `quorum node` processes with SQLite files,
 * a mixed read / write / compare-and-set workload over a few keys through real gRPC clients,
 * while a node (usually the leader) is SIGKILLed and restarted every few seconds. The history
 * (wall-clock monotonic times) must be linearizable. Then every process is SIGKILLed at once
 * and restarted: every acknowledged write must still be there, at its revision.
 * The workload itself is shared with shard-kill.test.ts (helpers/kill-workload.ts).
 */

const KEYS = ["kill/a", "kill/b", "kill/c"];
const NUDGE = ["kill/nudge"];
const debug = debugLog("kill");

describe("three quorum node processes under SIGKILL", () => {
  let cluster: ProcessCluster | undefined;

  beforeAll(async () => {
    cluster = await ProcessCluster.start({ prefix: "quorum-kill-", metrics: true });
  }, 30_000);
  afterAll(async () => {
    await cluster?.close();
  });

  it("keeps a linearizable history while nodes (mostly the leader) are killed, and loses no acknowledged write", {
    timeout: 90_000,
  }, async () => {
    const c = cluster!;
    const names = c.nodes.map((n) => n.name);
    const r = await runKillWorkload(c, {
      keys: KEYS,
      nudgeKeys: NUDGE,
      workloadMs: 20_000,
      minKills: 4,
      tag: "kill",
      pickVictim: async (cl, n) => {
        const leader = await cl.leader();
        // The first victim is the leader (the assertions below count on one), then mostly.
        const victim =
          leader && (n === 0 || Math.random() < 0.7) ? leader : names[rand(0, names.length - 1)]!;
        return { victim, label: `${victim}${victim === leader ? " (leader)" : ""}` };
      },
    });
    debug(r.summary);
    if (process.env.QUORUM_DEBUG) console.log(r.summary);
    expect(r.finalReadFailures, `${r.summary}\n${c.tail()}`).toEqual([]);

    // Killed processes leave many outcomes unknown, and each multiplies the search: give it
    // room (a "limit" result says nothing about correctness; a "violation" does).
    const result = checkLinearizability(r.ops, { maxSteps: 20_000_000 });
    if (!result.ok) {
      const show = (list: readonly Operation[]) => list.map(formatOperation).join("\n");
      throw new Error(
        `not linearizable (${result.kind}) on ${result.key}: ${result.explanation}\n${show(result.operations)}\n${r.summary}`,
      );
    }
    expect(r.kills.length, r.summary).toBeGreaterThanOrEqual(4);
    expect(r.kills.filter((k) => k.endsWith("(leader)")).length, r.summary).toBeGreaterThanOrEqual(1);
    expect(r.completed, r.summary).toBeGreaterThan(300);

    // Every process dies at once; after the restart every acknowledged write is there.
    await c.killAll();
    for (const name of names) c.spawn(name);
    await Promise.all(c.nodes.map((n) => n.ready));
    await c.waitForLeader();
    await c.waitUntilAllKnowLeaders();
    await nudge(c, NUDGE);
    debug(`restarted all; checking ${r.acked.length} acknowledged writes`);
    const missing = await missingWrites(c, r.acked);
    expect(missing, `acknowledged writes lost after restarting every node (of ${r.acked.length})`).toEqual(
      [],
    );
    expect(r.acked.length).toBeGreaterThan(100);
  });
});
